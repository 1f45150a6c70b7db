"""The duality map where its answer is known: the exact robust accuracies of the Gaussian model D(p, η, n), no
training, fed to the same inversion and fit as measured ones (:mod:`samat.theory.duality.curves`).

AT(ε) and SAM(ρ) each train the papers' classifier (w1, 1, ..., 1) to their population optimum
(:mod:`samat.theory.numeric`): AT's w1^AT(ε), SAM's w1^SAM(ρ) under either reading of its objective. Against an attack
column of budget ε_c >= η on the non-robust features the robust accuracy

    v(w1) = 1 - p Φ((ε_c - η)√n - w1/√n) - (1-p) Φ((ε_c - η)√n + w1/√n)

rises with w1 all the way (its slope is proportional to p φ(a) - (1-p) φ(b) with |a| < |b| for w1 > 0; for
ε_c < η it rises only up to w1^AT(ε_c), docs/THEORY.md), so equal robust accuracy is equal w1, and the map must
return the budget of theory's equal-w1 solve (:func:`samat.theory.numeric.equal_robustness_at_budget`): ρ/n under the
per-sample reading (slope 1), η/(3n/ρ² + c) + O(ρ⁴) under the population one (a slope that tends to 2 as ρ -> 0).

Every accuracy is known within an interval: the solver's bracket around each w1 (v is monotone, so v at the
bracket's ends bounds it) and the rounding of v. The budgets whose accuracy lies certainly below (above) SAM's then
bracket the true equal-robustness budget; the map's answer must lie between them and overlap theory's bracket, at
every ρ, and the slope of the true budgets lies within the map's fitted slope plus the brackets carried through
the fit (:func:`samat.theory.duality.curves.slope_bound`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from samat.core.errors import ParameterError
from samat.theory import closed_form as cf
from samat.theory import symbolic as sym
from samat.theory.claims.common import PER_SAMPLE, POPULATION
from samat.theory.duality import curves as dm
from samat.theory.model import check_parameters
from samat.theory.numeric import (
    Optimum,
    at_optimum,
    equal_robustness_at_budget,
    sam_optimum_equal_endpoints,
    sam_per_sample_optimum,
)
from samat.theory.objectives import log_risk

READINGS = (POPULATION, PER_SAMPLE)


def robust_accuracy(w1, p, eta, n, column_eps) -> tuple[np.ndarray, np.ndarray]:
    """The exact robust accuracy of (w1, 1, ..., 1) against the worst ℓ∞ attack of size ``column_eps`` on the
    non-robust features (W eq. 13), with a bound on its rounding."""
    lr = log_risk(w1, p, eta, n, column_eps)
    risk = np.exp(lr.value)
    return 1 - risk, risk * np.expm1(lr.error) + np.finfo(float).eps


def _accuracy_interval(opt: Optimum, p, eta, n, column_eps) -> tuple[np.ndarray, np.ndarray]:
    """[v(lo) - rounding, v(hi) + rounding]: v at the ends of the optimum's bracket (v rises with w1)."""
    lo, lo_err = robust_accuracy(opt.lo, p, eta, n, column_eps)
    hi, hi_err = robust_accuracy(opt.hi, p, eta, n, column_eps)
    return lo - lo_err, hi + hi_err


def sensitive_column(p: float, eta: float, n: int) -> float:
    """The attack budget η + w1*/n (Theorem 1's w1*), at which the robust accuracy near w1* is most sensitive to w1:
    the +1 class's threshold (ε_c - η)√n - w1/√n is 0 at w1*, where its density is largest. At ε_c = η the
    accuracy of a model with w1* >> √n differs from p only in tails below float64's range."""
    return float(eta + cf.w1_star(p, eta) / n)


def sam_optimum(p, eta, n, radii, reading: str) -> Optimum:
    """w1^SAM(ρ) under a reading: per sample the direct solve; population max-min the equal-endpoints root (W eq.
    20), which tests/theory hold against the direct max-min solve and which keeps its digits at small ρ."""
    if reading == PER_SAMPLE:
        return sam_per_sample_optimum(p, eta, n, radii)
    if reading == POPULATION:
        return sam_optimum_equal_endpoints(p, eta, n, radii)
    raise ParameterError("reading", reading, f"one of {', '.join(READINGS)}")


@dataclass(frozen=True)
class ExactMap:
    """The duality map on exact curves, beside theory's equal-w1 budgets."""

    p: float
    eta: float
    n: int
    reading: str
    column_eps: float
    radii: np.ndarray  # (M,)
    budgets: np.ndarray  # (K,)
    at_accuracy: np.ndarray  # (K,) midpoints of the exact intervals
    sam_accuracy: np.ndarray  # (M,)
    inversion: dm.Inversion  # the map's answer, (M,)
    theory_lo: np.ndarray  # (M,) theory's equal-w1 budget lies in [theory_lo, theory_hi]
    theory_hi: np.ndarray
    left: np.ndarray  # (M,) the largest budget certainly less robust than SAM (0: none)
    right: np.ndarray  # (M,) the smallest budget certainly more robust (inf: none)
    fit: dm.Fit
    slope_bound: float  # the fitted slope of the true budgets is within fit.slope ± slope_bound
    theory_slope: float  # least-squares slope of theory's own budgets over the same radii

    @property
    def consistent(self) -> np.ndarray:
        """Per ρ: the map's ε_AT lies in [left, right], and so does part of theory's bracket."""
        eps = self.inversion.eps
        return ((eps >= self.left) & (eps <= self.right) & (self.theory_hi >= self.left)
                & (self.theory_lo <= self.right))

    @property
    def slope_interval(self) -> tuple[float, float]:
        return float(self.fit.slope - self.slope_bound), float(self.fit.slope + self.slope_bound)

    @property
    def verdict(self) -> str:
        return dm.verdict(*self.slope_interval, len(self.fit.points))


def exact_map(p: float, eta: float, n: int, radii, budgets, reading: str, column_eps: float | None = None) -> ExactMap:
    """The map from theory's exact robust accuracies at the AT ``budgets`` and SAM ``radii`` (both increasing, each
    below where its optimum stops existing: ε < η, and ρ < ηn per sample), against an attack of ``column_eps`` >= η
    on the non-robust features (default: :func:`sensitive_column`)."""
    check_parameters(p=p, eta=eta, n=n)
    radii = np.asarray(dm.check_ladder(radii, "radii", minimum=dm.MIN_FIT_POINTS), dtype=float)
    budgets = np.asarray(dm.check_ladder(budgets, "budgets", minimum=2), dtype=float)
    column_eps = sensitive_column(p, eta, n) if column_eps is None else float(column_eps)
    if column_eps < eta:
        raise ParameterError("column_eps", column_eps, f">= eta = {eta} (below it robust accuracy stops rising "
                             "with w1 at w1^AT(column_eps), and equal accuracy is no longer equal w1)")
    at = at_optimum(p, eta, n, budgets)
    sam = sam_optimum(p, eta, n, radii, reading)
    for name, opt, values in (("budgets", at, budgets), ("radii", sam, radii)):
        if not np.all(opt.found):
            raise ParameterError(name, values[~opt.found][0], "a value at which the optimum exists (AT: < eta; SAM "
                                 "per sample: < eta n)")
    at_lo, at_hi = _accuracy_interval(at, p, eta, n, column_eps)
    sam_lo, sam_hi = _accuracy_interval(sam, p, eta, n, column_eps)
    inversion = dm.invert(budgets, (at_lo + at_hi) / 2, (sam_lo + sam_hi) / 2)
    certainly_below = at_hi[None, :] < sam_lo[:, None]  # (M, K)
    certainly_above = at_lo[None, :] > sam_hi[:, None]
    left = np.array([budgets[row].max() if row.any() else 0.0 for row in certainly_below])
    right = np.array([budgets[row].min() if row.any() else np.inf for row in certainly_above])
    theory_lo = equal_robustness_at_budget(p, eta, n, sam.lo).lo  # ε_AT rises with the target w1
    theory_hi = equal_robustness_at_budget(p, eta, n, sam.hi).hi
    inside = [m for m in range(len(radii)) if inversion.status[m] == dm.INSIDE and 0 < left[m] and right[m] < np.inf]
    fit = dm.fit_exponent(np.log(radii), inversion.log_eps, inside)
    error = dm.log_bracket_error(inversion.log_eps, np.log(np.where(left > 0, left, np.nan)), np.log(right))
    bound = dm.slope_bound(np.log(radii), inside, error) if len(inside) >= dm.MIN_FIT_POINTS else float("nan")
    theory_fit = dm.fit_exponent(np.log(radii), np.log((theory_lo + theory_hi) / 2), inside)
    return ExactMap(p, eta, n, reading, column_eps, radii, budgets, (at_lo + at_hi) / 2, (sam_lo + sam_hi) / 2,
                    inversion, theory_lo, theory_hi, left, right, fit, bound, float(theory_fit.slope))


@functools.cache
def _derived_relation():
    """η/ε_AT = lead/ρ² + constant (+ O(ρ²)), the population reading's equal-robustness relation derived in
    :func:`samat.theory.symbolic.equal_robustness`, as numeric functions of (n) and (p, η, n)."""
    relation = sym.equal_robustness()
    lead = sym.lambdify(relation.lead, sym.n)
    constant = sym.lambdify(relation.constant.subs(sym.w_star_sym, sym.w_star()), sym.p, sym.eta, sym.n)
    return lead, constant


def derived_eps_at(p, eta, n, radii) -> np.ndarray:
    """The population reading's equal-robustness budget to the derived order, η / (3n/ρ² + c(p, η, n))."""
    lead, constant = _derived_relation()
    radii = np.asarray(radii, dtype=float)
    return eta / (lead(n) / radii**2 + constant(p, eta, n))


def slope_deficit_radius(p: float, eta: float, n: int, deficit: float) -> float:
    """The radius up to which the derived relation's local log-log slope stays within ``deficit`` of 2:
    d log ε_AT / d log ρ = 2·3n/(3n + cρ²), so 2 - slope <= deficit for ρ² <= 3n·deficit / (c (2 - deficit))."""
    lead, constant = _derived_relation()
    return float(np.sqrt(lead(n) * deficit / (constant(p, eta, n) * (2 - deficit))))


def per_sample_eps_at(n, radii) -> np.ndarray:
    """The per-sample reading's equal-robustness budget, exactly ρ/n (SAM(ρ) read per sample is AT(ρ/n))."""
    return np.asarray(radii, dtype=float) / n


def ladder_around(low: float, high: float, ratio: float) -> np.ndarray:
    """AT budgets from ``low``/ratio to ``high``·ratio, geometric with ``ratio`` between neighbours."""
    count = int(np.ceil(np.log(high / low) / np.log(ratio))) + 3
    return low / ratio * ratio ** np.arange(count)
