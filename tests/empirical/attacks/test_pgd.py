"""Our PGD (samat.empirical.attacks.pgd): the exact worst case of a linear score on unboxed vectors, agreement with
torchattacks, steps, budgets, determinism, autocast and side effects."""

from __future__ import annotations

import math

import pytest
import torch
import torchattacks
from hypothesis import example, given
from hypothesis import strategies as st
from torch import nn

from samat.core.errors import ParameterError
from samat.empirical.attacks.build import build_attack, seeded
from samat.empirical.attacks.meter import UNIT_ROUNDOFF, perturbation_report
from samat.empirical.attacks.pgd import pgd, project, sample_ball
from samat.empirical.attacks.specs import (
    Algorithm,
    AttackSpec,
    spec,
)
from samat.empirical.evaluation.checks import exceeds
from samat.empirical.vocabulary import Norm
from tests.empirical.attacks.helpers import ULP1, TinyCNN, accuracy

# The linear worst case x - eps y sign(w) (eps = 0.5) is reached exactly: every coordinate of delta ends on
# +-eps (a sign step of the full eps, or clamped there; 0.5 is a float32), so x_adv and the expected value are
# the same single float32 rounding of the same sum x +- 0.5. The difference is 0, not merely 4 u |x|.
LINEAR_WORST_CASE_ATOL = 0.0


# ---------------------------------------------------------------------------------------------------------
# Vector data (the Gaussian model): unboxed PGD, exact worst case of a linear score
# ---------------------------------------------------------------------------------------------------------


def linear_model(w: torch.Tensor, b: float = 0.0) -> nn.Module:
    """Two logits (-s/2, s/2) for the score s = w.x + b: cross-entropy is the logistic loss of y*s, y = +-1."""
    lin = nn.Linear(len(w), 2)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([-w / 2, w / 2]))
        lin.bias.copy_(torch.tensor([-b / 2, b / 2]))
    return lin


@pytest.fixture
def gaussian_batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    d = 20
    w = torch.randn(d, generator=g) / math.sqrt(d)
    x = 3 * torch.randn(64, d, generator=g)  # far outside [0, 1]
    labels = torch.randint(0, 2, (64,), generator=g)
    y_pm = (2 * labels - 1).float()[:, None]
    return linear_model(w), x, labels, y_pm, w


def test_pgd_linf_reaches_the_linear_worst_case_without_clamping(gaussian_batch):
    model, x, labels, y_pm, w = gaussian_batch
    eps = 0.5
    x_adv = pgd(model, x, labels, norm="linf", eps=eps, step_size=eps / 4, steps=10, box=None,
                generator=torch.Generator().manual_seed(0))
    # 10 sign steps of eps/4 cover the 2 eps between any random start and the optimum, so it is exact.
    torch.testing.assert_close(x_adv, x - eps * y_pm * torch.sign(w), rtol=0, atol=LINEAR_WORST_CASE_ATOL)
    assert (x_adv < 0).any() and (x_adv > 1).any()


def test_pgd_l2_reaches_the_linear_worst_case_without_clamping(gaussian_batch):
    model, x, labels, y_pm, w = gaussian_batch
    eps = 0.7
    x_adv = pgd(model, x, labels, norm="l2", eps=eps, step_size=eps / 2, steps=60, box=None,
                generator=torch.Generator().manual_seed(0))
    # Once on the sphere, each step scales the component orthogonal to w by eps / (eps + alpha) = 2/3.
    torch.testing.assert_close(x_adv, x - eps * y_pm * w / w.norm(), rtol=0, atol=1e-5)


def test_built_vector_attacks_use_unboxed_pgd(gaussian_batch):
    model, x, labels, y_pm, w = gaussian_batch
    correct = accuracy(model, x, labels)
    s = spec("pgd10_linf").at(0.5)
    x_adv = build_attack(s, model, num_classes=2, seed=0, device="cpu")(x, labels)
    expected = torch.where(correct[:, None], x - 0.5 * y_pm * torch.sign(w), x)
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=LINEAR_WORST_CASE_ATOL)
    fgsm = build_attack(spec("fgsm_linf").at(0.5), model, num_classes=2, seed=0, device="cpu")(x, labels)
    torch.testing.assert_close(fgsm, expected, rtol=0, atol=LINEAR_WORST_CASE_ATOL)  # one step of eps is exact


@pytest.mark.parametrize("name", ["autoattack_l2", "fab_l2", "pixle", "stadv"])
def test_image_only_attacks_refuse_vectors(gaussian_batch, name):
    model, x, labels, _, _ = gaussian_batch
    attack = build_attack(spec(name), model, num_classes=2, seed=0, device="cpu")
    with pytest.raises(ParameterError, match="images") as info:
        attack(x, labels)
    assert "\n" not in str(info.value)


def test_build_attack_box_none_on_images_runs_unclamped(trained):
    model, x, y = trained
    attack = build_attack(spec("pgd10_linf").at(8 / 255), model, num_classes=10, seed=0, device="cpu", box=None)
    x_adv = attack(x[:32], y[:32])
    assert (x_adv < 0).any()  # black background pixels pushed below 0
    assert perturbation_report(x[:32], x_adv, attack.spec, box=None)["within_eps"]


# ---------------------------------------------------------------------------------------------------------
# Our PGD: agreement with torchattacks, steps, budgets, determinism, autocast, side effects
# ---------------------------------------------------------------------------------------------------------


def test_fgsm_matches_torchattacks(trained):
    model, x, y = trained
    x, y = x[:64], y[:64]  # a power-of-two batch: mean and sum reductions give gradients of the same sign
    eps = 4 / 255
    ours = pgd(model, x, y, norm="linf", eps=eps, step_size=eps, steps=1, random_start=False)
    theirs = torchattacks.FGSM(model, eps=eps)(x, y)
    # Same step; forming x + delta in a different order may round differently by one float32 ulp.
    torch.testing.assert_close(ours, theirs, rtol=0, atol=ULP1)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 4 / 255), ("l2", 128 / 255)])
def test_pgd_agrees_with_torchattacks_on_robust_accuracy(trained, norm, eps):
    model, x, y = trained
    alpha = 2.5 * eps / 10
    ours = pgd(model, x, y, norm=norm, eps=eps, step_size=alpha, steps=10, generator=torch.Generator().manual_seed(0))
    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    with seeded(0, torch.device("cpu")):  # its random start draws from torch's global generator
        theirs = cls(model, eps=eps, alpha=alpha, steps=10)(x, y)
    # Different random starts move only borderline points: the paired test of the evaluation's sanity checks
    # (neither leaves more images correct than the other beyond 2 sqrt(#images they disagree on)).
    ours_correct, theirs_correct = accuracy(model, ours, y), accuracy(model, theirs, y)
    for a, b in ((ours_correct, theirs_correct), (theirs_correct, ours_correct)):
        found = exceeds(a, b)
        flag, detail = found.exceeds, found.detail
        assert not flag, detail


@pytest.mark.parametrize(("norm", "eps"), [("linf", 2 / 255), ("linf", 8 / 255), ("l2", 64 / 255),
                                           ("l2", 192 / 255)])
def test_more_steps_never_weaker(trained, norm, eps):
    """FGSM-like 1 step >= PGD-10 >= PGD-50 in robust accuracy, beyond noise.

    PGD returns its last iterate, so a single point can end on the correct side after more steps: the paired
    test of the evaluation's "more PGD steps are not weaker" check (more steps may leave more images correct by
    at most 2 sqrt(#images the two attacks disagree on)).
    """
    model, x, y = trained
    masks = []
    for steps in (1, 10, 50):
        x_adv = pgd(model, x, y, norm=norm, eps=eps, step_size=2.5 * eps / steps, steps=steps,
                    random_start=steps > 1, generator=torch.Generator().manual_seed(0))
        masks.append(accuracy(model, x_adv, y))
    for fewer, more in zip(masks, masks[1:], strict=False):
        found = exceeds(fewer, more)
        flag, detail = found.exceeds, found.detail
        assert not flag, detail
    assert int(masks[2].sum()) < int(accuracy(model, x, y).sum())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_budget_box_steps_zero_and_determinism(trained, norm):
    model, x, y = trained
    x, y = x[:32], y[:32]
    eps = 8 / 255 if norm == "linf" else 0.5
    s = AttackSpec("pgd", Algorithm.PGD, Norm(norm), eps, 10)
    assert torch.equal(pgd(model, x, y, norm=norm, eps=eps, step_size=0.1, steps=0, random_start=False), x)
    start = pgd(model, x, y, norm=norm, eps=eps, step_size=0.1, steps=0, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(start, x) and perturbation_report(x, start, s)["within_eps"]
    state = torch.get_rng_state()
    runs = [pgd(model, x, y, norm=norm, eps=eps, step_size=eps / 4, steps=5, generator=torch.Generator().manual_seed(k))
            for k in (7, 7, 8)]
    assert torch.equal(torch.get_rng_state(), state)  # all randomness came from the generator
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    report = perturbation_report(x, runs[0], s)
    assert report["within_eps"] and report["in_box"] and report["max"] > 0.9 * eps


def test_pgd_has_no_side_effects_and_returns_a_detached_tensor(trained):
    model, x, y = trained
    model.train()
    try:
        x_in = x[:16].clone().requires_grad_(True)
        x_adv = pgd(model, x_in, y[:16], norm="l2", eps=0.5, step_size=0.1, steps=3)
        assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())
        assert not x_adv.requires_grad and x_adv.grad_fn is None and x_in.grad is None
    finally:
        model.eval()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_under_bfloat16_autocast(trained, norm):
    model, x, y = trained
    eps = 8 / 255 if norm == "linf" else 192 / 255
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = pgd(model, x, y, norm=norm, eps=eps, step_size=2.5 * eps / 10, steps=10,
                    generator=torch.Generator().manual_seed(0))
    assert x_adv.dtype == torch.float32
    report = perturbation_report(x, x_adv, AttackSpec("pgd", Algorithm.PGD, Norm(norm), eps, 10))
    assert report["within_eps"] and report["in_box"]  # the projection ran in float32
    assert accuracy(model, x_adv, y).sum() < accuracy(model, x, y).sum()


@given(st.floats(0, 2), st.integers(0, 2**16))
@example(2.9e-40, 0)  # subnormal: a norm guard (clamp_min(tiny)) once shrank vectors already inside the ball
def test_project_and_sample_ball_stay_in_the_ball(eps, seed):
    g = torch.Generator().manual_seed(seed)
    delta = 3 * torch.randn(8, 3, 4, 4, generator=g)
    linf, l2 = project(delta, "linf", eps), project(delta, "l2", eps)
    assert linf.abs().max() <= eps
    norms = l2.flatten(1).norm(dim=1)
    assert (norms <= eps * (1 + 8 * UNIT_ROUNDOFF)).all()
    small = delta / (delta.flatten(1).norm(dim=1).max() + 1) * eps  # already inside: unchanged
    assert torch.equal(project(small, "l2", eps), small) or eps == 0
    for norm in ("linf", "l2"):
        r = sample_ball(delta, norm, eps, g)
        size = r.abs().flatten(1).amax(1) if norm == "linf" else r.flatten(1).norm(dim=1)
        assert (size <= eps * (1 + 8 * UNIT_ROUNDOFF)).all()


@pytest.mark.gpu
def test_pgd_never_synchronises_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    model = TinyCNN().cuda()
    x, y = torch.rand(32, 1, 28, 28, device="cuda"), torch.randint(0, 10, (32,), device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            x_adv = pgd(model, x, y, norm="l2", eps=0.5, step_size=0.1, steps=5, generator=gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert x_adv.dtype == torch.float32
