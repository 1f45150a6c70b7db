"""The duality map on trained linear models of the Gaussian model, beside theory's exact curves."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from samat.gaussian_study.duality import DualityGrid, exact_accuracies, run, summarize
from samat.gaussian_study.duality_figure import write
from samat.theory.duality import curves as dm
from samat.theory.duality import exact as de

U = np.finfo(float).eps / 2


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_exact_accuracies_of_the_papers_classifier_are_theorys():
    """For w = (w1, 1, ..., 1) the linear model's exact accuracies are theory's objectives at w1 (two paths)."""
    p, eta, n, w1 = 0.8, 0.5, 10, 1.7
    column = de.sensitive_column(p, eta, n)
    clean, robust = exact_accuracies(np.concatenate([[w1], np.ones(n)]), p, eta, column)
    expected_robust, err = de.robust_accuracy(w1, p, eta, n, column)
    expected_clean, err0 = de.robust_accuracy(w1, p, eta, n, 0.0)
    assert robust == pytest.approx(float(expected_robust), rel=0, abs=float(err) + 8 * U)
    assert clean == pytest.approx(float(expected_clean), rel=0, abs=float(err0) + 8 * U)
    scaled, _ = exact_accuracies(3.0 * np.concatenate([[w1], np.ones(n)]), p, eta, column)  # sign(w·x) is scale-free
    assert scaled == pytest.approx(clean, rel=0, abs=8 * U)


def test_the_study_trains_measures_and_maps_beside_theory(tmp_path):
    grid = replace(DualityGrid.quick(), train_size=500, epochs=1)
    logs: list[str] = []
    measurements = run(grid, tmp_path, log=logs.append)
    rows = json.loads(measurements.read_text())["rows"]
    assert len(rows) == len(grid.seeds) * (1 + len(grid.radii) + len(grid.budgets))
    summary = summarize(grid, measurements)
    cm = summary["map"]
    for m, rho in enumerate(grid.radii):  # the map's SAM accuracies are the seeds' mean of the measured ones
        measured = [r["robust_accuracy"] for r in rows if r["role"] == "sam" and r["value"] == rho]
        assert cm.sam_accuracy[m] == pytest.approx(np.mean(measured), rel=0, abs=8 * U)
    assert cm.verdict in (dm.CONSISTENT_1, dm.CONSISTENT_2, dm.NEITHER, dm.UNDECIDED)
    exact = summary["exact"]
    np.testing.assert_allclose(exact["per_sample"], np.asarray(exact["rho"]) / grid.model[2], rtol=4 * U)
    # theory's population curve lies below the per-sample one (ηρ²/(3n) < ρ/n for ρ < 3/η)
    assert np.all(np.asarray(exact["population"]) < np.asarray(exact["per_sample"]))
    paths = write(summary, tmp_path, measurements)
    assert all(p.stat().st_size > 0 for p in paths)
    doc = json.loads((tmp_path / "duality.json").read_text())
    assert doc["fit"]["verdict"] == cm.verdict and len(doc["sam"]) == len(grid.radii)
    logs.clear()
    run(grid, tmp_path, log=logs.append)  # finished runs are kept, not trained again
    assert logs == [f"duality study: {len(rows)} runs into {tmp_path / 'runs'} ({len(rows)} already finished)"]
