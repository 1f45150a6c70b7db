"""The papers' closed forms (theory.closed_form) at points where their values are known exactly, and the rounding
bounds against the float64 error they bound. Tolerances: a few ulps of float64 (rel=1e-14), the formulas being a
handful of operations; the rounding bounds are checked against 50-digit mpmath values. The bounds are ~1e-15, so
their comparisons set abs=0 (pytest.approx's default abs=1e-12 would accept any of them)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from samat.core.errors import ParameterError
from samat.theory import closed_form as cf

LN3 = math.log(3.0)  # log-odds of p = 3/4
ULPS = 1e-14


def test_log_odds_is_ln_p_over_one_minus_p():
    assert cf.log_odds(0.75) == pytest.approx(LN3, rel=ULPS, abs=0)
    assert cf.log_odds(np.array([0.75, 0.9])) == pytest.approx([LN3, math.log(9.0)], rel=ULPS, abs=0)


def test_theorems_1_and_2_and_their_n_dimensional_forms():
    # W eq. 8/11, eq. 12; D eq. 8, eq. 10 at p = 3/4 (log-odds ln 3)
    assert cf.w1_star(0.75, 0.5) == pytest.approx(LN3, rel=ULPS, abs=0)
    assert cf.w_r_star(0.75, 0.5, 4) == pytest.approx(LN3 / 4, rel=ULPS, abs=0)
    assert cf.w1_at(0.75, 0.5, 0.25) == pytest.approx(2 * LN3, rel=ULPS, abs=0)
    assert cf.w_r_at(0.75, 0.5, 4, 0.25) == pytest.approx(2 * LN3 / 4, rel=ULPS, abs=0)


@pytest.mark.parametrize("call", [
    lambda: cf.w1_star(1.5, 1.0), lambda: cf.w1_star(0.75, -1.0),
    lambda: cf.w_r_star(1.5, 1.0, 2), lambda: cf.w_r_star(0.75, 0.0, 2), lambda: cf.w_r_star(0.75, 1.0, 0.5),
    lambda: cf.w1_at(0.3, 1.0, 0.5), lambda: cf.w_r_at(0.3, 1.0, 2, 0.5), lambda: cf.w_r_at(0.75, 1.0, 1.5, 0.5),
])
def test_closed_forms_refuse_parameters_outside_the_model(call):
    with pytest.raises(ParameterError):
        call()


@pytest.mark.parametrize("function", [lambda eta, eps: cf.w1_at(0.75, eta, eps),
                                      lambda eta, eps: cf.w_r_at(0.75, eta, 3, eps)])
def test_the_at_optimum_needs_eps_strictly_below_eta(function):
    assert np.isfinite(function(0.5, 0.4999))
    for eps in (0.5, 0.75):  # eps = eta included: Theorem 2 has no optimum there
        with pytest.raises(ParameterError) as err:
            function(0.5, eps)
        assert (err.value.name, err.value.value) == ("eps", eps)
        assert err.value.valid.startswith("< eta")
    with pytest.raises(ParameterError) as err:  # a bad eta is named as such, not blamed on eps
        function(-1.0, 0.0)
    assert err.value.name == "eta"
    with pytest.raises(ParameterError) as err:
        function(0.5, -0.1)
    assert err.value.name == "eps"


def test_theorem3_is_a_strict_inequality():
    assert cf.theorem3_holds(np.array([2.0, 1.0, 0.5]), 1.0).tolist() == [True, False, False]


def test_theorem4_and_theorem5_as_printed():
    assert cf.THEOREM4_COEFFICIENT == pytest.approx(2 / 3, rel=ULPS, abs=0)
    assert cf.w1_sam_claimed(3.0, 0.5) == pytest.approx(3.0 * (1 + 0.5**2 * 2 / 3), rel=ULPS, abs=0)
    assert cf.theorem5_lhs(0.3) == pytest.approx(2 + 3 / 0.09, rel=ULPS, abs=0)
    # 2 + 3/eps_sam^2 = 2 eta / eps_at  <=>  eps_at = 2 eta / (2 + 3/eps_sam^2)
    assert cf.eps_at_claimed(0.5, 0.7) == pytest.approx(2 * 0.7 / 14, rel=ULPS, abs=0)
    assert cf.eps_at_claimed(np.array([0.5, 1.0]), 1.0) == pytest.approx([2 / 14, 2 / 5], rel=ULPS, abs=0)


def _exact_w1_at(p, eta, eps):
    with mpmath.workdps(50):
        p, eta, eps = (mpmath.mpf(float(v)) for v in (p, eta, eps))
        return (mpmath.log(p) - mpmath.log(1 - p)) / (2 * (eta - eps))


POINTS = [(0.5 + 1e-9, 1.0, 0.0), (0.500001, 0.3, 0.1), (0.75, 0.5, 0.25), (0.99, 2.0, 1.999), (1 - 1e-12, 0.1, 0.0)]


@pytest.mark.parametrize(("p", "eta", "eps"), POINTS)
def test_rounding_bound_bounds_the_float64_error_and_is_its_stated_formula(p, eta, eps):
    bound = cf.rounding_bound(p, eta, eps)
    computed = cf.w1_at(p, eta, eps) if eps else cf.w1_star(p, eta)
    assert abs(computed - float(_exact_w1_at(p, eta, eps))) <= bound
    u = np.finfo(np.float64).eps / 2
    logs = abs(math.log(p)) + abs(math.log1p(-p))
    stated = 4 * u * logs / (2 * abs(eta - eps)) + 4 * u * abs(computed)  # its docstring's derivation
    assert bound == pytest.approx(stated, rel=1e-12, abs=0)
    assert cf.rounding_bound(p, eta, eps, u=1e-30) == pytest.approx(stated * 1e-30 / u, rel=1e-12, abs=0)
    if eps == 0:  # the default budget is 0: the bound of Theorem 1's w1*
        assert cf.rounding_bound(p, eta) == bound


@pytest.mark.parametrize(("p", "eta", "n", "eps"), [(0.75, 0.5, 4, 1.0), (0.6, 0.25, 10, 2.49), (0.9, 1.0, 1, 0.0)])
def test_per_sample_rounding_bound_adds_the_rounding_of_the_product_eta_n(p, eta, n, eps):
    u = np.finfo(np.float64).eps / 2
    value = abs(cf.log_odds(p)) * n / (2 * abs(eta * n - eps))
    stated = cf.rounding_bound(p, eta, eps / n) + 4 * u * value * eta * n / abs(eta * n - eps)
    assert cf.rounding_bound_per_sample(p, eta, n, eps) == pytest.approx(stated, rel=1e-12, abs=0)
    small = cf.rounding_bound(p, eta, eps / n, u=1e-30) + 4e-30 * value * eta * n / abs(eta * n - eps)
    assert cf.rounding_bound_per_sample(p, eta, n, eps, u=1e-30) == pytest.approx(small, rel=1e-12, abs=0)
    # it bounds the float64 error of n ln(p/(1-p)) / (2(eta n - eps)), the per-sample optimum
    with mpmath.workdps(50):
        exact = (n * (mpmath.log(mpmath.mpf(p)) - mpmath.log(1 - mpmath.mpf(p)))
                 / (2 * (mpmath.mpf(eta) * n - mpmath.mpf(eps))))
    assert abs(value - float(exact)) <= cf.rounding_bound_per_sample(p, eta, n, eps)
