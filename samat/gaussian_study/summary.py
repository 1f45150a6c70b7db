"""The study's measurements summarized: means and standard errors over seeds per (model, method, parameter),
with the theory's population values beside them; written to summary.json."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from samat.core.results import write_json
from samat.gaussian_study.grid import StudyGrid
from samat.gaussian_study.statistics import standard_error
from samat.gaussian_study.theory_curves import theory_curves

PER_BUDGET = ("robust_accuracy_nonrobust", "robust_accuracy_all", "pgd_accuracy_all_sample",
              "exact_accuracy_all_sample")


def model_key(model: tuple[float, float, int]) -> str:
    p, eta, n = model
    return f"p{p:g}-eta{eta:g}-n{n}"


def grid_of(doc: dict) -> StudyGrid:
    """The StudyGrid recorded in measurements.json (lists back to tuples)."""
    return StudyGrid(**{k: tuple(tuple(m) for m in v) if k == "models" else (tuple(v) if isinstance(v, list) else v)
                        for k, v in doc["grid"].items()})


def summarize(measurements: Path, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Means and standard errors (``standard_error``) per (model, method, parameter), theory beside them;
    writes summary.json next to ``measurements``."""
    doc = json.loads(Path(measurements).read_text())
    grid = grid_of(doc)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    st_w_r: dict[tuple, float] = {}  # (key, seed) -> W_R of ST on the same sample, from the same initial weights
    for row in doc["rows"]:
        groups[(row["key"], row["kind"], row["label"], row["train_size"])].append(row)
        if row["kind"] == "sweep" and row["method"] == "sgd":
            st_w_r[(row["key"], row["seed"])] = row["W_R"]
    out: dict[str, Any] = {"grid": doc["grid"], "models": {}}
    for model in grid.models:
        p, eta, n = model
        key = model_key(model)
        log(f"  theory curves for {key}")
        entry: dict[str, Any] = {"p": p, "eta": eta, "n": n, "theory": theory_curves(model, grid), "trained": [],
                                 "convergence": []}
        for (k, kind, label, size), rows in sorted(groups.items()):
            if k == key:
                entry["convergence" if kind == "convergence" else "trained"].append(
                    _group_stats(rows, key, kind, label, size, st_w_r))
        out["models"][key] = entry
    path = Path(measurements).with_name("summary.json")
    write_json(path, out, inputs={"measurements": str(measurements)})
    return out


def _group_stats(rows: list[dict], key: str, kind: str, label: str, size: int, st_w_r: dict) -> dict[str, Any]:
    """One method at one parameter: each measured quantity's (mean, standard error, dof) over seeds."""
    stats: dict[str, Any] = {"label": label, "method": rows[0]["method"], "rho": rows[0]["rho"],
                             "at_eps": rows[0]["at_eps"],
                             "train_size": size, "seeds": len(rows), "budgets": rows[0]["budgets"]}
    for name in ("W_R", "clean_accuracy"):
        stats[name] = standard_error([r[name] for r in rows])
    paired = [r["W_R"] / st_w_r[(key, r["seed"])] - 1 for r in rows if (key, r["seed"]) in st_w_r]
    if kind == "sweep" and len(paired) == len(rows):
        stats["W_R_change_vs_st"] = standard_error(paired)  # paired by seed: same sample, same start
    for name in PER_BUDGET:
        if name in rows[0]:
            stats[name] = [standard_error([r[name][i] for r in rows]) for i in range(len(rows[0]["budgets"]))]
    if "pgd_accuracy_all_sample" in rows[0]:
        gaps = [abs(a - e) for r in rows
                for a, e in zip(r["pgd_accuracy_all_sample"], r["exact_accuracy_all_sample"], strict=True)]
        stats["pgd_vs_exact_max_gap"] = max(gaps)
        stats["float32_ambiguous_max_share"] = max(v for r in rows for v in r["float32_ambiguous_share"])
        stats["test_size"] = rows[0]["test_size"]
    return stats
