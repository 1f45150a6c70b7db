"""Theory-versus-ε figures. Each figure is computed into a JSON file of curves, then drawn from it.

* ``w1_vs_eps``: w1 and W_R of ST, AT and SAM against ε, closed forms (lines) against the
  numerical optima (markers); SAM under both readings of its objective (the population max-min of the
  proofs, and the worst δ per sample as W eq. 15 / D eq. 11 print it);
* ``equal_robustness``: ε_SAM against ε_AT at equal w1, the paper's relation (W eq. 32), the
  derived one, and the numerical one;
* ``sam_coefficient``: (w1^SAM - w1*)/(w1* ε²) against ε, the claimed 2/3 and the derived 1/(3n);
* ``robust_accuracy``: robust accuracy of the ST, AT and SAM optima against the attack budget,
  and robust accuracy against w1 itself, which shows where "larger w1 is more robust" holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from samat.core.results import atomic_write_bytes, write_json
from samat.theory import closed_form as cf
from samat.theory import symbolic as sym
from samat.theory.numeric import (
    at_optimum,
    equal_robustness_at_budget,
    sam_optimum_equal_endpoints,
    sam_per_sample_optimum,
    st_optimum,
)
from samat.theory.objectives import accuracy

REFERENCE = {"p": 0.8, "eta": 0.5}  # the model drawn in every figure
N_VALUES = (1, 4, 16)
FORMATS = ("png", "pdf")


@dataclass(frozen=True)
class Figure:
    name: str
    caption: str
    compute: Callable[[], dict]
    draw: Callable[[dict, object], None]


def plain_log_ticks(ax, which: str) -> None:
    """Tick labels of a log axis as plain numbers (0.02, 0.05, 0.1): over less than ~2.5 decades also at 2x and 5x
    each power of ten, otherwise at the powers only (no crowded 2x10^-1, 3x10^-1, ... labels)."""
    from matplotlib import ticker  # matplotlib is loaded only when drawing

    axis = ax.yaxis if which == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(plain)
    if np.log10(hi / lo) < 2.5:
        axis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0)))
        axis.set_minor_formatter(plain)
    else:
        axis.set_minor_formatter(ticker.NullFormatter())


def per_n(data: dict, key: str) -> dict:
    """The curves stored under ``key``, one per entry of ``data["n"]``, by n."""
    return dict(zip(data["n"], data[key], strict=True))


def _sam_w1_shortcut(p, eta, n, eps):
    """SAM's w1 by the equal-endpoints root (the verification checks it against the direct solve)."""
    return sam_optimum_equal_endpoints(p, eta, n, eps).w1_float()


def _derived_coefficient():
    return sym.lambdify(sym.sam_expansion(order=2).A, sym.n)


# --- w1 and W_R against ε --------------------------------------------------------------------


def compute_w1_vs_eps() -> dict:
    p, eta = REFERENCE["p"], REFERENCE["eta"]
    ws = float(st_optimum(p, eta, 1).w1_float())
    eps_at = np.linspace(0, 0.9 * eta, 10)
    eps_at_line = np.linspace(0, 0.92 * eta, 200)
    eps_sam = np.linspace(0, 1.0, 11)
    eps_sam_line = np.linspace(0, 1.0, 200)
    coef = _derived_coefficient()
    data = {"p": p, "eta": eta, "w_star": ws, "eps_at": eps_at.tolist(), "eps_at_line": eps_at_line.tolist(),
            "eps_sam": eps_sam.tolist(), "eps_sam_line": eps_sam_line.tolist(), "n": list(N_VALUES),
            "at_numeric": at_optimum(p, eta, 1, eps_at).w1_float().tolist(),
            "at_closed": cf.w1_at(p, eta, eps_at_line).tolist(),
            "sam_claimed": cf.w1_sam_claimed(ws, eps_sam_line).tolist(),
            # one curve per n, in the order of "n"
            "sam_numeric": [_sam_w1_shortcut(p, eta, n, eps_sam).tolist() for n in N_VALUES],
            "sam_derived": [(ws * (1 + coef(n) * eps_sam_line**2)).tolist() for n in N_VALUES],
            # SAM read per sample: no finite optimum from ε = ηn on (null)
            "sam_per_sample_numeric": [sam_per_sample_optimum(p, eta, n, eps_sam).w1_float().tolist()
                                       for n in N_VALUES],
            "sam_per_sample_derived": [sym.per_sample_w1(p, eta, n, eps_sam_line).tolist() for n in N_VALUES]}
    return data


def _floats(values) -> np.ndarray:
    """A curve read back from JSON, null (no finite optimum) as nan."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def draw_w1_vs_eps(d: dict, plt) -> object:
    from matplotlib.lines import Line2D  # matplotlib is loaded only when drawing

    fig, axes = plt.subplots(3, 2, figsize=(14, 12.5), constrained_layout=True)
    colors = dict(zip(N_VALUES, ("tab:blue", "tab:orange", "tab:green"), strict=True))
    for col, (label, scale) in enumerate((("w1", lambda n: 1.0), ("W_R = w1 / n", lambda n: float(n)))):
        ax = axes[0, col]
        for n in N_VALUES:
            s = scale(n)
            ax.plot(d["eps_at_line"], np.asarray(d["at_closed"]) / s, color=colors[n], lw=1.5,
                    label=f"AT, Thm 2 closed form (n={n})" if col == 1 else "AT, Thm 2 closed form (any n)")
            ax.plot(d["eps_at"], np.asarray(d["at_numeric"]) / s, "o", color=colors[n], ms=5, mfc="none",
                    label="AT, numerical optimum (circles)" if n == N_VALUES[0] else None)
            ax.axhline(d["w_star"] / s, color=colors[n], ls=":", lw=1,
                       label=("ST, w1* (Thm 1), dotted" if col == 0 else "ST, W_R* = w1*/n (Thm 1), dotted, per n")
                       if n == N_VALUES[0] else None)
            if col == 0:
                break  # w1 of ST and AT does not depend on n
        ax.set_yscale("log")
        plain_log_ticks(ax, "y")
        ax.set_xlabel("AT budget ε (ℓ∞, on the non-robust features)")
        ax.set_ylabel(label)
        ax.set_title(f"AT: {label} against ε  (p={d['p']}, η={d['eta']}; pole at ε = η)")
        ax.legend(fontsize=8, loc="upper left")
        ax = axes[1, col]
        for n in N_VALUES:
            s = scale(n)
            ax.plot(d["eps_sam"], np.asarray(per_n(d, "sam_numeric")[n]) / s, "o", color=colors[n], ms=5)
            ax.plot(d["eps_sam_line"], np.asarray(per_n(d, "sam_derived")[n]) / s, color=colors[n], lw=1.2)
            if col == 1:
                ax.plot(d["eps_sam_line"], np.asarray(d["sam_claimed"]) / s, color=colors[n], ls="--", lw=1)
                ax.axhline(d["w_star"] / s, color=colors[n], ls=":", lw=1)
        if col == 0:
            ax.plot(d["eps_sam_line"], d["sam_claimed"], color="k", ls="--", lw=1.2)
            ax.axhline(d["w_star"], color="k", ls=":", lw=1)
        else:
            ax.set_yscale("log")
            plain_log_ticks(ax, "y")
        star = "w1*" if col == 0 else "W_R*"
        styles = [Line2D([], [], color="grey", marker="o", ls="none", label="SAM, numerical optimum"),
                  Line2D([], [], color="grey", label=f"derived {star}(1 + ε²/(3n))"),
                  Line2D([], [], color="k" if col == 0 else "grey", ls="--",
                         label="claimed w1*(1 + 2ε²/3), Thm 4 (any n)" if col == 0 else
                         "claimed W_R*(1 + 2ε²/3), Thm 4.4"),
                  Line2D([], [], color="k" if col == 0 else "grey", ls=":", label=f"ST, {star} (Thm 1)")]
        styles += [Line2D([], [], color=colors[n], lw=4, label=f"n = {n}") for n in N_VALUES]
        ax.set_xlabel("SAM budget ε (|δ| on w1)")
        ax.set_ylabel(label)
        ax.set_title(f"SAM, population max-min (the proofs): {label} against ε")
        ax.legend(handles=styles, fontsize=7, loc="upper left", ncol=2)
        if col == 1:  # room for the legend above the curves
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi * 6)
            plain_log_ticks(ax, "y")
        _draw_per_sample(axes[2, col], d, label, scale, colors)
    return fig


def _draw_per_sample(ax, d: dict, label: str, scale, colors) -> None:
    """SAM read per sample (W eq. 15, D eq. 11 as printed): numerical optima, the derived n ln(p/(1-p))/(2(ηn - ε))
    with its pole at ε = ηn, and the population reading's numerical optima for comparison."""
    from matplotlib.lines import Line2D  # matplotlib is loaded only when drawing

    for n in N_VALUES:
        s = scale(n)
        ax.plot(d["eps_sam"], _floats(per_n(d, "sam_per_sample_numeric")[n]) / s, "s", color=colors[n], ms=5,
                mfc="none")
        ax.plot(d["eps_sam_line"], _floats(per_n(d, "sam_per_sample_derived")[n]) / s, color=colors[n], lw=1.2)
        ax.plot(d["eps_sam"], np.asarray(per_n(d, "sam_numeric")[n]) / s, ".", color=colors[n], ms=4)
        ax.axhline(d["w_star"] / s, color=colors[n], ls=":", lw=1)
    ax.set_yscale("log")
    markers = np.concatenate([_floats(v) / scale(n) for n, v in per_n(d, "sam_per_sample_numeric").items()])
    ax.set_ylim(top=3 * np.nanmax(markers))  # the derived curves rise to their poles beyond the last marker
    plain_log_ticks(ax, "y")
    star = "w1*" if label == "w1" else "W_R*"
    styles = [Line2D([], [], color="grey", marker="s", mfc="none", ls="none", label="per-sample, numerical optimum"),
              Line2D([], [], color="grey", label="per-sample, derived (= AT at ε/n; pole at ε = ηn)"),
              Line2D([], [], color="grey", marker=".", ls="none", label="population max-min, numerical"),
              Line2D([], [], color="grey", ls=":", label=f"ST, {star} (Thm 1)")]
    styles += [Line2D([], [], color=colors[n], lw=4, label=f"n = {n} (pole at ε = {d['eta'] * n:g})")
               for n in N_VALUES]
    ax.set_xlabel("SAM budget ε (|δ| on w1)")
    ax.set_ylabel(label)
    ax.set_title(f"SAM per sample (W eq. 15, D eq. 11): {label} against ε")
    ax.legend(handles=styles, fontsize=7, loc="upper left", ncol=2)


# --- Equal robustness -------------------------------------------------------------------------


def compute_equal_robustness() -> dict:
    p, eta = REFERENCE["p"], REFERENCE["eta"]
    eps_sam = np.logspace(-2, 0, 12)
    relation = sym.equal_robustness()
    const = sym.lambdify(relation.constant.subs(sym.w_star_sym, sym.w_star()), sym.p, sym.eta, sym.n)
    lead = sym.lambdify(relation.lead, sym.n)
    line = np.logspace(-2, 0, 200)
    data = {"p": p, "eta": eta, "eps_sam": eps_sam.tolist(), "eps_sam_line": line.tolist(), "n": list(N_VALUES),
            "paper": cf.eps_at_claimed(line, eta).tolist(),
            "numeric": [equal_robustness_at_budget(p, eta, n, _sam_w1_shortcut(p, eta, n, eps_sam)).value.tolist()
                        for n in N_VALUES],
            "derived": [(eta / (lead(n) / line**2 + const(p, eta, n))).tolist() for n in N_VALUES]}
    return data


def draw_equal_robustness(d: dict, plt) -> object:
    fig, ax = plt.subplots(figsize=(7, 5.5), constrained_layout=True)
    colors = dict(zip(N_VALUES, ("tab:blue", "tab:orange", "tab:green"), strict=True))
    ax.plot(d["paper"], d["eps_sam_line"], "k--", lw=1.5, label="paper, Thm 5: 2 + 3/ε_SAM² = 2η/ε_AT (any n)")
    for n in N_VALUES:
        ax.plot(per_n(d, "derived")[n], d["eps_sam_line"], "-o", color=colors[n], lw=1.2, ms=0,
                label=f"n={n}: derived η/ε_AT = 3n/ε_SAM² + c(p,η,n) (line);\n"
                      "numerical w1^AT(ε_AT) = w1^SAM(ε_SAM) (circles)")
        ax.plot(per_n(d, "numeric")[n], d["eps_sam"], "o", color=colors[n], ms=5, mfc="none")
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 5)  # room for the legend above the curves
    plain_log_ticks(ax, "x")
    plain_log_ticks(ax, "y")
    ax.set_xlabel("ε_AT giving the same w1 (and W_R)")
    ax.set_ylabel("ε_SAM")
    ax.set_title(f"Equal-robustness curve (p={d['p']}, η={d['eta']})")
    ax.legend(fontsize=7, loc="upper left")
    return fig


# --- The SAM coefficient ------------------------------------------------------------------------


def compute_sam_coefficient() -> dict:
    p, eta = REFERENCE["p"], REFERENCE["eta"]
    eps = np.logspace(-3, 0, 16)
    ns = (1, 2, 5, 20)
    ws = float(st_optimum(p, eta, 1).w1_float())
    coef = _derived_coefficient()
    return {"p": p, "eta": eta, "eps": eps.tolist(), "n": list(ns), "claimed": cf.THEOREM4_COEFFICIENT,
            "numeric": [((_sam_w1_shortcut(p, eta, n, eps) - ws) / (ws * eps**2)).tolist() for n in ns],
            "derived": [float(coef(n)) for n in ns]}


def draw_sam_coefficient(d: dict, plt) -> object:
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    ax.axhline(d["claimed"], color="k", ls="--", label="claimed 2/3 (Thm 4 / 4.4)")
    for n, color in zip(d["n"], ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=True):
        derived = per_n(d, "derived")[n]
        ax.plot(d["eps"], per_n(d, "numeric")[n], "o-", color=color, ms=4,
                label=f"n={n}: numerical (dots); derived 1/(3n) = {derived:.3g} (dotted)")
        ax.axhline(derived, color=color, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo / 4, hi)  # room for the legend below the curves
    plain_log_ticks(ax, "x")
    plain_log_ticks(ax, "y")
    ax.set_xlabel("SAM budget ε")
    ax.set_ylabel("(w1^SAM - w1*) / (w1* ε²)")
    ax.set_title(f"Theorem 4's coefficient (p={d['p']}, η={d['eta']})")
    ax.legend(fontsize=8, loc="lower left")
    return fig


# --- Robust accuracy ------------------------------------------------------------------------------


def compute_robust_accuracy() -> dict:
    p, eta, n = REFERENCE["p"], REFERENCE["eta"], 4
    attack = np.linspace(0, 1.5 * eta, 61)
    models = {"ST": float(st_optimum(p, eta, n).w1_float())}
    for frac in (0.25, 0.5):
        models[f"AT ε={frac * eta:g}"] = float(at_optimum(p, eta, n, frac * eta).w1_float())
    for e in (0.5, 1.5):
        models[f"SAM ε={e:g}"] = float(_sam_w1_shortcut(p, eta, n, e))
    curves = {k: accuracy(w, p, eta, n, attack).tolist() for k, w in models.items()}
    w_axis = np.linspace(0, 3 * models["AT ε=0.25"], 300)
    budgets = (0.0, 0.25 * eta, 0.5 * eta, eta, 1.25 * eta)
    by_w = [accuracy(w_axis, p, eta, n, b).tolist() for b in budgets]  # one curve per budget
    return {"p": p, "eta": eta, "n": n, "attack": attack.tolist(), "w1": models, "curves": curves,
            "w_axis": w_axis.tolist(), "budgets": list(budgets), "by_w": by_w}


def draw_robust_accuracy(d: dict, plt) -> object:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    for name, acc in d["curves"].items():
        ls = "-" if name == "ST" else ("--" if name.startswith("AT") else "-.")
        ax1.plot(d["attack"], acc, ls, lw=1.6, label=f"{name}  (w1 = {d['w1'][name]:.3g})")
    ax1.axvline(d["eta"], color="grey", lw=0.8, ls=":", label="ε = η: the attack cancels the non-robust signal")
    ax1.set_xlabel("attack budget ε (ℓ∞ on the non-robust features)")
    ax1.set_ylabel("exact robust accuracy")
    ax1.set_title(f"Optima under attack (p={d['p']}, η={d['eta']}, n={d['n']})")
    ax1.legend(fontsize=8)
    for budget, acc in zip(d["budgets"], d["by_w"], strict=True):
        ax2.plot(d["w_axis"], acc, lw=1.4, label=f"attack ε = {budget:g}")
    for i, (name, w) in enumerate(sorted(d["w1"].items(), key=lambda kv: kv[1])):
        ax2.axvline(w, color="grey", lw=0.7, ls=":", label="the optima's w1 (dotted)" if i == 0 else None)
        ax2.annotate(f"{name} (w1 = {w:.3g})", (w, 0.03 + 0.055 * i), fontsize=7,  # one row each: no overlap
                     xycoords=("data", "axes fraction"), xytext=(3, 0), textcoords="offset points")
    ax2.set_xlabel("w1 (weight on the robust feature)")
    ax2.set_ylabel("exact robust accuracy")
    ax2.set_title("Robust accuracy against w1 (the optima marked)")
    ax2.legend(fontsize=8, loc="upper right")
    return fig


FIGURES = (
    Figure("w1_vs_eps", "w1 (left) and W_R = w1/n (right) against ε. Top: AT, Theorem 2's closed form (lines) "
           "against the numerical maximizer of the adversarial accuracy (circles), with ST's w1* dotted. Middle: SAM "
           "as the proofs solve it (the population max-min), numerical optima (dots) against the claimed "
           "w1*(1 + 2ε²/3) of Theorem 4 (dashed) and the derived w1*(1 + ε²/(3n)) (solid) for n = 1, 4, 16. "
           "Bottom: SAM as W eq. (15) and D eq. (11) print it (the worst δ per sample), numerical optima (squares) "
           "against the derived n ln(p/(1-p))/(2(ηn - ε)), AT's optimum at ε/n, which rises to first order in ε and "
           "has no finite value from ε = ηn on; the population reading's optima (dots) for comparison.",
           compute_w1_vs_eps, draw_w1_vs_eps),
    Figure("equal_robustness", "ε_SAM against the ε_AT that gives the same w1: Theorem 5's relation (dashed, the "
           "same for every n), the relation derived from the corrected expansion (lines) and the numerical curve "
           "(circles: w1^SAM solved, then ε_AT found by bisection with AT solved numerically).",
           compute_equal_robustness, draw_equal_robustness),
    Figure("sam_coefficient", "(w1^SAM - w1*)/(w1* ε²) against ε from the numerical optima, for n = 1, 2, 5, 20: "
           "it tends to 1/(3n) (dotted), not to Theorem 4's 2/3 (dashed).", compute_sam_coefficient,
           draw_sam_coefficient),
    Figure("robust_accuracy", "Left: exact robust accuracy of the ST, AT and SAM optima against the ℓ∞ budget of "
           "an attack on the non-robust features. Right: robust accuracy against w1 for several budgets, with the "
           "optima marked; larger w1 is more robust only up to w1^AT of the attack's budget, beyond which accuracy "
           "falls again (for budgets >= η it rises all the way).", compute_robust_accuracy, draw_robust_accuracy),
)


def outputs(out: Path) -> list[Path]:
    """Every file :func:`make_all` writes into ``out``: each figure's image formats and its data."""
    return [out / f"{f.name}.{ext}" for f in FIGURES for ext in (*FORMATS, "json")]


def existing_outputs(out: Path) -> list[Path]:
    return [p for p in outputs(out) if p.exists()]


def make_all(out: Path, progress: Callable[[str], None] | None = None) -> list[Path]:
    """Compute every figure's data into OUT/<name>.json, then draw OUT/<name>.png and .pdf from it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fig_def in FIGURES:
        data = fig_def.compute()
        data_path = write_json(out / f"{fig_def.name}.json", data, inputs={"figure": fig_def.name})
        fig = fig_def.draw(json.loads(data_path.read_text()), plt)
        for ext in FORMATS:
            path = out / f"{fig_def.name}.{ext}"
            atomic_write_bytes(path, partial(fig.savefig, format=ext, dpi=130))
            written.append(path)
        plt.close(fig)
        written.append(data_path)
        if progress:
            progress(f"figure {fig_def.name}")
    return written
