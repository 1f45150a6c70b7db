"""The duality map for people: a Markdown section (ρ, then ε_AT per column with its interval and the clean-accuracy
difference at that budget; the exponent's fit and verdict per column; where AT's curve is not monotone), the JSON
(duality.json) and a log-log figure of ε_AT against ρ with the fit and reference lines of slope 1 and 2. Drawn
from saved evaluations only (:mod:`samat.empirical.experiments.duality`); nothing trains."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from samat.core.results import atomic_write_bytes, write_json
from samat.empirical.evaluation.columns import column_spec
from samat.empirical.experiments.duality import DualityMap, map_record
from samat.empirical.vocabulary import DatasetName
from samat.theory.duality import curves as dm
from samat.theory.plots import plain_log_ticks

FIGURE = "duality_map"


@dataclass(frozen=True)
class Units:
    """How budgets are shown: image budgets in units of 1/255, vector budgets as they are."""

    scale: float
    suffix: str

    @classmethod
    def of(cls, dataset) -> Units:
        return cls(1.0, "") if dataset == DatasetName.GAUSSIAN else cls(255.0, "/255")

    def show(self, eps: float, digits: int = 2) -> str:
        """A measured budget (an interpolation, an interval end), to ``digits`` significant digits."""
        return f"{significant(eps * self.scale, digits)}{self.suffix}"

    def budget(self, eps: float) -> str:
        """One of the ladder's budgets, as given: "0.125/255", "2/255", "0.02"."""
        return f"{eps * self.scale:.4g}{self.suffix}"

    @property
    def axis(self) -> str:
        return "ε_AT (units of 1/255)" if self.suffix else "ε_AT"


def significant(x: float, digits: int = 2) -> str:
    """``x`` to ``digits`` significant digits without an exponent for everyday sizes: 0.0031, 0.31, 3.1, 31, 310."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def _points(x: float) -> str:
    """A difference of accuracies in percentage points, signed: "+1.2", "−0.4", "+∞"."""
    if not math.isfinite(x):
        return "+∞" if x > 0 else "−∞"
    return f"{100 * x:+.1f}".replace("-", "−")


def eps_cell(cm: dm.ColumnMap, m: int, units: Units) -> str:
    status = int(cm.inversion.status[m])
    lo, hi = cm.eps_interval[m]
    interval = dm.budget_interval_text(lo, hi, cm.budgets, units.show, units.budget)
    if status == dm.BELOW:
        return f"below {units.budget(cm.budgets[0])} {interval}"
    if status == dm.ABOVE:
        return f"above {units.budget(cm.budgets[int(cm.inversion.peak)])} {interval}"
    return f"{units.show(cm.inversion.eps[m])} {interval}"


def clean_cell(cm: dm.ColumnMap, m: int) -> str:
    if not np.isfinite(cm.clean_difference[m]):
        return "—"
    lo, hi = cm.clean_interval[m]
    return f"{_points(cm.clean_difference[m])} [{_points(lo)}, {_points(hi)}]"


def _curve_note(cm: dm.ColumnMap, units: Units, st: float) -> str:
    """What AT's curve does over its budgets, and where it is not monotone."""
    a = cm.at_accuracy
    rise = (f"AT's robust accuracy goes from {100 * a[0]:.1f}% at {units.budget(cm.budgets[0])} to "
            f"{100 * a[-1]:.1f}% at {units.budget(cm.budgets[-1])} (ST {100 * st:.1f}%)")
    drops = np.flatnonzero(dm.falls(a))
    if not len(drops):
        return rise + "; it rises at every budget."
    where = "; ".join(f"from {units.budget(cm.budgets[k])} to {units.budget(cm.budgets[k + 1])} by "
                      f"{100 * (a[k] - a[k + 1]):.1f} points (in {100 * cm.fall_share[k]:.0f}% of resamples)"
                      for k in drops)
    peak = int(cm.inversion.peak)
    tail = (f" The map uses its rising branch, up to its peak at {units.budget(cm.budgets[peak])}"
            + (", with the dips before it pooled (isotonic fit)." if np.any(drops < peak) else "."))
    return f"{rise}; **it is not monotone**: it falls {where}.{tail}"


def _fit_note(cm: dm.ColumnMap, units: Units) -> str:
    level = f"{100 * cm.level:.0f}%"
    if len(cm.fit.points) < dm.MIN_FIT_POINTS:
        inside = int(np.sum(cm.inversion.status == dm.INSIDE))
        count = len(cm.fit.points)
        return (f"No fit: {count} {'radius has' if count == 1 else 'radii have'} ε_AT and its interval inside AT's "
                f"range ({inside} by the point estimate); the exponent needs {dm.MIN_FIT_POINTS}: **{cm.verdict}**.")
    lo, hi = cm.slope_interval
    show = lambda x: f"{x:.2f}" if np.isfinite(x) else ("−∞" if x < 0 else "+∞")  # noqa: E731
    radii = ", ".join(f"{cm.radii[i]:g}" for i in cm.fit.points)
    undefined = (f"; {100 * cm.slope_undefined:.1f}% of resamples put a fitted radius outside AT's range and count "
                 "against both ends" if cm.slope_undefined > 0 else "")
    return (f"log ε_AT = a + b log ρ over ρ = {radii}: b = {cm.fit.slope:.2f}, {level} interval [{show(lo)}, "
            f"{show(hi)}]{undefined}: **{cm.verdict}**.")


def markdown(result: DualityMap, units: Units) -> str:
    """The duality map as a Markdown section (a heading, the table, a note per column, how to read it)."""
    ladder = result.ladder
    level = f"{100 * ladder.level:.0f}%"
    titles = {c: column_spec(c).title for c in result.columns}
    header = ["ρ"] + [h for c in result.columns for h in (f"{titles[c]}: ε_AT [{level}]", "Δ clean (pp)")]
    lines = ["## Duality map: the AT budget as robust as SAM(ρ)", "",
             f"{ladder.sam_method.display} radii {', '.join(f'{r:g}' for r in ladder.radii)} against "
             f"{ladder.at_norm.display}-AT budgets {', '.join(ladder.show_eps(e) for e in ladder.budgets)}, "
             f"{len(result.seeds)} seed{'s' if len(result.seeds) != 1 else ''} each, {result.images:,} test images. "
             "ε_AT: the AT budget whose robust accuracy equals SAM's on that column (AT's curve interpolated "
             "monotonically, linearly in log ε); "
             f"Δ clean: SAM's clean accuracy minus AT's at ε_AT, in points; [ ]: {level} intervals over "
             f"{ladder.resamples:,} resamples of seeds and test images.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m, rho in enumerate(ladder.radii):
        cells = [f"{rho:g}"]
        for cm in result.columns.values():
            cells += [eps_cell(cm, m, units), clean_cell(cm, m)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for column, cm in result.columns.items():
        lines += [f"**{titles[column]}.** {_fit_note(cm, units)} {_curve_note(cm, units, result.st_accuracy[column])}",
                  ""]
    lines += ["How to read it: the theory (W Thm 5, D Thm 4.5, corrected in docs/THEORY.md) gives ε_AT ∝ ρ² as ρ -> 0 "
              "when SAM is read as the papers' proofs solve it (one perturbation for the population), and ε_AT = ρ/n "
              "(slope 1) when read as their objective is printed (a worst perturbation per sample). The verdict says "
              "which slope b's interval covers: \"undecided\" when it covers both, or when fewer than "
              f"{dm.MIN_FIT_POINTS} radii map inside AT's range with their whole interval. ρ lives in weight space and "
              "ε in input space, so only b is comparable with the theory. \"below\" the smallest budget: SAM(ρ) is "
              "less robust than AT at every budget of the ladder (nothing is extrapolated); an interval end reads "
              "\"< smallest budget\" (\"> largest\") when more than its tail of the resamples falls there.", ""]
    return "\n".join(lines)


def draw_column(ax, cm: dm.ColumnMap, units: Units, *, color: str = "C0", label: str = "map",
                references: bool = True) -> None:
    """One column's map on log-log axes: ε_AT against ρ with its intervals (triangles at the range's edge for radii
    outside it), the fit over its radii, reference lines of slope 1 and 2 through the fit's centre, AT's range
    shaded."""
    s = units.scale
    ax.axhspan(cm.budgets[0] * s, cm.budgets[-1] * s, color="0.92", zorder=0, label="AT's budgets (the map's range)")
    status = cm.inversion.status
    inside = status == dm.INSIDE
    lo, hi = cm.eps_interval[:, 0], cm.eps_interval[:, 1]
    y = cm.inversion.eps
    low_end = np.where(lo < cm.budgets[0], cm.budgets[0], lo)
    high_end = np.where(hi > cm.budgets[-1], cm.budgets[-1], hi)
    if inside.any():
        ax.errorbar(cm.radii[inside], y[inside] * s, yerr=[(y - low_end)[inside] * s, (high_end - y)[inside] * s],
                    fmt="o", color=color, capsize=3, ms=5, label=f"{label}: ε_AT ({100 * cm.level:.0f}% interval)")
        for m in np.flatnonzero(inside):  # an interval end outside the range: dotted beyond the range's edge
            for end, edge, beyond in ((lo[m], cm.budgets[0], 0.6), (hi[m], cm.budgets[-1], 1.6)):
                if end < cm.budgets[0] or end > cm.budgets[-1]:
                    ax.plot([cm.radii[m]] * 2, [edge * s, edge * beyond * s], ":", color=color, lw=1.2)
    for code, edge, marker, text in ((dm.BELOW, cm.budgets[0], "v", "below the smallest budget"),
                                     (dm.ABOVE, cm.budgets[-1], "^", "above the largest budget")):
        where = status == code
        if where.any():
            ax.plot(cm.radii[where], np.full(where.sum(), edge * s), marker, color=color, ms=7, mfc="none",
                    label=f"{label}: {text}")
    if len(cm.fit.points) >= dm.MIN_FIT_POINTS:
        x = cm.radii[list(cm.fit.points)]
        line = np.geomspace(x.min(), x.max(), 50)
        ax.plot(line, np.exp(cm.fit.intercept) * line ** cm.fit.slope * s, "-", color=color, lw=1.5,
                label=f"{label}: fit, b = {cm.fit.slope:.2f}")
        if references:
            x0 = np.exp(np.mean(np.log(x)))
            y0 = np.exp(cm.fit.intercept) * x0 ** cm.fit.slope * s
            wide = np.geomspace(cm.radii.min(), cm.radii.max(), 50)
            for slope, style in ((1, "--"), (2, ":")):
                ax.plot(wide, y0 * (wide / x0) ** slope, style, color="0.35", lw=1,
                        label=f"slope {slope} ({'per-sample' if slope == 1 else 'population'} reading)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    low, high = ax.get_ylim()  # room below and above AT's range for the triangles and the open interval ends
    ax.set_ylim(min(low, cm.budgets[0] * s / 2), max(high, cm.budgets[-1] * s * 2))
    ax.set_xlabel("ρ (SAM radius)")
    ax.set_ylabel(units.axis)


def plot(result: DualityMap, units: Units, out: Path, title: str) -> list[Path]:
    """The figure: one log-log panel per attack column (PNG and PDF)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(result.columns)
    fig, axes = plt.subplots(1, len(columns), figsize=(5.6 * len(columns), 4.8), constrained_layout=True,
                             squeeze=False)
    for ax, column in zip(axes[0], columns, strict=True):
        cm = result.columns[column]
        draw_column(ax, cm, units)
        plain_log_ticks(ax, "x")
        plain_log_ticks(ax, "y")
        ax.set_title(f"{column_spec(column).title}: {cm.verdict}", fontsize=10)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Duality map: {title}", fontsize=10)
    written = []
    for ext in ("png", "pdf"):
        path = out / f"{FIGURE}.{ext}"
        atomic_write_bytes(path, partial(fig.savefig, format=ext, dpi=130))
        written.append(path)
    plt.close(fig)
    return written


def write(result: DualityMap, dataset, out: Path, title: str, inputs: dict, *, plots: bool = True
          ) -> tuple[str, dict[str, Path]]:
    """duality.json and the figure (PNG and PDF) in ``out``; returns the Markdown section and the files (the PNG
    for the figure)."""
    units = Units.of(dataset)
    paths = {"duality": write_json(out / "duality.json", map_record(result), inputs=inputs, indent=2)}
    if plots:
        paths[f"figure {FIGURE}"] = plot(result, units, out, title)[0]
    return markdown(result, units), paths
