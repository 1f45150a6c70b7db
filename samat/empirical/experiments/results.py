"""The saved results of a grid's runs, gathered: per run its accuracies (final.json, eval.json), per method the
mean and sample standard deviation over the finished seeds, beside the paper's numbers."""

from __future__ import annotations

import json
import math
from typing import Any

from samat.core.errors import SamatError
from samat.empirical.evaluation.columns import AVERAGE, NATURAL
from samat.empirical.evaluation.store import read_evaluation, recorded_weights
from samat.empirical.experiments.grid import Experiment, Table, trained_as_asked
from samat.empirical.training.runs import RunDir


def collect(exp: Experiment, table: Table) -> list[dict[str, Any]]:
    """One row per label: mean, std and count over finished seeds of each column, and the paper's number. Only
    runs trained as the experiment asks count, and only evaluations of their final weights with the
    experiment's settings (the others are listed in ``stale_evaluations``)."""
    rows = []
    for label in exp.labels:
        values: dict[str, list[float]] = {c: [] for c in table.columns}
        specs = exp.runs_for(label)
        finished = exp.finished(label)
        attacks = [c for c in table.columns if c not in (NATURAL, AVERAGE)]
        warnings: list[str] = []
        stale_evaluations: list[str] = []
        for run in finished:
            results = run_results(run, exp.eval_settings)
            if AVERAGE in table.columns and attacks and all(c in results for c in attacks):
                results[AVERAGE] = sum(results[c] for c in attacks) / len(attacks)
            for c in table.columns:
                if c in results:
                    values[c].append(100.0 * results[c])
            warnings += [f"{run.name}: {w}" for w in results.get("failed_checks", [])]
            if "stale_evaluation" in results:
                stale_evaluations.append(f"{run.name}: {results['stale_evaluation']}")
        row: dict[str, Any] = {"label": label, "seeds_done": len(finished), "seeds": len(specs),
                               "failed_checks": warnings, "stale_evaluations": stale_evaluations}
        paper = specs[0].paper.get(table.title, {})
        for c in table.columns:
            mean, std = mean_std(values[c])
            row[c] = {"mean": mean, "std": std, "n": len(values[c]), "paper": paper.get(c)}
        rows.append(row)
    return rows


def run_results(run: RunDir, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Accuracies (segmentation: mIoU) of a finished run as fractions, and its failed sanity checks.

    With an evaluation (eval.json) of the run's final weights (and, given ``settings``, made with them), every
    column including natural comes from it, so that natural and robust accuracy are measured on the same images;
    without one, natural is the final test accuracy (mIoU). An evaluation of other weights or settings is not
    used: its reason is in ``stale_evaluation``. A file that cannot be read is a :class:`SamatError` naming it.
    """
    try:
        final = json.loads(run.final.read_text())
        results: dict[str, Any] = {NATURAL: float(final.get("test_miou", final["test_acc"]))}
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError, ValueError) as err:
        raise SamatError(f"{run.final} is not a finished run's summary ({type(err).__name__}: {err}): train the "
                         "run again (samat train --overwrite)") from None
    evaluation = read_evaluation(run.path / "eval.json")
    if evaluation is None:
        return results
    problem = evaluation_problem(evaluation, final, settings)
    if problem:
        results["stale_evaluation"] = problem
        return results
    # what each column reports: segmentation mIoU; text natural accuracy and each recipe's success rate (D Table 10)
    scores = evaluation.get("table") or evaluation.get("miou") or evaluation["accuracy"]
    results.update({k: float(v) for k, v in scores.items()})
    results["failed_checks"] = [c["check"] for c in evaluation.get("sanity", []) if not c["passed"]]
    return results


def evaluation_problem(evaluation: dict, final: dict, settings: dict[str, Any] | None) -> str:
    """Why an evaluation does not belong to a run's final weights and the experiment's settings ("" if it does)."""
    weights = final.get("provenance", {}).get("inputs", {}).get("weights", {})
    if not isinstance(weights, dict) or recorded_weights(evaluation) != weights.get("sha256"):
        return "eval.json attacked other weights than the final model.pt (evaluate it again: samat experiment run)"
    if settings is not None and evaluation.get("settings") != settings:
        return (f"eval.json was made with {evaluation.get('settings')}, the experiment asks for {settings} "
                "(samat eval --overwrite redoes it)")
    return ""


def missing_columns(exp: Experiment, run: RunDir) -> list[str]:
    """The experiment's attack columns that the run's evaluation lacks (all of them without a valid one)."""
    wanted = list(exp.attacks)
    if not wanted or not run.finished:
        return wanted
    evaluation = read_evaluation(run.path / "eval.json")
    try:
        final = json.loads(run.final.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return wanted
    if evaluation is None or evaluation_problem(evaluation, final, exp.eval_settings):
        return wanted
    done = evaluation.get("table") or evaluation.get("miou") or evaluation.get("correct", {})
    return [c for c in wanted if c not in done]


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean (None without values) and sample standard deviation (None with fewer than two)."""
    mean = sum(values) / len(values) if values else None
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def report_inputs(exp: Experiment) -> dict[str, Any]:
    """What a report is computed from: the experiment file, and each finished run's weights (their SHA-256,
    as its final.json records them); ``counted``: whether the run was trained as the experiment asks (stale
    runs are not counted)."""
    runs = []
    for spec in exp.runs:
        run = RunDir(spec.run_dir)
        weights = None
        if run.finished:
            try:
                weights = json.loads(run.final.read_text()).get("provenance", {}).get("inputs", {}).get("weights")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                weights = None
        runs.append({"run": str(spec.run_dir), "finished": run.finished, "counted": trained_as_asked(spec),
                     "weights": weights})
    return {"experiment": str(exp.source), "runs": runs}


TEXT_DETAILS = (("accuracy_under_attack", "accuracy under attack (%)", 100.0),
                ("average_queries", "queries per sentence", 1.0),
                ("average_words_changed", "words changed (successful attacks)", 1.0),
                ("average_words_changed_percent", "words changed (%)", 1.0))


def text_attack_details(exp: Experiment) -> list[dict[str, Any]]:
    """Per method and text attack column, TextAttack's other metrics (accuracy under attack, queries per sentence,
    words changed) as mean and std over the finished seeds whose evaluation counts (see :func:`run_results`)."""
    columns = list(exp.attacks)
    rows = []
    for label in exp.labels:
        for column in columns:
            values: dict[str, list[float]] = {key: [] for key, _, _ in TEXT_DETAILS}
            for run in exp.finished(label):
                if column not in run_results(run, exp.eval_settings):
                    continue
                attack = (read_evaluation(run.path / "eval.json") or {}).get("attacks", {}).get(column, {})
                for key, _, scale in TEXT_DETAILS:
                    if isinstance(attack.get(key), int | float):
                        values[key].append(scale * attack[key])
            rows.append({"label": label, "column": column,
                         **{key: dict(zip(("mean", "std"), mean_std(v), strict=True)) | {"n": len(v)}
                            for key, v in values.items()}})
    return rows
