"""Interrupted work resumes without loss: a Ctrl-C in the middle of an epoch, a Ctrl-C or a failure inside an atomic
write, and a process killed between an atomic write and its rename, each followed by ``--resume``, end with the
weights of an uninterrupted run (bitwise: every random choice is drawn from the epoch's own generator), and no
partial file is ever left as the current one."""

from __future__ import annotations

import errno
import json
import os
import signal

import pytest
import torch

from samat.core.errors import Interrupted, SamatError
from samat.empirical.training.loop import train
from samat.empirical.training.runs import RunDir, file_sha256
from samat.empirical.training.steps import STEPS
from tests.empirical.helpers import tiny_cfg, tiny_images

EPOCHS, STEPS_PER_EPOCH = 3, 8  # tiny_images: 256 training images in batches of 32
TIMING = ("seconds", "train_seconds", "eval_seconds")


@pytest.fixture(scope="module")
def data():
    return tiny_images()


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data):
    """Uninterrupted runs, by method: the reference every resumed run must end on."""
    runs = {}

    def get(method: str) -> RunDir:
        if method not in runs:
            path = tmp_path_factory.mktemp("straight") / method
            train(tiny_cfg(method=method, epochs=EPOCHS), path, progress=False, data=data)
            runs[method] = RunDir(path)
        return runs[method]

    return get


def assert_same_run(resumed: RunDir, reference: RunDir) -> None:
    """Bitwise the same final weights and the same metrics (but for the clocks), finished, and no partial file."""
    a, b = torch.load(resumed.weights), torch.load(reference.weights)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(resumed.read_metrics()) == strip(reference.read_metrics())
    final = resumed.read_final()
    assert final["status"] == "finished" and final["provenance"]["inputs"]["weights"]["sha256"] == file_sha256(
        resumed.weights)
    assert sorted(p.name for p in resumed.path.iterdir()) == ["checkpoint.pt", "config.json", "final.json",
                                                              "metrics.jsonl", "model.pt"]


def assert_resumable_after(run: RunDir, epochs: int) -> None:
    """What an interruption leaves: the checkpoint and metrics of the last finished epoch, nothing partial."""
    assert not run.finished and not run.weights.exists()
    assert run.read_checkpoint()["round"] == epochs and [r["round"] for r in run.read_metrics()] == list(
        range(1, epochs + 1))
    assert not [p.name for p in run.path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("method", ["esam", "pgd_at"])  # random masks; random starts of the attack
def test_ctrl_c_in_the_middle_of_an_epoch_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch, data, straight,
                                                                              method):
    step, calls = STEPS[method], []

    def step_then_ctrl_c(ctx, x, y, gen):
        calls.append(1)
        if len(calls) == STEPS_PER_EPOCH + 3:  # the third batch of the second epoch
            os.kill(os.getpid(), signal.SIGINT)  # the real signal: Python raises KeyboardInterrupt
        return step(ctx, x, y, gen)

    monkeypatch.setitem(STEPS, method, step_then_ctrl_c)
    run = RunDir(tmp_path / "run")
    cfg = tiny_cfg(method=method, epochs=EPOCHS)
    # Python's own handler, even where the suite runs as a background job (which inherits an ignored SIGINT)
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(Interrupted) as err:
            train(cfg, run.path, progress=False, data=data)
    finally:
        signal.signal(signal.SIGINT, handler)
    assert err.value.exit_code == 130
    assert str(err.value) == f"interrupted; {run.path} keeps its checkpoint after epoch 1: continue with --resume"
    assert_resumable_after(run, 1)
    monkeypatch.setitem(STEPS, method, step)
    train(cfg, run.path, resume=True, progress=False, data=data)
    assert_same_run(run, straight(method))


def _failing_replace(monkeypatch, target: str, nth: int, error: BaseException):
    """os.replace that fails the ``nth`` time it would put ``target`` in place (inside core.results' atomic
    write, after the temporary file is complete)."""
    real, seen = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(dst) == target:
            seen.append(dst)
            if len(seen) == nth:
                raise error
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return seen


def test_ctrl_c_inside_the_checkpoint_write_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch, data,
                                                                                     straight):
    """The message said "keeps its checkpoint after epoch 2" when the write of epoch 2's checkpoint was the one
    interrupted: only epoch 1's was on disk."""
    _failing_replace(monkeypatch, "checkpoint.pt", 2, KeyboardInterrupt())
    run = RunDir(tmp_path / "run")
    cfg = tiny_cfg(epochs=EPOCHS)
    with pytest.raises(Interrupted, match=r"keeps its checkpoint after epoch 1: continue with --resume$"):
        train(cfg, run.path, progress=False, data=data)
    assert_resumable_after(run, 1)
    monkeypatch.undo()
    train(cfg, run.path, resume=True, progress=False, data=data)
    assert_same_run(run, straight("sgd"))


def test_a_failed_write_of_final_json_leaves_a_run_that_resume_finishes(tmp_path, monkeypatch, data, straight):
    """model.pt is in place, final.json (which marks the run finished) is not: the run is partial, and --resume
    writes the final files again from the last checkpoint without training."""
    _failing_replace(monkeypatch, "final.json", 1, OSError(errno.EIO, "Input/output error"))
    run = RunDir(tmp_path / "run")
    cfg = tiny_cfg(epochs=EPOCHS)
    with pytest.raises(SamatError, match=r"cannot write final.json \(Input/output error\) in .*the last checkpoint "
                                         r"is intact: fix that and continue with --resume"):
        train(cfg, run.path, progress=False, data=data)
    assert run.status() == "partial" and run.read_checkpoint()["round"] == EPOCHS
    assert not (run.path / ".final.json.tmp").exists()
    monkeypatch.undo()
    summary = train(cfg, run.path, resume=True, progress=False, data=data)
    assert summary["seconds_this_call"] < summary["seconds"]  # no epoch was trained again
    assert_same_run(run, straight("sgd"))


@pytest.mark.parametrize("epochs_done", [0, 1])
def test_a_kill_between_write_and_rename_leaves_a_temporary_file_that_resume_ignores(tmp_path, data, straight,
                                                                                    epochs_done):
    """A SIGKILL inside an atomic write leaves its temporary file (the cleanup never runs). Before the first
    checkpoint that refused --resume ("holds .checkpoint.pt.tmp; pass --overwrite")."""
    run = RunDir(tmp_path / "run")
    cfg = tiny_cfg(epochs=EPOCHS)
    if epochs_done:
        train(cfg, run.path, progress=False, stop_after=epochs_done, data=data)
    else:  # killed while writing the first checkpoint: config.json and the partial temporary file
        run.path.mkdir()
        run.write_config(cfg, {"inputs": {}})
    torch.save({"epoch": epochs_done + 1}, run.path / ".checkpoint.pt.tmp")
    partial = (run.path / ".checkpoint.pt.tmp").read_bytes()
    (run.path / ".checkpoint.pt.tmp").write_bytes(partial[: len(partial) // 2])
    (run.path / ".metrics.jsonl.tmp").write_text('{"epoch": 1, "train_lo')
    train(cfg, run.path, resume=True, progress=False, data=data)
    assert_same_run(run, straight("sgd"))
    if not epochs_done:  # a fresh start records its own provenance
        assert "packages" in json.loads(run.config.read_text())["provenance"]


def _ctrl_c_at_step(monkeypatch, method: str, nth: int) -> None:
    """The ``nth`` step (from 1) of this process raises KeyboardInterrupt, as Ctrl-C would."""
    step, calls = STEPS[method], []

    def step_then_ctrl_c(ctx, x, y, gen):
        calls.append(1)
        if len(calls) == nth:
            raise KeyboardInterrupt
        return step(ctx, x, y, gen)

    monkeypatch.setitem(STEPS, method, step_then_ctrl_c)


def test_an_interrupted_grid_says_to_run_it_again_not_to_pass_resume(tmp_path, monkeypatch):
    """samat experiment run (and the demo, and the study, which train through it) said "continue with --resume",
    a flag they do not have."""
    from samat.empirical.experiments.grid import load_experiment
    from samat.empirical.experiments.runner import run_experiment
    from tests.empirical.helpers import write_grid

    exp = load_experiment(write_grid(tmp_path, 'name = "g"'), runs_dir=tmp_path / "runs")
    _ctrl_c_at_step(monkeypatch, "sgd", 8 + 3)  # 512 examples in batches of 64: the third step of epoch 2
    with pytest.raises(Interrupted) as err:
        run_experiment(exp, progress=False, log=lambda m: None)
    assert str(err.value) == (f"interrupted; {exp.runs[0].run_dir} keeps its checkpoint after epoch 1: run the same "
                              "command again: it resumes there")
    monkeypatch.undo()
    assert run_experiment(exp, progress=False, log=lambda m: None)[0]["status"] == "trained"


def test_a_run_counted_in_iterations_says_iterations_not_epochs(tmp_path, monkeypatch, data):
    """A segmentation run (30,000 iterations in the paper) said "after epoch 2" where it had done 16 iterations."""
    cfg = tiny_cfg(iterations=24, eval_every=8)  # rounds of 8 iterations: one pass over the tiny data each
    _ctrl_c_at_step(monkeypatch, "sgd", 8 + 8 + 3)
    with pytest.raises(Interrupted, match=r"keeps its checkpoint after iteration 16: continue with --resume$"):
        train(cfg, tmp_path / "run", progress=False, data=data)
    with pytest.raises(SamatError, match=r"stopped after iteration 16; pass --resume"):
        train(cfg, tmp_path / "run", progress=False, data=data)
