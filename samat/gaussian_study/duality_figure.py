"""The Gaussian duality study for people: the map of trained linear models beside theory's exact curves (a log-log
figure), a short Markdown table, the JSON. Drawn from the study's measurements only."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from samat.core.results import atomic_write_bytes, atomic_write_text, write_json
from samat.empirical.experiments.report.duality import Units, clean_cell, draw_column, eps_cell, significant
from samat.gaussian_study.duality import record
from samat.theory.duality import curves as dm
from samat.theory.duality.exact import PER_SAMPLE, POPULATION
from samat.theory.plots import plain_log_ticks

FIGURE = "duality_map"
UNITS = Units(1.0, "")


def figure(summary: dict[str, Any], out: Path) -> list[Path]:
    """ε_AT against ρ: the trained map (points with intervals, triangles outside AT's range), theory's equal-w1
    curves under both readings (lines), and the map's answer on theory's exact accuracies at the same ladder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm: dm.ColumnMap = summary["map"]
    exact = summary["exact"]
    p, eta, n = summary["grid"]["model"]
    fig, ax = plt.subplots(figsize=(7.5, 5.5), constrained_layout=True)
    draw_column(ax, cm, UNITS, color="C0", label="trained", references=False)
    ax.plot(exact["rho"], exact["population"], "k-", lw=1.2, label="theory, population max-min: equal w1 (slope -> 2)")
    ax.plot(exact["rho"], exact["per_sample"], "k--", lw=1.2, label="theory, per sample: ρ/n (slope 1)")
    for reading, marker in ((POPULATION, "s"), (PER_SAMPLE, "D")):
        points = exact["on_ladder"][reading]
        inside = [(r, e) for r, e in zip(points["rho"], points["eps_at"], strict=True) if e is not None]
        if inside:
            ax.plot(*zip(*inside, strict=True), marker, color="0.3", mfc="none", ms=7,
                    label=f"the map on theory's exact accuracies ({reading})")
    low, high = ax.get_ylim()  # theory's curves may reach below AT's range
    curves = np.concatenate([exact["population"], exact["per_sample"]])
    ax.set_ylim(min(low, curves.min() / 1.5), max(high, curves.max() * 1.5))
    plain_log_ticks(ax, "x")
    plain_log_ticks(ax, "y")
    ax.set_title(f"D(p={p:g}, η={eta:g}, n={n}), trained SAM (all weights) and AT (non-robust features): "
                 f"{cm.verdict}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    written = []
    for ext in ("png", "pdf"):
        path = Path(out) / f"{FIGURE}.{ext}"
        atomic_write_bytes(path, partial(fig.savefig, format=ext, dpi=130))
        written.append(path)
    plt.close(fig)
    return written


def markdown(summary: dict[str, Any]) -> str:
    cm: dm.ColumnMap = summary["map"]
    exact = summary["exact"]
    p, eta, n = summary["grid"]["model"]
    level = f"{100 * cm.level:.0f}%"
    lines = [f"Linear models on D(p={p:g}, η={eta:g}, n={n}), {len(summary['grid']['seeds'])} seeds, trained by the "
             "study's trainers; robust accuracy exact, against the worst ℓ∞ attack of "
             f"{significant(summary['column'], 3)} on the non-robust features. [ ]: {level} intervals over resampled "
             "seeds.", "",
             f"| ρ | SAM robust accuracy (%) | ε_AT [{level}] | Δ clean (pp) | theory: per sample ρ/n | "
             "theory: population |", "|---|---|---|---|---|---|"]
    rho = np.asarray(exact["rho"])
    for m, r in enumerate(cm.radii):
        population = float(np.exp(np.interp(np.log(r), np.log(rho), np.log(exact["population"]))))
        lines.append(f"| {r:g} | {100 * cm.sam_accuracy[m]:.2f} | {eps_cell(cm, m, UNITS)} | {clean_cell(cm, m)} | "
                     f"{significant(r / n, 2)} | {significant(population, 2)} |")
    lo, hi = cm.slope_interval
    fit = ("no fit (fewer than 2 radii map inside AT's range with their interval)"
           if len(cm.fit.points) < dm.MIN_FIT_POINTS else
           f"b = {cm.fit.slope:.2f}, interval [{lo:.2f}, {hi:.2f}] over ρ = "
           + ", ".join(f"{cm.radii[i]:g}" for i in cm.fit.points))
    st = 100 * summary["st_robust_accuracy"]
    lines += ["", f"Exponent: {fit}: **{cm.verdict}**. ST's robust accuracy {st:.2f}%; "
              f"AT's from {100 * cm.at_accuracy[0]:.2f}% (ε = {cm.budgets[0]:g}) to {100 * cm.at_accuracy[-1]:.2f}% "
              f"(ε = {cm.budgets[-1]:g}), {'monotone' if cm.monotone else 'not monotone'}.", ""]
    return "\n".join(lines)


def write(summary: dict[str, Any], out: Path, measurements: Path) -> list[Path]:
    """duality_map.png/.pdf, duality.md and duality.json in ``out``."""
    out = Path(out)
    paths = figure(summary, out)
    atomic_write_text(out / "duality.md", markdown(summary))
    write_json(out / "duality.json", record(summary), inputs={"measurements": str(measurements)}, indent=1)
    return [*paths, out / "duality.md", out / "duality.json"]
