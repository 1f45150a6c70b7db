"""Symbolic derivations agree with the closed forms and with the numerical optima."""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp
from hypothesis import given, settings

from samat.theory import closed_form as cf
from samat.theory import symbolic as sym
from samat.theory.numeric import equal_robustness_at_budget, sam_optimum_equal_endpoints, st_optimum
from tests.theory import strategies as S


@given(S.p, S.eta)
def test_derived_w_star_is_theorem_1(p, eta):
    derived = float(sym.w_star().subs({sym.p: p, sym.eta: eta}).evalf(30))
    assert abs(derived - float(cf.w1_star(p, eta))) <= float(cf.rounding_bound(p, eta))


@given(S.p, S.eta, S.at_fraction)
def test_derived_w_at_is_theorem_2(p, eta, frac):
    derived = float(sym.w_at().subs({sym.p: p, sym.eta: eta, sym.eps: frac * eta}).evalf(30))
    assert abs(derived - float(cf.w1_at(p, eta, frac * eta))) <= float(cf.rounding_bound(p, eta, frac * eta))


def test_sam_expansion_leading_term_is_one_over_3n():
    expansion = sym.sam_expansion(order=4)
    assert sp.simplify(expansion.A - 1 / (3 * sym.n)) == 0
    # The next order depends on p through w*: B = -(η²n² - 3n + w*²)/(45 n³).
    assert sp.simplify(expansion.B + (sym.eta**2 * sym.n**2 - 3 * sym.n + sym.w_star_sym**2) / (45 * sym.n**3)) == 0


@given(S.p, S.eta, S.small_n)
@settings(max_examples=15)
def test_symbolic_expansion_matches_numerical_sam_optima(p, eta, n):
    """Both terms of the series against the numerical optimum: the residual is O(ε⁶)."""
    eps = 0.02
    w_star = float(st_optimum(p, eta, n).w1_float())
    w_sam = float(sam_optimum_equal_endpoints(p, eta, n, eps).w1_float())
    e = sym.sam_expansion(order=4)
    subs = {sym.n: n, sym.eta: eta, sym.w_star_sym: w_star}
    predicted = w_star * (1 + float(e.A.subs(subs)) * eps**2 + float(e.B.subs(subs)) * eps**4)
    residual = abs(w_sam - predicted) / (w_star * eps**2)
    # Relative to the ε² increment, the next term is O(ε⁴) with a coefficient of size (B/A)²:
    scale = (1 + abs(float(e.B.subs(subs)) / float(e.A.subs(subs)))) ** 2
    assert residual <= 10 * scale * eps**4 + 1e-8


def test_equal_robustness_relation_matches_numerics():
    p, eta, n = 0.8, 0.5, 3
    relation = sym.equal_robustness()
    const = float(relation.constant.subs(sym.w_star_sym, sym.w_star()).subs({sym.p: p, sym.eta: eta, sym.n: n}))
    eps_sam = np.array([0.05, 0.1])
    eps_at = equal_robustness_at_budget(p, eta, n, sam_optimum_equal_endpoints(p, eta, n, eps_sam).w1_float()).value
    residual = eta / eps_at - float(relation.lead.subs(sym.n, n)) / eps_sam**2
    assert np.all(np.abs(residual - const) < 0.02 * abs(const) + 5 * eps_sam**2)


def test_per_sample_sam_is_at_at_eps_over_n():
    """SAM read per sample (W eq. 15, D eq. 11) has AT's objective at budget ε/n, not at ε; so its optimum is
    Theorem 2's at ε/n, which rises to first order in ε."""
    assert sym.per_sample_is_at(sym.eps / sym.n) and not sym.per_sample_is_at(sym.eps)
    assert sp.simplify(sym.w_sam_per_sample() - sym.w_at().subs(sym.eps, sym.eps / sym.n)) == 0
    exact, leading = sym.per_sample_rise()
    assert sp.simplify(exact - sym.eps / (sym.eta * sym.n - sym.eps)) == 0
    assert sp.simplify(leading - sym.eps / (sym.eta * sym.n)) == 0


def test_evaluate_rounds_once():
    """sym.evaluate works at 30 digits from the exact float inputs: within half an ulp of a 60-digit value."""
    args = (sym.p, sym.eta, sym.n, sym.eps)
    got = sym.evaluate(sym.w_sam_per_sample(), args, 0.7, 0.05, 20, 0.999)
    with mpmath.workdps(60):
        f = sp.lambdify(args, sym.w_sam_per_sample(), modules="mpmath")
        exact = f(*(mpmath.mpf(v) for v in (0.7, 0.05, 20, 0.999)))
        assert abs(mpmath.mpf(float(got)) - exact) <= abs(exact) * np.finfo(float).eps / 2


def test_diagnosis_locates_the_papers_error():
    diagnosis = sym.diagnose_paper_derivative()
    assert diagnosis.true_form_matches and not diagnosis.paper_form_matches
    assert diagnosis.coefficient_if_gaussian_factor_is_exp_minus_w2 == sp.Rational(2, 3)


def test_corrected_statements_are_sympy_parsable():
    text = sym.as_text(sym.w_star() * (1 + sym.sam_expansion(order=2).A * sym.eps**2))
    parsed = sp.sympify(text, locals={"eta": sym.eta, "n": sym.n, "p": sym.p, "eps": sym.eps})
    value = float(parsed.subs({sym.p: 0.8, sym.eta: 0.5, sym.n: 2, sym.eps: 0.1}))
    assert abs(value - float(cf.w1_star(0.8, 0.5)) * (1 + 0.01 / 6)) < 1e-12
