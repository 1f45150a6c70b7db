"""Evaluation attacks (empirical.attacks) and training PGD (empirical.adversarial), on a tiny CPU model.

The model is a two-layer CNN trained for 300 Adam steps on 4,000 Fashion-MNIST images (the Debian package
dataset-fashion-mnist in /usr/share/datasets/fashion-mnist, which .ci/setup installs): clean accuracy near 80%
and robust accuracy strictly between 0 and clean at the budgets used below. Without the package, the tests that
need the model are skipped and say why: no synthetic task of this size was found on which they are meaningful (a
smooth-prototype task gave 100% clean accuracy with nothing broken at 1/255, and every image broken by StAdv and
Pixle once made harder).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchattacks
from hypothesis import example, given
from hypothesis import strategies as st
from torch import nn

from samat.core.errors import ParameterError
from samat.empirical.attacks.build import build_attack, seeded
from samat.empirical.attacks.crosscheck import crosscheck_autoattack
from samat.empirical.attacks.meter import UNIT_ROUNDOFF, PerturbationMeter, norm_tolerance, perturbation_report
from samat.empirical.attacks.pgd import pgd, project, sample_ball
from samat.empirical.attacks.specs import (
    PAPER_COLUMNS,
    REGISTRY,
    SAM_ALONE_COLUMNS,
    Algorithm,
    AttackSpec,
    expand,
    parse_attack,
    parse_eps,
    spec,
)
from samat.empirical.attacks.stadv import StAdv, bilinear_warp, flow_smoothness
from samat.empirical.data import load_dataset, to_float_images
from samat.empirical.data.fashion_mnist import FASHION_MNIST_DIR, FASHION_MNIST_FILES
from samat.empirical.evaluation.checks import exceeds
from samat.empirical.training.precision import tf32
from samat.empirical.vocabulary import Norm

RANDOMIZED = ("pgd10_linf", "pgd10_l2", "autoattack_l2", "pixle")  # attacks that draw random numbers
ULP1 = 2 * UNIT_ROUNDOFF  # spacing of float32 just below 1.0 ... 2.0
# The linear worst case x - eps y sign(w) (eps = 0.5) is reached exactly: every coordinate of delta ends on
# +-eps (a sign step of the full eps, or clamped there; 0.5 is a float32), so x_adv and the expected value are
# the same single float32 rounding of the same sum x +- 0.5. The difference is 0, not merely 4 u |x|.
LINEAR_WORST_CASE_ATOL = 0.0


# ---------------------------------------------------------------------------------------------------------
# A tiny model with its normalisation inside, trained once per module
# ---------------------------------------------------------------------------------------------------------


class TinyCNN(nn.Module):
    def __init__(self, mean: float = 0.286, std: float = 0.353) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())
        self.head = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - self.mean) / self.std).flatten(1))


def _installed(stem: str) -> bool:
    return any((FASHION_MNIST_DIR / name).is_file() for name in (f"{stem}.gz", stem))


FASHION_MNIST_INSTALLED = all(_installed(stem) for stem in FASHION_MNIST_FILES.values())


def _fashion_mnist(n_train: int, n_test: int) -> tuple[torch.Tensor, ...]:
    """The first n_train training and n_test test images in [0, 1] (a broken installation is an error)."""
    data = load_dataset("fashion_mnist")
    return (to_float_images(data.train_x[:n_train]), data.train_y[:n_train], to_float_images(data.test_x[:n_test]),
            data.test_y[:n_test])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Intra-op threads only add overhead on these tiny tensors (AutoAttack's 64-image cross-check: 23 s with 1
    thread, 30 s with 2 on the 2-core CI machine) and stall badly when another process holds a core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train_tiny_cnn(n_test: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """TinyCNN after 300 Adam steps on 4,000 Fashion-MNIST training images (eval mode), and n_test held-out
    images."""
    if not FASHION_MNIST_INSTALLED:
        pytest.skip(f"needs Fashion-MNIST in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
    xtr, ytr, xte, yte = _fashion_mnist(4000, n_test)
    torch.manual_seed(0)
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        i = torch.randint(0, len(xtr), (128,), generator=g)
        loss = F.cross_entropy(model(xtr[i]), ytr[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    opt.zero_grad(set_to_none=True)
    return model, xte, yte


@pytest.fixture(scope="module")
def trained_200() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The trained model and 200 held-out Fashion-MNIST images."""
    return train_tiny_cnn(200)


@pytest.fixture(scope="module")
def trained(trained_200) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The trained model (eval mode) and 128 held-out images with labels."""
    model, x, y = trained_200
    return model, x[:128], y[:128]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample correctness (bool)."""
    with torch.no_grad():
        return model(x).argmax(1) == y


def test_trained_model_is_a_useful_fixture(trained):
    model, x, y = trained
    assert 0.6 <= accuracy(model, x, y).float().mean() <= 0.99


# ---------------------------------------------------------------------------------------------------------
# Specs, names and parsing
# ---------------------------------------------------------------------------------------------------------


def test_paper_columns_are_tables_2_and_3():
    assert [s.label for s in PAPER_COLUMNS] == [
        "fgsm_linf@1/255", "pgd10_linf@1/255", "pgd10_l2@32/255", "autoattack_l2@32/255", "stadv@1.0",
        "fab_l2@32/255", "pixle",
    ]
    assert [s.label for s in SAM_ALONE_COLUMNS] == [
        "pgd10_linf@1/255", "pgd10_linf@2/255", "pgd10_l2@16/255", "pgd10_l2@32/255"]
    fab = spec("fab_l2")
    assert (fab.norm, fab.eps, fab.steps) == (Norm.L2, 32 / 255, 10)
    assert (spec("pixle").steps, spec("stadv").tau) == (5, 0.05)


def test_pgd_step_size_is_madry_2_5_eps_over_steps():
    (s1, s2) = parse_attack("pgd10_linf@1/255,2/255")
    assert (s1.eps, s2.eps) == (1 / 255, 2 / 255)
    assert s1.step_size == pytest.approx(2.5 * (1 / 255) / 10, rel=1e-15)
    assert s2.step_size == pytest.approx(2 * s1.step_size, rel=1e-15)
    assert spec("fgsm_linf").step_size == spec("fgsm_linf").eps
    s = spec("pgd50_l2")
    assert (s.steps, s.norm, s.eps, s.algorithm) == (50, Norm.L2, 32 / 255, Algorithm.PGD)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_label_parses_back_to_the_same_spec(name):
    for s in expand(name, None if REGISTRY[name].eps is None else [REGISTRY[name].eps, 0.3, "7/255"]):
        assert parse_attack(s.label) == (s,)


@given(st.integers(0, 1020), st.sampled_from(["pgd10_linf", "pgd10_l2", "fgsm_linf", "autoattack_l2"]))
def test_eps_fractions_parse_once_and_round_trip(k, name):
    (s,) = parse_attack(f"{name}@{k}/255")
    assert s.eps == k / 255 and isinstance(s.eps, float)
    assert parse_attack(s.label) == (s,)


def test_parse_attack_flattens_and_specs_are_frozen():
    specs = [s for text in ["fgsm_linf", "pgd10_l2@16/255,32/255", "stadv@0.5"] for s in parse_attack(text)]
    assert [s.label for s in specs] == ["fgsm_linf@1/255", "pgd10_l2@16/255", "pgd10_l2@32/255", "stadv@0.5"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        specs[0].eps = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: spec("pgd_linf"), "attack"),
        (lambda: parse_attack("deepfool@1/255"), "attack"),
        (lambda: parse_attack("pgd0_l2"), "attack"),
        (lambda: parse_attack("pgd10_linf@-1/255"), "eps"),
        (lambda: parse_attack("pgd10_linf@8/0"), "eps"),
        (lambda: parse_attack("pgd10_linf@eight"), "eps"),
        (lambda: parse_eps(float("nan")), "eps"),
        (lambda: spec("pgd10_l2").at(-0.5), "eps"),
        (lambda: parse_attack("pixle@1/255"), "eps"),
        (lambda: AttackSpec("x", Algorithm.PGD, Norm.LINF, -1.0, 10), "eps"),
        (lambda: pgd(nn.Identity(), torch.zeros(1, 2), torch.zeros(1).long(), norm="l1", eps=0.1, alpha=0.1,
                     steps=1), "norm"),
        (lambda: pgd(nn.Identity(), torch.zeros(1, 2), torch.zeros(1).long(), norm="linf", eps=-0.1, alpha=0.1,
                     steps=1), "eps"),
    ],
)
def test_bad_input_is_a_one_line_parameter_error(call, name):
    with pytest.raises(ParameterError) as info:
        call()
    assert info.value.name == name
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{name}=")


# ---------------------------------------------------------------------------------------------------------
# Every paper attack on the trained model: budget, box, robust <= clean, reproducibility
# ---------------------------------------------------------------------------------------------------------

N_EVAL = 64


@pytest.fixture(scope="module")
def paper_runs(trained) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """x_adv (and StAdv's flow) for each PAPER_COLUMNS attack on the first N_EVAL images, seed 0."""
    model, x, y = trained
    runs = {}
    for s in PAPER_COLUMNS:
        attack = build_attack(s, model, num_classes=10, seed=0, device="cpu")
        runs[s.name] = (attack(x[:N_EVAL], y[:N_EVAL]), attack.last_flow)
    return runs


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
    x_adv = pgd(model, x, labels, norm="linf", eps=eps, alpha=eps / 4, steps=10, box=None,
                generator=torch.Generator().manual_seed(0))
    # 10 sign steps of eps/4 cover the 2 eps between any random start and the optimum, so it is exact.
    torch.testing.assert_close(x_adv, x - eps * y_pm * torch.sign(w), rtol=0, atol=LINEAR_WORST_CASE_ATOL)
    assert (x_adv < 0).any() and (x_adv > 1).any()


def test_pgd_l2_reaches_the_linear_worst_case_without_clamping(gaussian_batch):
    model, x, labels, y_pm, w = gaussian_batch
    eps = 0.7
    x_adv = pgd(model, x, labels, norm="l2", eps=eps, alpha=eps / 2, steps=60, box=None,
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
    ours = pgd(model, x, y, norm="linf", eps=eps, alpha=eps, steps=1, random_start=False)
    theirs = torchattacks.FGSM(model, eps=eps)(x, y)
    # Same step; forming x + delta in a different order may round differently by one float32 ulp.
    torch.testing.assert_close(ours, theirs, rtol=0, atol=ULP1)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 4 / 255), ("l2", 128 / 255)])
def test_pgd_agrees_with_torchattacks_on_robust_accuracy(trained, norm, eps):
    model, x, y = trained
    alpha = 2.5 * eps / 10
    ours = pgd(model, x, y, norm=norm, eps=eps, alpha=alpha, steps=10, generator=torch.Generator().manual_seed(0))
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
        x_adv = pgd(model, x, y, norm=norm, eps=eps, alpha=2.5 * eps / steps, steps=steps,
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
    assert torch.equal(pgd(model, x, y, norm=norm, eps=eps, alpha=0.1, steps=0, random_start=False), x)
    start = pgd(model, x, y, norm=norm, eps=eps, alpha=0.1, steps=0, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(start, x) and perturbation_report(x, start, s)["within_eps"]
    state = torch.get_rng_state()
    runs = [pgd(model, x, y, norm=norm, eps=eps, alpha=eps / 4, steps=5, generator=torch.Generator().manual_seed(k))
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
        x_adv = pgd(model, x_in, y[:16], norm="l2", eps=0.5, alpha=0.1, steps=3)
        assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())
        assert not x_adv.requires_grad and x_adv.grad_fn is None and x_in.grad is None
    finally:
        model.eval()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_under_bfloat16_autocast(trained, norm):
    model, x, y = trained
    eps = 8 / 255 if norm == "linf" else 192 / 255
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = pgd(model, x, y, norm=norm, eps=eps, alpha=2.5 * eps / 10, steps=10,
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
            x_adv = pgd(model, x, y, norm="l2", eps=0.5, alpha=0.1, steps=5, generator=gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert x_adv.dtype == torch.float32


# ---------------------------------------------------------------------------------------------------------
# Pixle: batched against torchattacks' image-by-image original
# ---------------------------------------------------------------------------------------------------------

Z_PIXLE = 4  # standard errors: a false alarm has probability 6e-5 per comparison


def _pixle_outcomes(model, x, y, name: str, seeds: range, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Per attacked image and seed: whether the attack succeeded, and how many pixel positions it moved."""
    model, x, y = model.to(device), x.to(device), y.to(device)
    clean = accuracy(model, x, y)
    s = dataclasses.replace(spec(name), restarts=3, steps=3)  # breaks about 1 in 5 (the papers' 20 x 5: all)
    success, moved = [], []
    for seed in seeds:
        x_adv = build_attack(s, model, num_classes=10, seed=seed, device=device)(x, y)
        success.append(~accuracy(model, x_adv, y)[clean])
        moved.append((x_adv != x).any(1).flatten(1).sum(1)[clean])
    return torch.cat(success).double(), torch.cat(moved).double()


def test_batched_pixle_agrees_with_torchattacks(trained_200):
    """Same images, same seeds (each drawing its own random numbers): the success rates agree within Z_PIXLE
    standard errors of their difference, and so does the mean number of pixels moved (which tests the patches:
    their sizes, clipping and destinations). The standard errors are those of independent samples; the two
    attack the same images, which correlates them positively and only narrows the true spread."""
    model, x, y = trained_200
    (s_ours, m_ours), (s_ref, m_ref) = (_pixle_outcomes(model, x, y, name, range(3))
                                        for name in ("pixle", "pixle_torchattacks"))
    _assert_same_pixle((s_ours, m_ours), (s_ref, m_ref))


def _assert_same_pixle(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> None:
    (s_a, m_a), (s_b, m_b) = a, b
    n = len(s_a)
    pooled = float(torch.cat([s_a, s_b]).mean())
    assert 0.05 < pooled < 0.95  # a budget where the rate can differ
    assert abs(float(s_a.mean() - s_b.mean())) <= Z_PIXLE * math.sqrt(2 * pooled * (1 - pooled) / n)
    se = math.sqrt(float(m_a.var() + m_b.var()) / n)
    assert abs(float(m_a.mean() - m_b.mean())) <= Z_PIXLE * se


@pytest.mark.gpu
def test_batched_pixle_on_cuda_agrees_with_the_cpu(trained_200):
    """The device's generator and its scatter draw the same distribution of candidates as on the CPU."""
    model, x, y = trained_200
    model = copy.deepcopy(model)
    _assert_same_pixle(_pixle_outcomes(model, x, y, "pixle", range(3), "cuda"),
                       _pixle_outcomes(model, x, y, "pixle", range(3), "cpu"))


def test_torchattacks_pixle_stays_selectable_as_the_reference(trained):
    model, x, y = trained
    attack = build_attack(spec("pixle_torchattacks"), model, num_classes=10, seed=0, device="cpu")
    assert isinstance(attack._make_torchattack(), torchattacks.Pixle)
    assert spec("pixle_torchattacks").label == "pixle_torchattacks" and spec("pixle").restarts == 20


# ---------------------------------------------------------------------------------------------------------
# StAdv
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def image() -> torch.Tensor:
    return torch.rand(3, 2, 9, 11, generator=torch.Generator().manual_seed(2))


def uniform_flow(x: torch.Tensor, u: float, v: float) -> torch.Tensor:
    n, _, h, w = x.shape
    return torch.tensor([u, v]).view(1, 2, 1, 1).expand(n, 2, h, w).clone()


def test_zero_flow_is_the_identity_exactly(image):
    assert torch.equal(bilinear_warp(image, torch.zeros(3, 2, 9, 11)), image)


@pytest.mark.parametrize(("u", "v"), [(1, 0), (0, 1), (2, -1), (-3, 2)])
def test_integer_flow_shifts_the_image(image, u, v):
    out = bilinear_warp(image, uniform_flow(image, u, v))
    h, w = image.shape[-2:]
    rows = slice(max(0, -v), h - max(0, v))  # interior: the source row i + v and column j + u exist
    cols = slice(max(0, -u), w - max(0, u))
    src_rows = slice(rows.start + v, rows.stop + v)
    src_cols = slice(cols.start + u, cols.stop + u)
    assert torch.equal(out[..., rows, cols], image[..., src_rows, src_cols])


def test_half_pixel_flow_averages_neighbours(image):
    out = bilinear_warp(image, uniform_flow(image, 0.5, 0.0))
    torch.testing.assert_close(out[..., :-1], (image[..., :-1] + image[..., 1:]) / 2, rtol=0, atol=ULP1)
    assert torch.equal(out[..., -1], image[..., -1])  # border padding: the last column samples itself
    out = bilinear_warp(image, uniform_flow(image, 0.5, 0.5))
    quad = (image[..., :-1, :-1] + image[..., :-1, 1:] + image[..., 1:, :-1] + image[..., 1:, 1:]) / 4
    torch.testing.assert_close(out[..., :-1, :-1], quad, rtol=0, atol=2 * ULP1)


def test_warp_equals_grid_sample_with_border_padding(image):
    flow = 3 * torch.randn(3, 2, 9, 11, generator=torch.Generator().manual_seed(4))
    h, w = image.shape[-2:]
    gy, gx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    grid = torch.stack([2 * (gx + flow[:, 0]) / (w - 1) - 1, 2 * (gy + flow[:, 1]) / (h - 1) - 1], dim=-1)
    expected = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    # grid_sample's normalise/unnormalise round trip moves positions by a few ulps of the image size
    torch.testing.assert_close(bilinear_warp(image, flow), expected, rtol=0, atol=1e-5)


@given(st.floats(-5, 5), st.floats(-5, 5), st.floats(-3, 3), st.floats(-3, 3), st.integers(1, 4), st.integers(1, 5))
def test_flow_smoothness_of_a_bump_on_a_constant_flow(u, v, a, b, i, j):
    """Xiao et al. 2018, eq. (4): a constant flow (u, v) costs exactly 0; a bump (a, b) on it at one interior
    pixel differs from its 4 neighbours by the same (du, dv), each pair counted from both ends: 8 (sqrt(du² + dv² +
    δ) - sqrt(δ)), with du, dv as the float32 flow holds them (not a, b). The reference is computed in float32, as
    the terms are: a float64 one differs from them by their float32 rounding. Zeros and equal terms add up exactly
    (t + t, 2t + 2t); 8u relative allows for a summation that rounds anyway."""
    flow = uniform_flow(torch.zeros(2, 1, 6, 7), u, v)
    assert torch.equal(flow_smoothness(flow), torch.zeros(2))
    flow[1, 0, i, j] += a
    flow[1, 1, i, j] += b
    du, dv = flow[1, :, i, j] - flow[1, :, 0, 0]  # the differences as the float32 flow holds them
    delta = torch.tensor(1e-8, dtype=torch.float32)
    term = (du * du + dv * dv + delta).sqrt() - delta.sqrt()
    got = flow_smoothness(flow)
    assert got[0].item() == 0.0
    assert got[1].item() == pytest.approx(8 * term.item(), rel=8 * UNIT_ROUNDOFF, abs=1e-30)


def test_stadv_output_is_the_warp_by_its_flow_within_bound(trained, paper_runs):
    model, x, y = trained
    x, y = x[:N_EVAL], y[:N_EVAL]
    x_adv, flow = paper_runs["stadv"]
    assert flow is not None and flow.shape == (N_EVAL, 2, 28, 28)
    torch.testing.assert_close(x_adv, bilinear_warp(x, flow).clamp(0, 1), rtol=0, atol=0)
    assert flow.abs().max() <= spec("stadv").eps
    unattacked = ~accuracy(model, x, y)
    assert torch.equal(flow[unattacked], torch.zeros_like(flow[unattacked]))


def test_stadv_respects_a_tighter_bound(trained):
    model, x, y = trained
    x, y = x[:32], y[:32]
    attack = StAdv(model, max_flow=0.3, steps=30)
    x_adv = attack(x, y)
    assert attack.last_flow.abs().max() <= 0.3
    torch.testing.assert_close(x_adv, bilinear_warp(x, attack.last_flow).clamp(0, 1), rtol=0, atol=0)
    fooled = ~accuracy(model, x_adv, y)
    assert fooled.any()


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


# ---------------------------------------------------------------------------------------------------------
# AutoAttack: torchattacks against the reference implementation
# ---------------------------------------------------------------------------------------------------------


def aa_tolerance(n: int) -> float:
    """Allowed |robust accuracy difference| between two correct AutoAttack implementations on n images.

    They differ only on borderline points, whose status depends on random starts. If at most 10% of the points
    are borderline (on this model PGD-10 and AutoAttack disagree on 0-3%) and each implementation breaks
    each one independently with probability 1/2, the difference of accuracies has standard deviation at
    most sqrt(0.1 n / 2) / n; we allow three: 4.7 points for n = 200, 8.4 for n = 64.
    """
    return 3 * math.sqrt(0.05 / n)


def _check_crosscheck(result: dict, n: int, eps: float) -> None:
    assert result["n"] == n and result["eps"] == eps and result["norm"] == "L2"
    numbers = ("clean_accuracy", "robust_accuracy_torchattacks", "robust_accuracy_reference", "difference")
    assert all(isinstance(result[k], float) for k in numbers)
    assert result["robust_accuracy_torchattacks"] <= result["clean_accuracy"]
    assert result["robust_accuracy_reference"] <= result["clean_accuracy"]
    assert 0 < result["robust_accuracy_reference"] < result["clean_accuracy"]  # a non-trivial comparison
    assert abs(result["difference"]) <= aa_tolerance(n)
    assert result["disagreements"] >= round(abs(result["difference"]) * n)


def test_autoattack_crosscheck_fast(trained, capsys):
    model, x, y = trained
    result = crosscheck_autoattack(model, x[:64], y[:64], eps="128/255", seed=0, batch_size=64)
    _check_crosscheck(result, 64, 128 / 255)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # the reference's logging stays out of our output


@pytest.mark.gpu
def test_autoattack_equals_the_reference_on_the_gpu():
    """The standard AutoAttack the evaluation runs (torchattacks', in TF32 on CUDA) against the reference code on
    the same 256 images and seed, on the GPU (the GPU suite's quick check)."""
    model, x, y = train_tiny_cnn(256)
    result = crosscheck_autoattack(model.cuda(), x.cuda(), y.cuda(), eps=128 / 255, seed=0, batch_size=256)
    _check_crosscheck(result, 256, 128 / 255)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["pgd10_l2", "autoattack_l2", "fab_l2", "stadv"])
def test_tf32_attacks_give_the_robust_accuracy_of_float32(trained_200, name):
    """The evaluation attacks in TF32 on CUDA (evaluate.attack_precision: 10-bit mantissas in convolutions and
    matrix products); on the trained model the robust accuracy equals full float32's, within the tolerance of
    two correct runs of an attack (borderline points, aa_tolerance)."""
    model, x, y = trained_200
    model, x, y = copy.deepcopy(model).cuda(), x.cuda(), y.cuda()
    s = spec(name).at(128 / 255) if spec(name).norm is Norm.L2 else spec(name)
    robust = {}
    for enabled in (True, False):
        with tf32(enabled):
            x_adv = build_attack(s, model, num_classes=10, seed=0, device="cuda")(x, y)
            robust[enabled] = float((accuracy(model, x_adv, y) & accuracy(model, x, y)).float().mean())
    assert abs(robust[True] - robust[False]) <= aa_tolerance(200), robust


@pytest.mark.slow
def test_autoattack_crosscheck_200_images(trained_200):
    """200 images: the reference agrees with torchattacks within 4.7 points, and both beat PGD-10."""
    model, xte, yte = trained_200
    result = crosscheck_autoattack(model, xte, yte, eps=128 / 255, seed=0, batch_size=200)
    _check_crosscheck(result, 200, 128 / 255)
    pgd_acc = float(accuracy(model, build_attack(spec("pgd10_l2").at(128 / 255), model, num_classes=10, seed=0,
                                                 device="cpu")(xte, yte), yte).float().mean())
    assert result["robust_accuracy_torchattacks"] <= pgd_acc + aa_tolerance(200)  # AA is at least PGD-strong
    assert result["robust_accuracy_reference"] <= pgd_acc + aa_tolerance(200)
