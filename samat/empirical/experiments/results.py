"""The saved results of a grid's runs, gathered: per run its accuracies (final.json, eval.json), per method the
mean and sample standard deviation over the finished seeds, beside the paper's numbers."""

from __future__ import annotations

import json
import math
from typing import Any

from samat.core.errors import SamatError
from samat.empirical.evaluation.columns import AVERAGE, NATURAL
from samat.empirical.evaluation.store import EvaluationOf, read_evaluation
from samat.empirical.experiments.grid import Experiment, Table, trained_as_asked
from samat.empirical.training.runs import RunDir, file_sha256


def collect(exp: Experiment, table: Table) -> list[dict[str, Any]]:
    """One row per label: mean, std and count over finished seeds of each column, and the paper's number. Only
    runs trained as the experiment asks count, and only evaluations of the weights their model.pt holds with the
    experiment's settings (the others are listed in ``stale_evaluations``; runs whose model.pt is not what they
    trained in ``replaced_weights``)."""
    rows = []
    for label in exp.labels:
        values: dict[str, list[float]] = {c: [] for c in table.columns}
        specs = exp.runs_for(label)
        finished = exp.finished(label)
        attacks = [c for c in table.columns if c not in (NATURAL, AVERAGE)]
        warnings: list[str] = []
        stale_evaluations: list[str] = []
        replaced: list[str] = []
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
            if "replaced_weights" in results:
                replaced.append(f"{run.name}: {results['replaced_weights']}")
        row: dict[str, Any] = {"label": label, "seeds_done": len(finished), "seeds": len(specs),
                               "failed_checks": warnings, "stale_evaluations": stale_evaluations,
                               "replaced_weights": replaced}
        paper = specs[0].paper.get(table.title, {})
        for c in table.columns:
            mean, std = mean_std(values[c])
            row[c] = {"mean": mean, "std": std, "n": len(values[c]), "paper": paper.get(c)}
        rows.append(row)
    return rows


def run_results(run: RunDir, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Accuracies (segmentation: mIoU) of a finished run as fractions, and its failed sanity checks.

    With an evaluation (eval.json) of the weights model.pt holds now (their SHA-256 is the evaluation's identity,
    with the architecture, the dataset, the attacks' parameters and, given ``settings``, the settings), every
    column including natural comes from it, so that natural and robust accuracy are measured on the same images;
    without one, natural is the final test accuracy (mIoU), if model.pt still holds the weights that training
    wrote. What is not counted says why in ``stale_evaluation``, and weights that are not the run's own in
    ``replaced_weights``. A file that cannot be read is a :class:`SamatError` naming it.
    """
    final = _final(run)
    evaluation = read_evaluation(run.path / "eval.json")
    replaced = replaced_weights(run, final)
    results: dict[str, Any] = {}
    if not replaced:
        results[NATURAL] = float(final.get("test_miou", final["test_acc"]))
    problem = "no eval.json" if evaluation is None else evaluation_problem(evaluation, run, settings)
    if problem:
        if replaced:
            results["stale_evaluation"] = (f"{replaced}; its final test accuracy is not counted either, and {problem}: "
                                           "samat experiment run (or samat eval) evaluates the weights it holds, "
                                           "samat experiment run --overwrite retrains it")
        elif evaluation is not None:
            results["stale_evaluation"] = problem
        return results
    # what each column reports: segmentation mIoU; text natural accuracy and each recipe's success rate (D Table 10)
    scores = evaluation.get("table") or evaluation.get("miou") or evaluation["accuracy"]
    results.update({k: float(v) for k, v in scores.items()})
    results["failed_checks"] = [c["check"] for c in evaluation.get("sanity", []) if not c["passed"]]
    if replaced:
        results["replaced_weights"] = f"{replaced}; its columns are those of the weights it holds"
    return results


def _final(run: RunDir) -> dict[str, Any]:
    """A finished run's final.json, checked to hold a score; a SamatError naming it otherwise."""
    try:
        final = json.loads(run.final.read_text())
        float(final.get("test_miou", final["test_acc"]))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError, ValueError, AttributeError) as err:
        raise SamatError(f"{run.final} is not a finished run's summary ({type(err).__name__}: {err}): train the "
                         "run again (samat train --overwrite)") from None
    return final


def current_weights(run: RunDir) -> str:
    """The SHA-256 of the run's model.pt now (what an evaluation must have attacked to count)."""
    try:
        return file_sha256(run.weights)
    except OSError as err:
        raise SamatError(f"cannot read {run.weights} ({err.strerror or type(err).__name__}) of a finished run: train "
                         "the run again (samat train --overwrite)") from None


def replaced_weights(run: RunDir, final: dict[str, Any]) -> str:
    """Why model.pt is not the weights the run's training wrote (their SHA-256 in final.json), or ""."""
    weights = final.get("provenance", {}).get("inputs", {}).get("weights", {})
    trained = weights.get("sha256") if isinstance(weights, dict) else None
    now = current_weights(run)
    if trained == now:
        return ""
    return (f"{run.weights.name} is not the weights this run trained (final.json records SHA-256 "
            f"{str(trained)[:12]}..., the file's is {now[:12]}...)")


def evaluation_problem(evaluation: dict, run: RunDir, settings: dict[str, Any] | None) -> str:
    """Why an evaluation is not one of the run's model.pt as it is now and of the experiment's settings ("" if it
    is): the same identity as samat eval's (:class:`~samat.empirical.evaluation.store.EvaluationOf`)."""
    cfg = run.recorded_config()
    of = EvaluationOf(run.weights, current_weights(run), str(cfg.model), str(cfg.dataset),
                      settings if settings is not None else evaluation.get("settings"))
    if why := of.mismatch(evaluation):
        return f"eval.json is not an evaluation of model.pt as it is now ({why}): samat experiment run evaluates it"
    if of.settings_differ(evaluation):
        return (f"eval.json was made with {evaluation.get('settings')}, the experiment asks for {settings} "
                "(samat eval --overwrite redoes it)")
    return ""


def missing_columns(exp: Experiment, run: RunDir) -> list[str]:
    """The experiment's attack columns that the run's evaluation lacks (all of them without a valid one)."""
    wanted = list(exp.attacks)
    if not wanted or not run.finished:
        return wanted
    evaluation = read_evaluation(run.path / "eval.json")
    if evaluation is None or evaluation_problem(evaluation, run, exp.eval_settings):
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
    """What a report is computed from: the experiment file, and each finished run's weights (the SHA-256 of its
    model.pt as it is now); ``counted``: whether the run was trained as the experiment asks (stale runs are not
    counted)."""
    runs = []
    for spec in exp.runs:
        run = RunDir(spec.run_dir)
        weights = None
        if run.finished and run.weights.exists():
            weights = {"file": run.weights.name, "sha256": current_weights(run)}
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
