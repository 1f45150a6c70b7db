"""A full disk, as the probe met it: with 0 bytes free, writing the lock gave a traceback in train, eval and
experiment run; with 4 kB free, train failed writing config.json, eval after the work, theory verify and plot
writing their outputs. Each now says "disk full" in one line naming the path (exit 2), before the work where the
room can be checked, and loses nothing: an earlier result is intact. The disk is simulated (tests/core/
test_disk_full.py fills one real tmpfs)."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from samat.core.errors import DiskFull
from samat.core.results import ROOM
from samat.empirical.training.runs import RunDir
from tests.commandline import GAUSSIAN
from tests.helpers import NO_SPACE, fail_fsync_of, report_free, snapshot

TRAIN = ("train", "--dataset", "gaussian", "--model", "linear", "--epochs", "1", "--no-progress")


def grid(folder):
    gaussian = ", ".join(f"{k} = {v}" for k, v in GAUSSIAN.items())
    path = folder / "grid.toml"
    path.write_text(f'[experiment]\nname = "full"\nseeds = [0]\n\n[base]\ndataset = "gaussian"\nmodel = "linear"\n'
                    f'epochs = 1\nbatch_size = 64\ngaussian = {{ {gaussian} }}\n\n[[run]]\nlabel = "SGD"\n'
                    'method = "sgd"\n')
    return path


def commands(tmp_path, run):
    return {
        "train": [*TRAIN, "--runs-dir", tmp_path / "runs", "--name", "new"],
        "eval": ["eval", run, "--attacks", "fgsm_linf@0.1", "--overwrite", "--no-progress"],
        "experiment run": ["experiment", "run", grid(tmp_path), "--runs-dir", tmp_path / "runs", "--no-progress"],
    }


@pytest.mark.parametrize("command", ["train", "eval", "experiment run"])
def test_zero_bytes_free_the_lock_is_disk_full_in_one_line(samat, tmp_path, fresh_run, monkeypatch, command):
    before = snapshot(fresh_run)
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: (_ for _ in ()).throw(NO_SPACE))
    result = samat(*commands(tmp_path, fresh_run)[command])
    result.one_line_error("disk full: cannot lock", command)
    assert ".lock; nothing was started" in result.err
    assert snapshot(fresh_run) == before and not (tmp_path / "runs" / "new").exists()


@pytest.mark.parametrize("command", ["train", "eval", "experiment run", "theory verify", "theory plot"])
def test_four_kb_free_is_refused_before_the_work(samat, tmp_path, fresh_run, monkeypatch, command):
    import samat.empirical.evaluation.run as evaluation
    import samat.empirical.training.loop as loop
    import samat.theory.claims.report as report
    import samat.theory.plots as plots

    def work(*a, **kw):
        raise AssertionError("the work started")

    for module, name in ((loop, "_train"), (evaluation, "_evaluate_locked"), (report, "verify_into"),
                         (plots, "make_all")):
        monkeypatch.setattr(module, name, work)
    before = snapshot(fresh_run)
    args = commands(tmp_path, fresh_run) | {"theory verify": ["theory", "verify", "--quick", "--out", tmp_path / "v"],
                                            "theory plot": ["theory", "plot", "--out", tmp_path / "p"]}
    report_free(monkeypatch, 4096)
    result = samat(*args[command])
    result.one_line_error("disk full: 4.1 kB free in ", command)
    assert "1.05 MB needed for the results; nothing was started" in result.err
    assert snapshot(fresh_run) == before


def test_train_that_cannot_write_config_json_says_disk_full(samat, tmp_path, monkeypatch):
    fail_fsync_of(monkeypatch, "config.json")
    result = samat(*TRAIN, "--runs-dir", tmp_path / "runs", "--name", "new")
    result.one_line_error(f"disk full: cannot write {tmp_path / 'runs' / 'new' / 'config.json'}; nothing was "
                          "replaced: free some space", "train")
    assert not (tmp_path / "runs" / "new" / "config.json").exists()


def test_train_without_room_for_its_checkpoints_stops_before_the_first_epoch(samat, tmp_path, monkeypatch):
    import samat.empirical.training.runs as runs

    real, asked = runs.check_free_space, []

    def check_free_space(folder, need, **kw):
        asked.append(need)
        report_free(monkeypatch, need - 1)  # room for the results (ROOM), one byte short of the checkpoints
        real(folder, need, **kw)

    monkeypatch.setattr(runs, "check_free_space", check_free_space)
    result = samat(*TRAIN, "--runs-dir", tmp_path / "runs", "--name", "new")
    result.one_line_error(f"needed for the checkpoints and weights of {tmp_path / 'runs' / 'new'}", "train")
    assert len(asked) == 1 and asked[0] > ROOM and not (tmp_path / "runs" / "new").exists()


def test_the_room_a_run_asks_for_is_four_times_its_weights(tmp_path, monkeypatch):
    """A checkpoint holds the weights and up to two optimizer buffers per weight (Adam's moments), and is written
    beside the current one; model.pt holds the weights once more; the JSON files need ROOM."""
    model = torch.nn.Linear(10, 3)  # 33 float32 numbers
    need = 4 * 33 * 4 + ROOM
    report_free(monkeypatch, need)
    RunDir(tmp_path / "run").check_room(model)
    report_free(monkeypatch, need - 1)
    with pytest.raises(DiskFull, match=f"needed for the checkpoints and weights of {tmp_path / 'run'}"):
        RunDir(tmp_path / "run").check_room(model)


def test_eval_that_cannot_write_eval_json_keeps_the_previous_one(samat, fresh_run, monkeypatch):
    assert samat("eval", fresh_run, "--attacks", "fgsm_linf@0.1", "--no-progress").code == 0
    before = snapshot(fresh_run)
    fail_fsync_of(monkeypatch, "eval.json")
    result = samat("eval", fresh_run, "--attacks", "fgsm_linf@0.2", "--no-progress")
    result.one_line_error(f"disk full: cannot write {fresh_run / 'eval.json'}; the previous eval.json is intact",
                          "eval")
    assert snapshot(fresh_run) == before


@pytest.mark.parametrize("command, target", [("verify", "verification.md"), ("plot", "sam_coefficient.png")])
def test_theory_outputs_that_find_the_disk_full_keep_the_previous_ones(samat, tmp_path, monkeypatch, command,
                                                                      target):
    args = ["theory", command, "--out", tmp_path / "out", *(["--quick"] if command == "verify" else [])]
    assert samat(*args).code == 0
    before = snapshot(tmp_path / "out")
    fail_fsync_of(monkeypatch, target, OSError(errno.EDQUOT, "Disk quota exceeded"))
    result = samat(*args, "--force")
    result.one_line_error(f"disk full: cannot write {tmp_path / 'out' / target}; the previous {target} is intact",
                          f"theory {command}")
    assert snapshot(tmp_path / "out").get(target) == before[target]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_nobody_expected_is_still_one_line(samat, tmp_path, monkeypatch):
    import samat.theory.plots as plots

    def make_all(out, progress=None):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "cache"))

    monkeypatch.setattr(plots, "make_all", make_all)
    result = samat("theory", "plot", "--out", tmp_path / "p")
    result.one_line_error(f"disk full: cannot write {tmp_path / 'p' / 'cache'}", "theory plot")
