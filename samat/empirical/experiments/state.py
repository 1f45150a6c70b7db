"""Where each run of a grid stands, for ``samat experiment status``.

new (nothing yet), partial (resumable), running (someone holds its lock: who, where, which job), queued or starting
(the latest job launched for it waits, or has just started), failed (the last try in a grid failed, with its reason;
or that job ended and the run is not finished), finished (trained as the experiment asks; with its evaluation's
coverage and its job's final state), stale (trained with another configuration than the experiment asks for now),
unreadable (its record is corrupt).
"""

from __future__ import annotations

from dataclasses import dataclass

from samat.core.errors import SamatError
from samat.empirical.experiments.grid import UNREADABLE, Experiment, RunSpec, staleness
from samat.empirical.experiments.launch import GONE, QUEUED
from samat.empirical.experiments.results import missing_columns, replaced_weights
from samat.empirical.training.runs import RunDir


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
    failure = run.read_failure()
    if run.finished and failure is None:
        done = f"job {job[0]} {job[1]}" if job is not None else ""
        return RunState(spec, "finished", "; ".join(part for part in (_evaluation(exp, run), done) if part))
    if failure is not None:
        return RunState(spec, "failed", f"{failure}; samat experiment run tries it again")
    if job is not None:
        job_id, state = job
        if state in QUEUED:
            return RunState(spec, "queued", f"job {job_id} {state}")
        if state == "RUNNING":
            return RunState(spec, "starting", f"job {job_id} RUNNING")
        if state != "UNKNOWN":
            how = "(Slurm no longer knows how)" if state == GONE else state
            left = "its checkpoint" if run.has_checkpoint else "nothing"
            return RunState(spec, "failed", f"job {job_id} ended {how} without finishing it, leaving {left}; "
                            "samat experiment run picks it up again; see the job's log")
    return RunState(spec, "partial" if run.has_checkpoint else "new",
                    f"job {job[0]}: state unknown" if job else "")


def _evaluation(exp: Experiment, run: RunDir) -> str:
    """How much of the experiment's attack columns the run's evaluation of the weights model.pt holds now has, and
    whether those are the weights the run trained."""
    try:
        replaced = replaced_weights(run, run.read_final())
    except (SamatError, OSError, ValueError, AttributeError):
        replaced = ""  # an unreadable final.json: said by the report, which cannot count the run
    wanted = len(exp.attacks)
    if not wanted:
        return replaced
    try:
        missing = missing_columns(exp, run)
    except SamatError as err:
        return f"its eval.json cannot be read: {err}"
    done = f"evaluated: {wanted - len(missing)}/{wanted} attack columns"
    done = done if not missing else f"{done}; samat experiment run evaluates the rest"
    return f"{done}; {replaced}" if replaced else done
