"""`samat experiment run | status | report`, `samat eval` and `samat study` end to end on tiny settings (linear models
on the papers' Gaussian data), checked by what they write and print: the tables against the runs' evaluations,
eval.json's columns, checks and provenance, a second run that does nothing."""

from __future__ import annotations

import csv
import json
import re
import statistics

import pytest

from samat.empirical.evaluation.columns import NATURAL, SANITY, column_spec
from samat.empirical.evaluation.store import unpack_mask
from samat.empirical.experiments.grid import load_experiment
from samat.empirical.training.runs import file_sha256
from tests.empirical.helpers import GAUSSIAN_GRID_BASE, SGD_RUN, write_grid
from tests.helpers import snapshot

COLUMNS = ("natural", "pgd10_linf@0.1")
LABELS = {"SGD": "sgd", "SAM (ρ=0.1)": "sam-rho-0.1"}
U = 2.0**-53
CSV_HALF_UNIT = 0.5e-4 + 1e-12  # table.csv's rounding to 4 decimals, and the decimal's float conversion


def _write_grid(folder):
    """The grid tests' Gaussian base at one epoch, SGD and SAM, two seeds, the natural and one PGD column."""
    experiment = (f'name = "tiny"\ntitle = "Tiny grid"\nseeds = [0, 1]\nn_eval = 256\n'
                  f'columns = {json.dumps(list(COLUMNS))}')
    sam = '\n[[run]]\nlabel = "SAM (ρ=0.1)"\nmethod = "sam"\nrho = 0.1\n'
    one_epoch = GAUSSIAN_GRID_BASE.replace("epochs = 2", "epochs = 1")
    return write_grid(folder, experiment, runs=SGD_RUN + sam, base=one_epoch)


def _runs():
    return [f"runs/tiny/{name}-seed{seed}" for name in LABELS.values() for seed in (0, 1)]


def test_experiment_run_status_report_on_a_tiny_grid(samat, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = _write_grid(tmp_path)
    status = samat("experiment", "status", grid)
    assert status.code == 0 and status.out.splitlines() == [f"new  {run}" for run in _runs()]

    ran = samat("experiment", "run", grid)
    assert ran.code == 0, ran.err
    assert "tiny: 4 runs, 0 already finished" in ran.err and len(re.findall(r"epoch 1/1, train loss", ran.err)) == 4
    status = samat("experiment", "status", grid)
    assert status.out.splitlines() == [f"finished  {run}  (evaluated: 1/1 attack columns)" for run in _runs()]
    assert status.err == "tiny: 4 finished\n"

    before = snapshot(tmp_path / "runs")
    again = samat("experiment", "run", grid)  # a second run does nothing: nothing trained, evaluated or rewritten
    assert again.code == 0 and "tiny: 4 runs, 4 already finished" in again.err
    assert "epoch" not in again.err and "evaluating" not in again.err
    assert snapshot(tmp_path / "runs") == before

    report = samat("experiment", "report", grid, "--out", "rep")
    assert report.code == 0, report.err
    md = (tmp_path / "rep" / "table.md").read_text()
    assert report.out.strip() == md.partition("\n## Figures")[0].strip()
    assert "| Method | Natural | PGD-10 ℓ∞ 0.1 | seeds |" in md
    rows = {r["label"]: r for r in json.loads((tmp_path / "rep" / "table.json").read_text())["tables"]["Tiny grid"]}
    records = list(csv.DictReader((tmp_path / "rep" / "table.csv").open()))
    exp = load_experiment(grid)
    for label, name in LABELS.items():
        evaluations = [json.loads((tmp_path / "runs" / "tiny" / f"{name}-seed{s}" / "eval.json").read_text())
                       for s in (0, 1)]
        failed = [f"{name}-seed{s}: {c['check']}" for s, e in enumerate(evaluations) for c in e["sanity"]
                  if not c["passed"]]
        assert rows[label]["seeds_done"] == 2 and rows[label]["failed_checks"] == failed
        cells = []
        for column in COLUMNS:
            values = [100 * e["accuracy"][column] for e in evaluations]
            mean, std = statistics.mean(values), statistics.stdev(values)  # the sample std over seeds
            cell = rows[label][column]
            assert cell["n"] == 2 and cell["mean"] == pytest.approx(mean, rel=4 * U, abs=0)
            # the difference of two values is exact to an ulp of their size, so the std is good to a few ulps of
            # the mean in absolute terms (it may be near 0), and to a few ulps relative otherwise
            assert cell["std"] == pytest.approx(std, rel=4 * U, abs=4 * U * abs(mean))
            cells.append(f"{mean:.1f} ± {std:.1f}")
            (record,) = [r for r in records if r["label"] == label and r["column"] == column]
            assert record["title"] == exp.column_title(column) and record["n"] == "2"
            for key, value in (("mean", mean), ("std", std)):  # rounded to 4 decimals: within half a unit
                assert abs(float(record[key]) - value) <= CSV_HALF_UNIT, key
        assert f"| {label}{' ⚠' if failed else ''} | {' | '.join(cells)} | 2/2 |" in md
    inputs = json.loads((tmp_path / "rep" / "table.json").read_text())["provenance"]["inputs"]
    assert inputs["experiment"] == str(grid)
    assert [r["run"] for r in inputs["runs"]] == _runs()
    for record in inputs["runs"]:
        assert record["finished"] and record["counted"]
        assert record["weights"]["sha256"] == file_sha256(tmp_path / record["run"] / "model.pt")
    figures = [line for line in md.splitlines() if line.startswith("![")]
    assert figures and all((tmp_path / "rep" / re.search(r"\((.+)\)", f).group(1)).is_file() for f in figures)


def test_eval_end_to_end_writes_columns_checks_and_the_weights_it_attacked(samat, fresh_run):
    attacks = ("fgsm_linf@0.1", "pgd10_linf@0.1,0.15")
    evaluated = samat("eval", fresh_run, "--attacks", *attacks, "--n-eval", "300", "--seed", "3")
    assert evaluated.code == 0, evaluated.err
    doc = json.loads((fresh_run / "eval.json").read_text())
    columns = ["fgsm_linf@0.1", "pgd10_linf@0.1", "pgd10_linf@0.15"]
    assert doc["columns"] == columns and doc["settings"] == {"n_eval": 300, "seed": 3}
    assert [k for k in doc["accuracy"] if SANITY not in k] == [NATURAL, *columns]
    clean = unpack_mask(doc["correct"][NATURAL], 300)
    assert doc["accuracy"][NATURAL] == float(clean.double().mean()) > 0.5  # the trained model, on 300 images
    for column in columns:
        hits = unpack_mask(doc["correct"][column], 300)
        assert not (hits & ~clean).any() and doc["accuracy"][column] == float(hits.double().mean())
    assert doc["accuracy"]["pgd10_linf@0.15"] <= doc["accuracy"]["pgd10_linf@0.1"] <= doc["accuracy"][NATURAL]
    assert doc["sanity"] and all(set(c) >= {"check", "passed", "detail"} for c in doc["sanity"])
    assert doc["sanity_passed"] == all(c["passed"] for c in doc["sanity"])
    record = doc["provenance"]
    assert record["inputs"]["weights"] == {"file": "model.pt", "sha256": file_sha256(fresh_run / "model.pt")}
    assert record["inputs"]["settings"] == doc["settings"] and {"torch", "torchattacks"} <= set(record["packages"])
    lines = evaluated.out.splitlines()  # what it printed is what it wrote, in percent, under readable names
    for key, value in doc["accuracy"].items():
        title = "Natural" if key == NATURAL else column_spec(key.removesuffix(SANITY)).title + (
            SANITY if key.endswith(SANITY) else "")
        assert any(re.fullmatch(rf"{re.escape(title)} +{100 * value:6.2f} %", line) for line in lines), title
    passed = sum(c["passed"] for c in doc["sanity"])
    assert lines[-1 - (len(doc["sanity"]) - passed)] == f"sanity checks: {passed}/{len(doc['sanity'])} passed"

    written = (fresh_run / "eval.json").read_bytes()
    again = samat("eval", fresh_run, "--attacks", *attacks, "--n-eval", "300", "--seed", "3")
    assert again.code == 0 and "already evaluated" in again.err and again.out == evaluated.out
    assert (fresh_run / "eval.json").read_bytes() == written


# about 40 s on the 2-core machine beside another job: the logistic population's SAM optimum, whatever the grid
def test_study_end_to_end_on_a_tiny_grid(samat, tmp_path, monkeypatch):
    """`samat study --quick` through the command, with --quick's grid made tinier (one model, one ρ, two seeds:
    14 runs): runs, measurements, summary, figures and verdicts, published; --report-only redoes the summary."""
    from samat.gaussian_study.grid import StudyGrid
    from samat.gaussian_study.verdicts import CLAIMS

    tiny = StudyGrid(models=((0.8, 0.5, 4),), seeds=(0, 1), rhos=(0.1,), at_fractions=(0.25,), train_size=1000,
                     test_size=1000, epochs=2, convergence_sizes=(500,), convergence_epochs=2)
    monkeypatch.setattr(StudyGrid, "quick", classmethod(lambda cls: tiny))
    out, publish = tmp_path / "study", tmp_path / "docs"
    result = samat("study", "--quick", "--out", out, "--publish", publish)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [f"wrote 15 files in {out}/: the verdicts are in {out / 'verdicts.md'}",
                                       f"copied them to {publish}/"]
    assert "gaussian study: 14 runs" in result.err and "(0 already finished)" in result.err
    measurements = json.loads((out / "measurements.json").read_text())
    assert len(measurements["rows"]) == 14 and measurements["grid"]["rhos"] == [0.1]
    assert measurements["provenance"]["inputs"] == {"runs": str(out / "runs")}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["provenance"]["inputs"] == {"measurements": str(out / "measurements.json")}
    assert list(summary["models"]) == ["p0.8-eta0.5-n4"]
    verdicts = json.loads((out / "verdicts.json").read_text())["verdicts"]
    assert {v["claim"] for v in verdicts} == set(CLAIMS)
    md = (out / "verdicts.md").read_text()
    assert all(f"| {v['setting']} | {v['model']} |" in md for v in verdicts)
    published = sorted(p.name for p in publish.iterdir())
    assert len(published) == 15 and "summary.json" in published and "measurements.json" not in published
    assert all((publish / name).read_bytes() == (out / name).read_bytes() for name in published)

    runs = snapshot(out / "runs")
    report = samat("study", "--out", out, "--report-only")
    assert report.code == 0 and "gaussian study" not in report.err and snapshot(out / "runs") == runs
    again = json.loads((out / "verdicts.json").read_text())["verdicts"]
    assert again == verdicts  # the same measurements, the same verdicts
