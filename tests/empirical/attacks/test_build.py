"""Every paper attack as built by build_attack on the tiny model: budget, box, robust <= clean, seeds, side
effects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samat.empirical.attacks.build import build_attack
from samat.empirical.attacks.meter import perturbation_report
from samat.empirical.attacks.specs import (
    PAPER_COLUMNS,
    Algorithm,
    spec,
)
from tests.empirical.attacks.helpers import N_EVAL, accuracy

RANDOMIZED = ("pgd10_linf", "pgd10_l2", "autoattack_l2", "pixle")  # attacks that draw random numbers


def test_trained_model_is_a_useful_fixture(trained):
    model, x, y = trained
    assert 0.6 <= accuracy(model, x, y).float().mean() <= 0.99


# ---------------------------------------------------------------------------------------------------------
# Every paper attack on the trained model: budget, box, robust <= clean, reproducibility
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("s", PAPER_COLUMNS, ids=lambda s: s.name)
def test_attack_stays_in_budget_and_box(trained, paper_runs, s):
    _, x, _ = trained
    x_adv, flow = paper_runs[s.name]
    assert x_adv.shape == x[:N_EVAL].shape and x_adv.dtype == torch.float32 and not x_adv.requires_grad
    report = perturbation_report(x[:N_EVAL], x_adv, s, flow=flow)
    assert report["within_eps"], report["max"]
    assert report["in_box"]
    if s.eps is not None:
        assert report["max"] <= s.eps + report["tolerance"]
        assert report["max"] > 0.5 * s.eps  # it did perturb up to about its budget


@pytest.mark.parametrize("s", PAPER_COLUMNS, ids=lambda s: s.name)
def test_attack_breaks_correct_points_and_returns_the_others_unchanged(trained, paper_runs, s):
    """The attack itself, on the images the model gets right: some become wrong (an attack that returned x would
    not; "robust <= clean" alone would not notice, since misclassified images come back as x by construction).
    The images the model gets wrong come back exactly as x."""
    model, x, y = trained
    x, y = x[:N_EVAL], y[:N_EVAL]
    x_adv, clean = paper_runs[s.name][0], accuracy(model, x, y)
    assert torch.equal(x_adv[~clean], x[~clean])
    assert not accuracy(model, x_adv[clean], y[clean]).all()


def _runs_of(name: str, model, x, y, seed: int) -> torch.Tensor:
    s = spec(name)
    if s.algorithm is Algorithm.AUTOATTACK:
        s = s.at(2.0)  # large enough that APGD breaks every point and Square never runs (seconds)
    return build_attack(s, model, num_classes=10, seed=seed, device="cpu")(x, y)


@pytest.mark.parametrize("name", [s.name for s in PAPER_COLUMNS])
def test_same_seed_same_examples_and_caller_rng_untouched(trained, name):
    model, x, y = trained
    x, y = x[:16], y[:16]
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002 - what Pixle uses
    first = _runs_of(name, model, x, y, seed=3)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert torch.equal(first, _runs_of(name, model, x, y, seed=3))


@pytest.mark.parametrize("name", RANDOMIZED)
def test_another_seed_gives_other_examples(trained, name):
    model, x, y = trained
    x, y = x[:16], y[:16]
    assert not torch.equal(_runs_of(name, model, x, y, seed=3), _runs_of(name, model, x, y, seed=4))


@pytest.mark.parametrize("name", ["fab_l2", "autoattack_l2", "stadv", "pgd10_l2"])
def test_attack_leaves_modes_flags_and_grads_alone(trained, name):
    model, x, y = trained
    model.train()
    model.features[0].eval()  # a mixed state must come back as it was
    model.head.weight.requires_grad_(False)
    try:
        _runs_of(name, model, x[:8], y[:8], seed=0)
        assert model.training and not model.features[0].training and model.features[1].training
        assert [p.requires_grad for p in model.parameters()] == [True, True, True, True, False, True]
        assert all(p.grad is None for p in model.parameters())  # torchattacks' FAB calls .backward()
    finally:
        model.eval()
        model.head.weight.requires_grad_(True)
