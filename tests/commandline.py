"""The command line as its users meet it: fixtures that run ``samat`` in this process (fast: torch is loaded once)
and a small finished run to point commands at. tests/cli/ and tests/scenarios/ take the fixtures from here."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from samat.cli.main import main
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.loop import train
from tests.helpers import REPO

# A linear model on the papers' Gaussian data: trains in about a second on one core.
GAUSSIAN = {"p": 0.8, "eta": 0.3, "n": 6, "train_size": 512, "test_size": 512}


def gaussian_cfg(**changes) -> TrainConfig:
    return TrainConfig.from_dict({"dataset": "gaussian", "model": "linear", "epochs": 2, "batch_size": 64,
                                  "gaussian": GAUSSIAN, "device": "cpu"} | changes)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def one_line_error(self, needle: str, command: str) -> None:
        """Exit code 2, no traceback, and exactly one error line, the last, naming the command and ``needle``."""
        assert self.code == 2, self
        assert "Traceback" not in self.err, self.err
        errors = [line for line in self.err.splitlines() if "error:" in line]
        assert errors == self.err.splitlines()[-1:], self.err
        assert errors[0].startswith(f"samat {command}: error: "), errors[0]
        assert needle in errors[0], errors[0]


@pytest.fixture
def samat(capsys, monkeypatch):
    """``samat ARGS`` in this process, on one CPU thread: a :class:`Result`."""
    monkeypatch.setenv("SAMAT_THREADS", "1")
    threads = torch.get_num_threads()

    def run(*args) -> Result:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as stop:  # argparse's errors
            code = stop.code
        out, err = capsys.readouterr()
        return Result(int(code or 0), out, err)

    yield run
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A finished Gaussian run (2 epochs); copy it before changing it (:func:`fresh_run`)."""
    path = tmp_path_factory.mktemp("finished") / "runs" / "g"
    train(gaussian_cfg(), path, progress=False)
    return path


@pytest.fixture
def fresh_run(finished_run, tmp_path):
    """A private copy of :func:`finished_run` under ``tmp_path/runs``."""
    path = tmp_path / "runs" / "g"
    shutil.copytree(finished_run, path)
    return path


def samat_with_read_only(folder: Path, *args, timeout: float = 300) -> Result:
    """``python -m samat ARGS`` in a fresh process that cannot write in ``folder``: for a user, by its permissions;
    for root (who writes anywhere), by a read-only bind mount of it in a mount namespace of its own (``unshare
    -m``). Skipped where neither can be had."""
    env = os.environ | {"SAMAT_THREADS": "1"}
    command = [sys.executable, "-m", "samat", *map(str, args)]
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o500)
        try:
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        finally:
            folder.chmod(mode)
    else:
        if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
            pytest.skip("root writes into read-only folders, and no mount namespace is available (unshare -m)")
        where = shlex.quote(str(folder))
        script = (f"mount --bind {where} {where} && mount -o remount,ro,bind {where} {where} && exec "
                  + shlex.join(command))
        done = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=timeout)
    return Result(done.returncode, done.stdout, done.stderr)
