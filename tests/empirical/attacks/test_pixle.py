"""Pixle, batched (samat.empirical.attacks.pixle), against torchattacks' image-by-image original."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torchattacks

from samat.empirical.attacks.build import build_attack
from samat.empirical.attacks.specs import spec
from tests.empirical.attacks.helpers import accuracy

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
