"""The attack tests' fixtures: the tiny model, trained once per process (session scope: the files of this folder
run in a random order among the others), and every paper attack run on it once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samat.empirical.attacks.build import build_attack
from samat.empirical.attacks.specs import PAPER_COLUMNS
from tests.empirical.attacks.helpers import N_EVAL, train_tiny_cnn


@pytest.fixture(autouse=True)
def one_thread():
    """Intra-op threads only add overhead on these tiny tensors (AutoAttack's 64-image cross-check: 23 s with 1
    thread, 30 s with 2 on the 2-core CI machine) and stall badly when another process holds a core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained_200() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The trained model and 200 held-out Fashion-MNIST images."""
    return train_tiny_cnn(200)


@pytest.fixture(scope="session")
def trained(trained_200) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The trained model (eval mode) and 128 held-out images with labels."""
    model, x, y = trained_200
    return model, x[:128], y[:128]


@pytest.fixture(scope="session")
def paper_runs(trained) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """x_adv (and StAdv's flow) for each PAPER_COLUMNS attack on the first N_EVAL images, seed 0."""
    model, x, y = trained
    runs = {}
    for s in PAPER_COLUMNS:
        attack = build_attack(s, model, num_classes=10, seed=0, device="cpu")
        runs[s.name] = (attack(x[:N_EVAL], y[:N_EVAL]), attack.last_flow)
    return runs
