"""Results are shared state: every way a careless user lost or corrupted a run folder, with a test that fails on
the code before the folder lock, the weight checks and the staleness checks (each was run against it)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from samat.core.errors import DiskFull, SamatError
from samat.core.locks import LockHeld
from samat.empirical.evaluation.run import evaluate_path
from samat.empirical.evaluation.store import recorded_weights
from samat.empirical.training import runs as runs_module
from samat.empirical.training.loop import train
from samat.empirical.training.runs import RunDir, file_sha256
from tests.commandline import GAUSSIAN, gaussian_cfg
from tests.helpers import REPO

QUIET = {"progress": False, "log": lambda m: None}


def _samat(*args: str, **popen) -> subprocess.Popen:
    """``python -m samat ARGS`` in the background; Ctrl-C (SIGINT) reaches it even where the test itself runs as a
    background job (whose children inherit an ignored SIGINT, and Python keeps ignoring it)."""
    env = os.environ | {"SAMAT_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "samat", *args], cwd=REPO, env=env, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen)


def _wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the first process ended (code {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_second_training_of_a_run_in_training_is_refused_and_ctrl_c_exits_130(tmp_path):
    """Item 1: a second `samat train` of the same name, started once config.json exists, put its configuration
    beside the first run's weights; and SIGINT exited 2."""
    run = tmp_path / "runs" / "same"
    slow_epochs = dict(GAUSSIAN, train_size=20000)  # a first epoch long enough to start the second run within it
    first = _samat("train", "--dataset", "gaussian", "--model", "linear", "--epochs", "100000", "--no-progress",
                   "--runs-dir", str(run.parent), "--name", "same", "--set", f"gaussian={json.dumps(slow_epochs)}",
                   stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: (run / "config.json").exists(), "the first run's config.json", first)
        with pytest.raises(LockHeld, match=r"is in use by samat train \(pid \d+"):
            train(gaussian_cfg(method="sam", gaussian=slow_epochs), run, **QUIET)
        assert json.loads((run / "config.json").read_text())["config"]["method"] == "sgd"
        _wait_for(lambda: (run / "checkpoint.pt").exists(), "the first run's first checkpoint", first)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 130, err
    assert "interrupted;" in err and "keeps its checkpoint after epoch" in err and "--resume" in err
    assert RunDir(run).read_checkpoint()["round"] >= 1
    assert json.loads((run / "config.json").read_text())["config"]["method"] == "sgd"


def test_two_evaluations_of_one_run_keep_both_columns(fresh_run):
    """Item 2: two `samat eval` at once with different attacks ended with one column."""
    slow = _samat("eval", str(fresh_run), "--attacks", "pgd2000_linf@0.1", "--n-eval", "512", "--no-progress",
                  stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        for line in slow.stderr:  # it has the lock (or, without one, its images) and starts attacking
            if line.startswith("evaluating"):
                break
        evaluate_path(fresh_run, ["fgsm_linf@0.1"], n_eval=512, **QUIET)
        slow.communicate(timeout=300)
    finally:
        slow.kill()
    assert slow.returncode == 0
    columns = json.loads((fresh_run / "eval.json").read_text())["columns"]
    assert set(columns) == {"pgd2000_linf@0.1", "fgsm_linf@0.1"}


def test_an_evaluation_of_other_weights_is_redone_not_reported(tmp_path):
    """Item 3: evaluate the epoch-1 checkpoint, resume to the end, evaluate again: it said "already evaluated"."""
    run = tmp_path / "runs" / "r"
    cfg = gaussian_cfg(epochs=3)
    train(cfg, run, stop_after=1, **QUIET)
    partial = evaluate_path(run, ["fgsm_linf@0.1"], n_eval=256, **QUIET)
    assert recorded_weights(partial) == file_sha256(run / "checkpoint.pt")
    train(cfg, run, resume=True, **QUIET)
    said = []
    final = evaluate_path(run, ["fgsm_linf@0.1"], n_eval=256, progress=False, log=said.append)
    assert recorded_weights(final) == file_sha256(run / "model.pt")
    assert not any("already evaluated" in m for m in said) and any("other weights" in m for m in said)
    fresh = evaluate_path(run, ["fgsm_linf@0.1"], n_eval=256, overwrite=True, **QUIET)
    assert final["accuracy"] == fresh["accuracy"]


def _grid(folder: Path, epochs: int) -> Path:
    path = folder / "grid.toml"
    gaussian = ", ".join(f"{k} = {v}" for k, v in GAUSSIAN.items())
    path.write_text(f'[experiment]\nname = "g"\ncolumns = ["natural", "fgsm_linf@0.1"]\nn_eval = 256\n\n'
                    f'[base]\ndataset = "gaussian"\nmodel = "linear"\nepochs = {epochs}\nbatch_size = 64\n'
                    f"gaussian = {{ {gaussian} }}\n\n"
                    '[[run]]\nlabel = "SGD"\nmethod = "sgd"\n')
    return path


def test_a_changed_experiment_marks_its_runs_stale(samat, tmp_path, monkeypatch):
    """Item 4: after `epochs = 1` became 2, status said finished, run skipped, report showed 1-epoch numbers."""
    monkeypatch.chdir(tmp_path)
    assert samat("experiment", "run", _grid(tmp_path, 1), "--no-progress").code == 0
    _grid(tmp_path, 2)
    status = samat("experiment", "status", "grid.toml")
    assert status.out.startswith("stale") and "epochs 1 -> 2" in status.out
    samat("experiment", "run", "grid.toml").one_line_error("trained with another configuration", "experiment run")
    report = samat("experiment", "report", "grid.toml", "--out", "rep")
    report.one_line_error("nothing to report", "experiment report")
    assert "1 are stale" in report.err and not (tmp_path / "rep").exists()
    assert samat("experiment", "run", "grid.toml", "--overwrite").code == 0
    assert RunDir("runs/g/sgd-seed0").read_final()["epochs"] == 2
    assert samat("experiment", "status", "grid.toml").out.startswith("finished")


def test_a_stale_run_is_left_out_of_a_report_and_listed(samat, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = _grid(tmp_path, 1)
    grid.write_text(grid.read_text() + '\n[[run]]\nlabel = "SAM"\nmethod = "sam"\n')
    assert samat("experiment", "run", grid, "--no-progress").code == 0
    grid.write_text(grid.read_text().replace('method = "sam"', 'method = "sam"\nrho = 0.2'))
    report = samat("experiment", "report", grid, "--out", "rep")
    assert report.code == 0, report.err
    md = (tmp_path / "rep" / "table.md").read_text()
    assert "| SAM | — | — | 0/1 |" in md and "| SGD |" in md
    assert "Not counted: 1 run(s)" in md and "rho 0.1 -> 0.2" in md


def test_overwrite_validates_before_it_deletes(fresh_run):
    """Item 5: --overwrite with a model that does not fit the data left an empty folder."""
    sha = file_sha256(fresh_run / "model.pt")
    with pytest.raises(SamatError, match="input_shape"):
        train(gaussian_cfg(model="small_cnn"), fresh_run, overwrite=True, **QUIET)
    assert RunDir(fresh_run).finished and file_sha256(fresh_run / "model.pt") == sha


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(fresh_run):
    sha = file_sha256(fresh_run / "model.pt")
    with pytest.raises(SamatError, match="became nan.*replace is back in"):
        train(gaussian_cfg(lr=1e30, momentum=0.0), fresh_run, overwrite=True, **QUIET)
    assert file_sha256(fresh_run / "model.pt") == sha and not RunDir(fresh_run).replaced.exists()
    train(gaussian_cfg(epochs=1), fresh_run, overwrite=True, **QUIET)
    assert RunDir(fresh_run).read_final()["epochs"] == 1 and not RunDir(fresh_run).replaced.exists()


def test_an_overwrite_killed_before_its_first_checkpoint_gives_the_old_run_back(fresh_run):
    run = RunDir(fresh_run)
    sha = file_sha256(run.weights)
    os.replace(run.path, run.replaced)  # what a SIGKILL right after setting the old run aside leaves
    run.path.mkdir()
    shutil.copy(run.replaced / "config.json", run.config)
    with pytest.raises(SamatError, match="is finished; pass --overwrite"):
        train(gaussian_cfg(), run.path, resume=True, **QUIET)
    assert run.finished and file_sha256(run.weights) == sha and not run.replaced.exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_a_corrupt_checkpoint_is_named_on_resume(samat, tmp_path, damage):
    run = tmp_path / "runs" / "r"
    train(gaussian_cfg(epochs=3), run, stop_after=1, **QUIET)
    data = (run / "checkpoint.pt").read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"x" * 99}[damage]
    (run / "checkpoint.pt").write_bytes(damaged)
    args = ["train", "--dataset", "gaussian", "--model", "linear", "--epochs", "3", "--batch-size", "64",
            "--device", "cpu", "--set", f"gaussian={json.dumps(GAUSSIAN)}", "--runs-dir", run.parent, "--name", "r"]
    resumed = samat(*args, "--resume")
    resumed.one_line_error(f"{run / 'checkpoint.pt'} is corrupt", "train")
    assert "--overwrite" in resumed.err
    plain = samat(*args)
    plain.one_line_error(f"{run / 'checkpoint.pt'} is corrupt", "train")
    assert "epoch -1" not in plain.err


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_corrupt_weights_and_config_are_named_in_eval(samat, fresh_run, damage):
    data = (fresh_run / "model.pt").read_bytes()
    (fresh_run / "model.pt").write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    samat("eval", fresh_run, "--attacks", "fgsm_linf@0.1").one_line_error(f"{fresh_run / 'model.pt'} is corrupt",
                                                                          "eval")
    (fresh_run / "config.json").write_text('{"config": {"method": ')
    samat("eval", fresh_run, "--attacks", "fgsm_linf@0.1").one_line_error(f"{fresh_run / 'config.json'} is corrupt",
                                                                          "eval")


@pytest.mark.parametrize("failure", ["ENOSPC", "torch zip writer"])
def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(tmp_path, monkeypatch, failure):
    run = tmp_path / "runs" / "r"
    real_save, saves = torch.save, []

    def save(obj, path, *a, **kw):
        if str(path).endswith(".checkpoint.pt.tmp"):
            saves.append(path)
            if len(saves) == 2:  # the second epoch's checkpoint finds the disk full
                monkeypatch.setattr(runs_module.shutil, "disk_usage",
                                    lambda p: SimpleNamespace(total=10**9, used=10**9, free=0))
                Path(path).write_bytes(b"PK\x03\x04 partial")
                if failure == "ENOSPC":
                    raise OSError(errno.ENOSPC, "No space left on device")
                raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 40")
        return real_save(obj, path, *a, **kw)

    monkeypatch.setattr(runs_module.torch, "save", save)
    with pytest.raises(DiskFull, match=rf"^disk full: cannot write {run / 'checkpoint.pt'}; the last checkpoint "
                                       r"\(after epoch 1\) is intact: free some space and continue with --resume$"):
        train(gaussian_cfg(epochs=3), run, **QUIET)
    assert RunDir(run).read_checkpoint()["round"] == 1 and not (run / ".checkpoint.pt.tmp").exists()
    monkeypatch.undo()
    assert train(gaussian_cfg(epochs=3), run, resume=True, **QUIET)["epochs"] == 3


def _status(samat, grid: Path) -> dict[str, str]:
    """`samat experiment status`: each run's folder name -> its line."""
    result = samat("experiment", "status", grid)
    assert result.code == 0, result.err
    return {Path(line.split()[1]).name: line for line in result.out.splitlines()}


def test_weights_copied_over_a_finished_run_are_evaluated_as_what_they_are(samat, tmp_path, monkeypatch):
    """Another run's model.pt copied over a finished run's: status said "finished (evaluated: 2/2)" and report
    printed the old numbers; after a re-evaluation, report said "evaluate again", run "already evaluated" and status
    0/2, a loop with no way out. The SHA-256 of model.pt as it is now is the evaluation's identity everywhere."""
    monkeypatch.chdir(tmp_path)
    grid = _grid(tmp_path, 1)
    grid.write_text(grid.read_text().replace('name = "g"', 'name = "g"\nseeds = [0, 1]').replace(
        '"fgsm_linf@0.1"]', '"fgsm_linf@0.1", "pgd2_linf@0.1"]'))
    assert samat("experiment", "run", grid, "--no-progress").code == 0
    runs = tmp_path / "runs" / "g"
    shutil.copyfile(runs / "sgd-seed1" / "model.pt", runs / "sgd-seed0" / "model.pt")

    status = _status(samat, grid)
    assert "evaluated: 0/2 attack columns" in status["sgd-seed0"]
    assert "model.pt is not the weights this run trained" in status["sgd-seed0"]
    assert "evaluated: 2/2 attack columns" in status["sgd-seed1"] and "not the weights" not in status["sgd-seed1"]
    assert samat("experiment", "report", grid, "--out", "rep").code == 0
    (row,) = json.loads((tmp_path / "rep" / "table.json").read_text())["tables"]["g"]
    assert row["natural"]["n"] == row["fgsm_linf@0.1"]["n"] == 1  # seed 0's numbers are not its weights'
    assert any(w.startswith("sgd-seed0: model.pt is not the weights") for w in row["stale_evaluations"])

    ran = samat("experiment", "run", grid, "--no-progress")
    assert ran.code == 0 and "is not an evaluation of these weights (it attacked other weights" in ran.err
    status = _status(samat, grid)
    assert "evaluated: 2/2 attack columns" in status["sgd-seed0"] and "not the weights" in status["sgd-seed0"]
    assert samat("experiment", "report", grid, "--out", "rep").code == 0
    (row,) = json.loads((tmp_path / "rep" / "table.json").read_text())["tables"]["g"]
    assert row["natural"]["n"] == 2 and row["stale_evaluations"] == []
    (replaced,) = row["replaced_weights"]
    assert replaced.startswith("sgd-seed0: model.pt is not the weights this run trained")
    evaluations = [json.loads((runs / f"sgd-seed{k}" / "eval.json").read_text()) for k in (0, 1)]
    assert evaluations[0]["accuracy"] == evaluations[1]["accuracy"]  # the same weights on the same images
    assert "Runs whose model.pt is not the weights they trained" in (tmp_path / "rep" / "table.md").read_text()
    again = samat("experiment", "run", grid, "--no-progress")
    assert again.code == 0 and "evaluating" not in again.err  # no loop: nothing left to do


def test_a_saved_evaluation_is_not_reused_for_another_model_dataset_or_attack(samat, fresh_run):
    """`samat eval RUN/model.pt --model linear` (or --model prn18 --dataset cifar10) printed "already evaluated"
    with the first model's numbers."""
    args = ("--attacks", "fgsm_linf@0.1", "--n-eval", "64")
    assert samat("eval", fresh_run, *args).code == 0
    samat("eval", fresh_run / "model.pt", "--model", "prn18", *args).one_line_error(
        f"--model prn18 contradicts {fresh_run / 'config.json'}: its weights are linear on gaussian", "eval")
    samat("eval", fresh_run / "model.pt", "--model", "prn18", "--dataset", "cifar10", *args).one_line_error(
        "contradicts", "eval")
    assert samat("eval", fresh_run / "model.pt", "--model", "linear", "--dataset", "gaussian", *args).code == 0

    # an eval.json of the same weights recorded for another model, or whose attack meant another one, is redone
    path = fresh_run / "eval.json"
    record = json.loads(path.read_text())
    assert record["provenance"]["inputs"]["model"] == {"architecture": "linear", "dataset": "gaussian"}
    for change in ({"model": {"architecture": "small_cnn", "dataset": "fashion_mnist"}}, {"attack_steps": 5}):
        changed = json.loads(json.dumps(record))
        if "model" in change:
            changed["provenance"]["inputs"]["model"] = change["model"]
            why = "it evaluated small_cnn on fashion_mnist, not linear on gaussian"
        else:
            changed["attacks"]["fgsm_linf@0.1"]["steps"] = 5
            why = "its fgsm_linf@0.1 attack had steps 5, which the column means as steps 1 now"
        path.write_text(json.dumps(changed))
        redone = samat("eval", fresh_run, *args)
        assert redone.code == 0 and f"is not an evaluation of these weights ({why}): evaluating again" in redone.err
        assert json.loads(path.read_text())["accuracy"] == record["accuracy"]

    # a file written before the architecture was recorded names it in its description
    del record["provenance"]["inputs"]["model"]
    path.write_text(json.dumps(record))
    kept = samat("eval", fresh_run, *args)
    assert kept.code == 0 and "already evaluated" in kept.err
