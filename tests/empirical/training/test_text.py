"""Training a text classifier: it learns, resumes bit for bit (SAM around AdamW, linear schedule), follows
transformers' linear schedule step for step, and records its schedule and sequence lengths."""

from __future__ import annotations

import json

import pytest
import torch

from samat.core.errors import ParameterError
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.loop import train
from samat.empirical.training.text import linear_factor
from tests.text import needs_text, text_cfg

pytestmark = needs_text


def test_a_run_learns_and_records_its_schedule_and_sequences(trained_run):
    final = json.loads((trained_run / "final.json").read_text())
    # 200 test sentences: chance is 50 % with a standard error of 3.5 points
    assert final["test_acc"] > 0.8 and final["validation_acc"] > 0.8
    record = json.loads((trained_run / "config.json").read_text())["provenance"]
    steps = 3 * 16  # 512 sentences in batches of 32, 3 epochs
    described = "linear warm-up over warmup_ratio of the steps, then linear decay to 0"
    assert record["schedule"] == {"kind": "linear", "description": described, "peak_lr": 3e-3, "total_steps": steps,
                                  "warmup_steps": 0}
    sequences = record["sequences"]
    assert sequences["max_length"] == 32 and sequences["truncated"] == {"train": 0, "validation": 0, "test": 0}
    assert 5 <= sequences["longest"] <= 14 and sequences["padding"].startswith("per batch")
    lrs = [row["lr"] for row in map(json.loads, (trained_run / "metrics.jsonl").read_text().splitlines())]
    assert lrs == [3e-3 * linear_factor(16 * (e + 1) - 1, steps, 0.0) for e in range(3)]  # each epoch's last step


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25])
def test_the_linear_schedule_is_the_trainers_step_for_step(ratio):
    from transformers import get_linear_schedule_with_warmup

    total = 37
    warmup = TrainConfig(lr_schedule="linear", warmup_ratio=ratio).schedule_record(total)["warmup_steps"]
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
    theirs = []
    for _ in range(total):
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    ours = [TrainConfig(lr_schedule="linear", warmup_ratio=ratio).lr_factor_at(s, total) for s in range(total)]
    assert ours == theirs


def test_sam_around_adamw_resumes_bit_for_bit(tiny_model, tmp_path):
    cfg = text_cfg(tiny_model, method="sam", base_optimizer="adamw", rho=0.05, train_subset=128, epochs=2)
    train(cfg, tmp_path / "whole", progress=False)
    partial = train(cfg, tmp_path / "resumed", progress=False, stop_after=1)
    assert partial["status"] == "partial"
    first = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["model"]
    train(cfg, tmp_path / "resumed", progress=False, resume=True)
    whole = torch.load(tmp_path / "whole" / "model.pt")
    resumed = torch.load(tmp_path / "resumed" / "model.pt")
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert any(not torch.equal(first[k], whole[k]) for k in whole)  # the second epoch trained after the resume


def test_text_settings_only_where_they_apply(tiny_model):
    with pytest.raises(ParameterError, match="^text="):
        TrainConfig(dataset="fashion_mnist", model="small_cnn", text={"max_length": 64})
    with pytest.raises(ParameterError, match="^method=pgd_at"):
        text_cfg(tiny_model, method="pgd_at")
    with pytest.raises(ParameterError, match="^text.max_length"):
        text_cfg(tiny_model, text={"model": str(tiny_model), "max_length": 4})
    with pytest.raises(ParameterError, match="^model=small_cnn"):
        TrainConfig(dataset="rotten_tomatoes", model="small_cnn")
    with pytest.raises(ParameterError, match="^compile="):
        from samat.empirical.training.distributed import World
        from samat.empirical.training.setup import fast_path

        fast_path(text_cfg(tiny_model, compile=True), torch.device("cpu"), World())
