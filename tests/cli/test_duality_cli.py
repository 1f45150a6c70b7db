"""The duality grid end to end on a tiny Gaussian grid (linear models, seconds): `samat experiment run` trains and
evaluates the ladders, `samat experiment report` writes the map (table, figure, JSON); and its bad input, each a
one-line error before any work."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from samat.empirical.evaluation.store import read_evaluation
from samat.empirical.experiments.grid import load_experiment
from samat.empirical.experiments.runner import evaluate_run, run_experiment
from samat.theory.duality import curves as dm
from tests.commandline import GAUSSIAN

BASE = ", ".join(f"{k} = {v}" for k, v in GAUSSIAN.items())
COLUMNS = '["natural", "pgd10_linf@0.3", "pgd10_linf@0.6"]'


def duality_toml(folder, *, rho="[0.05, 0.2, 0.8]", at_eps="[0.02, 0.08, 0.32]", columns=COLUMNS, extra="",
                 name="grid.toml"):
    path = folder / name
    path.write_text(f'[experiment]\nname = "duality-tiny"\nkind = "duality"\nseeds = [0, 1]\ncolumns = {columns}\n'
                    f'n_eval = 256\n\n[base]\ndataset = "gaussian"\nmodel = "linear"\nepochs = 2\nbatch_size = 64\n'
                    f'weight_decay = 0.0\nat_steps = 5\nat_features = "non_robust"\ndevice = "cpu"\n'
                    f'gaussian = {{ {BASE} }}\n\n[duality]\nrho = {rho}\nat_eps = {at_eps}\nresamples = 200\n{extra}')
    return path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny duality grid (ST, 3 radii, 3 budgets, 2 seeds: 14 runs), trained and evaluated."""
    folder = tmp_path_factory.mktemp("duality")
    grid = duality_toml(folder)
    run_experiment(load_experiment(grid, runs_dir=folder / "runs"), progress=False, log=lambda m: None)
    return folder


@pytest.fixture
def copy(evaluated, tmp_path):
    """A private copy of the evaluated grid's folder."""
    shutil.copytree(evaluated, tmp_path, dirs_exist_ok=True)
    return tmp_path


def test_the_report_writes_the_map_from_the_evaluations(samat, copy):
    result = samat("experiment", "report", copy / "grid.toml", "--runs-dir", copy / "runs", "--out", copy / "out")
    assert result.code == 0, result.err
    assert "## Duality map" in result.out and "ε_AT [95%]" in result.out
    for name in ("duality.json", "duality_map.png", "duality_map.pdf", "table.md"):
        assert (copy / "out" / name).stat().st_size > 0
    doc = json.loads((copy / "out" / "duality.json").read_text())
    assert doc["provenance"]["inputs"]["runs"]  # computed from the runs' weights, recorded
    assert doc["ladder"]["radii"] == [0.05, 0.2, 0.8] and doc["ladder"]["budgets"] == [0.02, 0.08, 0.32]
    exp = load_experiment(copy / "grid.toml", runs_dir=copy / "runs")
    for column in doc["columns"]:
        # SAM's and AT's robust accuracies are the mean over seeds of what each eval.json reports
        for row in column["sam"] + column["at"]:
            evaluations = [read_evaluation(s.run_dir / "eval.json") for s in exp.runs_for(row["label"])]
            mean = np.mean([e["accuracy"][column["column"]] for e in evaluations])
            assert row["robust_accuracy"] == pytest.approx(mean, rel=0, abs=1e-12)
        assert column["fit"]["verdict"] in (dm.CONSISTENT_1, dm.CONSISTENT_2, dm.NEITHER, dm.UNDECIDED)
        for row in column["sam"]:
            assert row["where"] in dm.STATUS.values()
            assert (row["eps_at"] is None) == (row["where"] != dm.STATUS[dm.INSIDE])
            if row["eps_at"] is not None:  # inside: between the smallest budget and AT's peak, within its interval
                low, high = row["eps_at_interval"]
                assert 0.02 <= row["eps_at"] <= column["peak_eps"]
                assert low["eps"] is None or low["eps"] <= row["eps_at"]
                assert high["eps"] is None or row["eps_at"] <= high["eps"]


def test_a_report_before_the_runs_are_evaluated_names_them(samat, tmp_path):
    grid = duality_toml(tmp_path)
    result = samat("experiment", "report", grid, "--runs-dir", tmp_path / "runs")
    result.one_line_error("14 of 14 runs of duality-tiny are not: st-sgd-seed0 (not trained)", "experiment report")
    assert not (tmp_path / "results").exists()


def test_a_run_without_its_evaluation_is_named(samat, copy):
    (copy / "runs" / "duality-tiny" / "sam-rho-0.2-seed1" / "eval.json").unlink()
    result = samat("experiment", "report", copy / "grid.toml", "--runs-dir", copy / "runs", "--out", copy / "out")
    result.one_line_error("1 of 14 runs of duality-tiny are not: sam-rho-0.2-seed1 (not evaluated)",
                          "experiment report")
    assert not (copy / "out").exists()  # checked before anything is written


def test_a_rung_whose_weights_were_replaced_is_named(samat, copy):
    """A rung's model.pt replaced by another run's (and evaluated as such): its numbers are not the rung's."""
    runs = copy / "runs" / "duality-tiny"
    shutil.copyfile(runs / "st-sgd-seed0" / "model.pt", runs / "sam-rho-0.2-seed1" / "model.pt")
    exp = load_experiment(copy / "grid.toml", runs_dir=copy / "runs")
    evaluate_run(exp, next(s for s in exp.runs if s.run_dir.name == "sam-rho-0.2-seed1"), progress=False,
                 log=lambda m: None)
    result = samat("experiment", "report", copy / "grid.toml", "--runs-dir", copy / "runs", "--out", copy / "out")
    result.one_line_error("sam-rho-0.2-seed1 (its model.pt is not the weights it trained)", "experiment report")


def test_columns_missing_from_some_runs_are_named(samat, copy):
    wider = duality_toml(copy, columns='["natural", "pgd10_linf@0.3", "pgd10_linf@0.6", "fgsm_linf@0.3"]',
                         name="wider.toml")
    exp = load_experiment(wider, runs_dir=copy / "runs")
    evaluate_run(exp, exp.runs[0], progress=False, log=lambda m: None)  # one run gets the new column
    result = samat("experiment", "report", wider, "--runs-dir", copy / "runs", "--out", copy / "out")
    result.one_line_error("columns missing from some runs: fgsm_linf@0.3 missing from the evaluation of 13 of 14 "
                          "runs", "experiment report")


LADDER_CASES = [
    ({"at_eps": "[0.02, 0.08]"}, "at_eps=[0.02, 0.08] is invalid: at_eps must be a list of at least 3 positive"),
    ({"rho": "[0.1, 0.2]"}, "rho=[0.1, 0.2] is invalid: rho must be a list of at least 3 positive numbers"),
    ({"at_eps": "[0.02, 0.32, 0.08]"}, "at_eps must be a list of at least 3 positive numbers, strictly increasing"),
    ({"at_eps": "[0.02, 0.02, 0.08]"}, "strictly increasing"),
    ({"rho": "[0.4, 0.2, 0.1]"}, "rho must be a list of at least 3 positive numbers, strictly increasing"),
    ({"at_eps": '["1/255", "x", "4/255"]'}, "at_eps=x is invalid"),
    ({"columns": '["natural"]'}, "columns=natural is invalid: columns must be at least one attack column"),
    ({"extra": "steps = 3\n"}, "[duality] key=steps is invalid"),
    ({"extra": 'sam_method = "sgd"\n'}, "sam_method=sgd is invalid: sam_method must be a SAM method"),
]


@pytest.mark.parametrize(("changes", "needle"), LADDER_CASES, ids=[n for _, n in LADDER_CASES])
@pytest.mark.parametrize("command", ["run", "report", "status", "plan"])
def test_a_bad_ladder_is_one_line_before_any_work(samat, tmp_path, changes, needle, command):
    grid = duality_toml(tmp_path, **changes)
    result = samat("experiment", command, grid, "--runs-dir", tmp_path / "runs")
    result.one_line_error(needle, f"experiment {command}")
    assert not (tmp_path / "runs").exists()


def test_a_duality_file_makes_its_own_runs(samat, tmp_path):
    grid = duality_toml(tmp_path)
    grid.write_text(grid.read_text() + '\n[[run]]\nlabel = "extra"\nmethod = "sgd"\n')
    samat("experiment", "status", grid, "--runs-dir", tmp_path / "runs").one_line_error(
        "a duality experiment makes its runs from [duality]", "experiment status")
    plain = tmp_path / "plain.toml"
    plain.write_text('[experiment]\nname = "p"\n\n[base]\ndataset = "gaussian"\nmodel = "linear"\n\n'
                     '[duality]\nrho = [0.1, 0.2, 0.4]\nat_eps = [0.1, 0.2, 0.3]\n\n[[run]]\nlabel = "a"\n')
    samat("experiment", "status", plain, "--runs-dir", tmp_path / "runs").one_line_error(
        '[duality] needs kind = "duality"', "experiment status")


def test_the_ladders_make_one_run_per_rung_and_seed(tmp_path):
    exp = load_experiment(duality_toml(tmp_path), runs_dir=tmp_path / "runs")
    assert exp.labels == ("ST (SGD)", "SAM (ρ=0.05)", "SAM (ρ=0.2)", "SAM (ρ=0.8)", "ℓ∞-AT (ε=0.02)",
                          "ℓ∞-AT (ε=0.08)", "ℓ∞-AT (ε=0.32)")
    assert len(exp.runs) == 14 and {r.config.seed for r in exp.runs} == {0, 1}
    sam = [r.config for r in exp.runs if r.config.method.value == "sam"]
    at = [r.config for r in exp.runs if r.config.method.value == "pgd_at"]
    assert sorted({c.rho for c in sam}) == [0.05, 0.2, 0.8] and sorted({c.at_eps for c in at}) == [0.02, 0.08, 0.32]
    assert {(c.dataset, c.model, c.epochs, c.at_steps) for c in sam + at} == {("gaussian", "linear", 2, 5)}


@pytest.mark.parametrize(("name", "dataset", "model", "seeds"), [
    ("fashion_mnist_duality", "fashion_mnist", "small_cnn", 2), ("cifar10_duality", "cifar10", "prn18", 3)])
def test_the_packaged_duality_grids_span_the_ladders_the_map_needs(tmp_path, name, dataset, model, seeds):
    from samat.empirical.experiments.catalog import resolve

    exp = load_experiment(resolve(name), runs_dir=tmp_path)
    ladder = exp.duality
    assert len(ladder.radii) >= 5 and ladder.radii[-1] / ladder.radii[0] >= 16
    assert len(ladder.budgets) >= 5 and ladder.budgets[-1] / ladder.budgets[0] >= 16
    assert len(exp.seeds) == seeds and {(r.config.dataset, r.config.model) for r in exp.runs} == {(dataset, model)}
    assert all("/255)" in r.label for r in ladder.at)  # image budgets read as k/255: "ℓ∞-AT (ε=0.0625/255)"
