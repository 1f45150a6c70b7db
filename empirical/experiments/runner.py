"""Running a grid: train every unfinished run (resuming interrupted ones), then evaluate it."""

from __future__ import annotations

import json
from collections.abc import Callable

from empirical.evaluation.columns import column_specs
from empirical.evaluation.run import evaluate_path
from empirical.experiments.grid import Experiment, RunSpec
from empirical.training.loop import train
from empirical.training.runs import RunDir
from empirical.training.segmentation import backbone_note
from empirical.training.setup import load_data

Log = Callable[[str], None]


def evaluate_run(exp: Experiment, spec: RunSpec, *, progress: bool = True, log: Log = print) -> dict | None:
    """Evaluate a finished run on the experiment's attack columns (what eval.json already has is kept)."""
    if not column_specs(exp.columns):
        return None
    return evaluate_path(spec.run_dir, list(exp.columns), n_eval=exp.n_eval, seed=exp.eval_seed,
                         device=spec.config.device, data_dir=spec.config.data_dir, progress=progress, log=log)


def run_experiment(exp: Experiment, *, progress: bool = True, evaluate: bool = True, log: Log = print) -> list[dict]:
    """Train every unfinished run (resuming interrupted ones), then evaluate it on the experiment's attack
    columns; finished runs and finished evaluations are skipped, not redone."""
    outcomes, cache = [], {}
    todo = [r for r in exp.runs if not RunDir(r.run_dir).finished]
    log(f"{exp.name}: {len(exp.runs)} runs, {len(exp.runs) - len(todo)} already finished")
    for i, spec in enumerate(exp.runs, 1):
        run = RunDir(spec.run_dir)
        if run.finished:
            outcomes.append({"run": str(spec.run_dir), "status": "skipped (finished)"})
        else:
            key = (spec.config.dataset, spec.config.data_dir, spec.config.train_subset, spec.config.test_subset,
                   spec.config.seed, json.dumps(spec.config.gaussian, sort_keys=True))
            if key not in cache:
                cache.clear()  # keep one dataset in memory at a time
                cache[key] = load_data(spec.config)
            log(f"[{i}/{len(exp.runs)}] {spec.label}, seed {spec.config.seed} -> {spec.run_dir} ({run.status()})")
            if note := backbone_note(spec.config.model, spec.config.segmentation_spec):
                log(note)
            summary = train(spec.config, spec.run_dir, resume=True, progress=progress, data=cache[key])
            outcomes.append({"run": str(spec.run_dir), "status": "trained", "test_acc": summary["test_acc"]})
        if evaluate:
            evaluate_run(exp, spec, progress=progress, log=log)
    return outcomes
