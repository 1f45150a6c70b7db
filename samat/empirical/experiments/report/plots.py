"""Figures of an experiment, drawn from its saved results only (metrics.jsonl, eval.json): never trains.

* ``curves``: test accuracy against epoch for each method;
* ``robust_vs_eps``: robust accuracy against the attack budget, one panel per attack with several budgets;
* ``tradeoff``: clean against robust accuracy, each method a labelled point (SAM's ρ, AT's ε in the label);
* ``examples`` (segmentation): images, ground truth, and each method's predictions clean and under attack
  (:mod:`.segmentation_figure`);
* ``attacks`` (text, in place of the two robust figures): each method's natural accuracy and each recipe's attack
  success rate side by side, the paper's numbers marked beside ours (D Table 10).

Segmentation experiments plot mIoU where classification ones plot accuracy.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from functools import partial
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from samat.core.results import atomic_write_bytes, write_json
from samat.empirical.evaluation.columns import NATURAL
from samat.empirical.experiments.grid import Experiment
from samat.empirical.experiments.report.segmentation_figure import draw_examples, example_sources
from samat.empirical.experiments.results import mean_std, run_results
from samat.empirical.vocabulary import Task


def _style(label: str) -> dict:
    if "AT" in label:
        return {"marker": "s", "ls": "--"}
    if "SAM" in label:
        return {"marker": "o", "ls": "-"}
    return {"marker": "^", "ls": ":"}


def _title(what: str, exp: Experiment) -> str:
    """A figure's title and the experiment's, wrapped to fit the axes."""
    return "\n".join(textwrap.wrap(f"{what}: {exp.title}", 70))


def _curves(exp: Experiment, plt):
    """Test accuracy against epoch, mean over the finished seeds of each method (None without finished runs)."""
    if not any(exp.finished(label) for label in exp.labels):
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    key = "test_miou" if exp.task is Task.SEGMENTATION else "test_acc"
    for label in exp.labels:
        runs = exp.finished(label)
        if not runs:
            continue
        curves = [[r[key] for r in run.read_metrics()] for run in runs]
        length = min(len(c) for c in curves)
        mean = np.mean([c[:length] for c in curves], axis=0) * 100
        ax.plot(np.arange(1, length + 1), mean, label=label, **_style(label), ms=4)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs (rounds) are whole numbers
    ax.set_xlabel("epoch" if exp.runs[0].config.iterations is None else
                  f"round ({exp.runs[0].config.round_steps} iterations)")
    ax.set_ylabel(f"test {exp.task.metric} (%)")
    ax.set_title(_title(f"Test {exp.task.metric} during training", exp), fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return fig


def _robust_vs_eps(results: dict[str, list[dict]], attacks: dict, plt, metric: str = "accuracy"):
    """Robust accuracy against the budget, one panel per attack with several budgets (None without one)."""
    families: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for column, s in attacks.items():
        if s.eps is not None:
            families[s.family_title].append((s.eps, column))
    families = {k: sorted(v) for k, v in families.items() if len(v) >= 2}
    if not families:
        return None
    if not any(results.values()):
        return None
    fig, axes = plt.subplots(1, len(families), figsize=(5.5 * len(families), 4.3), constrained_layout=True,
                             squeeze=False)
    for ax, (name, members) in zip(axes[0], families.items(), strict=True):
        for label, rows in results.items():
            points = [(0.0, [r[NATURAL] for r in rows])] + [(e, [r[c] for r in rows if c in r]) for e, c in members]
            points = [(e, v) for e, v in points if v]
            if len(points) < 2:
                continue
            eps = [e * 255 for e, _ in points]
            stats = [mean_std([100 * x for x in v]) for _, v in points]  # v is never empty here
            ax.errorbar(eps, [m for m, _ in stats], yerr=[s or 0.0 for _, s in stats], label=label, capsize=2,
                        **_style(label), ms=4)
        ax.set_xlabel(f"attack budget ε (×1/255; 0: natural {metric})")
        ax.set_ylabel(f"robust {metric} (%)")
        ax.set_title(name)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    return fig


def _tradeoff(exp: Experiment, results: dict[str, list[dict]], attacks: dict, plt):
    """Clean against mean robust accuracy, one labelled point per method (None without attack columns)."""
    robust_columns = list(attacks)
    if not robust_columns or not any(all(c in r for c in robust_columns) for rows in results.values() for r in rows):
        return None
    fig, ax = plt.subplots(figsize=(6.5, 5), constrained_layout=True)
    for label, rows in results.items():
        rows = [r for r in rows if all(c in r for c in robust_columns)]
        if not rows:
            continue
        clean = np.mean([100 * r[NATURAL] for r in rows])
        robust = np.mean([100 * np.mean([r[c] for c in robust_columns]) for r in rows])
        ax.scatter([clean], [robust], **{"marker": _style(label)["marker"]}, s=45)
        ax.annotate(label, (clean, robust), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.margins(0.15)  # room for the labels beside the points
    ax.set_xlabel(f"natural {exp.task.metric} (%)")
    ax.set_ylabel(f"mean robust {exp.task.metric} over the attack columns (%)")
    ax.set_title(_title(f"Clean against robust {exp.task.metric}", exp), fontsize=10)
    return fig


def _text_attacks(exp: Experiment, results: dict[str, list[dict]], attacks: dict, plt):
    """Natural accuracy and each recipe's success rate per method, mean ± std over seeds as bars, the paper's
    numbers as diamonds (None without finished runs)."""
    if not any(results.values()):
        return None
    columns = [NATURAL, *attacks]
    names = ["natural accuracy"] + [f"{attacks[c].title} success rate" for c in attacks]
    paper = {}
    for table in exp.tables:
        for label in exp.labels:
            numbers = exp.runs_for(label)[0].paper.get(table.title, {})
            paper |= {(label, c): numbers[c] for c in columns if c in numbers}
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    width = 0.8 / max(1, len(results))
    for k, (label, rows) in enumerate(results.items()):
        xs = np.arange(len(columns)) + (k - (len(results) - 1) / 2) * width
        stats = [mean_std([100 * r[c] for r in rows if c in r]) for c in columns]
        heights = [m if m is not None else np.nan for m, _ in stats]
        spread = [s for _, s in stats]
        ax.bar(xs, heights, width * 0.9, yerr=None if all(s is None for s in spread) else [s or 0.0 for s in spread],
               capsize=2, label=label)
        marked = [(x, paper[(label, c)]) for x, c in zip(xs, columns, strict=True) if (label, c) in paper]
        if marked:
            ax.scatter([x for x, _ in marked], [v for _, v in marked], marker="D", color="black", s=18, zorder=3,
                       label="paper" if k == 0 else None)
    ax.set_xticks(np.arange(len(columns)), names)
    ax.set_ylabel("percent (success rate: lower is more robust)")
    ax.set_ylim(0, 100)
    ax.set_title(_title("Accuracy and attack success rate", exp), fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_experiment(exp: Experiment, out_dir: str | Path) -> list[Path]:
    """Draw the experiment's figures into ``out_dir`` (PNG and PDF) from its saved results; returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {label: [run_results(r, exp.eval_settings) for r in exp.finished(label)] for label in exp.labels}
    attacks = exp.attacks
    if exp.task is Task.TEXT:
        figures = {"curves": _curves(exp, plt), "attacks": _text_attacks(exp, results, attacks, plt)}
    else:
        figures = {"curves": _curves(exp, plt),
                   "robust_vs_eps": _robust_vs_eps(results, attacks, plt, exp.task.metric),
                   "tradeoff": _tradeoff(exp, results, attacks, plt)}
    if exp.task is Task.SEGMENTATION:
        figures["examples"] = draw_examples(exp, plt)
    written: list[Path] = []
    for name, fig in figures.items():
        if fig is None:
            continue
        for ext in ("png", "pdf"):
            atomic_write_bytes(out / f"{name}.{ext}", partial(fig.savefig, format=ext, dpi=130))
            written.append(out / f"{name}.{ext}")
        plt.close(fig)
    inputs = {"experiment": str(exp.source)}
    if exp.task is Task.SEGMENTATION:
        inputs["examples"] = example_sources(exp)
    write_json(out / "figures.json", {"figures": [p.name for p in written]}, inputs=inputs)
    return written
