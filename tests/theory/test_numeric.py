"""Numerical optima: against the theorems they check, against brute force, and against each other."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from samat.theory import closed_form as cf
from samat.theory import symbolic as sym
from samat.theory.backend import FLOAT64, mp_backend
from samat.theory.numeric import (
    at_optimum,
    equal_robustness_at_budget,
    minimize_risk,
    sam_optimum,
    sam_optimum_equal_endpoints,
    sam_per_sample_optimum,
    st_optimum,
)
from samat.theory.objectives import log_risk, risk_slope, sam_per_sample_log_risk
from tests.theory import strategies as S

U = np.finfo(float).eps / 2


def within_bracket(closed, opt, rounding) -> bool:
    """The closed form lies inside the numerical bracket, up to its own rounding."""
    return bool(opt.found) and float(opt.lo) - rounding <= closed <= float(opt.hi) + rounding


def resolution_limit(w, p, eta, n, eps=0.0):
    """The narrowest bracket the slope's rounding bound allows: its error over its rate of change."""
    s = risk_slope(w, p, eta, n, eps)
    h = 1e-6 * max(1.0, abs(w))
    rate = abs(float(risk_slope(w + h, p, eta, n, eps).value - risk_slope(w - h, p, eta, n, eps).value)) / (2 * h)
    return 2 * float(s.error) / rate + 8 * U * abs(w)


@given(S.p, S.eta, S.n)
def test_st_optimum_equals_theorem_1(p, eta, n):
    opt = st_optimum(p, eta, n)
    assert within_bracket(float(cf.w1_star(p, eta)), opt, float(cf.rounding_bound(p, eta)))
    # ...and the bracket is as sharp as float64 allows, within a factor 4.
    assert opt.bracket_width <= 4 * resolution_limit(float(opt.w1), p, eta, n)


@given(S.p, S.eta, S.n, S.at_fraction)
def test_at_optimum_equals_theorem_2(p, eta, n, frac):
    eps = frac * eta
    opt = at_optimum(p, eta, n, eps)
    assert within_bracket(float(cf.w1_at(p, eta, eps)), opt, float(cf.rounding_bound(p, eta, eps)))


@given(S.p, S.eta, S.n, st.floats(1.0, 5.0))
@settings(max_examples=15)
def test_at_has_no_finite_optimum_when_eps_reaches_eta(p, eta, n, ratio):
    opt = at_optimum(p, eta, n, ratio * eta)
    assert not bool(opt.found) and np.isnan(opt.w1_float())
    assert float(opt.lo) >= 1e3 * np.sqrt(n)  # it followed the rising objective far past the scale √n


def decided_sam(p, eta, n, eps):
    """w1^SAM from the direct solve, or from the shortcut where float64 cannot resolve the direct one."""
    direct = sam_optimum(p, eta, n, eps)
    st_ = st_optimum(p, eta, n)
    if direct.found and (direct.lo > st_.hi or direct.hi < st_.lo):
        return direct, st_
    return sam_optimum_equal_endpoints(p, eta, n, eps), st_


@given(S.p, S.eta, S.n, S.sam_eps)
def test_sam_optimum_exceeds_w_star_theorem_3(p, eta, n, eps):
    sam, st_ = decided_sam(p, eta, n, eps)
    assert float(sam.lo) > float(st_.hi), "w1^SAM > w1* is not resolved or is violated"


def dense_sam_objective(w, p, eta, n, eps, grid=2001):
    """max over a dense δ-grid (ends included), independent of the solver's inner maximization."""
    w = np.asarray(w, dtype=float)[..., None]
    lr = log_risk(w + eps * np.linspace(-1, 1, grid), p, eta, n)
    top = np.argmax(lr.value, axis=-1)[..., None]
    return np.take_along_axis(lr.value, top, -1)[..., 0], np.take_along_axis(lr.error, top, -1)[..., 0]


@given(S.p, S.eta, st.integers(1, 30), st.floats(0.01, 2.0))
@settings(max_examples=25)
def test_no_point_near_the_sam_optimum_beats_it(p, eta, n, eps):
    opt = sam_optimum(p, eta, n, eps)
    assert opt.found
    w0 = float(opt.w1)
    value, error = dense_sam_objective(w0, p, eta, n, eps)
    offsets = np.concatenate([np.linspace(-1, 1, 201) * max(float(opt.bracket_width) * 50, 1e-9),
                              np.linspace(-1, 1, 201) * eps, np.linspace(-1, 1, 201) * 3 * np.sqrt(n) + 1])
    others, others_err = dense_sam_objective(w0 + offsets, p, eta, n, eps)
    assert np.all(others >= value - error - others_err)


@given(S.p, S.eta, S.n, st.floats(0.003, 1.0))
@settings(max_examples=30)
def test_equal_endpoints_shortcut_agrees_with_the_direct_solve(p, eta, n, eps):
    """The validation that licenses the shortcut: both brackets overlap wherever both resolve."""
    direct, short = sam_optimum(p, eta, n, eps), sam_optimum_equal_endpoints(p, eta, n, eps)
    assert short.found and short.bracket_width < 1e-6 * abs(float(short.w1))
    if direct.found:
        assert float(direct.lo) <= float(short.hi) and float(short.lo) <= float(direct.hi)


def test_mp_path_resolves_small_eps_where_float64_cannot():
    p, eta, n, eps = 0.8, 0.5, 3, 1e-5
    st64, sam64 = st_optimum(p, eta, n), sam_optimum(p, eta, n, eps)
    gain = float(cf.w1_star(p, eta)) * eps**2 / (3 * n)  # what the increment turns out to be
    assert sam64.bracket_width > gain  # float64: the direct solve cannot see the increment
    bk = mp_backend(40)
    st_mp, sam_mp = st_optimum(p, eta, n, bk), sam_optimum(p, eta, n, eps, bk)
    assert sam_mp.bracket_width < 1e-6 * gain
    increment = float(sam_mp.w1 - st_mp.w1)
    assert increment > 0 and abs(increment - gain) / gain < 1e-4  # O(ε²) corrections are ~1e-10 here
    assert within_bracket(float(cf.w1_star(p, eta)), st64, float(cf.rounding_bound(p, eta)))


def test_mp_and_float64_agree_where_both_resolve():
    p, eta, n = np.array([0.7, 0.9]), np.array([0.3, 1.0]), np.array([2, 10])
    for solve in (lambda bk: at_optimum(p, eta, n, 0.2 * eta, bk), lambda bk: sam_optimum(p, eta, n, 0.3, bk)):
        f, m = solve(FLOAT64), solve(mp_backend(30))
        m_lo, m_hi = m.backend.to_float(m.lo), m.backend.to_float(m.hi)
        assert np.all(f.lo <= m_hi) and np.all(m_lo <= f.hi)


@given(st.lists(st.tuples(S.p, S.eta, st.integers(1, 50), st.floats(0.01, 1.5)), min_size=2, max_size=6))
@settings(max_examples=10)
def test_vectorized_solve_equals_pointwise(points):
    p, eta, n, eps = (np.array(v) for v in zip(*points, strict=True))
    together = sam_optimum(p, eta, n, eps)
    for i in range(len(p)):
        alone = sam_optimum(p[i], eta[i], n[i], eps[i])
        assert float(alone.lo) <= together.hi[i] and together.lo[i] <= float(alone.hi)


def brute_force_minimizer(p, eta, n, attack_eps, sam_eps, lo, hi, nodes):
    """The best of ``nodes`` points spanning [lo, hi] for max_{|δ| <= ε_SAM} risk_{ε_AT}(w1 + δ), the inner max over
    201 δ spanning [-ε_SAM, ε_SAM] (ends included); and the node spacing."""
    w = np.linspace(lo, hi, nodes)
    inner = log_risk(w[:, None] + sam_eps * np.linspace(-1, 1, 201), p, eta, n, attack_eps).value.max(axis=1)
    return float(w[np.argmin(inner)]), (hi - lo) / (nodes - 1)


@pytest.mark.parametrize(("p", "eta", "n", "attack_eps", "sam_eps"), [
    (0.8, 0.5, 4, 0.0, 0.3), (0.8, 0.5, 4, 0.1, 0.3), (0.7, 1.0, 10, 0.0, 1.0), (0.9, 0.3, 2, 0.15, 0.05)])
def test_sam_optimum_is_the_brute_force_minimizer_of_the_max_min_objective(p, eta, n, attack_eps, sam_eps):
    """The solver's SAM optimum (with and without an attack) against a grid search of the max-min objective
    (workshop eq. 19) over w1, independent of the solver's scan, inner maximization and bisection. The objective is
    quasi-convex with a kink at its minimizer (where the two ends of the δ-interval trade places), so the best
    node of a grid lies within one spacing of the minimizer: a coarse grid over [-10, 60] finds its cell, a fine
    one over the 4 coarse cells around it places it; the solver's bracket must hold it to that spacing."""
    opt = minimize_risk(p, eta, n, attack_eps=attack_eps, sam_eps=sam_eps)
    assert opt.found
    coarse, h = brute_force_minimizer(p, eta, n, attack_eps, sam_eps, -10.0, 60.0, 1401)
    fine, h = brute_force_minimizer(p, eta, n, attack_eps, sam_eps, coarse - 2 * h, coarse + 2 * h, 4001)
    assert float(opt.lo) - h <= fine <= float(opt.hi) + h, (fine, float(opt.lo), float(opt.hi))
    if attack_eps:  # SAM on top of AT moves the optimum further out than AT alone
        assert float(opt.lo) > float(at_optimum(p, eta, n, attack_eps).hi)


@given(S.p, S.eta, st.integers(1, 30), st.floats(0.05, 1.0))
@settings(max_examples=10)
def test_equal_robustness_budget_reproduces_the_target(p, eta, n, eps_sam):
    target = sam_optimum_equal_endpoints(p, eta, n, eps_sam).w1_float()
    budget = equal_robustness_at_budget(p, eta, n, target)
    w_at = at_optimum(p, eta, n, budget.value)
    assert abs(float(w_at.w1_float()) - float(target)) <= 1e-9 * abs(float(target))


def test_equal_robustness_budget_is_tight_where_the_first_secant_step_is_exact():
    """AT's slope at a fixed w1 is linear in ε: the first regula falsi step lands on the budget, where the slope's
    sign cannot be decided; the bracket must still close in on it (a plain bisection stopped at [0, η] there)."""
    p, eta, n = 0.8, 0.2, 1
    target = float(cf.w1_at(p, eta, eta / 2))
    budget = equal_robustness_at_budget(p, eta, n, target)
    assert float(budget.lo) <= eta / 2 <= float(budget.hi) and float(budget.bracket_width) < 1e-12


def test_equal_robustness_budget_in_mpmath_keeps_its_digits():
    """The budget's midpoint is formed at the working precision (not mpmath's default 53 bits): AT solved at it
    returns the target to ~30 digits, where the SAM increment it encodes (ε_SAM² / (3n) relative) lives."""
    bk = mp_backend(40)
    p, eta, n = 0.8, 0.5, 2
    target = sam_optimum_equal_endpoints(p, eta, n, 1e-4, bk=bk).w1
    budget = equal_robustness_at_budget(p, eta, n, target, bk=bk)
    at = at_optimum(p, eta, n, budget.value, bk=bk)
    with bk.context():
        assert abs(at.w1 - target) <= abs(target) * mpmath.mpf(10) ** -30 + (at.hi - at.lo)


per_sample_eps = st.floats(0.01, 0.97)  # ε_SAM / (ηn): below 1 a finite per-sample optimum exists


@given(S.p, S.eta, S.n, per_sample_eps)
@settings(max_examples=25)
def test_per_sample_optimum_minimizes_the_per_sample_objective(p, eta, n, frac):
    """No grid point, near the optimum or far from it, beats it. The tolerance is how much the objective varies
    across the bracket (which contains the minimizer), plus the rounding bounds of the values compared."""
    eps = frac * (eta * n)
    opt = sam_per_sample_optimum(p, eta, n, eps)
    assert opt.found
    w0 = float(opt.w1)
    ref = sam_per_sample_log_risk(np.array([float(opt.lo), w0, float(opt.hi)]), p, eta, n, eps)
    slack = float(ref.value.max() - ref.value.min())
    offsets = np.concatenate([np.linspace(-1, 1, 201) * max(float(opt.bracket_width) * 50, 1e-9 * abs(w0)),
                              np.linspace(-1, 1, 201) * 0.1 * abs(w0), np.linspace(-1, 1, 201) * 3 * np.sqrt(n) + 1])
    others = sam_per_sample_log_risk(w0 + offsets, p, eta, n, eps)
    assert np.all(others.value >= ref.value[1] - slack - ref.error[1] - others.error)


@given(S.p, S.eta, S.n, per_sample_eps)
@settings(max_examples=25)
def test_per_sample_closed_form_matches_the_numerical_optimum(p, eta, n, frac):
    """n ln(p/(1-p)) / (2(ηn - ε)), derived by sympy from the per-sample objective, lies in the numerical bracket
    up to its rounding bound; and the optimum is AT's at ε/n (both brackets overlap)."""
    eps = frac * (eta * n)
    opt = sam_per_sample_optimum(p, eta, n, eps)
    closed = float(sym.evaluate(sym.w_sam_per_sample(), (sym.p, sym.eta, sym.n, sym.eps), p, eta, n, eps))
    assert within_bracket(closed, opt, float(cf.rounding_bound_per_sample(p, eta, n, eps)))
    at = at_optimum(p, eta, n, eps / n)
    assert float(at.lo) <= float(opt.hi) and float(opt.lo) <= float(at.hi)


@given(S.p, S.eta, st.integers(1, 30), per_sample_eps)
@settings(max_examples=5)
def test_per_sample_closed_form_matches_in_mpmath(p, eta, n, frac):
    """The same at 40 digits: the closed form, evaluated at 50, within the mpmath bracket plus its rounding."""
    eps = frac * (eta * n)
    bk = mp_backend(40)
    opt = sam_per_sample_optimum(p, eta, n, eps, bk=bk)
    f = sp.lambdify((sym.p, sym.eta, sym.n, sym.eps), sym.w_sam_per_sample(), modules="mpmath")
    with mpmath.workdps(50):
        closed = f(*(mpmath.mpf(v) for v in (p, eta, n, eps)))
    with bk.context():
        rounding = mpmath.mpf(float(cf.rounding_bound_per_sample(p, eta, n, eps, u=float(bk.unit_roundoff))))
        assert bool(opt.found) and opt.lo - rounding <= closed <= opt.hi + rounding
        assert opt.hi - opt.lo < abs(closed) * mpmath.mpf(10) ** -30


@given(S.p, S.eta, S.n, st.floats(1.0, 5.0))
@settings(max_examples=15)
def test_per_sample_has_no_finite_optimum_from_eps_equal_eta_n(p, eta, n, ratio):
    opt = sam_per_sample_optimum(p, eta, n, ratio * (eta * n))
    assert not bool(opt.found) and float(opt.lo) >= 1e3 * np.sqrt(n)


def test_invalid_input_is_rejected_before_solving():
    from samat.core.errors import ParameterError

    with pytest.raises(ParameterError, match="p=0.4"):
        st_optimum(0.4, 0.5, 1)
    with pytest.raises(ParameterError, match="sam_eps"):
        sam_optimum(0.8, 0.5, 1, -0.1)
    with pytest.raises(ParameterError, match="sam_eps=0.1 is invalid"):  # SAM with a full-ball attack
        minimize_risk(0.8, 0.5, 1, attack_eps=0.1, sam_eps=0.1, attack_x1=True)
    with pytest.raises(ParameterError, match="attack_eps=1.0 is invalid"):
        minimize_risk(0.8, 0.5, 1, attack_eps=1.0, attack_x1=True)
