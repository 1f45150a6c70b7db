"""Helpers shared by the empirical tests: a tiny learnable image set, its configuration, a Gaussian grid."""

from __future__ import annotations

from pathlib import Path

import torch

from samat.empirical.data import Dataset
from samat.empirical.training.config import TrainConfig
from tests.helpers import REPO, run_cli

__all__ = ["GAUSSIAN_GRID_BASE", "REPO", "SGD_RUN", "run_cli", "tiny_cfg", "tiny_images", "write_grid"]

# The [base] of the experiment-grid tests: a linear model on the papers' Gaussian data, seconds to train.
GAUSSIAN_GRID_BASE = """[base]
dataset = "gaussian"
model = "linear"
epochs = 2
batch_size = 64
gaussian = { p = 0.8, eta = 0.3, n = 6, train_size = 512, test_size = 512 }
"""
SGD_RUN = """[[run]]
label = "SGD"
method = "sgd"
"""


def write_grid(folder: Path, experiment: str, runs: str = SGD_RUN, base: str = GAUSSIAN_GRID_BASE) -> Path:
    """folder/grid.toml: ``experiment`` (the lines of [experiment]), the Gaussian [base], then ``runs``."""
    path = folder / "grid.toml"
    path.write_text(f"[experiment]\n{experiment.strip()}\n\n{base}\n{runs}")
    return path


def tiny_images(n_train=256, n_test=64, seed=0) -> Dataset:
    """Random 1x12x12 images whose class is the brightest quadrant (learnable in a few steps)."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        x = torch.randint(0, 120, (n, 1, 12, 12), generator=g, dtype=torch.uint8)
        y = torch.randint(0, 4, (n,), generator=g)
        for k in range(4):
            r, c = divmod(k, 2)
            x[y == k, :, r * 6:(r + 1) * 6, c * 6:(c + 1) * 6] += 120
        return x, y

    (xtr, ytr), (xte, yte) = split(n_train), split(n_test)
    return Dataset("tiny", xtr, ytr, xte, yte, 4, (0.4,), (0.3,), "crop_flip")


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(dataset="tiny", model="small_cnn", epochs=3, batch_size=32, at_eps=8 / 255, at_steps=3, lr=0.05)
    return TrainConfig.from_dict(base | kw)
