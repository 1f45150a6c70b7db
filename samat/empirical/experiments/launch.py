"""A grid as a job array: one task per unfinished run, through submitit (optional: ``pip install samat[slurm]``).

``submit`` sends the array to Slurm (or, for trying it out and for the tests, to submitit's local executor, which
runs the tasks as background processes on this machine) and records the latest task of each run in
``<runs_dir>/<name>/launch.json``. The tasks import the source tree that submitted them. Each task runs
:func:`run_task`: it loads the experiment again from its file, claims its run by taking the run's lock
(:mod:`.runner`), trains and evaluates it. A task whose run is held by another process (an earlier array, or a
``samat experiment run`` on another node) leaves it alone, so no run is trained twice. ``job_states`` tells
``samat experiment status`` the state of each run's task as Slurm reports it (``squeue``, then ``sacct``): queued,
running, or how it ended.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from samat.core.errors import ParameterError, SamatError
from samat.core.numbers import is_int
from samat.core.results import read_json, write_json
from samat.empirical.experiments.grid import Experiment, load_experiment, trained_as_asked
from samat.empirical.experiments.results import missing_columns
from samat.empirical.experiments.runner import failures, run_experiment
from samat.empirical.training.runs import RunDir

LAUNCHERS = ("slurm", "local")
MIN_MEM_GB = 1 / 1024  # submitit asks Slurm for int(GB * 1024) MB: less would be --mem=0, all of a node's memory
GONE = "GONE"  # a Slurm job that the controller no longer knows (and no accounting records)
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
    """One task of the array: claim run ``index`` of the grid, train and evaluate it (see :mod:`.runner`); a
    failed run (recorded with its reason) fails the task."""
    _use_task_cpus()
    exp = ref.load()
    say = lambda m: print(m, flush=True)  # noqa: E731 - into the task's log file
    outcomes = run_experiment(exp, progress=False, evaluate=ref.evaluate, overwrite=ref.overwrite, only=[index],
                              log=say)
    if failed := failures(outcomes):
        raise failed
    return outcomes[0]


def _use_task_cpus() -> None:
    """torch's CPU threads in a task: SAMAT_THREADS where the submitting shell set it (checked there), else the
    CPUs the task was given (SLURM_CPUS_PER_TASK): where Slurm does not bind tasks to cores, torch would start one
    thread per core of the whole node."""
    wanted = os.environ.get("SAMAT_THREADS", "").strip() or os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if wanted.isdigit() and int(wanted) >= 1:
        torch.set_num_threads(int(wanted))


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
    earlier = _recorded_tasks(exp)  # before submitting: a corrupt record fails here, with nothing sent
    record_path(exp).parent.mkdir(parents=True, exist_ok=True)  # the record's folder, where no run has started yet
    try:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=launcher)
        executor.update_parameters(**resources.parameters(launcher, f"samat-{exp.name}"))
        with _tasks_import_this_code():
            jobs = executor.map_array(run_task, [ref] * len(todo), todo)
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as err:  # no sbatch, a rejected job
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise SamatError(f"could not submit {exp.name} to {launcher}: {reason}") from None
    tasks = {str(exp.runs[i].run_dir): {"run": str(exp.runs[i].run_dir), "job": job.job_id, "pid": _pid(job),
                                        "launcher": launcher, "folder": str(folder.resolve())}
             for i, job in zip(todo, jobs, strict=True)}
    record = {"tasks": [task for run, task in earlier.items() if run not in tasks] + list(tasks.values())}
    write_json(record_path(exp), record, inputs={"experiment": str(exp.source), "resources": vars(resources)},
               indent=2)
    which = (f"tasks to {launcher} (jobs {jobs[0].job_id} ... {jobs[-1].job_id})" if len(jobs) > 1
             else f"task to {launcher} (job {jobs[0].job_id})")
    log(f"{exp.name}: submitted {len(jobs)} {which}; logs in {folder}/; follow them with "
        f"samat experiment status {ref.config}")
    return jobs


@contextlib.contextmanager
def _tasks_import_this_code():
    """While submitting, this source tree comes first on PYTHONPATH, which sbatch (--export=ALL, its default) and
    the local executor pass on to the tasks: they import the code that submitted them, not another installation
    of samat that the job's Python would find first."""
    root = str(Path(sys.modules[__name__.split(".")[0]].__file__).resolve().parents[1])
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([root, *([before] if before else [])])
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def _pid(job) -> int | None:
    process = getattr(job, "_process", None)  # the local executor's job controller
    return process.pid if process is not None else None


def _recorded_tasks(exp: Experiment) -> dict[str, dict]:
    """Run folder -> its latest task (job id, launcher, job folder) from launch.json; empty without one."""
    path = record_path(exp)
    if not path.exists():
        return {}
    try:
        record = read_json(path)
        tasks = {}
        for task in record["tasks"]:  # records before the merge kept the launcher and folder once, for all
            task = {"launcher": record.get("launcher"), "folder": record.get("folder")} | task
            if task["launcher"] not in LAUNCHERS or not isinstance(task["folder"], str):
                raise ValueError(task)
            tasks[str(task["run"])] = task | {"job": str(task["job"])}
    except (OSError, ValueError, KeyError, TypeError):
        raise SamatError(f"{path} is corrupt: delete it (it only records the launched jobs)") from None
    return tasks


def job_states(exp: Experiment) -> dict[str, tuple[str, str]]:
    """Run folder -> (job id, state) of the latest task launched for each run (empty without a launch). States
    as Slurm names them (PENDING, RUNNING, COMPLETED, CANCELLED, FAILED, TIMEOUT...), GONE for a job that Slurm
    no longer knows (ended before MinJobAge, on a cluster without accounting), UNKNOWN where Slurm cannot be
    asked; for the local executor FINISHED, RUNNING or ENDED."""
    tasks = _recorded_tasks(exp)
    slurm = slurm_states([t["job"] for t in tasks.values() if t["launcher"] == "slurm"])
    return {run: (task["job"], slurm.get(task["job"], "UNKNOWN") if task["launcher"] == "slurm"
                  else _local_state(Path(task["folder"]), task)) for run, task in tasks.items()}


def _local_state(folder: Path, task: dict) -> str:
    job_folder = folder / str(task["job"]).split("_")[0]
    if any(job_folder.glob(f"{task['job']}*_result.pkl")):
        return "FINISHED"
    pid = task.get("pid")
    try:
        os.kill(int(pid), 0)
        return "RUNNING"
    except (TypeError, ValueError, OSError):
        return "ENDED"


_ARRAY = re.compile(r"(\d+)_\[([\d,\-]+)(?:%\d+)?\]")  # 12_[0-3,7%2]: tasks of an array not started yet


def _job_ids(text: str) -> list[str]:
    """The job ids in one id as squeue and sacct write it: 12, 12_3, or a range of array tasks, 12_[0-3,7%2]."""
    m = _ARRAY.fullmatch(text)
    if not m:
        return [text]
    ids = []
    for part in m.group(2).split(","):
        first, _, last = part.partition("-")
        ids += [f"{m.group(1)}_{i}" for i in range(int(first), int(last or first) + 1)]
    return ids


def _ask_slurm(command: list[str]) -> list[tuple[str, str]] | None:
    """(job id, state) lines of squeue or sacct; None when the command is missing or fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    rows = []
    for line in done.stdout.splitlines():
        job, _, state = line.strip().partition("|")
        if job and state:
            rows += [(one, state.split()[0]) for one in _job_ids(job)]  # "CANCELLED by 0": CANCELLED
    return rows


def slurm_states(jobs: list[str]) -> dict[str, str]:
    """The state of each Slurm job (array tasks as 12_3): from squeue while the controller knows it (queued,
    running, and ended within its MinJobAge), else from sacct (the accounting database), else GONE (Slurm
    answered, but knows it no more); jobs that cannot be asked (no squeue, no controller) are left out."""
    if not jobs:
        return {}
    arrays = sorted({job.split("_")[0] for job in jobs})
    states: dict[str, str] = {}
    for array in arrays:  # one at a time: squeue fails on the whole list when one id is unknown
        rows = _ask_slurm(["squeue", "-h", "-r", "--states=all", "-j", array, "-o", "%i|%T"])
        if rows is None:  # an array the controller no longer knows, or no Slurm to ask
            if not _slurm_answers():
                return states
            continue
        states |= dict(rows)
    missing = [job for job in jobs if job not in states]
    if missing:
        rows = _ask_slurm(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(sorted(set(
            job.split("_")[0] for job in missing)))]) or []
        states |= {job: state for job, state in rows if job in missing}
        states |= {job: GONE for job in missing if job not in states}
    return states


def _slurm_answers() -> bool:
    """Whether the Slurm controller answers (scontrol ping)."""
    try:
        done = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and "UP" in done.stdout
