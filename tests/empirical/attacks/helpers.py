"""A tiny CNN with its normalisation inside, trained on 4,000 Fashion-MNIST images: the model the attack tests break.

It trains for 300 Adam steps (clean accuracy near 80%, robust accuracy strictly between 0 and clean at the budgets
the tests use). Without Fashion-MNIST (the Debian package dataset-fashion-mnist in /usr/share/datasets/fashion-mnist,
which .ci/setup installs) the tests that need it are skipped and say why: no synthetic task of this size was found on
which they are meaningful (a smooth-prototype task gave 100% clean accuracy with nothing broken at 1/255, and every
image broken by StAdv and Pixle once made harder).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samat.empirical.attacks.meter import UNIT_ROUNDOFF
from samat.empirical.data import load_dataset, to_float_images
from samat.empirical.data.fashion_mnist import FASHION_MNIST_DIR, FASHION_MNIST_FILES

ULP1 = 2 * UNIT_ROUNDOFF  # spacing of float32 just below 1.0 ... 2.0


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


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample correctness (bool)."""
    with torch.no_grad():
        return model(x).argmax(1) == y


N_EVAL = 64
