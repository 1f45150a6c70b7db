"""The duality map on the Gaussian model: linear classifiers trained on D(p, η, n) by the study's trainers (ST, a
ladder of SAM radii, a ladder of AT budgets on the non-robust features, as the papers attack), measured with
theory's exact population accuracies, and fed to the same map as a real network's evaluations
(:mod:`samat.theory.duality.curves`), beside the map's exact answer under both readings of SAM
(:mod:`samat.theory.duality.exact`).

Each trained w's robust accuracy is exact (no test sample): against the worst ℓ∞ attack of size ε_c on the non-robust
features, ε_c = η + w1*/n (:func:`samat.theory.duality.exact.sensitive_column`), where robust accuracy rises with the
robust weight. The intervals therefore carry the seed-to-seed spread only (each seed draws its own training sample and
initial weights): the resampling draws seeds, and the "images" are the population, one exact value per run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samat.core.results import write_json
from samat.empirical.training.loop import train
from samat.empirical.training.runs import RunDir
from samat.empirical.training.setup import load_data
from samat.gaussian_study.grid import StudyGrid, run_config
from samat.gaussian_study.measure import trained_weights
from samat.theory.duality import curves as dm
from samat.theory.duality import exact as de
from samat.theory.numeric import equal_robustness_at_budget, sam_optimum_equal_endpoints
from samat.theory.objectives import linear_log_risk

ROLES = ("st", "sam", "at")


@dataclass(frozen=True)
class DualityGrid:
    """What the study's duality part trains: one model D(p, η, n), ST, SAM's radii and AT's budgets, every seed."""

    model: tuple[float, float, int] = (0.8, 0.5, 10)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    radii: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8)  # SAM on all weights, ℓ2 ball of radius ρ
    budgets: tuple[float, ...] = (0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16)  # AT ℓ∞ on x2..x_{n+1}
    train_size: int = StudyGrid.train_size
    epochs: int = StudyGrid.epochs
    resamples: int = 2000
    level: float = 0.95

    @classmethod
    def quick(cls) -> DualityGrid:
        return cls(model=(0.8, 0.5, 6), seeds=(0, 1), radii=(0.1, 0.4, 1.6), budgets=(0.01, 0.04, 0.16),
                   train_size=1000, epochs=2, resamples=200)

    @property
    def column(self) -> float:
        return de.sensitive_column(*self.model)

    def jobs(self, out: Path) -> list[tuple[str, float | None, int, Any, Path]]:
        """(role, ρ or ε, seed, configuration, run folder) of every run."""
        study = StudyGrid(models=(self.model,), seeds=self.seeds, train_size=self.train_size, epochs=self.epochs)
        rungs: list[tuple[str, float | None, dict]] = [("st", None, {"method": "sgd"})]
        rungs += [("sam", r, {"method": "sam", "rho": r}) for r in self.radii]
        rungs += [("at", e, {"method": "pgd_at", "at_eps": e, "at_features": "non_robust", "at_steps": 5})
                  for e in self.budgets]
        folder = Path(out) / "runs"
        return [(role, value, seed, run_config(study, self.model, seed, self.train_size, self.epochs, **fields),
                 folder / (f"{role}-seed{seed}" if value is None else f"{role}-{value:g}-seed{seed}"))
                for seed in self.seeds for role, value, fields in rungs]  # by seed: one training sample at a time


def exact_accuracies(w: np.ndarray, p: float, eta: float, column: float) -> tuple[float, float]:
    """The population clean accuracy of sign(w·x) and its robust accuracy against the worst ℓ∞ attack of size
    ``column`` on the non-robust features (theory's exact objective for any linear w)."""
    w1, rest = float(w[0]), w[1:]
    stats = (w1, float(rest.sum()), float(np.linalg.norm(rest)), float(np.abs(rest).sum()))
    return tuple(float(1 - np.exp(linear_log_risk(*stats, p, eta, eps).value)) for eps in (0.0, column))


def run(grid: DualityGrid, out: Path, *, log: Callable[[str], None] = print) -> Path:
    """Train what is missing (finished runs are kept, interrupted ones resumed), measure every run exactly, write
    ``<out>/measurements.json``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a linear model: intra-op threads only cost (see gaussian_study.driver)
    try:
        jobs = grid.jobs(out)
        todo = [j for j in jobs if not RunDir(j[4]).finished]
        log(f"duality study: {len(jobs)} runs into {Path(out) / 'runs'} ({len(jobs) - len(todo)} already finished)")
        rows, cache = [], {}
        for i, (role, value, seed, cfg, folder) in enumerate(jobs, 1):
            if not RunDir(folder).finished:
                if seed not in cache:
                    cache.clear()
                    cache[seed] = load_data(cfg)  # each seed draws its own training sample
                log(f"  [{i}/{len(jobs)}] {role} {'' if value is None else f'{value:g} '}seed {seed}")
                train(cfg, folder, resume=True, progress=False, data=cache[seed], log=lambda m: None)
            w = trained_weights(folder)
            clean, robust = exact_accuracies(w, grid.model[0], grid.model[1], grid.column)
            rows.append({"role": role, "value": value, "seed": seed, "w1": float(w[0]),
                         "W_R": float(w[0] / w[1:].sum()), "clean_accuracy": clean, "robust_accuracy": robust})
    finally:
        torch.set_num_threads(threads)
    path = Path(out) / "measurements.json"
    write_json(path, {"grid": asdict(grid), "column": grid.column, "rows": rows},
               inputs={"runs": str(Path(out) / "runs")})
    return path


def trained_map(grid: DualityGrid, rows: list[dict]) -> tuple[dm.ColumnMap, float]:
    """The map of the trained models (seeds resampled; the accuracies are exact) and ST's robust accuracy."""
    order = [("st", None)] + [("sam", r) for r in grid.radii] + [("at", e) for e in grid.budgets]
    seeds = list(grid.seeds)
    scores = np.zeros((2, len(order), len(seeds), 1))
    for row in rows:
        j = order.index((row["role"], row["value"]))
        scores[:, j, seeds.index(row["seed"]), 0] = (row["clean_accuracy"], row["robust_accuracy"])
    acc = dm.bootstrap_accuracies(scores, grid.resamples, seed=0)
    sam = slice(1, 1 + len(grid.radii))
    at = slice(1 + len(grid.radii), None)
    cm = dm.column_map(grid.radii, grid.budgets, acc[:, 1, at], acc[:, 1, sam], acc[:, 0, at], acc[:, 0, sam],
                       level=grid.level)
    return cm, float(acc[0, 1, 0])


def exact_curves(grid: DualityGrid, points: int = 60) -> dict[str, Any]:
    """Theory's equal-w1 budget over a fine range of ρ under both readings (SAM on w1 alone, the papers' model),
    and the map's answer on exact accuracies at the grid's own radii and budgets."""
    p, eta, n = grid.model
    rho = np.geomspace(min(grid.radii) / 2, max(grid.radii) * 2, points)
    sam = sam_optimum_equal_endpoints(p, eta, n, rho)
    population = equal_robustness_at_budget(p, eta, n, sam.w1)
    on_ladder = {}
    for reading in de.READINGS:
        ladder = [r for r in grid.radii if reading != de.PER_SAMPLE or r < eta * n]
        m = de.exact_map(p, eta, n, ladder, grid.budgets, reading, column_eps=grid.column)
        on_ladder[reading] = {"rho": [float(r) for r in ladder], "eps_at": [dm_value(x) for x in m.inversion.eps],
                              "where": [dm.STATUS[int(s)] for s in m.inversion.status]}
    return {"rho": rho.tolist(), "population": population.value.tolist(),
            "per_sample": de.per_sample_eps_at(n, rho).tolist(), "on_ladder": on_ladder}


def dm_value(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def summarize(grid: DualityGrid, measurements: Path) -> dict[str, Any]:
    """The trained map, theory's curves and the verdicts, as data."""
    import json

    rows = json.loads(Path(measurements).read_text())["rows"]
    cm, st = trained_map(grid, rows)
    return {"grid": asdict(grid), "column": grid.column, "st_robust_accuracy": st, "map": cm,
            "exact": exact_curves(grid)}


def record(summary: dict[str, Any]) -> dict[str, Any]:
    """:func:`summarize`'s result as JSON-ready data."""
    cm: dm.ColumnMap = summary["map"]
    return {
        "grid": summary["grid"], "column": summary["column"], "st_robust_accuracy": summary["st_robust_accuracy"],
        "at": [{"eps": float(e), "robust_accuracy": float(a)} for e, a in zip(cm.budgets, cm.at_accuracy, strict=True)],
        "sam": [{"rho": float(r), "robust_accuracy": float(a), "eps_at": dm_value(cm.inversion.eps[m]),
                 "where": dm.STATUS[int(cm.inversion.status[m])],
                 "eps_at_interval": [dm_value(x) if cm.budgets[0] <= x <= cm.budgets[-1] else None
                                     for x in cm.eps_interval[m]],
                 "clean_difference": dm_value(cm.clean_difference[m])}
                for m, (r, a) in enumerate(zip(cm.radii, cm.sam_accuracy, strict=True))],
        "fit": {"radii": [float(cm.radii[i]) for i in cm.fit.points], "slope": dm_value(cm.fit.slope),
                "slope_interval": [dm_value(x) for x in cm.slope_interval], "verdict": cm.verdict},
        "monotone": cm.monotone, "exact": summary["exact"],
    }
