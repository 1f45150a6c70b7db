"""A grid split between processes: several `samat experiment run CONFIG` at once each claim runs that no other
holds, and none trains a run twice; the Slurm launcher (submitit) runs the grid as a job array, tested with
submitit's local executor."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from core.errors import ParameterError
from empirical.experiments.grid import load_experiment
from empirical.experiments.launch import Resources, parse_time
from empirical.experiments.state import run_states
from empirical.training.runs import RunDir
from tests.cli.conftest import GAUSSIAN
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
    assert [(s.status, s.detail) for s in states] == [
        ("queued", "job 77_0"), ("failed", "job 77_1 ended TIMEOUT without finishing it; see its log")]
    with RunDir(exp.runs[0].run_dir).lock("samat experiment run"):
        assert run_states(exp)[0].status == "running"


def test_the_launcher_runs_the_grid_as_a_job_array(samat, tmp_path, monkeypatch):
    pytest.importorskip("submitit", reason="the launcher needs submitit: pip install 'samat[slurm]'")
    monkeypatch.chdir(tmp_path)
    grid = _grid(tmp_path, labels=1, epochs=2, seeds="[0]")  # one task: each starts a Python that imports torch
    result = samat("experiment", "run", grid, "--launcher", "local", "--time", "10")
    assert result.code == 0 and "submitted 1 task(s) to local" in result.err, result.err
    exp = load_experiment(grid, runs_dir="runs")
    deadline = time.monotonic() + 300
    while any(s.status != "finished" for s in run_states(exp)):  # queued, running, then finished
        assert time.monotonic() < deadline, samat("experiment", "status", grid).out
        time.sleep(0.5)
    status = samat("experiment", "status", grid)
    assert [line.split()[0] for line in status.out.splitlines()] == ["finished"]
    again = samat("experiment", "run", grid, "--launcher", "local")
    assert again.code == 0 and "nothing to submit" in again.err
