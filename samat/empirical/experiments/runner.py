"""Running a grid: train every unfinished run (resuming interrupted ones), then evaluate it.

Several processes may run one grid at once (one per GPU, or one per node on a shared filesystem, or the tasks
of a Slurm job array): each claims a run by taking its lock, trains and evaluates it, and releases it; a run
that another process holds is skipped, so none is trained twice. A run trained with another configuration
than the experiment now asks for (stale) is never skipped as done nor silently reused: it is retrained only
with ``overwrite``.

A run that fails (an error while training or evaluating it: a diverged loss, a full disk, a CUDA error) does not
stop the grid: its one-line reason is recorded beside its folder (``runs/.<name>.failed.json``, with the
traceback), ``samat experiment status`` shows it, the next runs go on, and :func:`failures` names the failed runs
at the end (``samat experiment run`` then exits with code 1). The next ``samat experiment run`` tries them again.
Ctrl-C stops the grid.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterable

import torch

from samat.core.errors import Interrupted, SamatError
from samat.core.locks import LockHeld
from samat.empirical.evaluation.run import evaluate_run as evaluate_trained
from samat.empirical.evaluation.trained import Trained
from samat.empirical.experiments.grid import Experiment, RunSpec, staleness
from samat.empirical.experiments.results import missing_columns
from samat.empirical.training.loop import train
from samat.empirical.training.runs import CLAIM, RUN_AGAIN, RunDir
from samat.empirical.training.segmentation import backbone_note
from samat.empirical.training.setup import load_data, resolve_device

Log = Callable[[str], None]


def evaluate_run(exp: Experiment, spec: RunSpec, *, device: torch.device | None = None, progress: bool = True,
                 log: Log = print) -> dict | None:
    """Evaluate a finished run on the experiment's attack columns (what eval.json already has is kept), with the
    configuration the experiment trained it with, on ``device`` (None: the configuration's)."""
    if not exp.attacks:
        return None
    run = RunDir(spec.run_dir)
    trained = Trained(run, run.weights, spec.config)
    return evaluate_trained(trained, exp.attacks, device=device or resolve_device(spec.config.device),
                            n_eval=exp.n_eval, seed=exp.eval_seed, progress=progress, log=log)


def stale_error(exp: Experiment, stale: list[tuple[RunSpec, str]]) -> SamatError:
    shown = "; ".join(f"{spec.run_dir} ({why})" for spec, why in stale[:3]) + ("; ..." if len(stale) > 3 else "")
    return SamatError(f"{len(stale)} run(s) of {exp.name} were trained with another configuration than "
                      f"{exp.source.name} asks for now (stale): {shown}. Retrain them with --overwrite, or give the "
                      "experiment a new name (its runs go to a new folder)")


def run_experiment(exp: Experiment, *, progress: bool = True, evaluate: bool = True, overwrite: bool = False,
                   only: Iterable[int] | None = None, log: Log = print) -> list[dict]:
    """Train every unfinished run (resuming interrupted ones), then evaluate it on the experiment's attack
    columns; finished runs and finished evaluations are skipped, not redone. Runs that another process holds are
    left to it. Stale runs are an error before any work, unless ``overwrite`` (then they are retrained).
    ``only``: the indices of the runs to consider (a task of a job array takes one)."""
    indices = list(range(len(exp.runs))) if only is None else list(only)
    stale, done = [], 0
    for spec in (exp.runs[i] for i in indices):
        run = RunDir(spec.run_dir)
        why = staleness(spec) if (run.finished or run.has_checkpoint) else ""
        if why:
            stale.append((spec, why))
        done += run.finished and not why
    if stale and not overwrite:
        raise stale_error(exp, stale)
    log(f"{exp.name}: {len(indices)} runs, {done} already finished"
        + (f", {len(stale)} stale (to retrain)" if stale else ""))
    outcomes, cache = [], {}
    for i in indices:
        spec = exp.runs[i]
        run = RunDir(spec.run_dir)
        where = f"[{i + 1}/{len(exp.runs)}] {spec.label}, seed {spec.config.seed} -> {spec.run_dir}"
        try:
            with run.lock(CLAIM):
                try:
                    outcome = _claimed(exp, spec, run, where, cache, progress=progress, evaluate=evaluate,
                                       overwrite=overwrite, log=log)
                except Interrupted:
                    raise
                except Exception as err:  # noqa: BLE001 - one run's failure is recorded; the grid goes on
                    outcome = _failed(run, where, err, log)
                else:
                    run.clear_failure()
        except LockHeld as held:
            who = held.holder.describe() if held.holder else "another process"
            log(f"{where}: skipped, {who} has it")
            outcome = {"status": "skipped (held by another process)", "holder": who}
        outcomes.append({"run": str(spec.run_dir)} | outcome)
    return [_left_behind(exp, outcome, evaluate, log) for outcome in outcomes]


def _left_behind(exp: Experiment, outcome: dict, evaluate: bool, log: Log) -> dict:
    """A run skipped because another process held it, looked at again once this process is done: where that
    process has ended (killed, or failed) and left the run unfinished (or unevaluated), the run is a failure of
    the grid, said in one line, so that the command does not end as if the grid were done."""
    if outcome["status"] != "skipped (held by another process)":
        return outcome
    run = RunDir(outcome["run"])
    if run.holder() is not None:  # still at work on it: that process says how it ends
        return outcome
    if run.finished and not (evaluate and missing_columns(exp, run)):
        return outcome
    kept = "its checkpoint is kept" if run.has_checkpoint else "nothing saved"
    left = "unevaluated" if run.finished else f"{run.status()} ({kept})"
    reason = (f"left {left} by {outcome['holder']}, which stopped before finishing it; samat experiment run "
              "resumes it")
    log(f"{outcome['run']}: {reason}")
    return outcome | {"status": "failed", "reason": reason}


class RunsFailed(SamatError):
    """Some runs of a grid failed (each recorded with its reason); the others were done."""

    exit_code = 1


def failures(outcomes: list[dict]) -> RunsFailed | None:
    """The error naming the failed runs of ``run_experiment``'s outcomes (None: none failed)."""
    failed = [o for o in outcomes if o["status"] == "failed"]
    if not failed:
        return None
    shown = "; ".join(f"{o['run']} ({o['reason']})" for o in failed[:3]) + ("; ..." if len(failed) > 3 else "")
    return RunsFailed(f"{len(failed)} of {len(outcomes)} runs failed: {shown}. `samat experiment status` lists "
                      "them; `samat experiment run` tries them again")


def one_line(err: BaseException) -> str:
    """An error as one line: a SamatError's message, else its type and the first line of its message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if isinstance(err, SamatError):
        return " ".join(lines) or type(err).__name__
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _failed(run: RunDir, where: str, err: Exception, log: Log) -> dict:
    """Record why a run failed (under its lock) and say so in one line."""
    reason = one_line(err)
    details = traceback.format_exception(err)
    try:
        run.record_failure(reason, [line for chunk in details for line in chunk.rstrip().splitlines()])
    except (OSError, SamatError) as write_error:  # a full disk: the reason is still said and returned
        log(f"{where}: could not record the failure ({getattr(write_error, 'strerror', None) or write_error})")
    log(f"{where}: failed: {reason}; the grid goes on")
    return {"status": "failed", "reason": reason}


def _claimed(exp: Experiment, spec: RunSpec, run: RunDir, where: str, cache: dict, *, progress: bool,
             evaluate: bool, overwrite: bool, log: Log) -> dict:
    """One run, under its lock: (re)train it if it needs it, then evaluate it. The state is read again here: another
    process may have finished it since the grid was looked at."""
    why = staleness(spec) if (run.finished or run.has_checkpoint) else ""
    if why and not overwrite:
        raise stale_error(exp, [(spec, why)])
    outcome: dict = {"status": "skipped (finished)"}
    device = resolve_device(spec.config.device)  # once for the run's training and evaluation
    if why or not run.finished:
        key = (spec.config.dataset, spec.config.data_dir, spec.config.train_subset, spec.config.test_subset,
               spec.config.seed, json.dumps(spec.config.gaussian, sort_keys=True))
        if key not in cache:
            cache.clear()  # keep one dataset in memory at a time
            cache[key] = load_data(spec.config)
        log(f"{where} ({'stale: ' + why + '; retraining' if why else run.status()})")
        if note := backbone_note(spec.config.model, spec.config.segmentation_spec):
            log(note)
        summary = train(spec.config, run, resume=not why, overwrite=bool(why), progress=progress,
                        data=cache[key], log=log, device=device, resume_hint=RUN_AGAIN)
        outcome = {"status": "trained", "test_acc": summary["test_acc"]}
    if evaluate:
        evaluate_run(exp, spec, device=device, progress=progress, log=log)
    return outcome
