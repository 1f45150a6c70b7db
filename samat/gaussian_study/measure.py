"""One trained run measured: W_R, its exact population accuracies (theory's objectives, not a test sample),
and its robust accuracy on the test sample under the real attack next to the exact worst case there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from samat.empirical.attacks.build import build_attack
from samat.empirical.attacks.specs import spec
from samat.empirical.data import Dataset
from samat.empirical.models import build_model
from samat.gaussian_study.grid import Job, StudyGrid
from samat.theory.objectives import linear_log_risk

# A margin this close to 0 (relative to the sum of |x_i w_i| it comes from) may take either sign in the float32
# forward pass: rounding is ~6e-8 per operation over at most a few dozen terms, so 1e-4 is generous.
FLOAT32_MARGIN_RTOL = 1e-4


def float32_ambiguous(x: np.ndarray, w: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """Where a float32 model may classify differently from the exact (float64) worst-case margin."""
    return np.abs(margins) <= FLOAT32_MARGIN_RTOL * (np.abs(x) @ np.abs(w) + 1)


def trained_weights(run_dir: Path) -> np.ndarray:
    return torch.load(run_dir / "model.pt", map_location="cpu")["weight"].double().numpy()


def budgets(grid: StudyGrid, eta: float) -> list[float]:
    """The ℓ∞ budgets every run is measured at: the AT budgets of the grid and η/2."""
    return sorted({f * eta for f in grid.at_fractions} | {0.5 * eta})


def measure(job: Job, grid: StudyGrid, data: Dataset | None = None) -> dict[str, Any]:
    """W_R, exact population accuracies, and attacked vs exact robust accuracy on the test sample. Per-budget
    values are lists aligned with ``budgets``."""
    p, eta, n = job.model
    w = trained_weights(job.run_dir)
    w1, rest = float(w[0]), w[1:]
    w_sum, w_l2, w_l1 = float(rest.sum()), float(np.linalg.norm(rest)), float(np.abs(rest).sum())
    row: dict[str, Any] = {"key": job.key, "label": job.label, "method": job.method, "rho": job.rho,
                           "at_eps": job.at_eps,
                           "seed": job.config.seed, "train_size": job.config.gaussian["train_size"], "kind": job.kind,
                           "w1": w1, "w_sum": w_sum, "W_R": w1 / w_sum}

    def exact(eps: float, eps_x1: float) -> float:
        return float(1 - np.exp(linear_log_risk(w1, w_sum, w_l2, w_l1, p, eta, eps, eps_x1).value))

    row["clean_accuracy"] = exact(0.0, 0.0)
    eps_list = budgets(grid, eta)
    row["budgets"] = eps_list
    row["robust_accuracy_nonrobust"] = [exact(e, 0.0) for e in eps_list]
    row["robust_accuracy_all"] = [exact(e, e) for e in eps_list]
    if job.kind == "sweep" and data is not None:
        row |= _attacked(job, grid, data, w, eps_list)
    return row


def _attacked(job: Job, grid: StudyGrid, data: Dataset, w: np.ndarray, eps_list: list[float]) -> dict[str, Any]:
    """PGD on the test sample (no box) against the exact worst case there, margin - ε||w||_1, per budget."""
    model = build_model("linear", input_shape=data.input_shape, num_classes=2)
    model.load_state_dict(torch.load(job.run_dir / "model.pt", map_location="cpu"))
    x, y = data.test_x, data.test_y
    sign = (2 * y - 1).double()
    margin = x.double() @ torch.from_numpy(w)
    attacked, exact_sample, ambiguous = [], [], []
    for e in eps_list:
        s = spec(f"pgd{grid.attack_steps}_linf").at(e)
        x_adv = build_attack(s, model, num_classes=2, seed=0, device="cpu", box=None)(x, y)
        with torch.no_grad():
            attacked.append(float((model(x_adv).argmax(1) == y).double().mean()))
        worst = (sign * margin - e * float(np.abs(w).sum())).numpy()
        exact_sample.append(float((worst > 0).mean()))
        ambiguous.append(float(float32_ambiguous(x.double().numpy(), w, worst).mean()))
    return {"pgd_accuracy_all_sample": attacked, "exact_accuracy_all_sample": exact_sample,
            "float32_ambiguous_share": ambiguous, "test_size": int(len(y))}
