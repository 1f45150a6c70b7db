"""A grid split between processes: several `samat experiment run CONFIG` at once each claim runs that no other
holds, and none trains a run twice; the Slurm launcher (submitit) runs the grid as a job array, tested with
submitit's local executor."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from samat.core.errors import ParameterError
from samat.empirical.experiments.grid import load_experiment
from samat.empirical.experiments.launch import Resources, _tasks_import_this_code, parse_time, slurm_states
from samat.empirical.experiments.runner import failures, run_experiment
from samat.empirical.experiments.state import run_states
from samat.empirical.training.runs import RunDir
from tests.commandline import GAUSSIAN
from tests.helpers import REPO

GAUSSIAN_TOML = ", ".join(f"{k} = {v}" for k, v in GAUSSIAN.items())


def _grid(folder, labels: int, epochs: int, seeds: str = "[0, 1]") -> os.PathLike:
    runs = "".join(f'[[run]]\nlabel = "SGD lr {0.01 * (i + 1):g}"\nmethod = "sgd"\nlr = {0.01 * (i + 1):g}\n\n'
                   for i in range(labels))
    path = folder / "grid.toml"
    path.write_text(f'[experiment]\nname = "split"\nseeds = {seeds}\n\n[base]\ndataset = "gaussian"\n'
                    f'model = "linear"\nepochs = {epochs}\nbatch_size = 64\ngaussian = {{ {GAUSSIAN_TOML} }}\n\n'
                    + runs)
    return path


TRAINING = re.compile(r"^\[\d+/\d+\] .* -> (\S+) \((new|partial)\)$")


def test_processes_on_one_grid_split_its_runs_and_train_each_once(tmp_path):
    grid = _grid(tmp_path, labels=2, epochs=8)  # 4 runs of about half a second each
    env = os.environ | {"SAMAT_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "samat", "experiment", "run", str(grid), "--runs-dir",
                               str(tmp_path / "runs"), "--no-progress"], cwd=REPO, env=env, text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    logs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    trained = [m.group(1) for log in logs for line in log.splitlines() if (m := TRAINING.match(line))]
    exp = load_experiment(grid, runs_dir=tmp_path / "runs")
    assert sorted(trained) == sorted(str(s.run_dir) for s in exp.runs), logs  # every run, each once
    assert all(RunDir(s.run_dir).finished for s in exp.runs)
    assert sum("skipped" in log or "already finished" in log for log in logs) >= 1


def test_slurm_resources_and_time_limits(tmp_path):
    assert parse_time("240") == 240 and parse_time("4:00:00") == 240 and parse_time("1-12:00") == 2160
    with pytest.raises(Exception, match="--time"):
        parse_time("soon")
    submitit = pytest.importorskip("submitit", reason="the launcher needs submitit: pip install 'samat[slurm]'")
    asked = Resources(time_min=60, gpus=2, cpus=4, mem_gb=16, partition="gpu", account="a", qos="q",
                      constraint="a100", max_parallel=3).parameters("slurm", "samat-g")
    assert asked["slurm_partition"] == "gpu" and asked["gpus_per_node"] == 2 and asked["slurm_array_parallelism"] == 3
    submitit.AutoExecutor(folder=tmp_path / "%j", cluster="local").update_parameters(**asked)  # names it knows


@pytest.mark.parametrize("option, value, needle", [
    ("--gpus", "-1", "--gpus=-1 is invalid: --gpus must be an integer >= 0 (GPUs per task)"),
    ("--mem", "-5", "--mem=-5.0 is invalid: --mem must be a finite number of GB >= 1/1024"),
    ("--mem", "0.0001", "--mem=0.0001 is invalid"),  # submitit would ask for --mem=0MB: all of a node's memory
    ("--mem", "inf", "--mem=inf is invalid"),
    ("--time", "0", "--time=0 is invalid"),
])
def test_the_launchers_requests_are_checked_before_anything(samat, tmp_path, option, value, needle):
    grid = _grid(tmp_path, labels=1, epochs=1, seeds="[0]")
    for launcher in ("slurm", "local"):
        result = samat("experiment", "run", grid, "--runs-dir", tmp_path / "runs", "--launcher", launcher, option,
                       value)
        result.one_line_error(needle, "experiment run")
    assert not (tmp_path / "runs").exists()  # nothing submitted, no folder made
    with pytest.raises(ParameterError, match="--gpus=-1 is invalid"):
        Resources(gpus=-1)
    with pytest.raises(ParameterError, match="--max-parallel=0 is invalid"):
        Resources(max_parallel=0)


def test_status_shows_queued_running_and_failed_jobs(tmp_path):
    exp = load_experiment(_grid(tmp_path, labels=1, epochs=1), runs_dir=tmp_path / "runs")
    first, second = (str(s.run_dir) for s in exp.runs)
    states = run_states(exp, {first: ("77_0", "PENDING"), second: ("77_1", "TIMEOUT")})
    again = "samat experiment run picks it up again; see the job's log"
    assert [(s.status, s.detail) for s in states] == [
        ("queued", "job 77_0 PENDING"),
        ("failed", f"job 77_1 ended TIMEOUT without finishing it, leaving nothing; {again}")]
    states = run_states(exp, {first: ("78_0", "RUNNING"), second: ("78_1", "GONE")})
    assert [(s.status, s.detail) for s in states] == [
        ("starting", "job 78_0 RUNNING"),
        ("failed", f"job 78_1 ended (Slurm no longer knows how) without finishing it, leaving nothing; {again}")]
    with RunDir(exp.runs[0].run_dir).lock("samat experiment run"):
        assert run_states(exp)[0].status == "running"


def test_the_tasks_import_the_code_that_submits_them(monkeypatch):
    """sbatch and the local executor pass the environment on: this tree first on PYTHONPATH, then the caller's."""
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    with _tasks_import_this_code():
        assert os.environ["PYTHONPATH"] == f"{REPO}{os.pathsep}/elsewhere"
    assert os.environ["PYTHONPATH"] == "/elsewhere"
    monkeypatch.delenv("PYTHONPATH")
    with _tasks_import_this_code():
        assert os.environ["PYTHONPATH"] == str(REPO)
    assert "PYTHONPATH" not in os.environ


def fake_slurm(folder, monkeypatch, *, squeue: dict[str, str], sacct: str | None, up: bool = True) -> Path:
    """squeue, sacct and scontrol on PATH that answer as a cluster would: ``squeue`` maps an array id to its
    lines (an unknown id fails, as Slurm's does); ``sacct`` None fails as without accounting. Each call is
    logged to calls.txt."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    cases = "".join(f'  *"-j {job} "*) printf "%s" {shlex.quote(out)} ;;\n' for job, out in squeue.items())
    scripts = {
        "squeue": f'args="$* "\ncase "$args" in\n{cases}  *) echo "slurm_load_jobs error: Invalid job id '
                  'specified" >&2; exit 1 ;;\nesac',
        "sacct": (f"printf '%s' {shlex.quote(sacct)}" if sacct is not None
                  else 'echo "Slurm accounting storage is disabled" >&2; exit 1'),
        "scontrol": 'echo "Slurmctld(primary) at vm is UP"' if up else 'echo "down" >&2; exit 1',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {folder}/calls.txt\n{body}\n')
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return folder / "calls.txt"


def test_slurm_states_come_from_squeue_then_sacct(tmp_path, monkeypatch):
    calls = fake_slurm(tmp_path, monkeypatch, squeue={
        "12": "12_[3-4%1]|PENDING\n12_0|CANCELLED\n12_1|RUNNING\n",  # a pending range, as squeue -r may still show
    }, sacct="13_0|COMPLETED\n13_1|CANCELLED by 0\n13_[2-3]|CANCELLED by 0\n")
    asked = ["12_0", "12_1", "12_3", "12_4", "13_0", "13_1", "13_3", "14_0"]
    assert slurm_states(asked) == {"12_0": "CANCELLED", "12_1": "RUNNING", "12_3": "PENDING", "12_4": "PENDING",
                                   "13_0": "COMPLETED", "13_1": "CANCELLED", "13_3": "CANCELLED", "14_0": "GONE"}
    lines = calls.read_text().splitlines()
    assert sum(line.startswith("sacct ") for line in lines) == 1 and "-j 13,14" in lines[-1]  # one call for all
    calls.unlink()
    monkeypatch.undo()
    (tmp_path / "down").mkdir()
    fake_slurm(tmp_path / "down", monkeypatch, squeue={}, sacct=None, up=False)
    assert slurm_states(["12_0"]) == {}  # no controller to ask: unknown, not gone


def test_the_launcher_runs_the_grid_as_a_job_array(samat, tmp_path, monkeypatch):
    pytest.importorskip("submitit", reason="the launcher needs submitit: pip install 'samat[slurm]'")
    monkeypatch.chdir(tmp_path)
    grid = _grid(tmp_path, labels=1, epochs=2, seeds="[0]")  # one task: each starts a Python that imports torch
    result = samat("experiment", "run", grid, "--launcher", "local", "--time", "10")
    assert result.code == 0 and "submitted 1 task to local (job " in result.err, result.err
    exp = load_experiment(grid, runs_dir="runs")
    deadline = time.monotonic() + 300
    while any(s.status != "finished" for s in run_states(exp)):  # queued, running, then finished
        assert time.monotonic() < deadline, samat("experiment", "status", grid).out
        time.sleep(0.5)
    status = samat("experiment", "status", grid)
    assert [line.split()[0] for line in status.out.splitlines()] == ["finished"]
    again = samat("experiment", "run", grid, "--launcher", "local")
    assert again.code == 0 and "nothing to submit" in again.err


@pytest.mark.parametrize("command", ["run", "status", "report", "plan"])
def test_a_seed_given_twice_is_refused_in_one_line(samat, tmp_path, command):
    """`seeds = [0, 0]` (or --seeds 0,0): status listed every run twice, plan counted them twice, and report showed
    "± 0.0 ... 2/2 seeds" from one run. A repeat is always a typo: refused, before anything is trained."""
    in_file = _grid(tmp_path, labels=1, epochs=1, seeds="[0, 1, 0]")
    samat("experiment", command, in_file, "--runs-dir", tmp_path / "runs").one_line_error(
        f"{in_file}: [experiment] seeds must be distinct (seed 0 appears 2 times", f"experiment {command}")
    flag = _grid(tmp_path, labels=1, epochs=1)
    samat("experiment", command, flag, "--runs-dir", tmp_path / "runs", "--seeds", "3,3").one_line_error(
        "seeds='3,3' is invalid: seeds must be distinct (seed 3 appears 2 times", f"experiment {command}")
    assert not (tmp_path / "runs").exists()


def test_a_run_left_partial_by_a_killed_process_is_said_and_fails_the_grid(tmp_path):
    """Of two `samat experiment run` on one grid, one was SIGKILLed while it trained a run: the other skipped that
    run (held), ended with exit code 0 and never said that the run was left partial."""
    slow = dict(GAUSSIAN, train_size=20000)  # a first epoch long enough to be killed inside the next ones
    grid = tmp_path / "grid.toml"
    grid.write_text(f'[experiment]\nname = "k"\n\n[base]\ndataset = "gaussian"\nmodel = "linear"\nbatch_size = 64\n'
                    f'gaussian = {{ {GAUSSIAN_TOML} }}\n\n[[run]]\nlabel = "slow"\nmethod = "sgd"\nepochs = 100000\n'
                    "gaussian = { " + ", ".join(f"{k} = {v}" for k, v in slow.items()) + " }\n\n"
                    '[[run]]\nlabel = "quick"\nmethod = "sgd"\nepochs = 1\n')
    exp = load_experiment(grid, runs_dir=tmp_path / "runs")
    held = RunDir(exp.runs[0].run_dir)
    other = subprocess.Popen([sys.executable, "-m", "samat", "experiment", "run", str(grid), "--runs-dir",
                              str(tmp_path / "runs"), "--no-progress"], cwd=REPO,
                             env=os.environ | {"SAMAT_THREADS": "1"}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not held.has_checkpoint:
            assert other.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)

        def log(message: str) -> None:
            if "skipped" in message:  # this process has passed the run by: the one that holds it dies now
                other.kill()
                other.wait(timeout=60)

        outcomes = run_experiment(exp, progress=False, log=log)
    finally:
        other.kill()
    assert other.returncode == -signal.SIGKILL
    assert [o["status"] for o in outcomes] == ["failed", "trained"]
    assert outcomes[0]["reason"].startswith("left partial (its checkpoint is kept) by samat experiment run (pid "
                                            f"{other.pid}")
    assert "samat experiment run resumes it" in outcomes[0]["reason"]
    failed = failures(outcomes)
    assert failed is not None and failed.exit_code == 1 and str(held.path) in str(failed)
