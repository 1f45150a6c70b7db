"""What the configuration turns into: the base optimizer's settings, each SAM-family method's perturbation, the
learning rate as the fast path holds it, and the seed of each epoch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samat.empirical.training.optimizers import (
    build_optimizer,
    build_perturbation,
    make_capturable,
    make_eager,
    set_learning_rate,
)
from samat.empirical.training.setup import round_generator, round_seed
from tests.empirical.helpers import tiny_cfg


def _params():
    return list(nn.Linear(3, 2).parameters())


@pytest.mark.parametrize(("method", "kind", "settings"), [
    ("sgd", torch.optim.SGD, {"lr": 0.05, "momentum": 0.8, "weight_decay": 1e-3}),
    ("adam", torch.optim.Adam, {"lr": 0.05, "weight_decay": 1e-3}),
])
def test_the_base_optimizer_carries_the_configured_settings(method, kind, settings):
    optimizer = build_optimizer(tiny_cfg(method=method, momentum=0.8, weight_decay=1e-3), _params())
    assert type(optimizer) is kind
    group = optimizer.param_groups[0]
    assert {k: group[k] for k in settings} == settings


@pytest.mark.parametrize(("method", "adaptive", "keep"), [("sam", False, 1.0), ("asam", True, 1.0),
                                                          ("esam", False, 0.3)])
def test_each_sam_method_gets_its_own_perturbation(method, adaptive, keep):
    perturbation = build_perturbation(tiny_cfg(method=method, rho=0.2, esam_beta=0.3), _params())
    assert (perturbation.rho, perturbation.adaptive, perturbation.keep_probability) == (0.2, adaptive, keep)


@pytest.mark.parametrize("method", ["sgd", "adam", "pgd_at"])
def test_methods_without_a_weight_ascent_get_no_perturbation(method):
    assert build_perturbation(tiny_cfg(method=method), _params()) is None


def test_the_fast_paths_learning_rate_is_a_tensor_changed_in_place():
    optimizer = build_optimizer(tiny_cfg(method="sgd", lr=0.05), _params())
    make_capturable(optimizer, torch.device("cpu"))
    lr = optimizer.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and lr.dtype == torch.float32 and lr.dim() == 0
    assert lr.item() == pytest.approx(0.05, rel=1e-7)  # float32's rounding of 0.05
    assert "fused" not in optimizer.param_groups[0] or not optimizer.param_groups[0]["fused"]  # CUDA only
    set_learning_rate(optimizer, 0.01)
    assert optimizer.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.01, rel=1e-7)


@pytest.mark.parametrize("method", ["sgd", "adam"])
def test_make_eager_gives_back_the_optimizer_that_was_never_made_capturable(method):
    """After a fallback from the CUDA-graph path: the groups' settings of a fresh optimizer (the exact learning
    rate, not its float32 rounding; the update not fused; Adam not capturable) and Adam's step counters on the CPU.
    The CUDA settings are written by hand here, as make_capturable writes them on a GPU."""
    model = nn.Linear(3, 2)
    fresh = build_optimizer(tiny_cfg(method=method, lr=0.05), model.parameters())
    used = build_optimizer(tiny_cfg(method=method, lr=0.05), model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    used.step()
    make_capturable(used, torch.device("cpu"))
    for group in used.param_groups:
        group["fused"], group["foreach"] = True, False
        if "capturable" in group:
            group["capturable"] = True
    make_eager(used, 0.05)
    strip = lambda groups: [{k: v for k, v in g.items() if k != "params"} for g in groups]  # noqa: E731
    assert strip(used.param_groups) == strip(fresh.param_groups) and type(used.param_groups[0]["lr"]) is float
    steps = [s["step"] for s in used.state.values() if "step" in s]
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in steps)
    assert len(steps) == (2 if method == "adam" else 0)


def test_set_learning_rate_on_plain_groups():
    optimizer = build_optimizer(tiny_cfg(method="adam", lr=0.05), _params())
    set_learning_rate(optimizer, 0.002)
    assert [g["lr"] for g in optimizer.param_groups] == [0.002]


def test_round_seeds_are_distinct_per_round_and_as_before_for_small_seeds():
    # "the same for every seed below 2**64 / 1,000,003 as before": seed * 1,000,003 + epoch
    assert [round_seed(3, e) for e in range(3)] == [3_000_009, 3_000_010, 3_000_011]
    seeds = {round_seed(s, e) for s in (0, 1, 2**40, 2**63 - 1) for e in range(50)}
    assert len(seeds) == 200


def test_the_largest_seed_makes_generators_for_every_epoch():
    big = 2**63 - 1
    for epoch in range(4):
        assert 0 <= round_seed(big, epoch) < 2**64  # what a generator's seed holds
        assert round_generator(big, epoch, torch.device("cpu")).initial_seed() == round_seed(big, epoch)
    draws = [torch.rand(3, generator=round_generator(big, e, torch.device("cpu"))) for e in range(2)]
    assert not torch.equal(*draws)


@pytest.mark.gpu
def test_the_round_generator_lives_on_the_runs_device():
    device = torch.device("cuda")
    assert round_generator(0, 1, device).device.type == "cuda"


@pytest.mark.gpu
def test_on_cuda_the_update_is_fused_and_adams_step_counters_live_on_the_device():
    device = torch.device("cuda")
    model = nn.Linear(3, 2).to(device)
    adam = build_optimizer(tiny_cfg(method="adam", lr=0.05), model.parameters())
    model(torch.randn(4, 3, device=device)).sum().backward()
    adam.step()  # Adam's state now holds its step counters
    make_capturable(adam, device)
    group = adam.param_groups[0]
    assert (group["fused"], group["foreach"], group["capturable"]) == (True, False, True)
    assert group["lr"].device.type == "cuda" and group["lr"].dtype == torch.float32
    for state in adam.state.values():
        assert state["step"].device.type == "cuda" and state["step"].dtype == torch.float32
    adam.step()  # the fused, capturable update runs with them
