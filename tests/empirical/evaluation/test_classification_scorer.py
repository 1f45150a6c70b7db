"""Classification's scorer piece by piece: vectors have no box, which attacks it takes, the progress bar (on a
terminal, when asked), its batches, an earlier eval.json without per-example results, an evaluation of nothing."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn
from tqdm import tqdm

from samat.empirical.attacks.specs import spec
from samat.empirical.evaluation import classification
from samat.empirical.evaluation.classification import Hits
from samat.empirical.evaluation.columns import column_specs
from samat.empirical.evaluation.evaluate import evaluate

COLUMN = "pgd10_linf@0.5"


def _vectors(n: int = 12):
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(n, 4, generator=g)  # far outside [0, 1]
    torch.manual_seed(0)
    return nn.Linear(4, 3).eval(), x, torch.arange(n) % 3


def test_vectors_have_no_box_and_images_have_01():
    model, x, y = _vectors()
    result = evaluate(Hits(model, x, y, num_classes=3, seed=0), column_specs([COLUMN]))
    assert result["attacks"][COLUMN]["in_box"] is None  # not checked against [0, 1]: vectors are not images
    assert result["attacks"][COLUMN]["within_budget"] is True


def test_which_attacks_the_scorer_takes_and_its_refusals_in_full():
    model, x, y = _vectors()
    vectors = Hits(model, x, y, num_classes=3, seed=0)
    images = Hits(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), torch.zeros(3, 1, 2, 2, dtype=torch.uint8),
                  torch.arange(3), num_classes=3, seed=0)
    for name in ("autoattack_linf", "fab_l2", "pixle", "stadv", "pgd10_linf"):
        assert images.supports(spec(name)) is None, name
    assert vectors.supports(spec("pgd10_linf")) is None and vectors.supports(spec("pgd10_l2")) is None
    assert vectors.supports(spec("autoattack_linf")) == (
        "FGSM or PGD on vector data (AutoAttack, FAB, Pixle and StAdv attack (N, C, H, W) images only)")
    assert images.supports(spec("pso")) == (
        "an attack on images or vectors (pso and iga attack sentences: they evaluate text runs)")


@pytest.mark.parametrize("tty", [True, False])
def test_a_progress_bar_only_on_a_terminal_and_only_when_asked(capsys, monkeypatch, tty):
    monkeypatch.setattr(tqdm, "monitor_interval", 0)  # no monitor thread left behind by the bar
    model, x, y = _vectors()
    s = column_specs([COLUMN])[COLUMN]
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    for progress in (False, None):  # asked not to, and by default
        scorer = Hits(model, x, y, num_classes=3, seed=0, **({} if progress is None else {"progress": progress}))
        scorer.clean()
        scorer.attack(COLUMN, s)
        assert capsys.readouterr().err == ""
    scorer = Hits(model, x, y, num_classes=3, seed=0, progress=True, batch_size=4)
    scorer.clean()
    scorer.attack(COLUMN, s)
    err = capsys.readouterr().err
    if tty:  # the attack's readable name, in batches of examples, cleared when done
        assert f"{s.title}: " in err and ("batch/s" in err or "s/batch" in err), err
        assert err.endswith("\r") and "\n" not in err
    else:
        assert err == ""  # no terminal: the evaluation's one line per attack says it


def test_by_default_the_examples_are_classified_and_attacked_256_at_a_time(monkeypatch):
    model, x, y = _vectors()
    sizes = []
    correct_mask, attack_in_batches = classification.correct_mask, classification.attack_in_batches
    monkeypatch.setattr(classification, "correct_mask",
                        lambda *a, batch_size, **k: sizes.append(batch_size) or correct_mask(*a, batch_size=batch_size))
    monkeypatch.setattr(classification, "attack_in_batches",
                        lambda *a, **k: sizes.append(a[5]) or attack_in_batches(*a, **k))
    for batch in ({}, {"batch_size": 5}):
        scorer = Hits(model, x, y, num_classes=3, seed=0, **batch)
        scorer.clean()
        scorer.attack(COLUMN, column_specs([COLUMN])[COLUMN])
    assert sizes == [256] * 3 + [5] * 5  # the clean pass, the attack's, and its batches' (12 examples: 1, then 3)


def test_an_earlier_evaluation_without_per_example_results_restores_nothing():
    model, x, y = _vectors()
    assert Hits(model, x, y, num_classes=3, seed=0).restore({"accuracy": {"natural": 0.5}}) == {}


def test_the_accuracy_of_no_example_is_zero():
    scorer = Hits(nn.Linear(4, 3), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), num_classes=3, seed=0)
    scorer.clean()
    assert scorer.value(torch.zeros(0, dtype=torch.bool)) == 0.0
