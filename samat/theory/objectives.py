"""Exact population objectives of the papers' linear model, as error probabilities.

For the classifier w = (w1, 1, ..., 1) the margin is y·w·x = w1·(y x1) + S, where y x1 = ±1 w.p.
p / 1-p and S = Σ y x_i ~ N(η n, n). An ℓ∞ attack of size ε on the non-robust coordinates can lower
the margin by at most ε·|w2| + ... + ε·|w_{n+1}| = ε n (Hölder), attained by δ_i = -ε y, which
turns S into N((η - ε) n, n). Hence, with μ = η - ε,

    risk(w1) = p Φ((-w1 - μ n)/√n) + (1-p) Φ((w1 - μ n)/√n)

is the clean error 1 - u(w1) for ε = 0 (workshop eq. 9/17) and the adversarial error
1 - v(w1) of AT for ε > 0 (workshop eq. 13). The SAM loss perturbs w1 itself (workshop eq. 15/19):

    sam_risk(w1) = max_{|δ| <= ε} risk(w1 + δ),

computed here by an honest numerical inner maximization over δ, not by assuming where it lies.

Lifting the papers' idealizations needs the same error for any linear classifier and attack:
``linear_log_risk`` takes w through w1, Σ w_i, ||w_{2:}||_2 and ||w_{2:}||_1 (for which the
non-robust part of the margin is N(η Σw_i, ||w_{2:}||²) and the attack costs ε ||w_{2:}||_1), and an
optional attack on x1 itself (ε_1 |w1|, the full ℓ∞ ball). ``log_risk`` is its special case
w2 = ... = 1, so each formula lives once.
Everything is evaluated in log space (log Φ is accurate deep in the tails), with a rounding bound
carried alongside so that solvers know when a comparison stops being meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samat.theory.backend import FLOAT64, Array, Backend

LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)


@dataclass(frozen=True)
class Bounded:
    """A computed value together with an absolute bound on its rounding error."""

    value: Array
    error: Array


def _margin_arguments(w1, w_sum, w_l2, w_l1, eta, eps, eps_x1, drops=(0.0, 0.0)):
    """Standardized error thresholds: P(error | y x1 = +1) = Φ(a), P(error | y x1 = -1) = Φ(b).

    The worst-case margin is w1 (y x1) - ε_1 |w1| + S - ε ||w_{2:}||_1 with S ~ N(η Σw_i, ||w_{2:}||_2²), lowered
    further by ``drops`` (for y x1 = +1, -1), the per-sample SAM perturbation's toll (:func:`sam_per_sample_drops`).
    """
    shift = eps_x1 * abs(w1) - eta * w_sum + eps * w_l1
    return (-w1 + shift + drops[0]) / w_l2, (w1 + shift + drops[1]) / w_l2


def _arguments(w1, p, eta, n, eps, bk: Backend, eps_x1=0.0, drops=(0.0, 0.0)):
    """The papers' classifier w2 = ... = w_{n+1} = 1: Σw_i = ||w||_1 = n, ||w||_2 = √n."""
    return _margin_arguments(w1, n, bk.sqrt(n), n, eta, eps, eps_x1, drops)


def class_thresholds(w1, p, eta, n, eps=0.0, bk: Backend = FLOAT64) -> tuple:
    """(a, b) with risk(w1) = p Φ(a) + (1-p) Φ(b): the error thresholds of the two classes y x1 = ±1, for the
    papers' classifier under the non-robust attack of size ``eps`` (0: clean)."""
    return _arguments(w1, p, eta, n, eps, bk)


def _log_risk_from(a, b, p, bk: Backend) -> Bounded:
    value = bk.logaddexp(bk.log(p) + bk.log_ndtr(a), bk.log(1 - p) + bk.log_ndtr(b))
    # log Φ(x) has condition number ~x² in the lower tail; the arguments themselves carry a few ulps.
    error = 16 * bk.unit_roundoff * (1 + a * a + b * b + abs(value))
    return Bounded(value, error)


def linear_log_risk(w1, w_sum, w_l2, w_l1, p, eta, eps=0.0, eps_x1=0.0, bk: Backend = FLOAT64) -> Bounded:
    """log P(error) of sign(w·x') for any linear w, under the worst ℓ∞ attack: ``eps`` on x2..x_{n+1}
    and ``eps_x1`` on x1 (the full ball when both are ε). w enters through w1, Σw_i, ||w_{2:}||_2 and
    ||w_{2:}||_1 (i >= 2), which is all the error depends on. Broadcasts."""
    return _log_risk_from(*_margin_arguments(w1, w_sum, w_l2, w_l1, eta, eps, eps_x1), p, bk)


def log_risk(w1, p, eta, n, eps=0.0, bk: Backend = FLOAT64, eps_x1=0.0) -> Bounded:
    """log P(sign(w·x') != y) under the worst ℓ∞ attack of size ``eps`` on x2..x_{n+1}.

    ``eps = 0`` gives the clean error 1 - u(w1) (workshop eq. 9, 17); ``eps > 0`` the AT
    objective 1 - v(w1) (workshop eq. 13); ``eps_x1`` also attacks x1 (the full ℓ∞ ball, which the
    papers leave out). Broadcasts over all arguments.
    """
    return _log_risk_from(*_arguments(w1, p, eta, n, eps, bk, eps_x1), p, bk)


def risk(w1, p, eta, n, eps=0.0, bk: Backend = FLOAT64):
    """P(misclassified) under the worst non-robust ℓ∞ attack of size ``eps`` (0: clean)."""
    return bk.exp(log_risk(w1, p, eta, n, eps, bk).value)


def accuracy(w1, p, eta, n, eps=0.0, bk: Backend = FLOAT64):
    """u(w1) for ``eps = 0`` (workshop eq. 9); the robust accuracy v(w1) of eq. 13 otherwise."""
    return 1 - risk(w1, p, eta, n, eps, bk)


def risk_slope(w1, p, eta, n, eps=0.0, bk: Backend = FLOAT64, eps_x1=0.0) -> Bounded:
    """The sign of d risk / d w1, as a log ratio with its rounding bound.

    d risk/d w1 = [(1-p)(1 + ε_1 σ) φ(b) - p (1 - ε_1 σ) φ(a)] / √n with σ = sign(w1) (differentiating
    ``risk``; cf. workshop eq. 10, 18; ε_1 < 1). Returned as ``log((1-p)(1+ε_1σ) φ(b)) -
    log(p(1-ε_1σ) φ(a))``, positive where the risk increases: the difference of the two densities is
    formed in log space, so it never underflows.
    """
    a, b = _arguments(w1, p, eta, n, eps, bk, eps_x1)
    sigma = np.where(w1 >= 0, 1.0, -1.0) if np.any(np.asarray(eps_x1, dtype=float) != 0) else 1.0
    return _slope_from(a, b, p, bk, eps_x1 * sigma)


def _slope_from(a, b, p, bk: Backend, tilt=0.0) -> Bounded:
    """log((1-p)(1 + tilt) φ(b)) - log(p(1 - tilt) φ(a)): the sign of d/dw1 [p Φ(a) + (1-p) Φ(b)] when
    da/dw1 = -(1 - tilt)/√n and db/dw1 = (1 + tilt)/√n; with its rounding bound."""
    log_up = bk.log((1 - p) * (1 + tilt)) - b * b / 2
    log_down = bk.log(p * (1 - tilt)) - a * a / 2
    value = log_up - log_down
    error = 8 * bk.unit_roundoff * (1 + abs(bk.log(p)) + abs(bk.log(1 - p)) + a * a + b * b)
    return Bounded(value, error)


# --- SAM as printed: the worst δ per sample (W eq. 15, D eq. 11) ---------------------------------


def sam_per_sample_drops(sam_eps) -> tuple:
    """How far the worst δ of each sample lowers its margin, for y x1 = +1 and y x1 = -1.

    A sample's margin at w1 + δ is (w1 + δ)(y x1) + y Σx_i: linear in δ, so its minimum over |δ| <= ε lies at
    an end, δ = ±ε, and the margin drops by max(-δ y x1) over those ends. Nothing here depends on w1: every
    sample loses ε.
    """
    ends = (-sam_eps, sam_eps)
    return tuple(np.maximum(-ends[0] * s, -ends[1] * s) for s in (1.0, -1.0))


def sam_per_sample_log_risk(w1, p, eta, n, sam_eps, bk: Backend = FLOAT64) -> Bounded:
    """log E max_{|δ| <= ε} 1{sign((w1 + δ, 1, ..., 1)·x) != y}: SAM's objective with the maximum inside the
    expectation, as W eq. (15) and D eq. (11) print it (the proofs, and :func:`sam_log_risk`, take the
    max-min of the population accuracy instead). The worst δ is chosen per sample."""
    return _log_risk_from(*_arguments(w1, p, eta, n, 0.0, bk, drops=sam_per_sample_drops(sam_eps)), p, bk)


def sam_per_sample_slope(w1, p, eta, n, sam_eps, bk: Backend = FLOAT64) -> Bounded:
    """The sign of d/dw1 of the per-sample SAM risk (the drops do not depend on w1), as :func:`risk_slope`."""
    return _slope_from(*_arguments(w1, p, eta, n, 0.0, bk, drops=sam_per_sample_drops(sam_eps)), p, bk)


@dataclass(frozen=True)
class InnerMax:
    """The SAM inner maximization at given w1: candidates for argmax_δ risk(w1 + δ)."""

    log_value: Array  # log max_δ risk(w1 + δ)
    error: Array  # rounding bound of log_value
    candidates: Array  # δ values tried, along the last axis
    candidate_log_values: Array
    candidate_errors: Array
    candidate_slopes: Bounded  # risk_slope at w1 + δ for each candidate

    def near_argmax(self) -> np.ndarray:
        """Candidates whose value is within rounding of the maximum (Danskin's active set)."""
        return self.candidate_log_values >= (
            self.log_value[..., None] - self.error[..., None] - self.candidate_errors
        )


def sam_inner_max(
    w1, p, eta, n, sam_eps, attack_eps=0.0, bk: Backend = FLOAT64, grid: int = 17, refine: int = 40
) -> InnerMax:
    """max_{|δ| <= sam_eps} risk(w1 + δ), taken honestly: no shape of the risk is assumed.

    A grid over δ (ends included) locates the best node. Where that node is interior, or is an
    end at which the slope points back into the interval (the KKT condition fails, so a higher
    value lies inside), golden-section search refines within the neighbouring cells. Where the
    best node is an end and the slope there points outwards, the end is a local maximum and the
    grid has already compared it with every other node. ``attack_eps`` gives the SAM loss of the
    AT objective.
    """
    arrays = np.broadcast_arrays(*(bk.asarray(v) for v in (w1, p, eta, n, sam_eps, attack_eps)))
    shape = arrays[0].shape
    w1, p, eta, n, sam_eps, attack_eps = (a.ravel() for a in arrays)
    col = (lambda v: v[:, None])  # noqa: E731
    deltas = col(sam_eps) * bk.asarray(np.linspace(-1.0, 1.0, grid))[None, :]
    on_grid = log_risk(col(w1) + deltas, col(p), col(eta), col(n), col(attack_eps), bk)
    slopes = risk_slope(col(w1) + deltas, col(p), col(eta), col(n), col(attack_eps), bk)
    best = np.argmax(on_grid.value, axis=-1)
    rows = np.arange(best.size)
    s_best, e_best = slopes.value[rows, best], slopes.error[rows, best]
    outward = np.where(best == grid - 1, s_best >= -e_best, np.where(best == 0, s_best <= e_best, False))
    needs = np.flatnonzero(~outward & (sam_eps > 0))

    refined = deltas[rows, best].copy()
    if needs.size and refine:
        lo = deltas[needs, np.maximum(best[needs] - 1, 0)]
        hi = deltas[needs, np.minimum(best[needs] + 1, grid - 1)]
        w, pp, ee, nn, aa = w1[needs], p[needs], eta[needs], n[needs], attack_eps[needs]
        refined[needs] = golden_section_max(lambda d: log_risk(w + d, pp, ee, nn, aa, bk).value, lo, hi, refine)
    at_ref = log_risk(w1 + refined, p, eta, n, attack_eps, bk)
    sl_ref = risk_slope(w1 + refined, p, eta, n, attack_eps, bk)

    cat = (lambda g, r: np.concatenate([g, r[:, None]], axis=-1))  # noqa: E731
    cand_d, cand_v, cand_e = cat(deltas, refined), cat(on_grid.value, at_ref.value), cat(on_grid.error, at_ref.error)
    cand_s = Bounded(cat(slopes.value, sl_ref.value), cat(slopes.error, sl_ref.error))
    top = np.argmax(cand_v, axis=-1)
    value, error = cand_v[rows, top], cand_e[rows, top]
    k = cand_d.shape[-1]
    re = (lambda a, last=True: a.reshape(shape + (k,)) if last else a.reshape(shape))  # noqa: E731
    return InnerMax(re(value, False), re(error, False), re(cand_d), re(cand_v), re(cand_e),
                    Bounded(re(cand_s.value), re(cand_s.error)))


def golden_section_max(f, lo, hi, iters: int):
    """Vectorized golden-section search for a maximizer of ``f`` on [lo, hi]; returns the best point."""
    inv_phi = (np.sqrt(5.0) - 1) / 2
    a, b = lo, hi
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        left = fc >= fd  # maximizer in [a, d]
        a, b = np.where(left, a, c), np.where(left, d, b)
        c_new, d_new = b - inv_phi * (b - a), a + inv_phi * (b - a)
        f_new = f(np.where(left, c_new, d_new))
        fc, fd = np.where(left, f_new, fd), np.where(left, fc, f_new)
        c, d = np.where(left, c_new, d), np.where(left, c, d_new)
    return np.where(fc >= fd, c, d)


def sam_log_risk(w1, p, eta, n, sam_eps, attack_eps=0.0, bk: Backend = FLOAT64) -> Bounded:
    """log max_{|δ| <= ε} risk(w1 + δ): the SAM objective (workshop eq. 15, 19; duality eq. 11)."""
    inner = sam_inner_max(w1, p, eta, n, sam_eps, attack_eps, bk)
    return Bounded(inner.log_value, inner.error)


def sam_accuracy(w1, p, eta, n, sam_eps, bk: Backend = FLOAT64):
    """min_{|δ| <= ε} u(w1 + δ), the accuracy form of the SAM objective."""
    return 1 - bk.exp(sam_log_risk(w1, p, eta, n, sam_eps, 0.0, bk).value)
