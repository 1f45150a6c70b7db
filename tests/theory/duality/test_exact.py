"""The duality map where its answer is known: fed the exact robust accuracies of the Gaussian model, it must return
theory's equal-w1 budget within the brackets at every ρ, and recover both readings' exponents: 1 per sample, a
slope that tends to 2 as ρ -> 0 in the population reading."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from samat.core.errors import ParameterError
from samat.theory.duality import curves as dm
from samat.theory.duality import exact as de
from tests.theory import strategies as S

RATIO = 1.02  # the AT ladder's spacing: every budget's bracket is 2% wide
DEFICIT = 0.002  # the population radii: the derived relation's slope within this of 2


def population_radii(p, eta, n, scale=1.0):
    high = min(0.5, de.slope_deficit_radius(p, eta, n, DEFICIT)) * scale
    return np.geomspace(high / 4, high, 5)


def per_sample_radii(eta, n):
    high = min(0.5, eta * n / 4)  # ρ/n stays below η/4: the AT budgets' optima exist
    return np.geomspace(high / 4, high, 5)


def theory_slope_bound(m: de.ExactMap) -> float:
    """How far the slope of theory's own budgets (the midpoints of their brackets) may lie from the slope of the
    true ones: each bracket carried through the fit, plus the fit's own rounding (a few ulps of each term)."""
    x = np.log(m.radii)
    y = np.log((m.theory_lo + m.theory_hi) / 2)
    rounding = 16 * np.finfo(float).eps * np.sum(np.abs(dm.slope_weights(x)) * (np.abs(y) + np.abs(x)))
    return dm.slope_bound(x, m.fit.points, np.log(m.theory_hi / m.theory_lo)) + rounding


def _check_brackets(m: de.ExactMap):
    assert m.consistent.all(), (m.inversion.eps, m.left, m.right, m.theory_lo, m.theory_hi)
    assert (m.inversion.status == dm.INSIDE).all()
    assert len(m.fit.points) == len(m.radii)  # every radius is certainly inside AT's range
    # The map's answer is as close to theory's as the ladder's spacing allows.
    assert np.all(m.inversion.eps / m.theory_hi <= RATIO) and np.all(m.theory_lo / m.inversion.eps <= RATIO)
    # ...and the slope of theory's own budgets lies within the map's bound of the map's slope.
    assert abs(m.fit.slope - m.theory_slope) <= m.slope_bound


@settings(max_examples=25)
@given(S.p, S.eta, S.n)
def test_per_sample_reading_gives_rho_over_n_and_slope_one(p, eta, n):
    radii = per_sample_radii(eta, n)
    m = de.exact_map(p, eta, n, radii, de.ladder_around(radii[0] / n, radii[-1] / n, RATIO), de.PER_SAMPLE)
    _check_brackets(m)
    exact = de.per_sample_eps_at(n, radii)  # SAM(ρ) read per sample is AT(ρ/n)
    assert np.all((m.theory_lo <= exact * (1 + 1e-12)) & (exact <= m.theory_hi * (1 + 1e-12)))
    assert np.all((m.left <= exact) & (exact <= m.right))
    assert m.verdict == dm.CONSISTENT_1
    assert abs(m.theory_slope - 1) <= theory_slope_bound(m)  # theory's own budgets, within their brackets


@settings(max_examples=25)
@given(S.p, S.eta, S.n)
def test_population_reading_gives_a_slope_that_tends_to_two(p, eta, n):
    radii = population_radii(p, eta, n)
    derived = de.derived_eps_at(p, eta, n, radii)
    m = de.exact_map(p, eta, n, radii, de.ladder_around(derived[0], derived[-1], RATIO), de.POPULATION)
    _check_brackets(m)
    assert m.verdict == dm.CONSISTENT_2
    # theory's own slope, within its brackets carried through the fit: in [2 - DEFICIT, 2] by the choice of radii
    # (the derived relation's local slope is 2·3n/(3n + cρ²)), with room for its O(ρ⁴) remainder, which is of
    # relative order ρ² against the deficit itself.
    bound = theory_slope_bound(m)
    assert -bound <= 2 - m.theory_slope <= 2 * DEFICIT + bound
    # Eight times larger radii: theory's slope lies further below 2 (the deficit grows like ρ²).
    larger = population_radii(p, eta, n, scale=8.0)
    far = de.exact_map(p, eta, n, larger, de.ladder_around(*de.derived_eps_at(p, eta, n, larger[[0, -1]]), RATIO),
                       de.POPULATION)
    _check_brackets(far)
    assert (2 - far.theory_slope) - theory_slope_bound(far) > (2 - m.theory_slope) + bound


def test_the_map_fails_the_check_when_the_curves_disagree():
    """The check can fail: shift SAM's accuracies by more than a ladder step and the map leaves theory's bracket."""
    p, eta, n = 0.8, 0.5, 10
    radii = per_sample_radii(eta, n)
    m = de.exact_map(p, eta, n, radii, de.ladder_around(radii[0] / n, radii[-1] / n, RATIO), de.PER_SAMPLE)
    shifted = dm.invert(m.budgets, m.at_accuracy, m.sam_accuracy + 1e-3)
    assert not np.any((shifted.eps >= m.left) & (shifted.eps <= m.right))


def test_budgets_without_an_optimum_and_small_columns_are_refused():
    with pytest.raises(ParameterError, match="budgets"):
        de.exact_map(0.8, 0.5, 10, [0.1, 0.2, 0.4], [0.1, 0.3, 0.6], de.PER_SAMPLE)  # ε = 0.6 >= η
    with pytest.raises(ParameterError, match="radii"):
        de.exact_map(0.8, 0.5, 2, [0.1, 0.5, 1.2], [0.01, 0.1, 0.3], de.PER_SAMPLE)  # ρ = 1.2 >= ηn
    with pytest.raises(ParameterError, match="column_eps"):
        de.exact_map(0.8, 0.5, 10, [0.1, 0.2, 0.4], [0.01, 0.02, 0.04], de.PER_SAMPLE, column_eps=0.25)
    with pytest.raises(ParameterError, match="reading"):
        de.exact_map(0.8, 0.5, 10, [0.1, 0.2, 0.4], [0.01, 0.02, 0.04], "both")
