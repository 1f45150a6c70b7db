"""Where each run of a grid stands, for ``samat experiment status``.

new (nothing yet), partial (resumable), running (someone holds its lock: who, where, which job), queued (a job of
the last launch waits for it), failed (that job ended and the run is not finished), finished (trained as the
experiment asks; with its evaluation's coverage), stale (trained with another configuration than the experiment
asks for now), unreadable (its record is corrupt).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import SamatError
from empirical.evaluation.columns import column_specs
from empirical.experiments.grid import UNREADABLE, Experiment, RunSpec, staleness
from empirical.experiments.launch import QUEUED
from empirical.experiments.results import missing_columns
from empirical.training.runs import RunDir


@dataclass(frozen=True)
class RunState:
    spec: RunSpec
    status: str
    detail: str = ""


def run_states(exp: Experiment, jobs: dict[str, tuple[str, str]] | None = None) -> list[RunState]:
    """The state of every run of ``exp``; ``jobs``: run folder -> (job id, state) of the last launch."""
    return [run_state(exp, spec, (jobs or {}).get(str(spec.run_dir))) for spec in exp.runs]


def run_state(exp: Experiment, spec: RunSpec, job: tuple[str, str] | None = None) -> RunState:
    run = RunDir(spec.run_dir)
    holder = run.holder()
    if holder is not None:
        return RunState(spec, "running", holder.describe())
    why = staleness(spec) if (run.finished or run.has_checkpoint) else ""
    if why.startswith(UNREADABLE):
        return RunState(spec, "unreadable", why)
    if why:
        return RunState(spec, "stale", why + "; samat experiment run --overwrite retrains it")
    if run.finished:
        return RunState(spec, "finished", _evaluation(exp, run))
    if job is not None:
        job_id, state = job
        if state in QUEUED:
            return RunState(spec, "queued", f"job {job_id}")
        if state == "RUNNING":
            return RunState(spec, "starting", f"job {job_id}")
        if state != "UNKNOWN":
            return RunState(spec, "failed", f"job {job_id} ended {state} without finishing it; see its log")
    return RunState(spec, "partial" if run.has_checkpoint else "new",
                    f"job {job[0]}: state unknown" if job else "")


def _evaluation(exp: Experiment, run: RunDir) -> str:
    """How much of the experiment's attack columns the run's evaluation holds."""
    wanted = len(column_specs(exp.columns))
    if not wanted:
        return ""
    try:
        missing = missing_columns(exp, run)
    except SamatError as err:
        return f"its eval.json cannot be read: {err}"
    done = f"evaluated: {wanted - len(missing)}/{wanted} attack columns"
    return done if not missing else f"{done}; samat experiment run evaluates the rest"
