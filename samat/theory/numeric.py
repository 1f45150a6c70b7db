"""Population optima of ST, AT and SAM, computed from the objectives themselves.

One solver covers all three: it minimizes, over w1, the worst-case error

    R(w1) = max_{|δ| <= ε_SAM} risk_{ε_AT}(w1 + δ)

(ST: both budgets 0; AT: ε_AT > 0, workshop eq. 13; SAM: ε_SAM > 0, workshop eq. 19). It assumes
no closed form and no shape of R:

1. **Scan.** R is evaluated on a symmetric log-spaced grid of w1 spanning 10^-3..10^4 √n (the
   SAM inner maximum on a δ-grid). The best node brackets the minimizer; where the best node is
   the last one, the bracket is pushed outwards by decades until R turns up. If it is still
   falling at |w1| = 1e60 √n, or its slope stops being resolvable before it turns, no finite
   minimizer is reported (``found`` is False): this is what AT with ε >= η looks like.
2. **Bisection on the one-sided derivative.** By Danskin's theorem the directional derivatives of
   R are the extreme slopes of risk over the inner argmax set, which the honest inner maximization
   (:func:`samat.theory.objectives.sam_inner_max`) supplies. A point where all those slopes are reliably
   negative lies left of the minimizer, all reliably positive right of it. Every comparison is
   made against a rounding bound, and the search stops when the signs can no longer be trusted.

The result is a bracket [lo, hi] that contains the minimizer: ``bracket_width = hi - lo`` is an honest
bound (twice the midpoint's error), including the loss of resolution near the SAM kink where u(w-ε)
and u(w+ε) nearly cancel.
Everything is vectorized over arrays of (p, η, n, ε) and runs in float64 or, for small ε, in
mpmath (:func:`samat.theory.backend.mp_backend`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samat.core.errors import ParameterError
from samat.theory.backend import FLOAT64, Array, Backend
from samat.theory.model import check_parameters
from samat.theory.objectives import (
    class_thresholds,
    log_risk,
    risk_slope,
    sam_inner_max,
    sam_per_sample_log_risk,
    sam_per_sample_slope,
)

Z_NODES = np.concatenate([-np.logspace(4, -3, 29), [0.0], np.logspace(-3, 4, 29)])  # units of √n
EXTENSION = 10.0 ** np.arange(5, 61)  # units of √n: beyond the scan, walked only when needed
MAX_UNDECIDED = 3  # consecutive nodes with an undecidable slope before a walk gives up
INNER_GRID, INNER_REFINE = 9, 40
SCAN_INNER_GRID = 5  # the scan only brackets; every bracket end is re-checked with the full inner max


@dataclass(frozen=True)
class Optimum:
    """The minimizer of an objective over w1, with a bracket that is guaranteed to contain it."""

    w1: Array  # midpoint of the bracket; nan where no finite minimizer was found
    lo: Array  # where not found: the objective still decreases at lo (as far as float resolves)
    hi: Array
    found: np.ndarray  # False where the objective kept decreasing as far as it could be followed
    log_risk: Array  # the objective at w1 (at lo where not found): log of the worst-case error
    backend: Backend = FLOAT64

    @property
    def bracket_width(self) -> np.ndarray:
        """Width hi - lo of the bracket around the minimizer (float64; inf where none exists)."""
        width = self.backend.to_float(self.hi - self.lo)
        return np.where(self.found, width, np.inf)

    def w1_float(self) -> np.ndarray:
        return self.backend.to_float(self.w1)


@dataclass(frozen=True)
class _Problem:
    p: Array
    eta: Array
    n: Array
    attack_eps: Array
    sam_eps: Array
    eps_x1: Array  # the attack's budget on x1 itself (0 in the papers; attack_eps for the full ball)
    bk: Backend
    sam: bool  # SAM's population max-min (the proofs' reading)
    per_sample: bool = False  # SAM with the worst δ per sample (W eq. 15, D eq. 11 as printed)

    def take(self, idx) -> _Problem:
        return _Problem(*(getattr(self, f)[idx] for f in ("p", "eta", "n", "attack_eps", "sam_eps", "eps_x1")),
                        self.bk, self.sam, self.per_sample)

    def log_objective(self, w, grid: int = INNER_GRID) -> Array:
        if self.per_sample:
            return sam_per_sample_log_risk(w, self.p, self.eta, self.n, self.sam_eps, self.bk).value
        if not self.sam:
            return log_risk(w, self.p, self.eta, self.n, self.attack_eps, self.bk, self.eps_x1).value
        return sam_inner_max(w, self.p, self.eta, self.n, self.sam_eps, self.attack_eps, self.bk,
                             grid, INNER_REFINE).log_value

    def slope_sign(self, w) -> np.ndarray:
        """+1 / -1 where the objective reliably increases / decreases at w, 0 where undecidable."""
        if self.per_sample or not self.sam:
            s = (sam_per_sample_slope(w, self.p, self.eta, self.n, self.sam_eps, self.bk) if self.per_sample else
                 risk_slope(w, self.p, self.eta, self.n, self.attack_eps, self.bk, self.eps_x1))
            pos, neg = s.value - s.error > 0, s.value + s.error < 0
        else:
            inner = sam_inner_max(w, self.p, self.eta, self.n, self.sam_eps, self.attack_eps, self.bk,
                                  INNER_GRID, INNER_REFINE)
            # Danskin: the one-sided slopes are the extreme slopes over the maximizing δ's.
            near, s = inner.near_argmax(), inner.candidate_slopes
            pos = np.all((s.value - s.error > 0) | ~near, axis=-1)
            neg = np.all((s.value + s.error < 0) | ~near, axis=-1)
        return np.where(pos, 1, np.where(neg, -1, 0))


def minimize_risk(p, eta, n, *, attack_eps=0.0, sam_eps=0.0, attack_x1: bool = False, per_sample: bool = False,
                  bk: Backend = FLOAT64, max_iter: int | None = None, rtol: float = 0.0) -> Optimum:
    """argmin over w1 of max_{|δ| <= sam_eps} risk_{attack_eps}(w1 + δ), vectorized.

    ``attack_x1`` lets the attack perturb x1 too (the full ℓ∞ ball; budgets < 1, without SAM).
    ``per_sample`` reads SAM as printed (the worst δ per sample,
    :func:`samat.theory.objectives.sam_per_sample_log_risk`; without an attack) instead of the population max-min.
    ``rtol`` > 0 stops the bisection once the bracket is that narrow relative to |w1| (for
    benchmarks at a stated accuracy); by default it runs until rounding decides.
    """
    check_parameters(p=p, eta=eta, n=n, attack_eps=attack_eps, sam_eps=sam_eps)
    sam = bool(np.any(np.asarray(sam_eps, dtype=float) > 0)) and not per_sample
    if attack_x1 and sam:
        raise ParameterError("sam_eps", sam_eps, "0 with a full-ball attack (attack_x1=True)")
    if attack_x1 and np.any(np.asarray(attack_eps, dtype=float) >= 1):
        raise ParameterError("attack_eps", attack_eps, "< 1 for a full-ball attack")
    if per_sample and (attack_x1 or np.any(np.asarray(attack_eps, dtype=float) != 0)):
        raise ParameterError("attack_eps", attack_eps, "0 with per-sample SAM (per_sample=True)")
    eps_x1 = attack_eps if attack_x1 else 0.0
    with bk.context():
        arrays = np.broadcast_arrays(*(bk.asarray(v) for v in (p, eta, n, attack_eps, sam_eps, eps_x1)))
        shape = arrays[0].shape
        prob = _Problem(*(a.ravel() for a in arrays), bk, sam, per_sample)
        lo, hi, found = _bracket(prob)
        lo, hi = _bisect(prob, lo, hi, found, max_iter, rtol)
        w1 = np.where(found, (lo + hi) / 2, bk.asarray(np.nan))
        value = prob.log_objective(np.where(found, w1, lo))
        return Optimum(*(np.reshape(a, shape) for a in (w1, lo, hi, found, value)), backend=bk)


def _bracket(prob: _Problem):
    """Scan the objective on the node grid, then walk each bracket end until the slope turns.

    The scan picks the best node. The right end then steps outwards (through the grid, then by
    decades up to W_LIMIT) while the objective still reliably falls there; the left end likewise.
    A minimizer counts as found only once a reliably rising slope closes the bracket: an end that
    keeps falling to the limit, or whose slope stays undecidable for MAX_UNDECIDED steps, means
    no finite minimizer can be located (in this precision).
    """
    bk = prob.bk
    root_n = bk.sqrt(prob.n)[:, None]
    core = [root_n[:, 0] * bk.asarray(z) for z in Z_NODES]
    values = np.stack([prob.log_objective(w, grid=SCAN_INNER_GRID) for w in core], axis=-1)
    best = np.argmin(values, axis=-1) + len(EXTENSION)
    nodes = root_n * bk.asarray(np.concatenate([-EXTENSION[::-1], Z_NODES, EXTENSION]))[None, :]
    last = nodes.shape[1] - 1
    rows = np.arange(best.size)
    i_lo, i_hi = best - 1, best + 1
    found = np.ones(best.size, dtype=bool)
    lo_fine, hi_fine = nodes[rows, i_lo], nodes[rows, i_hi]
    fine = np.zeros(best.size, dtype=bool)
    # Only the full-ball attack (ε_1 > 0) can have two local minima. Otherwise the slope's sign is that of
    # log((1-p)φ(b)) - log(pφ(a)) (objectives.risk_slope), linear in w1 since b² - a² is: the risk has at
    # most one critical point, and the SAM objective, a maximum of such risks over shifts of w1, is
    # quasi-convex. For those the walk below brackets the one minimum from the best scan node. (The full
    # ball with SAM is refused above.)
    two_roots = np.flatnonzero(np.asarray(prob.bk.to_float(prob.eps_x1)) > 0)
    if len(two_roots):
        dense = root_n[two_roots] * bk.asarray(SLOPE_NODES)[None, :]
        lo_t, hi_t, fine_t = _local_minima_bracket(prob.take(two_roots), dense, values[two_roots])
        lo_fine[two_roots], hi_fine[two_roots], fine[two_roots] = lo_t, hi_t, fine_t
    for side in (+1, -1):
        moving = ~fine
        undecided = np.zeros(best.size, dtype=int)
        while moving.any():
            idx = np.flatnonzero(moving)
            end = (i_hi if side > 0 else i_lo)[idx]
            s = prob.take(idx).slope_sign(nodes[idx, end]) * side  # -1: still falling outwards
            falling, unsure = s < 0, s == 0
            if side > 0:
                i_lo[idx] = np.where(falling, end, i_lo[idx])
            else:
                i_hi[idx] = np.where(falling, end, i_hi[idx])
            undecided[idx] = np.where(unsure, undecided[idx] + 1, 0)
            at_limit = end == (last if side > 0 else 0)
            stop = (s > 0) | at_limit | (undecided[idx] >= MAX_UNDECIDED)
            found[idx] &= ~(stop & (s <= 0))
            step = ~stop
            nxt = end + side * step
            if side > 0:
                i_hi[idx] = nxt
            else:
                i_lo[idx] = nxt
            moving[idx] = step
    return np.where(fine, lo_fine, nodes[rows, i_lo]), np.where(fine, hi_fine, nodes[rows, i_hi]), found


SLOPE_BATCH = 1 << 15  # slope evaluations per call of the dense slope scan
SLOPE_NODES = np.concatenate([-np.logspace(4, -3, 225), [0.0], np.logspace(-3, 4, 225)])  # 32 per decade


def _local_minima_bracket(prob: _Problem, core, values):
    """Without SAM the slope is cheap: read its sign on a dense grid (32 nodes a decade), take every
    (falling, rising) pair as a local minimum, and keep the one whose lowest value on a fine grid between
    the two nodes is lowest, provided it is no higher than the best scan node (else a descent to
    infinity wins: the walk decides). This finds dips narrower than the value scan's spacing, such as
    the two-root first-order condition of AT on the full ball makes; a dip narrower than the dense
    grid's spacing (a factor 1.05) would still be missed."""
    n_rows, k = core.shape
    per_call = max(1, SLOPE_BATCH // max(n_rows, 1))  # columns per vectorized call, memory bounded
    blocks = []
    for first in range(0, k, per_call):
        cols = core[:, first:first + per_call]
        rows = np.repeat(np.arange(n_rows), cols.shape[1])
        blocks.append(prob.take(rows).slope_sign(cols.reshape(-1)).reshape(cols.shape))
    slopes = np.concatenate(blocks, axis=1)
    turn = (slopes[:, :-1] < 0) & (slopes[:, 1:] > 0)
    count = turn.sum(axis=1)
    width = int(count.max()) if n_rows else 0
    out_lo, out_hi, done = core[:, 0].copy(), core[:, 0].copy(), np.zeros(n_rows, dtype=bool)
    if width == 0:
        return out_lo, out_hi, done
    # The j-th turn of every row (padded with the row's first turn), evaluated on 17 points each.
    order = np.argsort(~turn, axis=1, kind="stable")[:, :width]
    order = np.where(np.arange(width)[None, :] < count[:, None], order, order[:, :1])
    a = np.take_along_axis(core, order, 1)
    b = np.take_along_axis(core, order + 1, 1)
    frac = prob.bk.asarray(np.linspace(0.0, 1.0, 17))
    grid = a[..., None] + (b - a)[..., None] * frac
    rows = np.repeat(np.arange(n_rows), width * frac.size)
    lows = prob.take(rows).log_objective(grid.reshape(-1)).reshape(n_rows, width, frac.size).min(axis=2)
    j = np.argmin(lows, axis=1)
    pick = lambda m: np.take_along_axis(m, j[:, None], 1)[:, 0]  # noqa: E731
    done = (count > 0) & (pick(lows) <= values.min(axis=1))
    return np.where(done, pick(a), out_lo), np.where(done, pick(b), out_hi), done


def _bisect(prob: _Problem, lo, hi, active, max_iter: int | None, rtol: float = 0.0):
    """Shrink [lo, hi] while the slope sign at interior points can be trusted."""
    bk = prob.bk
    u = bk.unit_roundoff
    max_iter = max_iter or bk.mantissa_bits + 80
    active = active.copy()
    lo, hi = lo.copy(), hi.copy()
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        sub = prob.take(idx)
        a, b = lo[idx], hi[idx]
        mid = (a + b) / 2
        s = sub.slope_sign(mid)
        a, b = np.where(s < 0, mid, a), np.where(s > 0, mid, b)
        amb = s == 0
        if amb.any():  # undecidable at the midpoint: probe the quarter points instead
            q1, q3 = a + (b - a) / 4, b - (b - a) / 4
            s1, s3 = sub.slope_sign(q1), sub.slope_sign(q3)
            a = np.where(amb & (s1 < 0), q1, np.where(amb & (s3 < 0), q3, a))
            b = np.where(amb & (s3 > 0), q3, np.where(amb & (s1 > 0), q1, b))
            stuck = amb & (s1 == 0) & (s3 == 0)
        else:
            stuck = amb
        lo[idx], hi[idx] = a, b
        scale = np.maximum(abs(a), abs(b))
        resolvable = (b - a) > np.maximum(4 * u, rtol) * scale
        active[idx] = ~stuck & resolvable
    return lo, hi


def st_optimum(p, eta, n, bk: Backend = FLOAT64, rtol: float = 0.0) -> Optimum:
    """w1* of standard training: the maximizer of clean accuracy u(w1) (workshop eq. 9)."""
    return minimize_risk(p, eta, n, bk=bk, rtol=rtol)


def at_optimum(p, eta, n, eps, bk: Backend = FLOAT64, rtol: float = 0.0, full_ball: bool = False) -> Optimum:
    """w1^AT: the maximizer of the accuracy under the worst non-robust ℓ∞ attack (eq. 13); with
    ``full_ball`` the attack perturbs x1 as well (an idealization of the papers lifted)."""
    return minimize_risk(p, eta, n, attack_eps=eps, attack_x1=full_ball, bk=bk, rtol=rtol)


def sam_optimum(p, eta, n, eps, bk: Backend = FLOAT64, rtol: float = 0.0) -> Optimum:
    """w1^SAM: the maximizer of min_{|δ| <= ε} u(w1 + δ) (workshop eq. 19), solved directly."""
    return minimize_risk(p, eta, n, sam_eps=eps, bk=bk, rtol=rtol)


def sam_per_sample_optimum(p, eta, n, eps, bk: Backend = FLOAT64, rtol: float = 0.0) -> Optimum:
    """w1^SAM as W eq. (15) / D eq. (11) print the objective: the maximizer of E min_{|δ| <= ε} 1{correct at
    w1 + δ}, the worst δ chosen per sample. Not found (no finite optimum) where the objective keeps falling."""
    return minimize_risk(p, eta, n, sam_eps=eps, per_sample=True, bk=bk, rtol=rtol)


# --- The equal-endpoints shortcut ------------------------------------------------------------
#
# At the SAM optimum the two ends of the δ-interval have equal risk, u(w - ε) = u(w + ε)
# (workshop eq. 20). That condition is only used after tests/theory show that its root agrees with
# the direct max-min solve above. It is much cheaper, and in the form below it stays accurate for
# tiny ε, where the difference of the two risks cancels in float64.

GAUSS_LEGENDRE_NODES = 32


def sam_optimum_equal_endpoints(p, eta, n, eps, bk: Backend = FLOAT64, max_iter: int | None = None,
                                st: Optimum | None = None) -> Optimum:
    """Root of risk(w + ε) = risk(w - ε) inside [w* - ε, w* + ε] (w* from the direct ST solve).

    float64: the gap is ∫_{w-ε}^{w+ε} risk'(t) dt by Gauss-Legendre quadrature of the log-space
    slope, so nothing cancels. mpmath: the gap is a difference of tail probabilities, at working precision.
    ``st``: the ST optimum at (p, η, n) where it is at hand (any precision: its bracket only has to contain
    w*, since the root lies within ε of it); solved here otherwise.
    """
    check_parameters(p=p, eta=eta, n=n, eps=eps)
    st = st_optimum(p, eta, n, bk) if st is None else st
    with bk.context():
        arrays = np.broadcast_arrays(*(bk.asarray(v) for v in (p, eta, n, eps, st.lo, st.hi)))
        shape = arrays[0].shape
        p_, eta_, n_, eps_, st_lo, st_hi = (a.ravel() for a in arrays)
        found = np.broadcast_to(np.asarray(st.found), shape).ravel()
        gap_of = _endpoint_gap_quadrature if not bk.is_mp else _endpoint_gap_tails
        lo, hi = st_lo - eps_, st_hi + eps_
        positive = np.asarray(bk.to_float(eps_) > 0) & found

        def gap(w, idx):
            return gap_of(w, p_[idx], eta_[idx], n_[idx], eps_[idx], bk)

        lo, hi, signs_ok = _illinois(gap, lo, hi, positive, bk, max_iter or bk.mantissa_bits + 80)
        found = found & (signs_ok | ~positive)
        lo, hi = np.where(positive, lo, st_lo), np.where(positive, hi, st_hi)
        w1 = np.where(found, (lo + hi) / 2, bk.asarray(np.nan))
        # risk has one critical point, a minimum, so its maximum over [w1 - ε, w1 + ε] is at an end.
        at = np.where(found, w1, lo)
        ends = (log_risk(at + s * eps_, p_, eta_, n_, 0.0, bk).value for s in (-1, 1))
        value = np.maximum(*ends)
        return Optimum(*(np.reshape(x, shape) for x in (w1, lo, hi, found, value)), backend=bk)


def _illinois(gap, lo, hi, rows, bk: Backend, max_iter: int):
    """Roots of increasing functions in [lo, hi], one per row where ``rows``: regula falsi with the Illinois
    modification (an end kept twice in a row has its value halved, which makes both ends converge), vectorized.

    ``gap(w, idx)`` gives the rows ``idx`` at ``w`` with a rounding bound. The ends must have reliable signs,
    gap(lo) < 0 < gap(hi) (checked; rows where they do not are returned as False), and each new point replaces
    the end of its sign only where that sign exceeds its bound: [lo, hi] keeps the root. A row stops where a
    point's sign cannot be decided or the bracket is 4 units of roundoff wide.
    """
    idx = np.flatnonzero(rows)
    f_lo, f_hi = lo.copy(), hi.copy()
    (f_lo[idx], e_lo), (f_hi[idx], e_hi) = gap(lo[idx], idx), gap(hi[idx], idx)
    ok = np.zeros(lo.shape, dtype=bool)
    ok[idx] = np.asarray((f_lo[idx] + e_lo < 0) & (f_hi[idx] - e_hi > 0), dtype=bool)
    active, last = ok.copy(), np.zeros(lo.shape, dtype=int)  # last: +1 hi moved last, -1 lo did
    u = bk.unit_roundoff
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        a, b, fa, fb = lo[idx], hi[idx], f_lo[idx], f_hi[idx]
        c = b - fb * (b - a) / (fb - fa)
        c = np.where((c > a) & (c < b), c, (a + b) / 2)
        fc, ec = gap(c, idx)
        pos, neg = np.asarray(fc - ec > 0, dtype=bool), np.asarray(fc + ec < 0, dtype=bool)
        lo[idx], hi[idx] = np.where(neg, c, a), np.where(pos, c, b)
        f_lo[idx] = np.where(neg, fc, np.where(pos & (last[idx] > 0), fa / 2, fa))
        f_hi[idx] = np.where(pos, fc, np.where(neg & (last[idx] < 0), fb / 2, fb))
        last[idx] = np.where(pos, 1, np.where(neg, -1, 0))
        stuck = ~pos & ~neg
        if stuck.any():  # c lies within rounding of the root: close in on it from both sides
            s = idx[stuck]
            lo[s], hi[s] = _close_in(gap, c[stuck], ec[stuck] * (b - a)[stuck] / (fb - fa)[stuck], lo[s], hi[s], s, u)
        width = hi[idx] - lo[idx]
        active[idx] = ~stuck & np.asarray(width > 4 * u * np.maximum(abs(lo[idx]), abs(hi[idx])), dtype=bool)
    return lo, hi, ok


def _close_in(gap, c, reach, lo, hi, idx, u, tries: int = 12):
    """Around a point c where an increasing function's sign is undecidable, the narrowest bracket found by
    stepping out from c (by ``reach``, its rounding bound over the secant slope, then 4x further each try)
    until the sign is decided on each side; ends not improved keep [lo, hi]."""
    step = np.maximum(abs(reach), 4 * u * abs(c))
    need_lo, need_hi = np.ones(c.shape, dtype=bool), np.ones(c.shape, dtype=bool)
    for _ in range(tries):
        for side, need in ((-1, need_lo), (1, need_hi)):
            k = np.flatnonzero(need)
            if k.size == 0:
                continue
            w = c[k] + side * step[k]
            inside = np.asarray((w > lo[k]) & (w < hi[k]), dtype=bool)
            f, e = gap(w, idx[k])
            decided = np.asarray((f + e < 0) if side < 0 else (f - e > 0), dtype=bool) & inside
            if side < 0:
                lo[k] = np.where(decided, w, lo[k])
            else:
                hi[k] = np.where(decided, w, hi[k])
            need[k] = ~decided & inside
        step = step * 4
    return lo, hi


def _endpoint_gap_quadrature(w, p, eta, n, eps, bk: Backend):
    """sign-faithful multiple of risk(w+ε) - risk(w-ε) = ∫ risk'(t) dt, with its rounding bound."""
    x, wts = np.polynomial.legendre.leggauss(GAUSS_LEGENDRE_NODES)
    panels = int(np.clip(np.ceil(np.max(2 * eps / np.sqrt(n))), 1, 64))
    edges = np.linspace(-1.0, 1.0, panels + 1)
    centers, half = (edges[1:] + edges[:-1]) / 2, (edges[1] - edges[0]) / 2
    frac = (centers[:, None] + half * x[None, :]).ravel()  # in units of ε around w
    weight = np.tile(wts * half, panels)
    t = w[:, None] + eps[:, None] * frac[None, :]
    col = (lambda v: v[:, None])  # noqa: E731
    slope = risk_slope(t, col(p), col(eta), col(n), 0.0, bk)  # log((1-p)φ(b)) - log(pφ(a))
    # risk'(t) ∝ p φ(a(t)) expm1(slope): scale p φ(a) by its value at the centre to avoid underflow.
    a_t = (-t - col(eta * n)) / np.sqrt(col(n))
    a_c = (-w - eta * n) / np.sqrt(n)
    scale = np.exp(col(a_c * a_c / 2) - a_t * a_t / 2)
    growth = np.expm1(slope.value)
    terms = weight * scale * growth
    bound = weight * scale * (abs(growth) * 8 * bk.unit_roundoff * (1 + abs(a_t * a_t - col(a_c * a_c)))
                              + (1 + abs(growth)) * slope.error)
    return terms.sum(axis=-1), bound.sum(axis=-1) + 4 * bk.unit_roundoff * abs(terms).sum(axis=-1)


def _endpoint_gap_tails(w, p, eta, n, eps, bk: Backend):
    """risk(w+ε) - risk(w-ε) for the mpmath backend, with its rounding bound. With risk = p Φ(a) + (1-p) Φ(b),
    each difference Φ(x) - Φ(y) is taken in the tail where x and y lie (as Φ(-y) - Φ(-x) when both are
    positive), so nothing cancels against 1: far from the origin (w1* >> √n) the two risks differ only in
    their 400th digit or beyond."""
    (a_r, b_r), (a_l, b_l) = (class_thresholds(w + s * eps, p, eta, n, 0.0, bk) for s in (1, -1))
    da, ea = _ndtr_difference(a_r, a_l, bk)
    db, eb = _ndtr_difference(b_r, b_l, bk)
    return p * da + (1 - p) * db, p * ea + (1 - p) * eb + 4 * bk.unit_roundoff * (abs(p * da) + abs((1 - p) * db))


def _ndtr_difference(x, y, bk: Backend):
    """Φ(x) - Φ(y) from the tail both lie in, and a bound on its rounding (Φ good to 4 units of its own value)."""
    upper = np.asarray((x > 0) & (y > 0), dtype=bool)
    fx, fy = bk.ndtr(np.where(upper, -x, x)), bk.ndtr(np.where(upper, -y, y))
    return np.where(upper, fy - fx, fx - fy), 4 * bk.unit_roundoff * (fx + fy)


# --- Equal robustness: the AT budget that gives the same w1 as a target ---------------------


@dataclass(frozen=True)
class BudgetBracket:
    """An AT budget ε_AT in [lo, hi] whose numerical optimum w1^AT(ε_AT) equals a target w1."""

    lo: Array
    hi: Array
    backend: Backend = FLOAT64

    @property
    def value(self) -> Array:
        with self.backend.context():  # mpmath: at the working precision, not the default 53 bits
            return (self.lo + self.hi) / 2

    @property
    def bracket_width(self) -> np.ndarray:
        return self.backend.to_float(self.hi - self.lo)


def equal_robustness_at_budget(p, eta, n, target_w1, bk: Backend = FLOAT64,
                               max_iter: int | None = None) -> BudgetBracket:
    """Solve w1^AT(ε) = target for ε in [0, η), vectorized.

    AT's objective has at most one critical point, its minimizer (see :func:`_bracket`), so w1^AT(ε) lies below
    the target exactly where the objective rises at the target: the sign of its slope there (the same
    ``risk_slope`` the AT solver bisects on) says whether ε must grow or shrink, and the budget is the root in ε
    of that slope, found by :func:`_illinois` with every sign larger than its rounding bound, so [lo, hi]
    contains it. Targets below w1* (where the slope at ε = 0 already falls) have no solution and give nan.
    """
    check_parameters(p=p, eta=eta, n=n)
    with bk.context():
        arrays = np.broadcast_arrays(*(bk.asarray(v) for v in (p, eta, n, target_w1)))
        shape = arrays[0].shape
        p, eta, n, target = (a.ravel() for a in arrays)

        def falling(eps, idx):  # minus the slope at the target: increasing in ε, zero at the budget
            s = risk_slope(target[idx], p[idx], eta[idx], n[idx], eps, bk)
            return -s.value, s.error

        rows = np.ones(eta.shape, dtype=bool)
        lo, hi, ok = _illinois(falling, eta * 0, eta.copy(), rows, bk, max_iter or bk.mantissa_bits + 80)
        nan = bk.asarray(np.nan)
        lo, hi = np.where(ok, lo, nan), np.where(ok, hi, nan)
        return BudgetBracket(lo.reshape(shape), hi.reshape(shape), bk)
