"""The Slurm launcher against a real Slurm: a single-node cluster on this machine (tools/local-slurm.sh: munge,
slurmctld, slurmd), a grid of three Gaussian runs submitted as a job array through submitit's Slurm executor.
Every run finishes exactly once; `samat experiment status` shows each task's Slurm state; a cancelled task
(scancel), running or pending, is picked up by the next `samat experiment run`. Slow (about a minute and a half
on two busy cores); it needs root and Slurm installed (sudo tools/local-slurm.sh installs it), and is skipped
with the reason otherwise."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from samat.empirical.experiments.grid import load_experiment
from samat.empirical.training.runs import RunDir
from tests.commandline import GAUSSIAN
from tests.helpers import REPO

SCRIPT = REPO / "tools" / "local-slurm.sh"
EPOCHS = 20  # about 0.6 s each on one busy core: a task runs long enough to be cancelled in the middle
DEADLINE = 300  # seconds for each wait below

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_slurm(tmp_path_factory):
    """SLURM_CONF of a running single-node Slurm (started here if it was not running, and stopped after)."""
    pytest.importorskip("submitit", reason="the launcher needs submitit: pip install 'samat[slurm]'")
    if os.geteuid() != 0:
        pytest.skip("a local Slurm needs root (its daemons start jobs as their users): run as root")
    status = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True)
    was_running = status.stdout.count(" runs (pid") == 2
    started = subprocess.run(["bash", str(SCRIPT), "start", "--no-install"], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.skip(f"no local Slurm: {(started.stderr or started.stdout).strip().splitlines()[-1]}")
    conf = re.search(r"export SLURM_CONF=(\S+)", started.stdout).group(1)
    yield conf
    if not was_running:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True)


def _grid(folder: Path) -> Path:
    gaussian = ", ".join(f"{k} = {v}" for k, v in (GAUSSIAN | {"train_size": 50000}).items())
    path = folder / "grid.toml"
    path.write_text(f'[experiment]\nname = "array"\nseeds = [0, 1, 2]\n\n[base]\ndataset = "gaussian"\n'
                    f'model = "linear"\nepochs = {EPOCHS}\nbatch_size = 64\ngaussian = {{ {gaussian} }}\n\n'
                    '[[run]]\nlabel = "SGD"\nmethod = "sgd"\n')
    return path


def _wait(condition, what: str, show) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{show()}"
        time.sleep(0.1)


def _squeue(array: str) -> dict[str, str]:
    out = subprocess.run(["squeue", "-h", "-r", "--states=all", "-j", array, "-o", "%i|%T"], capture_output=True,
                         text=True).stdout
    return dict(line.split("|") for line in out.split())


TRAINED = re.compile(r"^\[\d+/3\] .* -> (\S+) \((new|partial)\)$", re.M)


def test_a_grid_as_a_slurm_job_array(local_slurm, samat, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", local_slurm)
    grid, runs = _grid(tmp_path), tmp_path / "runs"
    launch = ("experiment", "run", grid, "--runs-dir", runs, "--launcher", "slurm", "--gpus", "0", "--cpus", "1",
              "--time", "10", "--max-parallel", "1")
    exp = load_experiment(grid, runs_dir=runs)
    folders = [str(spec.run_dir) for spec in exp.runs]

    def status() -> dict[str, tuple[str, str]]:
        result = samat("experiment", "status", grid, "--runs-dir", runs)
        assert result.code == 0, result.err
        lines = [re.fullmatch(r"(\S+)\s+(\S+)(?:\s+\((.*)\))?", line) for line in result.out.splitlines()]
        return {m.group(2): (m.group(1), m.group(3) or "") for m in lines}

    submitted = samat(*launch)
    assert submitted.code == 0, submitted.err
    first = re.search(r"submitted 3 tasks to slurm \(jobs (\d+)_0 \.\.\. \1_2\)", submitted.err).group(1)
    seen = status()  # one task at a time: the others wait in the queue, as Slurm says
    assert seen[folders[2]] == ("queued", f"job {first}_2 PENDING"), seen

    # the first task trains (it holds its run's lock, naming its job); cancel it, and the pending third one
    run0 = RunDir(folders[0])
    _wait(lambda: run0.has_checkpoint and run0.holder() is not None, "the first task's first epoch", status)
    seen = status()
    assert seen[folders[0]][0] == "running" and f"job {first}_0" in seen[folders[0]][1], seen
    subprocess.run(["scancel", f"{first}_0", f"{first}_2"], check=True)
    _wait(lambda: _squeue(first).get(f"{first}_1") == "COMPLETED", "the second task", status)
    assert _squeue(first).get(f"{first}_0") == "CANCELLED" and not run0.finished
    seen = status()
    assert seen[folders[0]] == ("failed", f"job {first}_0 ended CANCELLED without finishing it, leaving its "
                                "checkpoint; samat experiment run picks it up again; see the job's log"), seen
    assert seen[folders[1]] == ("finished", f"job {first}_1 COMPLETED"), seen
    # a pending task cancelled leaves no record in the controller: without accounting (sacct), its end is unknown
    assert seen[folders[2]][0] == "failed" and re.match(rf"job {first}_2 ended (CANCELLED|\(Slurm no longer knows "
                                                        r"how\)) without finishing it, leaving nothing",
                                                        seen[folders[2]][1]), seen

    # a rerun submits what is not finished: the cancelled run resumes from its checkpoint
    again = samat(*launch)
    assert again.code == 0, again.err
    second = re.search(r"submitted 2 tasks to slurm \(jobs (\d+)_0 \.\.\. \1_1\)", again.err).group(1)
    _wait(lambda: all(RunDir(f).finished and RunDir(f).holder() is None for f in folders), "the rerun", status)
    _wait(lambda: set(_squeue(second).values()) == {"COMPLETED"}, "the rerun's jobs to end", status)
    assert status() == {folders[0]: ("finished", f"job {second}_0 COMPLETED"),
                        folders[1]: ("finished", f"job {first}_1 COMPLETED"),
                        folders[2]: ("finished", f"job {second}_1 COMPLETED")}

    # every run trained to the end exactly once: started once (twice for the cancelled one, which resumed),
    # each epoch recorded once
    logs = "".join(p.read_text() for p in sorted((runs / "array" / "jobs").glob("*/*_log.out")))
    starts = sorted(TRAINED.findall(logs))
    assert starts == sorted([(folders[0], "new"), (folders[0], "partial"), (folders[1], "new"),
                             (folders[2], "new")]), logs
    for folder in folders:
        assert [row["round"] for row in RunDir(folder).read_metrics()] == list(range(1, EPOCHS + 1))
        assert logs.count(f"{Path(folder).name}: epoch {EPOCHS}/{EPOCHS}") == 1, logs
    assert "nothing to submit" in samat(*launch).err
