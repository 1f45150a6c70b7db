"""The study's figures, drawn from summary.json only: W_R against ρ and ε (trained points with 95% intervals,
theory curves), the change of W_R against ST, the scale invariance of 0-1 SAM, robust accuracy under PGD
against the exact worst case, and convergence with the sample size."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from samat.core.results import atomic_write_bytes
from samat.gaussian_study.statistics import interval
from samat.theory import closed_form as cf


def _errorbar(ax, rows, xkey, ykey, **kw):
    rows = sorted(rows, key=lambda r: r[xkey])
    if not rows:
        return
    ax.errorbar([r[xkey] for r in rows], [r[ykey][0] for r in rows], yerr=[interval(r[ykey])[1] for r in rows],
                capsize=3, ms=5, **kw)


def _panels(plt, keys):  # one panel per (p, η, n)
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.8), constrained_layout=True, squeeze=False)
    return fig, axes[0]


def _finish(ax, key, xlabel, ylabel):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(key)
    ax.legend(fontsize=7)


def w_r_vs_rho(summary: dict[str, Any], plt):
    keys = list(summary["models"])
    fig, axes = _panels(plt, keys)
    for ax, key in zip(axes, keys, strict=True):
        m, th = summary["models"][key], summary["models"][key]["theory"]
        st = next(r for r in m["trained"] if r["method"] == "sgd")
        mean, half = interval(st["W_R"])
        ax.axhspan(mean - half, mean + half, color="grey", alpha=0.2,
                   label="ST trained (95% CI)")
        ax.axhline(th["W_R_st_01"], color="k", lw=1, label="ST population (0-1 = logistic)")
        rho = th["rho"]
        ax.plot(rho, th["W_R_sam_w1_only_01"], "k--", label="SAM on w1 only, 0-1 (papers' model)")
        ax.plot(rho, cf.w1_sam_claimed(th["W_R_st_01"], rho), "k:", label="Theorem 4 as claimed")
        ax.plot(rho, th["W_R_sam_all_01"], "C3-", label="SAM on all weights, 0-1")
        ax.plot(rho, th["W_R_sam_all_logistic"], "C2-", label="SAM on all weights, logistic (exact max)")
        ax.plot(rho, th["W_R_sam_one_step_logistic"], "C2:", label="SAM one-step, logistic (full batch)")
        _errorbar(ax, [r for r in m["trained"] if r["method"] == "sam"], "rho", "W_R", fmt="o", color="C0",
                  label="SAM trained")
        _errorbar(ax, [r for r in m["trained"] if r["method"] == "asam"], "rho", "W_R", fmt="s", color="C1",
                  label="ASAM trained")
        _finish(ax, key, "ρ (SAM radius)", "W_R = w1 / Σ w_i")
    return fig


def w_r_change_vs_rho(summary: dict[str, Any], plt):
    keys = list(summary["models"])
    # the same comparison as a change against ST, paired by seed: the intervals lose the seed-to-seed spread
    fig, axes = _panels(plt, keys)
    for ax, key in zip(axes, keys, strict=True):
        m, th = summary["models"][key], summary["models"][key]["theory"]
        rho = np.array(th["rho"])
        fine = np.linspace(0, rho.max(), 101)
        pct = lambda values, base: 100 * (np.asarray(values) / base - 1)  # noqa: E731
        ax.axhline(0, color="k", lw=1, label="ST")
        ax.plot(fine, 100 * cf.THEOREM4_COEFFICIENT * fine**2, "k:", label="Theorem 4 as claimed, (2/3)ρ²")
        ax.plot(fine, 100 * th["sam_coefficient_derived"] * fine**2, "k-.", label="Theorem 4 derived, ρ²/(3n)")
        ax.plot(rho, pct(th["W_R_sam_w1_only_01"], th["W_R_st_01"]), "k--", marker=".",
                label="SAM on w1 only, 0-1 (papers' model)")
        ax.plot(rho, pct(th["W_R_sam_all_01"], th["W_R_st_01"]), "C3-", marker=".", label="SAM on all weights, 0-1")
        ax.plot(rho, pct(th["W_R_sam_all_logistic"], th["W_R_st_logistic"]), "C2-", marker=".",
                label="SAM on all weights, logistic (exact max)")
        ax.plot(rho, pct(th["W_R_sam_one_step_logistic"], th["W_R_st_logistic"]), "C2:", marker=".",
                label="SAM one-step, logistic (full batch)")
        for method, fmt, color, label in (("sam", "o", "C0", "SAM trained"), ("asam", "s", "C1", "ASAM trained")):
            rows = sorted((r for r in m["trained"] if r["method"] == method), key=lambda r: r["rho"])
            ax.errorbar([r["rho"] * (1.02 if method == "asam" else 1) for r in rows],
                        [100 * r["W_R_change_vs_st"][0] for r in rows],
                        yerr=[100 * interval(r["W_R_change_vs_st"])[1] for r in rows],
                        fmt=fmt, color=color, capsize=3, ms=5, label=label + " (95% CI, paired with ST)")
        ax.set_yscale("symlog", linthresh=0.1)
        _finish(ax, key, "ρ (SAM radius)", "W_R change against ST (%; symlog below 0.1%)")
    return fig


def w_r_vs_eps(summary: dict[str, Any], plt):
    keys = list(summary["models"])
    fig, axes = _panels(plt, keys)
    for ax, key in zip(axes, keys, strict=True):
        m, th = summary["models"][key], summary["models"][key]["theory"]
        eps = th["eps"]
        ax.axhline(th["W_R_st_01"], color="k", lw=1, label="ST population")
        ax.plot(eps, th["W_R_at_theorem2"], "k--", label="Theorem 2 (= logistic AT population)")
        ax.plot(eps, th["W_R_at_full_01"], "C3-", marker=".", label="AT full ℓ∞ ball, 0-1")
        ax.plot(eps, th["W_R_at_full_logistic"], "C2-", marker=".", label="AT full ℓ∞ ball, logistic")
        _errorbar(ax, [r for r in m["trained"] if r["method"] == "at_nonrobust"], "at_eps", "W_R", fmt="o",
                  color="C0", label="AT trained, non-robust features")
        _errorbar(ax, [r for r in m["trained"] if r["method"] == "at_all"], "at_eps", "W_R", fmt="s", color="C1",
                  label="AT trained, all features")
        _finish(ax, key, "ε (ℓ∞ budget of AT)", "W_R")
    return fig


def sam_scale(summary: dict[str, Any], plt):
    keys = list(summary["models"])
    fig, ax = plt.subplots(figsize=(6.5, 4.8), constrained_layout=True)
    for i, key in enumerate(keys):
        sc = summary["models"][key]["theory"]["sam_scale"]
        excess = np.exp(sc["log_error"]) - np.exp(sc["log_error_st"])
        ax.plot(sc["scales"], excess, "o-", color=f"C{i}", ms=4, label=f"{key}, ρ={sc['rho']:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("scale c of w = c·(n W_R*, 1, ..., 1) (c = 1: the papers' gauge)")
    ax.set_ylabel("SAM objective - ST error (worst 0-1 error over the ρ-ball)")
    ax.set_title("0-1 SAM on all weights: one classifier, any scale")
    ax.legend(fontsize=7)
    return fig


def pgd_vs_exact(summary: dict[str, Any], plt):
    keys = list(summary["models"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6), constrained_layout=True)
    for key in keys:
        for r in summary["models"][key]["trained"]:
            if "pgd_accuracy_all_sample" not in r:
                continue
            for (acc, *_), exact, population in zip(r["pgd_accuracy_all_sample"], r["exact_accuracy_all_sample"],
                                                    r["robust_accuracy_all"], strict=True):
                ax1.plot(exact[0], acc, "o", ms=3, color="C0")
                ax2.plot(population[0], acc, "o", ms=3, color="C1")
    for ax, name in ((ax1, "exact worst case on the same test sample"), (ax2, "exact population worst case (theory)")):
        lims = [0.4, 1.0]
        ax.plot(lims, lims, "k-", lw=0.8)
        ax.set_xlabel(name)
        ax.set_ylabel("accuracy under PGD-20 (empirical.attacks, no box)")
    ax1.set_title("PGD reaches the exact worst case")
    ax2.set_title("sample against population")
    return fig


def convergence(summary: dict[str, Any], plt):
    keys = list(summary["models"])
    fig, ax = plt.subplots(figsize=(6.5, 4.8), constrained_layout=True)
    for key in keys:
        m, th = summary["models"][key], summary["models"][key]["theory"]
        targets = (("sgd", th["W_R_st_logistic"], "o"), ("at_nonrobust", th["W_R_at_logistic"][-1], "s"))
        for method, target, marker in targets:
            rows = sorted([r for r in m["convergence"] if r["method"] == method], key=lambda r: r["train_size"])
            if rows:
                ax.errorbar([r["train_size"] for r in rows], [abs(r["W_R"][0] - target) / target for r in rows],
                            yerr=[interval(r["W_R"])[1] / target for r in rows], fmt=marker + "-", capsize=3,
                            label=f"{key} {'ST' if method == 'sgd' else 'AT'}")
    sizes = np.array(sorted({r["train_size"] for k in keys for r in summary["models"][k]["convergence"]}))
    if len(sizes):
        ax.plot(sizes, 0.5 / np.sqrt(sizes / sizes[0]) * 0.1, "k:", label="∝ 1/√N")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training samples N")
    ax.set_ylabel("|W_R trained - W_R population| / W_R population")
    ax.set_title("Trained optima approach the logistic population optimum")
    ax.legend(fontsize=7)
    return fig


FIGURES: dict[str, Callable[[dict[str, Any], Any], Any]] = {
    "w_r_vs_rho": w_r_vs_rho, "w_r_change_vs_rho": w_r_change_vs_rho, "w_r_vs_eps": w_r_vs_eps,
    "sam_scale": sam_scale, "pgd_vs_exact": pgd_vs_exact, "convergence": convergence,
}


def figures(summary: dict[str, Any], out: Path) -> list[Path]:
    """Draw every figure of :data:`FIGURES` into ``out`` as PNG and PDF; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, draw in FIGURES.items():
        fig = draw(summary, plt)
        for ext in ("png", "pdf"):
            atomic_write_bytes(out / f"{name}.{ext}", partial(fig.savefig, format=ext, dpi=130))
            written.append(out / f"{name}.{ext}")
        plt.close(fig)
    return written
