"""The job-array launcher (samat.empirical.experiments.launch) without a cluster: what ``submit`` asks submitit for
(a fake executor records it: the runs left to do, the resources, the job folder, this tree on PYTHONPATH), what it
records in launch.json and says; a task's run; the states ``status`` reads back (local processes, squeue and sacct
answers); Slurm time limits and requests. The real executors run in tests/cli/test_grid.py (submitit's local
executor) and tests/cli/test_slurm.py (a single-node Slurm)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from samat.core.errors import ParameterError, SamatError
from samat.empirical.experiments import launch
from samat.empirical.experiments.launch import GridRef, Resources, job_states, parse_time, record_path, submit
from tests.empirical.helpers import REPO, write_grid


class FakeExecutor:
    """submitit.AutoExecutor as far as ``submit`` uses it; what it was given is kept in ``made``. Job ids are
    ARRAY_INDEX, as Slurm's array tasks; ``fail`` raises from map_array instead."""

    made: list[FakeExecutor] = []
    fail: Exception | None = None
    array = 40

    def __init__(self, folder, cluster):
        self.folder, self.cluster, self.parameters, self.mapped = folder, cluster, None, None
        FakeExecutor.made.append(self)

    def update_parameters(self, **parameters):
        self.parameters = parameters

    def map_array(self, fn, refs, indices):
        if FakeExecutor.fail is not None:
            raise FakeExecutor.fail
        self.mapped = SimpleNamespace(fn=fn, refs=list(refs), indices=list(indices),
                                      pythonpath=os.environ.get("PYTHONPATH"))
        FakeExecutor.array += 1
        if self.cluster == "slurm":  # a Slurm job has no process of its own here
            return [SimpleNamespace(job_id=f"{FakeExecutor.array}_{i}") for i in range(len(self.mapped.indices))]
        return [SimpleNamespace(job_id=f"{FakeExecutor.array}_{i}", _process=SimpleNamespace(pid=1000 + i))
                for i in range(len(self.mapped.indices))]


@pytest.fixture
def fake_submitit(monkeypatch):
    FakeExecutor.made, FakeExecutor.fail, FakeExecutor.array = [], None, 40
    monkeypatch.setattr(launch, "_submitit", lambda: SimpleNamespace(AutoExecutor=FakeExecutor))
    return FakeExecutor


@pytest.fixture
def grid(tmp_path, monkeypatch):
    """A grid of four seeds, none finished; run 0 counts as trained and evaluated, run 1 as trained but missing
    a column, runs 2 and 3 as untrained (whatever is on disk)."""
    config = write_grid(tmp_path, 'name = "array"\nseeds = [0, 1, 2, 3]\ncolumns = ["natural", "fgsm_linf@0.1"]')
    ref = GridRef(str(config), str(tmp_path / "runs"), {}, None)
    exp = ref.load()

    def missing_columns(e, run):
        assert e is exp
        return ["fgsm_linf@0.1"] if run.path == exp.runs[1].run_dir else []

    monkeypatch.setattr(launch, "trained_as_asked", lambda spec: spec.run_dir in (exp.runs[0].run_dir,
                                                                                  exp.runs[1].run_dir))
    monkeypatch.setattr(launch, "missing_columns", missing_columns)
    return exp, ref


def test_submit_sends_the_runs_left_to_do_with_their_resources_and_records_them(grid, fake_submitit, tmp_path,
                                                                                  monkeypatch):
    """Also where no run has started yet, so that the grid's folder does not exist (tasks queued on a cluster, the
    jobs' logs elsewhere): the record is written all the same."""
    exp, ref = grid
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    resources = Resources(time_min=30, gpus=0, cpus=2, mem_gb=4, partition="short")
    said: list[str] = []
    jobs = submit(exp, ref, launcher="slurm", resources=resources, log=said.append)
    executor, = fake_submitit.made
    jobs_folder = tmp_path / "runs" / "array" / "jobs"
    assert (Path(executor.folder), executor.cluster) == (jobs_folder / "%j", "slurm")
    assert executor.parameters == resources.parameters("slurm", "samat-array")
    assert executor.mapped.fn is launch.run_task and executor.mapped.refs == [ref] * 3
    assert executor.mapped.indices == [1, 2, 3]  # run 0 is done; run 1 lacks a column, runs 2 and 3 their training
    assert executor.mapped.pythonpath == f"{REPO}{os.pathsep}/elsewhere" and os.environ["PYTHONPATH"] == "/elsewhere"
    assert [j.job_id for j in jobs] == ["41_0", "41_1", "41_2"]
    assert record_path(exp) == tmp_path / "runs" / "array" / "launch.json"
    record = json.loads(record_path(exp).read_text())
    assert record["tasks"] == [{"run": str(exp.runs[i].run_dir), "job": f"41_{k}", "pid": None,
                                "launcher": "slurm", "folder": str(jobs_folder.resolve())}
                               for k, i in enumerate((1, 2, 3))]
    inputs = record["provenance"]["inputs"]
    assert inputs["experiment"] == str(exp.source) and inputs["resources"]["partition"] == "short"
    assert said == [f"array: submitted 3 tasks to slurm (jobs 41_0 ... 41_2); logs in {jobs_folder}/; follow them "
                    f"with samat experiment status {ref.config}"]


def test_a_second_submission_keeps_the_tasks_it_does_not_replace(grid, fake_submitit, tmp_path):
    exp, ref = grid
    submit(exp, ref, launcher="local", resources=Resources(), log=lambda m: None)
    said: list[str] = []
    only_training = GridRef(ref.config, ref.runs_dir, {}, None, evaluate=False)  # run 1's column is not asked for
    submit(exp, only_training, launcher="local", resources=Resources(), folder=tmp_path / "elsewhere",
           log=said.append)
    assert fake_submitit.made[-1].mapped.indices == [2, 3]
    assert Path(fake_submitit.made[-1].folder) == tmp_path / "elsewhere" / "%j"
    assert fake_submitit.made[-1].parameters == Resources().parameters("local", "samat-array")
    tasks = {t["run"]: t for t in json.loads(record_path(exp).read_text())["tasks"]}
    assert [tasks[str(exp.runs[i].run_dir)]["job"] for i in (1, 2, 3)] == ["41_0", "42_0", "42_1"]
    assert [tasks[str(exp.runs[i].run_dir)]["pid"] for i in (1, 2, 3)] == [1000, 1000, 1001]
    assert said[0].startswith("array: submitted 2 tasks to local (jobs 42_0 ... 42_1); logs in ")


def test_nothing_left_to_do_submits_nothing(grid, fake_submitit, monkeypatch):
    exp, ref = grid
    monkeypatch.setattr(launch, "trained_as_asked", lambda spec: True)
    monkeypatch.setattr(launch, "missing_columns", lambda e, run: [])
    said: list[str] = []
    assert submit(exp, ref, launcher="slurm", resources=Resources(), log=said.append) == []
    assert said == ["array: every run is finished; nothing to submit"] and fake_submitit.made == []
    assert not record_path(exp).exists()


@pytest.mark.parametrize("error, reason", [
    (RuntimeError("sbatch: error: Batch job submission failed\nInvalid partition name specified"),
     "Invalid partition name specified"),
    (OSError(), "OSError"),
    (subprocess.CalledProcessError(1, "sbatch"), "Command 'sbatch' returned non-zero exit status 1."),
])
def test_a_submission_that_fails_is_one_line_and_records_nothing(grid, fake_submitit, monkeypatch, error, reason):
    exp, ref = grid
    fake_submitit.fail = error
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    with pytest.raises(SamatError) as raised:
        submit(exp, ref, launcher="slurm", resources=Resources(), log=lambda m: None)
    assert str(raised.value) == f"could not submit array to slurm: {reason}"
    assert not record_path(exp).exists() and os.environ["PYTHONPATH"] == "/elsewhere"


def test_a_corrupt_record_or_an_unknown_launcher_stops_before_submitting(grid, fake_submitit):
    exp, ref = grid
    with pytest.raises(ParameterError, match=r"^--launcher=pbs is invalid: --launcher must be one of here, slurm, "
                                             r"local"):
        submit(exp, ref, launcher="pbs", resources=Resources())
    record_path(exp).parent.mkdir(parents=True)
    for text in ("not json", '{"tasks": [{"run": "x", "job": 1, "launcher": "pbs", "folder": "f"}]}',
                 '{"tasks": [{"run": "x", "job": 1, "launcher": "local", "folder": 3}]}', '{"tasks": [{}]}'):
        record_path(exp).write_text(text)
        with pytest.raises(SamatError, match=rf"^{record_path(exp)} is corrupt: delete it \(it only records the "):
            submit(exp, ref, launcher="local", resources=Resources())
    assert fake_submitit.made == []


def test_without_submitit_the_launcher_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    with pytest.raises(SamatError, match=r"^--launcher needs submitit: pip install 'samat\[slurm\]' \(or pip install "
                                         r"submitit\)$"):
        launch._submitit()


def test_a_grid_of_one_run_is_submitted_and_recorded_beside_it(tmp_path, fake_submitit):
    config = write_grid(tmp_path, 'name = "single"\nseeds = [0]')
    ref = GridRef(str(config), str(tmp_path / "runs"), {}, None, evaluate=False)
    exp = ref.load()
    said = []
    job, = submit(exp, ref, launcher="local", resources=Resources(), log=said.append)
    assert Path(fake_submitit.made[0].folder) == tmp_path / "runs" / "single" / "jobs" / "%j"
    assert record_path(exp) == tmp_path / "runs" / "single" / "launch.json" and record_path(exp).exists()
    assert said == [f"single: submitted 1 task to local (job {job.job_id}); logs in "  # one job: no range
                    f"{tmp_path / 'runs' / 'single' / 'jobs'}/; follow them with samat experiment status {config}"]


def test_the_job_id_of_a_task_without_a_process_has_no_pid():
    assert launch._pid(SimpleNamespace(job_id="5")) is None and launch._pid(SimpleNamespace(_process=None)) is None
    assert launch._pid(SimpleNamespace(_process=SimpleNamespace(pid=42))) == 42


def test_a_task_runs_its_one_run_and_fails_with_it(grid, monkeypatch):
    """A task loads the grid again (with the command line's changes), runs only its index with the submission's
    evaluate and overwrite, logs to its output, and fails when its run failed."""
    exp, _ = grid
    ref = GridRef(str(exp.source), str(Path(exp.runs[0].run_dir).parent.parent), {"epochs": 3}, (5, 6),
                  evaluate=False, overwrite=True)
    loaded = ref.load()
    assert [s.config.epochs for s in loaded.runs] == [3, 3] and [s.config.seed for s in loaded.runs] == [5, 6]
    asked = []

    def run_experiment(e, **kw):
        asked.append((e, kw))
        kw["log"]("a line of the task")
        return [outcome]

    printed = []
    monkeypatch.setattr(launch, "run_experiment", run_experiment)
    monkeypatch.setattr(launch, "print", lambda *a, **kw: printed.append((a, kw)), raising=False)
    outcome = {"run": "r", "status": "trained"}
    assert launch.run_task(ref, 1) is outcome
    assert printed == [(("a line of the task",), {"flush": True})]  # in the task's log at once, whenever it ends
    e, kw = asked[0]
    assert [s.run_dir for s in e.runs] == [s.run_dir for s in loaded.runs]
    assert {k: v for k, v in kw.items() if k != "log"} == {"progress": False, "evaluate": False, "overwrite": True,
                                                           "only": [1]}
    outcome = {"run": "r", "status": "failed", "reason": "diverged"}
    with pytest.raises(SamatError, match=r"^1 of 1 runs failed: r \(diverged\)"):
        launch.run_task(ref, 1)


@pytest.mark.parametrize("env, threads", [({"SAMAT_THREADS": "3", "SLURM_CPUS_PER_TASK": "5"}, 3),
                                          ({"SLURM_CPUS_PER_TASK": "5"}, 5), ({"SLURM_CPUS_PER_TASK": "1"}, 1),
                                          ({"SAMAT_THREADS": " "}, None),
                                          ({"SLURM_CPUS_PER_TASK": "0"}, None), ({}, None)])
def test_a_task_uses_the_threads_it_was_given(monkeypatch, env, threads):
    monkeypatch.delenv("SAMAT_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        launch._use_task_cpus()
        assert torch.get_num_threads() == (threads or 2)
    finally:
        torch.set_num_threads(before)


def test_asking_a_local_task_whether_it_runs_leaves_it_running(grid, tmp_path):
    """The liveness probe is signal 0: a task that would end on SIGHUP (its default action) goes on running."""
    exp, _ = grid
    task = subprocess.Popen([sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGHUP, "
                             "signal.SIG_DFL); print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert task.stdout.readline() == "ready\n"
        record_path(exp).parent.mkdir(parents=True)
        record_path(exp).write_text(json.dumps({"tasks": [{"run": str(exp.runs[0].run_dir), "job": "9_0",
                                                           "launcher": "local", "folder": str(tmp_path),
                                                           "pid": task.pid}]}))
        assert job_states(exp) == {str(exp.runs[0].run_dir): ("9_0", "RUNNING")}
        with pytest.raises(subprocess.TimeoutExpired):
            task.wait(timeout=0.5)
    finally:
        task.kill()
        task.wait()


def test_job_states_of_local_and_slurm_tasks(grid, tmp_path, monkeypatch):
    """Local tasks: FINISHED once submitit wrote the result, RUNNING while the process lives, else ENDED; Slurm
    tasks as Slurm reports them, UNKNOWN where it cannot be asked. A record of the older layout (launcher and
    folder once, for all tasks) reads the same."""
    exp, _ = grid
    runs = [str(s.run_dir) for s in exp.runs]
    folder = tmp_path / "jobs"
    (folder / "7").mkdir(parents=True)
    (folder / "7" / "7_0_0_result.pkl").write_bytes(b"")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record_path(exp).parent.mkdir(parents=True)
    record_path(exp).write_text(json.dumps({"launcher": "local", "folder": str(folder), "tasks": [
        {"run": runs[0], "job": "7_0"}, {"run": runs[1], "job": "7_1", "pid": os.getpid()},
        {"run": runs[2], "job": "7_2", "pid": int(gone.stdout)}]}))
    assert job_states(exp) == {runs[0]: ("7_0", "FINISHED"), runs[1]: ("7_1", "RUNNING"), runs[2]: ("7_2", "ENDED")}
    asked = []
    monkeypatch.setattr(launch, "slurm_states", lambda jobs: asked.append(jobs) or {"12_0": "RUNNING"})
    record_path(exp).write_text(json.dumps({"tasks": [
        {"run": runs[0], "job": 12, "launcher": "slurm", "folder": "f"},  # an id written as a number: read as text
        {"run": runs[1], "job": "12_0", "launcher": "slurm", "folder": "f"},
        {"run": runs[2], "job": "7_1", "launcher": "local", "folder": str(folder), "pid": None}]}))
    assert job_states(exp) == {runs[0]: ("12", "UNKNOWN"), runs[1]: ("12_0", "RUNNING"), runs[2]: ("7_1", "ENDED")}
    assert asked == [["12", "12_0"]]  # the Slurm tasks only, asked at once


def test_job_ids_as_squeue_writes_them():
    assert launch._job_ids("12") == ["12"] and launch._job_ids("12_3") == ["12_3"]
    assert launch._job_ids("12_[0-2,5%2]") == ["12_0", "12_1", "12_2", "12_5"]
    assert launch._job_ids("12_[7]") == ["12_7"]


def test_slurm_is_asked_only_when_there_is_something_to_ask(monkeypatch):
    monkeypatch.setattr(launch, "_ask_slurm", lambda command: pytest.fail("asked Slurm"))
    assert launch.slurm_states([]) == {}


def _fake_command(tmp_path, monkeypatch, name: str, body: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
    (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


# What samat asks Slurm, exactly: squeue without a header, one line per array task, in every state, as id|state;
# sacct without a header, the jobs only (not their steps), parsable, as JobID|State.
SQUEUE = "-h -r --states=all -j {array} -o %i|%T"
SACCT = "-n -X -P -o JobID,State -j {arrays}"


def _exact_slurm(tmp_path, monkeypatch, squeue: dict[str, str], sacct: dict[str, str]) -> None:
    """squeue and sacct that answer only the command lines above (anything else fails, as an unknown option or
    id does), and a controller that is up."""
    cases = "".join(f'  "{SQUEUE.format(array=a)}") printf "{out}" ;;\n' for a, out in squeue.items())
    _fake_command(tmp_path, monkeypatch, "squeue", f'case "$*" in\n{cases}  *) exit 1 ;;\nesac')
    cases = "".join(f'  "{SACCT.format(arrays=a)}") printf "{out}" ;;\n' for a, out in sacct.items())
    _fake_command(tmp_path, monkeypatch, "sacct", f'case "$*" in\n{cases}  *) exit 1 ;;\nesac')
    _fake_command(tmp_path, monkeypatch, "scontrol", '[ "$*" = ping ] && echo "Slurmctld(primary) at n is UP"')


def test_slurm_is_asked_each_array_in_turn_then_accounting_for_the_rest(tmp_path, monkeypatch):
    """Array 12 is no longer in the controller (accounting has it); 15 and 16 are, and accounting does not have
    them yet: each array's answer is kept, and one that squeue does not know does not stop the others."""
    _exact_slurm(tmp_path, monkeypatch, squeue={"15": "15_0|RUNNING\\n", "16": "16_0|PENDING\\n16_1|RUNNING\\n"},
                 sacct={"12": "12_0|COMPLETED\\n"})
    asked = ["12_0", "15_0", "16_0", "16_1"]
    assert launch.slurm_states(asked) == {"12_0": "COMPLETED", "15_0": "RUNNING", "16_0": "PENDING",
                                          "16_1": "RUNNING"}


def test_slurm_is_asked_with_a_time_limit(monkeypatch):
    """A controller that does not answer must not hang `samat experiment status`: every call has a timeout."""
    calls = []

    def run(command, **kw):
        calls.append(kw)
        return subprocess.CompletedProcess(command, 0, "Slurmctld(primary) at n is UP\n", "")

    monkeypatch.setattr(launch.subprocess, "run", run)
    launch._ask_slurm(["squeue"])
    launch._slurm_answers()
    assert len(calls) == 2 and all(0 < kw["timeout"] < float("inf") for kw in calls)


def test_squeue_lines_are_read_and_a_failing_or_missing_command_is_none(tmp_path, monkeypatch):
    _fake_command(tmp_path, monkeypatch, "squeue", 'printf "12_1|RUNNING\\nno state here\\n|PENDING\\n12_[2-3]|PENDING'
                                                   '\\n 12_4|CANCELLED by 0\\n"')
    assert launch._ask_slurm(["squeue"]) == [("12_1", "RUNNING"), ("12_2", "PENDING"), ("12_3", "PENDING"),
                                             ("12_4", "CANCELLED")]
    _fake_command(tmp_path, monkeypatch, "sacct", 'echo "12_1|RUNNING"; exit 1')
    assert launch._ask_slurm(["sacct"]) is None
    assert launch._ask_slurm([str(tmp_path / "no-such-command")]) is None


@pytest.mark.parametrize("body, up", [('[ "$*" = ping ] && echo "Slurmctld(primary) at node is UP"', True),
                                      ('echo "Slurmctld(primary) at node is DOWN"', False),
                                      ('echo "UP"; exit 1', False)])
def test_the_controller_answers_when_scontrol_ping_says_up(tmp_path, monkeypatch, body, up):
    _fake_command(tmp_path, monkeypatch, "scontrol", body)
    assert launch._slurm_answers() is up


def test_without_scontrol_the_controller_does_not_answer(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to run
    assert launch._slurm_answers() is False


@pytest.mark.parametrize("text, minutes", [("1", 1), (" 90 ", 90), ("0:30", 30), ("2:05", 125), ("1:00:30", 61),
                                           ("1:00:00", 60), ("1-0:00", 1440), ("0:00:01", 1)])
def test_time_limits_in_slurms_forms(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["0", "0:00", "0:00:00", "-5", "1:2:3:4", "ten", ""])
def test_time_limits_below_a_minute_or_unreadable_are_refused(text):
    with pytest.raises(ParameterError, match=r"--time=.* is invalid: --time must be minutes \(240\) or "
                                             r"\[days-\]hours:minutes\[:seconds\] \(4:00:00, 1-12:00\)$"):
        parse_time(text)


@pytest.mark.parametrize("field, value, flag, valid", [
    ("time_min", 0, "--time", "a time limit of at least 1 minute"), ("time_min", True, "--time", None),
    ("gpus", 1.5, "--gpus", "an integer >= 0 (GPUs per task)"),
    ("cpus", 0, "--cpus", "an integer >= 1 (CPUs per task)"),
    ("mem_gb", True, "--mem", None), ("mem_gb", "4", "--mem", None), ("mem_gb", float("nan"), "--mem", None),
    ("max_parallel", 2.0, "--max-parallel", "an integer >= 1 (tasks at once)"),
])
def test_each_request_is_checked_by_its_flag(field, value, flag, valid):
    with pytest.raises(ParameterError) as raised:
        Resources(**{field: value})
    assert str(raised.value).startswith(f"{flag}={value} is invalid: {flag} must be ")
    if valid:
        assert str(raised.value).endswith(f"must be {valid}")


def test_the_smallest_requests_are_accepted():
    Resources(time_min=1, gpus=0, cpus=1, mem_gb=1 / 1024, max_parallel=1)


def test_submitits_parameters_for_each_launcher():
    full = Resources(time_min=60, gpus=2, cpus=4, mem_gb=16, partition="gpu", account="a", qos="q",
                     constraint="a100", max_parallel=3, extra={"slurm_mail_type": "END"})
    assert full.parameters("slurm", "samat-g") == {
        "timeout_min": 60, "nodes": 1, "tasks_per_node": 1, "name": "samat-g", "gpus_per_node": 2,
        "cpus_per_task": 4, "mem_gb": 16, "slurm_partition": "gpu", "slurm_account": "a", "slurm_qos": "q",
        "slurm_constraint": "a100", "slurm_array_parallelism": 3, "slurm_mail_type": "END"}
    assert Resources().parameters("slurm", "n") == {"timeout_min": 240, "nodes": 1, "tasks_per_node": 1, "name": "n",
                                                    "gpus_per_node": 1, "cpus_per_task": 8}
    assert full.parameters("local", "n") == {"timeout_min": 60, "nodes": 1, "tasks_per_node": 1, "name": "n",
                                             "gpus_per_node": 2}
    assert Resources(gpus=0).parameters("local", "n") == {"timeout_min": 240, "nodes": 1, "tasks_per_node": 1,
                                                          "name": "n"}
