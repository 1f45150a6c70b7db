"""Files written by the previous version still load after the glossary's renames (docs/ARCHITECTURE.md): a
configuration with ``at_alpha`` (now ``at_step_size``, said in one warning line), a run folder whose checkpoint and
metrics count rounds under "epoch", and an eval.json without "task" and "metric", or a segmentation one whose
columns list "natural"."""

from __future__ import annotations

import json
import warnings

import torch

from samat.empirical.evaluation.store import evaluated_columns, kept_columns
from samat.empirical.training import config as config_module
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.loop import train
from samat.empirical.training.runs import RunDir, file_sha256
from tests.commandline import GAUSSIAN

OLD_CONFIG = {"dataset": "gaussian", "model": "linear", "method": "pgd_at", "at_eps": 0.1, "at_steps": 3,
              "at_alpha": 0.05, "epochs": 2, "batch_size": 64, "gaussian": GAUSSIAN, "device": "cpu"}


def _as_the_previous_version_wrote_it(run: RunDir) -> None:
    """The run folder in the previous version's words: "epoch" for rounds, "at_alpha" for the PGD step size."""
    state = torch.load(run.checkpoint, weights_only=False)
    state["epoch"] = state.pop("round")
    state["history"] = [{("epoch" if k == "round" else k): v for k, v in row.items()} for row in state["history"]]
    config = state["config"]
    config["at_alpha"] = config.pop("at_step_size")
    torch.save(state, run.checkpoint)
    doc = json.loads(run.config.read_text())
    doc["config"]["at_alpha"] = doc["config"].pop("at_step_size")
    run.config.write_text(json.dumps(doc))
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    run.metrics.write_text("".join(json.dumps({("epoch" if k == "round" else k): v for k, v in row.items()}) + "\n"
                                   for row in rows))


def test_an_older_run_folder_and_configuration_resume_and_evaluate(samat, tmp_path, monkeypatch):
    cfg = TrainConfig.from_dict({k: v for k, v in OLD_CONFIG.items() if k != "at_alpha"} | {"at_step_size": 0.05})
    train(cfg, tmp_path / "r", stop_after=1, progress=False)  # a run stopped after its first round
    run = RunDir(tmp_path / "r")
    _as_the_previous_version_wrote_it(run)
    config = tmp_path / "old.json"
    config.write_text(json.dumps(OLD_CONFIG))
    with warnings.catch_warnings():  # the warning is the command's to say, below
        warnings.simplefilter("ignore", FutureWarning)
        assert run.load_config().at_step_size == 0.05 and run.read_checkpoint()["round"] == 1

    monkeypatch.setattr(config_module, "_SAID", set())  # as in a new process: the old key not said yet
    resumed = samat("train", "--config", config, "--runs-dir", tmp_path, "--name", "r", "--no-progress", "--resume")
    assert resumed.code == 0, resumed.err
    said = [line for line in resumed.err.splitlines() if "warning" in line]
    assert said == ["samat train: warning: the configuration key at_alpha is deprecated: it is now called "
                    "at_step_size"]
    assert [row["round"] for row in run.read_metrics()] == [1, 2]
    assert run.recorded_config().pgd_step_size == 0.05 and not run.differences(TrainConfig.from_dict(OLD_CONFIG))

    evaluated = samat("eval", run.path, "--attacks", "fgsm_linf@0.1", "--n-eval", "64", "--no-progress")
    assert evaluated.code == 0, evaluated.err
    doc = json.loads((run.path / "eval.json").read_text())
    for key in ("task", "metric"):  # what the previous version did not write
        del doc[key]
    (run.path / "eval.json").write_text(json.dumps(doc))
    extended = samat("eval", run.path, "--attacks", "fgsm_linf@0.1", "pgd10_linf@0.1", "--n-eval", "64",
                     "--no-progress")
    assert extended.code == 0, extended.err
    assert "evaluating linear on gaussian (model.pt) on 64 test examples: PGD-10 ℓ∞ 0.1\n" in extended.err
    after = json.loads((run.path / "eval.json").read_text())
    assert after["columns"] == ["fgsm_linf@0.1", "pgd10_linf@0.1"]
    assert after["correct"]["fgsm_linf@0.1"] == doc["correct"]["fgsm_linf@0.1"]  # kept, not attacked again
    assert after["provenance"]["inputs"]["weights"]["sha256"] == file_sha256(run.weights)


def test_an_older_segmentation_evaluation_names_its_columns_with_natural_among_them():
    """The previous version listed "natural" among a segmentation evaluation's columns and kept no per-image
    results: its columns are the attacks, each kept (by its mIoU) for a complete evaluation."""
    old = {"task": "segmentation", "metric": "mIoU", "columns": ["natural", "pgd10_linf@1/255", "pgd10_l2@1"],
           "miou": {"natural": 0.5, "pgd10_linf@1/255": 0.3, "pgd10_l2@1": 0.2, "pgd20_linf@0.5 (sanity)": 0.01},
           "examples": "examples.npz"}
    assert evaluated_columns(old) == ["pgd10_linf@1/255", "pgd10_l2@1"]
    assert kept_columns(old) == {"pgd10_linf@1/255", "pgd10_l2@1"}
