"""Symbolic derivations (sympy), starting from the objectives and nothing else.

* w1* and w1^AT from the first-order condition of the accuracy u(w1) (W eq. 9, 13);
* SAM's objective as printed (W eq. 15, D eq. 11: the worst δ per sample), its optimum, and its identity with
  AT's objective at budget ε/n;
* the small-ε expansion of the SAM optimum, w1^SAM = w1* (1 + A ε² + B ε⁴ + O(ε⁶)), from the
  optimality condition of the max-min problem, u(w - ε) = u(w + ε) (W eq. 20), by series
  expansion, symbolically in p, η and n;
* the equal-robustness relation between ε_AT and ε_SAM that follows from the two;
* a diagnosis of the papers' coefficient 2/3: the derivative of u that the proofs use
  (W eq. 18, 24) against the true one.

Every derivation is cached: sympy takes a few seconds, and the results are pure functions of
the model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy as sp

w, p, eta, n = sp.symbols("w p eta n", positive=True)
eps, eps_at, eps_sam = sp.symbols("eps eps_AT eps_SAM", positive=True)
w_star_sym = sp.Symbol("w_star", positive=True)


def Phi(x: sp.Expr) -> sp.Expr:
    """The standard normal CDF."""
    return (1 + sp.erf(x / sp.sqrt(2))) / 2


def accuracy_terms(w1: sp.Expr, attack: sp.Expr = sp.S.Zero) -> list[tuple[sp.Expr, sp.Expr]]:
    """u(w1) = Σ c Φ(arg) (W eq. 9; eq. 13 with the non-robust mean η - ε under attack)."""
    mean = (eta - attack) * n
    return [(p, (w1 + mean) / sp.sqrt(n)), (1 - p, (-w1 + mean) / sp.sqrt(n))]


def accuracy(w1: sp.Expr, attack: sp.Expr = sp.S.Zero) -> sp.Expr:
    return sp.Add(*(c * Phi(arg) for c, arg in accuracy_terms(w1, attack)))


def _first_order_root(terms: list[tuple[sp.Expr, sp.Expr]]) -> sp.Expr:
    """Solve d/dw1 Σ c Φ(arg) = 0: the two density terms have opposite signs, so compare their logs."""
    rising, falling = [], []
    for c, arg in terms:
        term = sp.diff(c * Phi(arg), w)
        (rising if sp.diff(arg, w).is_positive else falling).append(term)
    (up,), (down,) = rising, falling
    condition = sp.expand(sp.expand_log(sp.log(up) - sp.log(-down), force=True))
    (root,) = sp.solve(condition, w)
    return sp.simplify(root)


@functools.cache
def w_star() -> sp.Expr:
    """w1* from du/dw1 = 0 (Theorem 1)."""
    return _first_order_root(accuracy_terms(w))


@functools.cache
def w_at() -> sp.Expr:
    """w1^AT from dv/dw1 = 0 with the attacked objective v (Theorem 2), in terms of p, η, n, ε."""
    return _first_order_root(accuracy_terms(w, eps))


# --- SAM as printed: the worst δ per sample (W eq. 15, D eq. 11) ---------------------------------


def per_sample_sam_terms(w1: sp.Expr) -> list[tuple[sp.Expr, sp.Expr]]:
    """E min_{|δ| <= ε} 1{correct at (w1 + δ, 1, ..., 1)} = Σ c Φ(arg): the SAM objective with the maximum of the
    0-1 loss inside the expectation, as W eq. (15) and D eq. (11) print it.

    Per class s = y x1 (= +1 w.p. p, -1 w.p. 1-p) the margin at w1 + δ is (w1 + δ) s + S, S = y Σx_i ~ N(ηn, n).
    It is linear in δ (checked), so its minimum over |δ| <= ε lies at an end; which end is decided by sympy
    from ε > 0, not assumed. The sample is correct iff S > -(worst margin without S): Φ((worst + ηn)/√n).
    """
    delta = sp.Symbol("delta", real=True)
    terms = []
    for c, s in ((p, 1), (1 - p, -1)):
        margin = (w1 + delta) * s
        if sp.diff(margin, delta, 2) != 0:
            raise ArithmeticError("the margin is not linear in delta")
        low, high = margin.subs(delta, -eps), margin.subs(delta, eps)
        gap = sp.simplify(low - high)
        if gap.is_negative is None:
            raise ArithmeticError(f"cannot tell which end of |delta| <= eps is worse: {gap}")
        worst = low if gap.is_negative else high
        terms.append((c, (worst + eta * n) / sp.sqrt(n)))
    return terms


@functools.cache
def w_sam_per_sample() -> sp.Expr:
    """The per-sample SAM optimum from the first-order condition of its objective (a maximum for ε < ηn)."""
    return _first_order_root(per_sample_sam_terms(w))


def per_sample_w1(p_value, eta_value, n_value, eps_value) -> np.ndarray:
    """The derived per-sample SAM optimum n ln(p/(1-p)) / (2(ηn - ε)) (:func:`w_sam_per_sample`) at every point of the
    broadcast arguments, in 30 digits rounded once (:func:`evaluate`); nan where ε >= ηn (as float64 forms ηn, as the
    objective does), where no finite optimum exists. The one evaluation of this closed form (the verification, the
    figures and ``samat theory solve`` use it)."""
    P, E, N, EPS = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (p_value, eta_value, n_value, eps_value)))
    finite = EPS < E * N
    out = np.full(EPS.shape, np.nan)
    out[finite] = evaluate(w_sam_per_sample(), (p, eta, n, eps), P[finite], E[finite], N[finite], EPS[finite])
    return out


@functools.cache
def per_sample_is_at(budget: sp.Expr = eps / n) -> bool:
    """Whether per-sample SAM with budget ε has, term by term, the objective of AT with budget ``budget``."""
    return all(c1 == c2 and sp.simplify(a1 - a2) == 0
               for (c1, a1), (c2, a2) in zip(per_sample_sam_terms(w), accuracy_terms(w, budget), strict=True))


@functools.cache
def per_sample_eps_at() -> sp.Expr:
    """The AT budget whose optimum is per-sample SAM's at ε_SAM: ε_SAM/n, exactly, since the two objectives
    coincide (:func:`per_sample_is_at`, checked here)."""
    if not per_sample_is_at(eps / n):
        raise ArithmeticError("per-sample SAM(eps) does not have AT(eps/n)'s objective")
    return eps_sam / n


@functools.cache
def per_sample_rise() -> tuple[sp.Expr, sp.Expr]:
    """w1^SAM / w1* - 1 for the per-sample reading: exactly, and its leading term as ε -> 0."""
    ratio = sp.simplify(w_sam_per_sample() / w_star() - 1)
    return ratio, sp.series(ratio, eps, 0, 2).removeO()


@dataclass(frozen=True)
class SamExpansion:
    """w1^SAM = w1* (1 + A ε² + B ε⁴ + O(ε⁶)); A and B in terms of p, η, n (and w_star)."""

    A: sp.Expr
    B: sp.Expr

    def relative_increment(self, order: int = 2) -> sp.Expr:
        return self.A * eps**2 + (self.B * eps**4 if order >= 4 else 0)

    def substitute_w_star(self) -> SamExpansion:
        return SamExpansion(*(sp.simplify(e.subs(w_star_sym, w_star())) for e in (self.A, self.B)))


P_OF_W_STAR = sp.exp(eta * w_star_sym) / (sp.exp(eta * w_star_sym) + sp.exp(-eta * w_star_sym))


@functools.cache
def _taylor_at_w_star(k_max: int) -> tuple[sp.Expr, ...]:
    """u^(k)(w*)/k! for k = 1..k_max, differentiating u itself, with p written through w*."""
    if sp.simplify(w_star().subs(p, P_OF_W_STAR) - w_star_sym) != 0:
        raise ArithmeticError("p = e^(ηw*)/(e^(ηw*) + e^(-ηw*)) does not invert the derived w*")
    coefficients, derivative = [], accuracy(w)
    for k in range(1, k_max + 1):
        derivative = sp.diff(derivative, w)
        coefficients.append(sp.simplify(derivative.subs(w, w_star_sym).subs(p, P_OF_W_STAR) / sp.factorial(k)))
    if coefficients[0] != 0:
        raise ArithmeticError("u'(w*) does not vanish: the derived w* is not a critical point")
    return tuple(coefficients)


@functools.cache
def sam_expansion(order: int = 4) -> SamExpansion:
    """Series of the SAM optimality condition u(w - ε) = u(w + ε) around w = w1*.

    With s = w1^SAM - w1* = a ε² + b ε⁴, the condition is Σ_k u^(k)(w*)/k! [(s+ε)^k - (s-ε)^k] = 0.
    The Taylor coefficients come from differentiating u itself; p is eliminated through the
    derived w* so that they simplify. The condition starts at ε³ because u'(w*) = 0 (checked, not
    assumed); matching the ε³ coefficient gives a, the ε⁵ one b (``order=4`` only).
    """
    a, b = sp.symbols("a b")
    taylor = _taylor_at_w_star(3 if order == 2 else 5)
    s = a * eps**2 + (b * eps**4 if order >= 4 else 0)
    condition = sp.expand(sum(c * sp.expand((s + eps) ** k - (s - eps) ** k) for k, c in enumerate(taylor, 1)))
    a_sol = sp.solve(condition.coeff(eps, 3), a)[0]
    if order < 4:
        return SamExpansion(sp.simplify(a_sol / w_star_sym), sp.nan)
    b_sol = sp.solve(condition.coeff(eps, 5).subs(a, a_sol), b)[0]
    return SamExpansion(sp.simplify(a_sol / w_star_sym), sp.factor(sp.simplify(b_sol / w_star_sym)))


@dataclass(frozen=True)
class EqualRobustness:
    """η/ε_AT = lead/ε_SAM² + constant + O(ε_SAM²) at equal w1 (or W_R) of AT and SAM."""

    lead: sp.Expr
    constant: sp.Expr

    def two_eta_over_eps_at(self) -> sp.Expr:
        """The corrected right-hand side of Theorem 5 in the paper's form: 2η/ε_AT ≈ ..."""
        return sp.expand(2 * self.lead / eps_sam**2 + 2 * self.constant)

    def eps_at(self) -> sp.Expr:
        return eta / (self.lead / eps_sam**2 + self.constant)


@functools.cache
def equal_robustness() -> EqualRobustness:
    """Solve w1^AT(ε_AT) = w1^SAM(ε_SAM) using the derived w1^AT and SAM expansion."""
    exp = sam_expansion()
    ratio = sp.simplify(w_at().subs(eps, eps_at) / w_star())  # = η/(η - ε_AT)
    target = 1 + exp.A * eps_sam**2 + exp.B * eps_sam**4
    (solution,) = sp.solve(sp.Eq(ratio, target), eps_at)
    series = sp.series(eta / solution, eps_sam, 0, 2).removeO()
    lead = sp.simplify(series.coeff(eps_sam, -2))
    constant = sp.simplify(series.coeff(eps_sam, 0))
    return EqualRobustness(lead, constant)


@dataclass(frozen=True)
class PaperDerivativeDiagnosis:
    """How the derivative of u used in the papers' proofs compares with the true one."""

    true_form_matches: bool  # du/dw = e^{-(w²+η²n²)/(2n)} (p e^{-wη} - (1-p) e^{wη}) / √(2πn)
    paper_form_matches: bool  # the same with exponent /n, as printed in W eq. 18
    coefficient_if_gaussian_factor_is_exp_minus_w2: sp.Expr  # the factor e^{-w²} of W eq. 24


@functools.cache
def diagnose_paper_derivative() -> PaperDerivativeDiagnosis:
    du = sp.diff(accuracy(w), w)
    common = p * sp.exp(-w * eta) - (1 - p) * sp.exp(w * eta)
    true_form = sp.exp(-(w**2 + eta**2 * n**2) / (2 * n)) * common / sp.sqrt(2 * sp.pi * n)
    paper_form = sp.exp(-(w**2 + eta**2 * n**2) / n) * common / sp.sqrt(2 * sp.pi * n)
    same = lambda x, y: sp.simplify(sp.expand(x - y)) == 0  # noqa: E731
    # The expansion's coefficient depends on n only through the Gaussian factor e^{-w²/(2n)}; the
    # factor e^{-w²} of W eq. (24) is that factor at n = 1/2.
    return PaperDerivativeDiagnosis(
        true_form_matches=same(du, true_form),
        paper_form_matches=same(du, paper_form),
        coefficient_if_gaussian_factor_is_exp_minus_w2=sam_expansion(2).A.subs(n, sp.Rational(1, 2)),
    )


def evaluate(expr: sp.Expr, args: tuple[sp.Symbol, ...], *values, dps: int = 30) -> np.ndarray:
    """``expr`` at every point of the broadcast ``values`` (floats, taken exactly), in ``dps``-digit arithmetic,
    rounded once to float64: its only error is that last rounding (half an ulp) plus 10^-dps relative."""
    f = sp.lambdify(args, expr, modules="mpmath")
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in values))
    with mpmath.workdps(dps):
        out = [float(f(*(mpmath.mpf(float(a.flat[i])) for a in arrays))) for i in range(arrays[0].size)]
    return np.asarray(out, dtype=float).reshape(arrays[0].shape)


_NOTATION = (("**2", "²"), ("**3", "³"), ("**4", "⁴"), ("*", "·"), ("eps_SAM", "ε_SAM"), ("eps_AT", "ε_AT"),
             ("eps", "ε"), ("eta", "η"), ("w1star", "w1*"))


def in_papers_notation(expression: str) -> str:
    """A sympy expression (as :func:`as_text` writes it) in the papers' notation: w1* for ln(p/(1-p))/(2η), ε, η,
    squares as ², products as ·; the text unchanged where sympy cannot read it."""
    p_, eta_ = sp.symbols("p eta", positive=True)
    w1star = sp.Symbol("w1star", positive=True)
    try:
        expr = sp.sympify(expression, locals={"p": p_, "eta": eta_})
    except (sp.SympifyError, TypeError, SyntaxError):
        return expression
    ratio = sp.log(p_) - sp.log(1 - p_)  # = 2 η w1* (Theorem 1)
    expr = sp.expand(expr.subs(ratio, 2 * eta_ * w1star)).subs(ratio, 2 * eta_ * w1star)
    factored = sp.factor_terms(expr)  # w1*·(1 + ...) where w1* is a common factor, not 2·(...)
    text = str(factored if factored.as_coeff_Mul()[0] == 1 else expr)
    for code, symbol in _NOTATION:
        text = text.replace(code, symbol)
    return text


def as_text(expr: sp.Expr) -> str:
    """A sympy-parsable string (``sympy.sympify`` reads it back)."""
    return sp.sstr(expr)


def lambdify(expr: sp.Expr, *args: sp.Symbol):
    return sp.lambdify(args, expr, modules="numpy")


# --- Idealizations lifted -------------------------------------------------------------------------


def full_ball_terms(w1: sp.Expr) -> list[tuple[sp.Expr, sp.Expr]]:
    """u(w1) = Σ c Φ(arg) under the worst ℓ∞ attack of size ε on every coordinate (w1 > 0, ε < 1):
    x1's term shrinks to (1 - ε) w1 or grows to -(1 + ε) w1, and the non-robust mean to η - ε."""
    mean = (eta - eps) * n
    return [(p, ((1 - eps) * w1 + mean) / sp.sqrt(n)), (1 - p, (-(1 + eps) * w1 + mean) / sp.sqrt(n))]


@functools.cache
def w_at_full_ball() -> sp.Expr:
    """The AT optimum when the attack may also perturb x1, from the first-order condition (w1 > 0).

    The two density terms of du/dw1 have opposite signs, so the condition compares their logs; it is
    a quadratic in w1. Its smaller root is the maximum (it tends to Theorem 2's value as ε -> 0,
    checked in the tests) when ln(p(1-ε)/((1-p)(1+ε))) > 0 and the discriminant is >= 0; it is a local
    maximum, and the global one only if it beats both ends: w1 = 0 (x1 ignored) and w1 -> infinity (x1
    alone, accuracy -> p), which the tests compare.
    """
    x = sp.Symbol("x", real=True)
    # d/dx [c Φ(arg)] = c arg' φ(arg): at a critical point the rising and the falling term are equal,
    # so their logs are: log(c arg') - arg²/2 on both sides (the √(2π) cancels).
    sides = {}
    for c, arg in full_ball_terms(x):
        slope = sp.diff(arg, x)
        rising = slope.subs(eps, sp.Rational(1, 2)).is_positive  # the sign for any ε in (0, 1)
        sides[rising] = sp.log(c) + sp.log(slope if rising else -slope) - arg**2 / 2
    condition = sp.expand(sides[True] - sides[False])
    roots = sp.solve(condition, x)
    if len(roots) != 2:
        raise ArithmeticError(f"expected a quadratic first-order condition, got roots {roots}")
    finite = [r for r in roots if sp.limit(r, eps, 0, "+").is_finite]
    if len(finite) != 1:
        raise ArithmeticError(f"expected one root with a finite ε -> 0 limit, got {finite}")
    return sp.simplify(finite[0])
