"""The Table 10 grid as the packaged file holds it, and `samat experiment plan` pricing a text grid: training on
token batches, and each TextAttack recipe per sentence between a model that any substitution fools and one that
none does."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from samat.empirical.evaluation.cost import BOUNDS
from samat.empirical.experiments import catalog
from samat.empirical.experiments.grid import load_experiment
from samat.empirical.experiments.plan import Calibration, format_plan, plan_experiment
from samat.empirical.vocabulary import DatasetName, Method, Optimizer, Task
from tests.text import MAX_LENGTH, needs_text

pytestmark = needs_text


def test_the_table_10_grid_has_the_papers_settings_and_numbers(tmp_path):
    exp = load_experiment(catalog.resolve("text"), runs_dir=tmp_path)
    assert exp.task is Task.TEXT and exp.columns == ("natural", "pso", "iga") and exp.n_eval == 1066
    st, sam = (exp.runs_for(label)[0] for label in exp.labels)
    for run in (st, sam):
        cfg = run.config
        assert cfg.dataset is DatasetName.ROTTEN_TOMATOES and cfg.text_spec.model == "distilbert-base-uncased"
        assert cfg.optimizer_name is Optimizer.ADAMW and cfg.learning_rate == 5e-5 and cfg.epochs == 3
    assert st.config.method is Method.ADAMW and sam.config.method is Method.SAM and sam.config.rho == 0.05
    assert st.paper == {"D Table 10": {"natural": 84.4, "pso": 22.7, "iga": 84.1}}
    assert sam.paper == {"D Table 10": {"natural": 84.6, "pso": 17.1, "iga": 74.5}}


def test_plan_prices_training_and_both_recipes_between_their_bounds(standins, tiny_model, tmp_path):
    exp = load_experiment(catalog.resolve("text_default"), runs_dir=tmp_path,
                          overrides={"text": {"model": str(tiny_model), "max_length": MAX_LENGTH}, "device": "cpu"})
    exp = dataclasses.replace(exp, n_eval=10)
    plan = plan_experiment(exp, torch.device("cpu"), calibration=Calibration(warmup=1, steps=1, eval_batches=1))
    low, high = BOUNDS
    assert [r.label for r in plan.runs] == list(exp.labels)
    for run in plan.runs:  # times are measured, not compared (no timed tests): each bound is priced
        assert run.train_seconds > 0 and run.eval_seconds[low] > 0 and run.eval_seconds[high] > 0
    assert len(plan.training) == 2  # AdamW and SAM steps are timed apart
    for recipe in ("pso", "iga"):
        cost = plan.attacks[recipe]
        assert cost.sentences == 1 and cost.scale == 1.0  # the run's own sentences: nothing scaled
        # the search runs to its end only where nothing fools the model (PSO: 20 iterations of 60 particles)
        assert cost.queries[high] > 5 * cost.queries[low] > 0
    text = format_plan(plan)
    assert "10 test sentences" in text and "per sentence" in text and "Stand-ins" not in text


@pytest.mark.gpu
def test_a_text_run_trains_and_is_attacked_on_cuda(standins, tiny_model, tmp_path):
    """The CUDA path of the text task (bf16 autocast in training, the attack's queries on the GPU)."""
    from samat.empirical.evaluation.run import evaluate_path
    from samat.empirical.training.loop import train
    from tests.text import text_cfg

    summary = train(text_cfg(tiny_model, device="cuda", epochs=3), tmp_path / "run", progress=False)
    assert summary["device"].startswith("cuda") and summary["test_acc"] > 0.8
    result = evaluate_path(tmp_path / "run", ["pso"], n_eval=4, seed=0, device="cuda", progress=False)
    assert result["sanity_passed"] and result["attacks"]["pso"]["successful"] + \
        result["attacks"]["pso"]["failed"] + result["attacks"]["pso"]["skipped"] == 4
