"""A run that fails does not take its grid down: `samat experiment run` records its one-line reason, trains the
other runs, and exits with code 1 naming the failed run; `samat experiment status` shows the reason; the next
`samat experiment run` tries the run again and, once it finishes, forgets the failure."""

from __future__ import annotations

import json
from pathlib import Path

from samat.empirical.experiments.grid import load_experiment
from samat.empirical.training.runs import RunDir
from tests.empirical.helpers import write_grid

RUNS = """[[run]]
label = "SGD, diverging"
method = "sgd"
lr = 1e30

[[run]]
label = "SGD"
method = "sgd"
"""  # the failing run first: the one after it still trains


def test_a_failed_run_is_recorded_and_the_grid_goes_on(samat, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = write_grid(tmp_path, 'name = "failing"\nseeds = [0]', RUNS)
    ran = samat("experiment", "run", grid, "--no-progress")
    exp = load_experiment(grid, runs_dir=Path("runs"))
    bad, good = (spec.run_dir for spec in exp.runs)
    assert ran.code == 1, ran.err
    last = ran.err.splitlines()[-1]
    assert last.startswith("samat experiment run: error: 1 of 2 runs failed: ") and str(bad) in last
    assert "the training loss became" in last and "Traceback" not in ran.err
    assert RunDir(good).finished and not RunDir(bad).finished
    record = json.loads(RunDir(bad).failure.read_text())
    assert record["reason"].startswith("the training loss became") and "\n" not in record["reason"]
    assert any("TrainingDiverged" in line for line in record["traceback"]) and "provenance" in record
    assert not RunDir(good).failure.exists()

    status = samat("experiment", "status", grid)
    lines = dict(line.split(None, 1) for line in status.out.splitlines())
    assert lines["finished"].startswith(str(good))
    assert lines["failed"].startswith(f"{bad}  (the training loss became") and "tries it again" in lines["failed"]

    (tmp_path / "grid.toml").write_text((tmp_path / "grid.toml").read_text().replace("lr = 1e30", "lr = 0.01"))
    again = samat("experiment", "run", grid, "--no-progress", "--overwrite")
    assert again.code == 0, again.err
    assert RunDir(bad).finished and not RunDir(bad).failure.exists()
    assert samat("experiment", "status", grid).out.count("finished") == 2
