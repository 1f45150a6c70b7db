"""The duality map's computation on synthetic curves with known answers: the inversion, the resampling, the fit of
the exponent and the verdict."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samat.theory.duality import curves as dm

U = np.finfo(float).eps / 2


def log_linear(budgets, alpha, beta):
    """A robust-accuracy curve linear in log ε: the map's interpolation is exact on it."""
    return alpha + beta * np.log(budgets)


@given(st.floats(0.3, 0.6), st.floats(0.01, 0.1), st.floats(1e-4, 1e-2), st.floats(1.2, 3.0), st.integers(3, 9),
       st.floats(0.0, 1.0))
def test_inversion_of_a_curve_linear_in_log_eps_is_exact(alpha, beta, first, ratio, k, where):
    budgets = first * ratio ** np.arange(k)
    curve = log_linear(budgets, alpha, beta)
    target = np.exp(np.log(budgets[0]) + where * np.log(budgets[-1] / budgets[0]))
    inv = dm.invert(budgets, curve, np.array([alpha + beta * np.log(target)]))
    assert inv.status[0] == dm.INSIDE
    # Exact up to the rounding of the level and of the interpolation's arithmetic, carried to log ε by 1/β.
    assert inv.log_eps[0] == pytest.approx(np.log(target), rel=0, abs=64 * U * (1 + abs(np.log(target))) / beta)
    assert budgets[inv.lower[0]] <= target * (1 + 1e-12) and target <= budgets[inv.upper[0]] * (1 + 1e-12)


def test_levels_outside_the_curve_are_named_not_extrapolated():
    budgets = np.array([1.0, 2.0, 4.0, 8.0])
    curve = np.array([0.50, 0.60, 0.70, 0.80])
    inv = dm.invert(budgets, curve, np.array([0.49, 0.50, 0.80, 0.81]))
    assert inv.status.tolist() == [dm.BELOW, dm.INSIDE, dm.INSIDE, dm.ABOVE]
    assert np.isnan(inv.log_eps[[0, 3]]).all() and inv.lower[[0, 3]].tolist() == [-1, -1]
    assert inv.eps[[1, 2]] == pytest.approx([1.0, 8.0], rel=4 * U)  # the ends are inside, at their budgets


def test_a_curve_that_falls_is_inverted_on_its_rising_branch():
    budgets = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    curve = np.array([0.50, 0.62, 0.60, 0.70, 0.55])  # a dip at 4, then the peak at 8, then a fall
    peak, fitted = dm.rising_branch(curve)
    assert int(peak) == 3
    np.testing.assert_allclose(fitted, [0.50, 0.61, 0.61, 0.70, 0.70], rtol=0, atol=4 * U)  # dip pooled (PAVA)
    assert dm.falls(curve).tolist() == [False, True, False, True]
    inv = dm.invert(budgets, curve, np.array([0.56, 0.61, 0.65, 0.71]))
    # 0.56 lies on the falling branch too (between 8 and 16): the rising branch gives the smallest budget.
    assert inv.eps[0] == pytest.approx(2 ** ((0.56 - 0.50) / 0.11), rel=1e-12)
    assert inv.eps[1] == pytest.approx(np.sqrt(2.0 * 4.0), rel=1e-12)  # the pooled flat stretch: its midpoint
    assert inv.eps[2] == pytest.approx(4 * 2 ** ((0.65 - 0.61) / 0.09), rel=1e-12)
    assert inv.status[3] == dm.ABOVE  # above the peak, though 16 is the largest budget


def test_isotonic_is_the_least_squares_monotone_fit():
    values = np.array([3.0, 1.0, 2.0, 5.0, 4.0, 4.0, 6.0])
    fit = dm.isotonic(values)
    assert np.all(np.diff(fit) >= 0)
    np.testing.assert_allclose(fit, [2.0, 2.0, 2.0, 13 / 3, 13 / 3, 13 / 3, 6.0], rtol=0, atol=8 * U)
    # No other monotone sequence is closer: check against random monotone perturbations of the fit.
    rng = np.random.default_rng(0)
    for _ in range(200):
        other = np.sort(fit + rng.normal(0, 0.3, fit.shape))
        assert np.sum((other - values) ** 2) >= np.sum((fit - values) ** 2) - 1e-12


def test_interpolation_of_clean_accuracy_is_linear_in_log_eps():
    budgets = np.array([1.0, 2.0, 4.0])
    clean = np.array([[0.90, 0.86, 0.80]])
    got = dm.interpolate(budgets, clean, np.log(np.array([[np.sqrt(2.0), 4.0, 5.0]])))
    np.testing.assert_allclose(got[0, :2], [0.88, 0.80], rtol=0, atol=4 * U)
    assert np.isnan(got[0, 2])


@given(st.floats(0.3, 3.0), st.floats(-8.0, -2.0), st.integers(3, 7))
def test_the_fit_recovers_a_power_law(slope, intercept, m):
    rho = np.geomspace(0.02, 0.5, m)
    log_eps = intercept + slope * np.log(rho)
    fit = dm.fit_exponent(np.log(rho), log_eps, range(m))
    assert fit.slope == pytest.approx(slope, rel=0, abs=64 * U * (1 + abs(intercept) + 4 * slope))
    assert fit.intercept == pytest.approx(intercept, rel=0, abs=256 * U * (1 + abs(intercept) + 4 * slope))


def test_the_slope_bound_is_attained_by_the_worst_errors():
    rho = np.geomspace(0.05, 0.4, 5)
    x = np.log(rho)
    errors = np.full(5, 0.01)
    bound = dm.slope_bound(x, range(5), errors)
    worst = 0.01 * np.sign(dm.slope_weights(x))  # each point moved to its bracket's end in the slope's direction
    moved = dm.fit_exponent(x, 2 * x + worst, range(5)).slope
    assert moved - 2 == pytest.approx(bound, rel=1e-12)
    assert bound == pytest.approx(0.01 * np.abs(dm.slope_weights(x)).sum(), rel=1e-12)


def test_fewer_than_two_points_give_no_slope():
    fit = dm.fit_exponent(np.log([0.1, 0.2, 0.4]), np.log([1e-3, 2e-3, 4e-3]), [1])
    assert np.isnan(fit.slope) and fit.points == (1,)
    assert dm.verdict(np.nan, np.nan, 1) == dm.UNDECIDED


@pytest.mark.parametrize(("low", "high", "verdict"), [
    (1.7, 2.3, dm.CONSISTENT_2), (0.8, 1.4, dm.CONSISTENT_1), (0.5, 2.5, dm.UNDECIDED), (1.2, 1.8, dm.NEITHER),
    (2.1, 3.0, dm.NEITHER), (-np.inf, 1.5, dm.CONSISTENT_1), (-np.inf, np.inf, dm.UNDECIDED),
    (2.0, 2.0, dm.CONSISTENT_2),
])
def test_verdict_reads_the_interval(low, high, verdict):
    assert dm.verdict(low, high, 5) == verdict


def test_ladders_are_checked():
    for bad, why in (([0.1, 0.2], "at least 3"), ([0.1, 0.3, 0.2], "increasing"), ([0.1, 0.1, 0.2], "increasing"),
                     ([0.0, 0.1, 0.2], "positive"), ([0.1, np.inf, 0.3], "positive")):
        with pytest.raises(ValueError, match=why):
            dm.check_ladder(bad, "budgets")


def test_conservative_interval_ranks_outside_resamples_and_widens_for_missing_ones():
    values = np.arange(1.0, 101.0)
    assert dm.conservative_interval(values, 0.9) == (5.0, 95.0)
    low = np.zeros(100, bool)
    low[:10] = True  # 10% below the range: the 5% lower end falls among them
    lo, hi = dm.conservative_interval(np.where(low, np.nan, values), 0.9, low_fill=low)
    assert lo == -np.inf and hi == 95.0
    # 3% that give nothing (the values 1-3): they rank below 4 for the lower end and above 100 for the upper one,
    # which moves the upper end from the 95th value to the 98th, and the lower end stays at the 5th (5).
    missing = np.where(np.arange(100) < 3, np.nan, values)
    assert dm.conservative_interval(missing, 0.9) == (5.0, 98.0)
    missing = np.where(np.arange(100) < 6, np.nan, values)  # 6%: more than a tail, both ends open
    assert dm.conservative_interval(missing, 0.9) == (-np.inf, np.inf)


def test_the_full_data_comes_first_and_every_run_shares_each_resample():
    rng = np.random.default_rng(1)
    correct = rng.random((2, 3, 4, 50)) < 0.6  # columns, runs, seeds, images
    correct[:, 2] = correct[:, 1]  # two identical runs
    acc = dm.bootstrap_accuracies(correct, resamples=300, seed=7)
    assert acc.shape == (301, 2, 3)
    np.testing.assert_allclose(acc[0], correct.mean(axis=(2, 3)), rtol=0, atol=4 * U)
    np.testing.assert_array_equal(acc[:, :, 1], acc[:, :, 2])  # the same seeds and images drawn for both
    assert np.ptp(acc[1:, 0, 0]) > 0  # the resamples vary
    again = dm.bootstrap_accuracies(correct, resamples=300, seed=7)
    np.testing.assert_array_equal(acc, again)  # seeded: the same resamples again


def test_resampled_spread_matches_the_sampling_variance():
    """One seed, N images drawn with accuracy q: the bootstrap variance of the mean is q̂(1 - q̂)/N (the plug-in
    variance), up to the Monte Carlo error of a variance estimated from B resamples (√(2/B) relative)."""
    n, b = 400, 4000
    correct = np.zeros((1, 1, n))
    correct[0, 0, : int(0.7 * n)] = 1
    acc = dm.bootstrap_accuracies(correct, resamples=b, seed=3)[1:, 0]
    expected = 0.7 * 0.3 / n
    assert acc.var() == pytest.approx(expected, rel=5 * np.sqrt(2 / b))


def test_seed_spread_enters_the_resamples():
    """Two seeds whose runs differ only between seeds (every image alike within a seed): the resampled mean takes
    the three values that drawing two seeds with replacement gives, in proportions 1/4, 1/2, 1/4."""
    correct = np.zeros((1, 2, 10))
    correct[0, 1] = 1  # seed 0 gets nothing right, seed 1 everything
    acc = dm.bootstrap_accuracies(correct, resamples=4000, seed=5)[1:, 0]
    values, counts = np.unique(acc, return_counts=True)
    assert values.tolist() == [0.0, 0.5, 1.0]
    share = counts / counts.sum()
    assert share == pytest.approx([0.25, 0.5, 0.25], abs=5 * np.sqrt(0.25 / 4000))


def _synthetic_ladder(slope, noise, seeds=3, images=400, seed=0):
    """Scores whose means follow a known map: AT's robust accuracy linear in log ε, SAM's levels at ε_AT = c ρ^b;
    per-image noise that averages to zero over the images of every run and seed (so the full data is exact)."""
    rng = np.random.default_rng(seed)
    radii = np.geomspace(0.05, 0.8, 5)
    eps_true = 0.02 * (radii / 0.8) ** slope
    budgets = np.geomspace(eps_true[0] / 1.5, eps_true[-1] * 1.5, 6)
    alpha, beta = 0.9, 0.05
    at_robust, sam_robust = log_linear(budgets, alpha, beta), log_linear(eps_true, alpha, beta)
    at_clean, sam_clean = 0.9 - 2 * budgets, np.full(5, 0.88)
    means = np.stack([np.concatenate([at_clean, sam_clean]), np.concatenate([at_robust, sam_robust])])  # (2, 11)
    wiggle = rng.normal(0, noise, (2, 11, seeds, images))
    wiggle -= wiggle.mean(axis=-1, keepdims=True)
    return radii, budgets, eps_true, means[..., None, None] + wiggle


@pytest.mark.parametrize("slope", [1.0, 2.0])
def test_a_column_map_recovers_a_known_exponent_and_covers_it(slope):
    radii, budgets, eps_true, scores = _synthetic_ladder(slope, noise=0.05)
    acc = dm.bootstrap_accuracies(scores, resamples=400, seed=11)
    k = len(budgets)
    column = dm.column_map(radii, budgets, acc[:, 1, :k], acc[:, 1, k:], acc[:, 0, :k], acc[:, 0, k:])
    np.testing.assert_allclose(column.inversion.eps, eps_true, rtol=1e-9)  # the full data is exact
    assert column.fit.slope == pytest.approx(slope, abs=1e-8) and column.fit.points == (0, 1, 2, 3, 4)
    assert all(lo <= e <= hi for (lo, hi), e in zip(column.eps_interval, eps_true, strict=True))
    lo, hi = column.slope_interval
    assert lo <= slope <= hi and hi - lo < 1  # narrow enough to tell 1 from 2
    assert column.verdict == (dm.CONSISTENT_2 if slope == 2 else dm.CONSISTENT_1)
    # AT's clean accuracy is linear in ε and read linearly in log ε: both lie between a segment's end values, so
    # they differ by at most the clean accuracy's change over the widest segment.
    expected_clean = 0.88 - (0.9 - 2 * eps_true)
    assert np.all(np.abs(column.clean_difference - expected_clean) <= 2 * np.diff(budgets).max())
    assert column.monotone and column.resamples == 400


def test_noise_that_swamps_the_ladder_leaves_the_exponent_undecided():
    radii, budgets, _, scores = _synthetic_ladder(2.0, noise=0.0)
    scores = scores + np.random.default_rng(2).normal(0, 1.5, scores.shape[:3])[..., None]  # per-seed scatter
    acc = dm.bootstrap_accuracies(scores, resamples=400, seed=11)
    k = len(budgets)
    column = dm.column_map(radii, budgets, acc[:, 1, :k], acc[:, 1, k:], acc[:, 0, :k], acc[:, 0, k:])
    assert column.verdict == dm.UNDECIDED


@settings(max_examples=20)
@given(st.floats(0.5, 2.5))
def test_every_resample_gives_the_same_answer_on_noise_free_curves(slope):
    radii, budgets, eps_true, scores = _synthetic_ladder(slope, noise=0.0, seeds=2, images=5)
    acc = dm.bootstrap_accuracies(scores, resamples=20, seed=1)
    k = len(budgets)
    column = dm.column_map(radii, budgets, acc[:, 1, :k], acc[:, 1, k:], acc[:, 0, :k], acc[:, 0, k:])
    np.testing.assert_allclose(column.eps_interval, np.stack([eps_true, eps_true], axis=1), rtol=1e-9)
    assert column.slope_interval == pytest.approx((slope, slope), abs=1e-7)
