"""The duality map of a duality grid (:mod:`.duality_grid`): from every run's per-image correctness (eval.json keeps
it as bit masks), the AT budget ε_AT(ρ) at which each SAM radius is matched in robust accuracy, per attack column,
with intervals over seeds and test images, the clean-accuracy difference at that budget, and the exponent of
ε_AT ∝ ρ^b against the theory's two readings. The computation itself is :mod:`samat.theory.duality.curves` (no torch).

The map needs every run trained as the grid asks and evaluated on every column with the grid's settings (the same
test images for all): :func:`readiness` says which are not, before any work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from samat.core.errors import SamatError
from samat.empirical.evaluation.columns import NATURAL, column_spec
from samat.empirical.evaluation.store import read_evaluation, unpack_mask
from samat.empirical.experiments.duality_grid import DualityLadder, Rung
from samat.empirical.experiments.grid import Experiment, RunSpec, staleness
from samat.empirical.experiments.results import evaluation_problem, replaced_weights
from samat.empirical.training.runs import RunDir
from samat.theory.duality import curves as dm

SHOWN = 4  # runs named in an error line before "and N more"


def _problem(exp: Experiment, spec: RunSpec, columns: list[str]) -> tuple[str, list[str]]:
    """Why a run cannot enter the map ("" if it can), and the columns its evaluation lacks."""
    run = RunDir(spec.run_dir)
    if not run.finished:
        return ("partly trained" if run.has_checkpoint else "not trained"), []
    why = staleness(spec)
    if why:
        return f"stale: {why}", []
    evaluation = read_evaluation(run.path / "eval.json")
    if evaluation is None:
        return "not evaluated", []
    try:
        final = json.loads(run.final.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SamatError(f"{run.final} cannot be read ({err}): train the run again (samat train --overwrite)") from None
    if replaced_weights(run, final):  # the rung's numbers must be of the weights it trained
        return "its model.pt is not the weights it trained", []
    problem = evaluation_problem(evaluation, run, exp.eval_settings)
    if problem:
        return "its evaluation is of other weights or settings", []
    correct = evaluation.get("correct", {})
    return "", [c for c in [NATURAL, *columns] if c not in correct]


def _named(runs: list[str]) -> str:
    shown = ", ".join(runs[:SHOWN])
    return shown + (f" and {len(runs) - SHOWN} more" if len(runs) > SHOWN else "")


def readiness(exp: Experiment) -> None:
    """A one-line :class:`SamatError` unless every run of the duality grid is trained as asked and evaluated on every
    column: it names the runs that are not (and the columns they lack)."""
    columns = list(exp.attacks)
    unready, lacking = [], {}
    for spec in exp.runs:
        why, missing = _problem(exp, spec, columns)
        if why:
            unready.append(f"{spec.run_dir.name} ({why})")
        elif missing:
            lacking[spec.run_dir.name] = missing
    fix = (f"`samat experiment run {exp.source}` (with the same --runs-dir, {exp.runs[0].run_dir.parent.parent}) "
           "trains and evaluates what is missing")
    if unready:
        raise SamatError(f"the duality map needs every run evaluated: {len(unready)} of {len(exp.runs)} runs of "
                         f"{exp.name} are not: {_named(unready)}; {fix}")
    if lacking:
        absent = sorted({c for cols in lacking.values() for c in cols})
        raise SamatError(f"columns missing from some runs: {', '.join(absent)} missing from the evaluation of "
                         f"{len(lacking)} of {len(exp.runs)} runs ({_named(list(lacking))}); {fix}")


@dataclass(frozen=True)
class Correctness:
    """Per-image correctness of every run: (columns, rungs, seeds, images), column 0 natural, the others robust
    (the attack's hit on an image the model classifies correctly, as eval.json's accuracy counts it)."""

    columns: tuple[str, ...]  # natural, then the attack columns
    rungs: tuple[Rung, ...]  # ST, SAM's radii, AT's budgets
    correct: np.ndarray  # bool


def gather(exp: Experiment) -> Correctness:
    """The per-image correctness of every run on every column (call :func:`readiness` first)."""
    ladder = _ladder(exp)
    columns = (NATURAL, *exp.attacks)
    rungs = ladder.rungs
    by_label = {label: exp.runs_for(label) for label in exp.labels}
    images = None
    out = None
    for j, rung in enumerate(rungs):
        for s, spec in enumerate(by_label[rung.label]):
            evaluation = read_evaluation(spec.run_dir / "eval.json")
            n = int(evaluation["n"])
            if images is None:
                images = n
                out = np.zeros((len(columns), len(rungs), len(exp.seeds), n), dtype=bool)
            elif n != images:
                raise SamatError(f"{spec.run_dir / 'eval.json'} evaluated {n} test images, other runs {images}: "
                                 "the map compares runs on the same images (samat eval --overwrite redoes it)")
            try:
                masks = {c: unpack_mask(evaluation["correct"][c], n).numpy() for c in columns}
            except (ValueError, TypeError) as err:
                raise SamatError(f"{spec.run_dir / 'eval.json'} holds corrupt per-image hits ({err}): evaluate it "
                                 "again (samat eval --overwrite)") from None
            out[0, j, s] = masks[NATURAL]
            for c, column in enumerate(columns[1:], 1):
                out[c, j, s] = masks[column] & masks[NATURAL]
    return Correctness(columns, rungs, out)


def _ladder(exp: Experiment) -> DualityLadder:
    if exp.duality is None:
        raise SamatError(f"{exp.source} is not a duality experiment (kind = \"duality\" in [experiment])")
    return exp.duality


@dataclass(frozen=True)
class DualityMap:
    ladder: DualityLadder
    seeds: tuple[int, ...]
    images: int
    st_accuracy: dict[str, float]  # ST's accuracy on each column (natural included)
    columns: dict[str, dm.ColumnMap]  # by attack column


def duality_map(exp: Experiment) -> DualityMap:
    """The map of every attack column (the runs must be ready: :func:`readiness`)."""
    readiness(exp)
    ladder = _ladder(exp)
    data = gather(exp)
    acc = dm.bootstrap_accuracies(data.correct, ladder.resamples, ladder.bootstrap_seed)  # (1 + B, columns, rungs)
    roles = np.array([r.role for r in data.rungs])
    sam, at = np.flatnonzero(roles == "sam"), np.flatnonzero(roles == "at")
    maps = {column: dm.column_map(ladder.radii, ladder.budgets, acc[:, c, at], acc[:, c, sam], acc[:, 0, at],
                                  acc[:, 0, sam], level=ladder.level)
            for c, column in enumerate(data.columns[1:], 1)}
    st = {column: float(acc[0, c, 0]) for c, column in enumerate(data.columns)}
    return DualityMap(ladder, exp.seeds, int(data.correct.shape[-1]), st, maps)


# --- As data ---------------------------------------------------------------------------------------------------


def _number(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _budget_end(x: float, budgets) -> dict[str, Any]:
    """An interval end of ε_AT: a budget, or where it lies outside AT's range."""
    if x < budgets[0]:
        return {"eps": None, "where": dm.STATUS[dm.BELOW]}
    if x > budgets[-1]:
        return {"eps": None, "where": dm.STATUS[dm.ABOVE]}
    return {"eps": float(x), "where": dm.STATUS[dm.INSIDE]}


def column_record(column: str, cm: dm.ColumnMap, ladder: DualityLadder, st_accuracy: float) -> dict[str, Any]:
    """One column's map as JSON-ready data (numbers as numbers; outside AT's range said in words)."""
    peak = int(cm.inversion.peak)
    return {
        "column": column, "title": column_spec(column).title, "st_robust_accuracy": st_accuracy,
        "at": [{"label": rung.label, "eps": float(eps), "robust_accuracy": float(a)}
               for rung, eps, a in zip(ladder.at, cm.budgets, cm.at_accuracy, strict=True)],
        "monotone": cm.monotone, "peak_eps": float(cm.budgets[peak]),
        "falls": [{"from_eps": float(cm.budgets[k]), "to_eps": float(cm.budgets[k + 1]),
                   "drop": float(cm.at_accuracy[k] - cm.at_accuracy[k + 1]),
                   "share_of_resamples": float(cm.fall_share[k])}
                  for k in np.flatnonzero(dm.falls(cm.at_accuracy))],
        "sam": [{"label": rung.label, "rho": float(rho), "robust_accuracy": float(a),
                 "eps_at": _number(cm.inversion.eps[m]), "where": dm.STATUS[int(cm.inversion.status[m])],
                 "eps_at_interval": [_budget_end(x, cm.budgets) for x in cm.eps_interval[m]],
                 "clean_difference": _number(cm.clean_difference[m]),
                 "clean_difference_interval": [_number(x) for x in cm.clean_interval[m]]}
                for m, (rung, rho, a) in enumerate(zip(ladder.sam, cm.radii, cm.sam_accuracy, strict=True))],
        "fit": {"radii": [float(cm.radii[i]) for i in cm.fit.points], "slope": _number(cm.fit.slope),
                "intercept": _number(cm.fit.intercept), "slope_interval": [_number(x) for x in cm.slope_interval],
                "undefined_share": _number(cm.slope_undefined), "verdict": cm.verdict},
    }


def map_record(result: DualityMap) -> dict[str, Any]:
    ladder = result.ladder
    return {
        "ladder": {"radii": list(ladder.radii), "budgets": list(ladder.budgets), "at_norm": ladder.at_norm.value,
                   "sam_method": ladder.sam_method.value, "seeds": list(result.seeds), "images": result.images,
                   "resamples": ladder.resamples, "level": ladder.level, "bootstrap_seed": ladder.bootstrap_seed,
                   "resampling": "seeds and test images, each with replacement, the same draw for every run "
                                 "(pigeonhole bootstrap)"},
        "st_accuracy": result.st_accuracy,
        "columns": [column_record(c, cm, ladder, result.st_accuracy[c]) for c, cm in result.columns.items()],
    }
