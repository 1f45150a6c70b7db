"""The perturbation meter (samat.empirical.attacks.meter): budgets, the box and the rounding tolerance."""

from __future__ import annotations

import pytest
import torch

from samat.core.errors import ParameterError
from samat.empirical.attacks.build import build_attack
from samat.empirical.attacks.meter import PerturbationMeter, norm_tolerance, perturbation_report
from samat.empirical.attacks.specs import spec
from samat.empirical.vocabulary import Norm
from tests.empirical.attacks.helpers import N_EVAL, ULP1, accuracy

# ---------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------


def test_report_flags_a_perturbation_over_budget():
    x = torch.full((2, 1, 4, 4), 0.5)
    s = spec("pgd10_linf").at(8 / 255)
    over = x + 9 / 255
    report = perturbation_report(x, over, s)
    assert not report["within_eps"] and report["in_box"]
    assert report["per_sample"] == pytest.approx([9 / 255] * 2, rel=1e-6)
    assert not perturbation_report(x, x + 1.0, s)["in_box"]
    l2 = spec("pgd10_l2").at(1.0)
    assert perturbation_report(x, x + 0.25 + 1e-3, l2)["within_eps"] is False  # ||.|| = 4 * 0.251 > 1
    assert perturbation_report(x, x + 0.25 - 1e-3, l2)["within_eps"] is True


@pytest.mark.parametrize("name", ["pgd10_linf", "pgd10_l2", "stadv", "pixle"])
def test_meter_over_batches_equals_one_report(trained, paper_runs, name):
    x = trained[1][:N_EVAL]
    s = spec(name)
    x_adv, flow = paper_runs[name]
    whole = perturbation_report(x, x_adv, s, flow=flow)
    meter = PerturbationMeter(s)
    for i in range(0, N_EVAL, 24):  # uneven batches: 24, 24, 16
        meter.add(x[i:i + 24], x_adv[i:i + 24], flow=None if flow is None else flow[i:i + 24])
    assert meter.summary() == {k: v for k, v in whole.items() if k != "per_sample"}
    assert meter.sizes().tolist() == whole["per_sample"]


def test_meter_holds_each_sample_to_its_own_scale():
    """An unboxed vector far from 0 gets the rounding slack of its own size, not of the largest in the batch."""
    s = spec("pgd10_linf").at(0.5)
    x = torch.tensor([[1000.0], [0.0]])
    tol_small = norm_tolerance(Norm.LINF, 0.5, 1, 1.0)
    over = torch.tensor([[1000.0 + 0.5], [0.5 + 2 * tol_small]])  # the second is over its own slack
    assert perturbation_report(x[1:], over[1:], s, box=None)["within_eps"] is False
    assert perturbation_report(x, over, s, box=None)["within_eps"] is False


def test_passing_the_clean_mask_gives_the_same_examples(trained):
    model, x, y = trained
    x, y = x[:32], y[:32]
    for name in ("pgd10_linf", "stadv"):
        attack = build_attack(spec(name), model, num_classes=10, seed=0, device="cpu")
        alone = attack(x, y)
        flow = attack.last_flow
        assert torch.equal(attack(x, y, clean=accuracy(model, x, y)), alone)
        assert flow is None or torch.equal(attack.last_flow, flow)


def test_tolerance_is_a_few_ulps():
    assert norm_tolerance(Norm.LINF, 1 / 255, 784) < 4 * ULP1
    assert norm_tolerance(Norm.L2, 32 / 255, 3072) < 1e-5  # sqrt(3072) * 2^-24 * 2 = 6.6e-6
    with pytest.raises(ParameterError, match="flow"):
        perturbation_report(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), spec("stadv"))
