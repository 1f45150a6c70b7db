"""A grid as a job array: one task per unfinished run, through submitit (optional: ``pip install samat[slurm]``).

``submit`` sends the array to Slurm (or, for trying it out and for the tests, to submitit's local executor, which
runs the tasks as background processes on this machine) and records it in ``<runs_dir>/<name>/launch.json``.
Each task runs :func:`run_task`: it loads the experiment again from its file, claims its run by taking the run's
lock (:mod:`.runner`), trains and evaluates it. A task whose run is held by another process (an earlier array,
or a ``samat experiment run`` on another node) leaves it alone, so no run is trained twice. ``job_states`` tells
``samat experiment status`` which runs are queued, and which tasks ended without finishing their run.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ParameterError, SamatError
from core.numbers import is_int
from core.results import read_json, write_json
from empirical.experiments.grid import Experiment, load_experiment, trained_as_asked
from empirical.experiments.results import missing_columns
from empirical.experiments.runner import run_experiment
from empirical.training.runs import RunDir

LAUNCHERS = ("slurm", "local")
MIN_MEM_GB = 1 / 1024  # submitit asks Slurm for int(GB * 1024) MB: less would be --mem=0, all of a node's memory
QUEUED = ("PENDING", "REQUEUED", "CONFIGURING", "RESIZING", "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED")
_TIME = re.compile(r"(?:(\d+)-)?(\d+):(\d{1,2})(?::(\d{1,2}))?")


def parse_time(text: str) -> int:
    """A Slurm time limit in minutes, from minutes ("240") or [days-]hours:minutes[:seconds] ("4:00:00")."""
    text = text.strip()
    if text.isdigit() and int(text) >= 1:
        return int(text)
    m = _TIME.fullmatch(text)
    if m:
        days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
        total = days * 1440 + hours * 60 + minutes + (1 if seconds else 0)
        if total >= 1:
            return total
    raise ParameterError("--time", text, "minutes (240) or [days-]hours:minutes[:seconds] (4:00:00, 1-12:00)")


@dataclass(frozen=True)
class Resources:
    """What each task asks the cluster for, in the words of sbatch."""

    time_min: int = 240
    gpus: int = 1  # GPUs per task (--gpus-per-node of a one-task node share)
    cpus: int = 8  # --cpus-per-task
    mem_gb: float | None = None  # --mem; None: the partition's default
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    max_parallel: int | None = None  # --array=...%N: at most N tasks at once
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Each request in its range, named by its flag: checked before anything is submitted."""
        def whole(value: Any, least: int) -> bool:
            return is_int(value) and value >= least

        checks = (
            ("--time", self.time_min, whole(self.time_min, 1), "a time limit of at least 1 minute"),
            ("--gpus", self.gpus, whole(self.gpus, 0), "an integer >= 0 (GPUs per task)"),
            ("--cpus", self.cpus, whole(self.cpus, 1), "an integer >= 1 (CPUs per task)"),
            ("--mem", self.mem_gb, self.mem_gb is None or (isinstance(self.mem_gb, int | float)
                                                           and not isinstance(self.mem_gb, bool)
                                                           and MIN_MEM_GB <= self.mem_gb < math.inf),
             "a finite number of GB >= 1/1024 (1 MB; Slurm reads 0 as all of a node's memory)"),
            ("--max-parallel", self.max_parallel, self.max_parallel is None or whole(self.max_parallel, 1),
             "an integer >= 1 (tasks at once)"),
        )
        for flag, value, ok, valid in checks:
            if not ok:
                raise ParameterError(flag, value, valid)

    def parameters(self, launcher: str, name: str) -> dict[str, Any]:
        """submitit's parameters: the common ones, and the slurm_* ones for Slurm."""
        params: dict[str, Any] = {"timeout_min": self.time_min, "nodes": 1, "tasks_per_node": 1, "name": name}
        if launcher == "local":
            return params | ({"gpus_per_node": self.gpus} if self.gpus else {})
        params |= {"gpus_per_node": self.gpus, "cpus_per_task": self.cpus}
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(self, key):
                params[f"slurm_{key}"] = getattr(self, key)
        if self.max_parallel:
            params["slurm_array_parallelism"] = self.max_parallel
        return params | self.extra


@dataclass(frozen=True)
class GridRef:
    """How a task finds its grid again: the experiment file and what the command line changed."""

    config: str
    runs_dir: str
    overrides: dict[str, Any]
    seeds: tuple[int, ...] | None
    evaluate: bool = True
    overwrite: bool = False

    def load(self) -> Experiment:
        return load_experiment(self.config, runs_dir=self.runs_dir, overrides=self.overrides, seeds=self.seeds)


def run_task(ref: GridRef, index: int) -> dict:
    """One task of the array: claim run ``index`` of the grid, train and evaluate it (see :mod:`.runner`)."""
    exp = ref.load()
    say = lambda m: print(m, flush=True)  # noqa: E731 - into the task's log file
    return run_experiment(exp, progress=False, evaluate=ref.evaluate, overwrite=ref.overwrite, only=[index],
                          log=say)[0]


def _submitit():
    try:
        import submitit  # optional: only the launcher needs it
    except ImportError:
        raise SamatError("--launcher needs submitit: pip install 'samat[slurm]' (or pip install submitit)") from None
    return submitit


def record_path(exp: Experiment) -> Path:
    return exp.runs[0].run_dir.parent / "launch.json"


def submit(exp: Experiment, ref: GridRef, *, launcher: str, resources: Resources, folder: Path | None = None,
           log=print) -> list:
    """Submit one task per run that is not finished as asked; returns submitit's jobs (none if all are done)."""
    if launcher not in LAUNCHERS:
        raise ParameterError("--launcher", launcher, "one of here, " + ", ".join(LAUNCHERS))
    submitit = _submitit()
    todo = [i for i, spec in enumerate(exp.runs)
            if not trained_as_asked(spec) or (ref.evaluate and missing_columns(exp, RunDir(spec.run_dir)))]
    if not todo:
        log(f"{exp.name}: every run is finished; nothing to submit")
        return []
    folder = Path(folder or exp.runs[0].run_dir.parent / "jobs")
    try:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=launcher)
        executor.update_parameters(**resources.parameters(launcher, f"samat-{exp.name}"))
        jobs = executor.map_array(run_task, [ref] * len(todo), todo)
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as err:  # no sbatch, a rejected job
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise SamatError(f"could not submit {exp.name} to {launcher}: {reason}") from None
    record = {"launcher": launcher, "folder": str(folder.resolve()),
              "tasks": [{"run": str(exp.runs[i].run_dir), "job": job.job_id, "pid": _pid(job)}
                        for i, job in zip(todo, jobs, strict=True)]}
    write_json(record_path(exp), record, inputs={"experiment": str(exp.source), "resources": vars(resources)},
               indent=2)
    log(f"{exp.name}: submitted {len(jobs)} task(s) to {launcher} (jobs {jobs[0].job_id}"
        + (f" ... {jobs[-1].job_id}" if len(jobs) > 1 else "") + f"); logs in {folder}/; follow them with "
        f"samat experiment status {ref.config}")
    return jobs


def _pid(job) -> int | None:
    process = getattr(job, "_process", None)  # the local executor's job controller
    return process.pid if process is not None else None


def job_states(exp: Experiment) -> dict[str, tuple[str, str]]:
    """Run folder -> (job id, state) for the runs of the last launch (empty without one). States as Slurm names
    them (PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT...); for the local executor FINISHED, RUNNING or ENDED."""
    path = record_path(exp)
    if not path.exists():
        return {}
    try:
        record = read_json(path)
        tasks, launcher, folder = record["tasks"], record["launcher"], Path(record["folder"])
    except (OSError, ValueError, KeyError, TypeError):
        raise SamatError(f"{path} is corrupt: delete it (it only records the last launch)") from None
    states = {}
    for task in tasks:
        states[task["run"]] = (task["job"], _state(launcher, folder, task))
    return states


def _state(launcher: str, folder: Path, task: dict) -> str:
    if launcher == "local":
        job_folder = folder / str(task["job"]).split("_")[0]
        if any(job_folder.glob(f"{task['job']}*_result.pkl")):
            return "FINISHED"
        pid = task.get("pid")
        try:
            os.kill(int(pid), 0)
            return "RUNNING"
        except (TypeError, ValueError, OSError):
            return "ENDED"
    quiet = logging.getLogger("submitit")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # without sacct submitit warns on every call; the state is then UNKNOWN
    try:
        return str(_submitit().SlurmJob(folder=folder / "%j", job_id=str(task["job"])).state)
    except Exception:  # noqa: BLE001 - sacct missing or failing: the state is unknown, not an error
        return "UNKNOWN"
    finally:
        quiet.setLevel(level)
