"""The papers' idealizations lifted, in the population model.

The theorems assume (i) the 0-1 loss, (ii) w2 = ... = w_{n+1} = 1 held fixed, (iii) SAM perturbing w1
alone by |δ| <= ε, and (iv) AT perturbing only the non-robust coordinates. Here:

* **AT on the full ℓ∞ ball** (x1 attacked too): :func:`samat.theory.numeric.at_optimum` with
  ``full_ball=True`` solves it numerically; :func:`samat.theory.symbolic.w_at_full_ball` gives its closed form.
* **SAM on the whole weight vector**, an ℓ2 ball of radius ρ over all n + 1 weights, 0-1 loss
  (:func:`sam_all_weights_optimum`). The error depends on the non-robust weights only through
  Σw_i and ||w_{2:}||_2, so the inner maximum over δ reduces to (δ1, Σδ_i, ||δ_{2:}||). The 0-1 error is
  scale invariant, so its maximum over the ball lies on the sphere: a two-dimensional maximization in
  edge-free coordinates, zoomed in from every peak of a grid (:func:`_sphere_max`, shared with the
  logistic loss); tests check it against a dense grid in other coordinates and against random
  perturbations in the full (n + 1)-dimensional ball.
  The 0-1 classifier is scale invariant: sign(cw·x) = sign(w·x), so a fixed ρ means less the larger
  w is. In the papers' gauge (w_{2:} = 1) the scale is pinned; with the scale free, the SAM objective
  only falls as the scale grows (:func:`sam_scale_curve`) and its infimum is the ST error: SAM has no
  effect at all.
* **The logistic loss** (:class:`LogisticModel`), what training actually minimizes:
  E log(1 + exp(-y w·x)), computed by Gauss-Hermite quadrature, for ST, AT (non-robust or full ball)
  and SAM (exact inner maximum, or where full-batch SAM with the one-step ascent δ = ρ g/||g|| that
  implementations take ends up).
  The logistic model is well specified here: log P(y=1|x)/P(y=-1|x) = x1 ln(p/(1-p)) + 2η Σ x_i, so
  ST's optimum is w1 = ln(p/(1-p)), w_i = 2η, whose ratio is Theorem 1's w1*; under the non-robust ℓ∞
  attack the attacked data are the same model with η - ε, so AT's optimum ratio is Theorem 2's.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from samat.theory import closed_form as cf
from samat.theory.model import GaussianModel, check_parameters
from samat.theory.objectives import Bounded, linear_log_risk

STARTS = 8  # local refinements of a SAM inner maximum on the sphere, from its highest grid peaks
SPHERE_GRID = 17  # nodes per half turn of the sphere grid that locates the logistic inner maximum's peaks
ZERO_ONE_GRID = 33  # the same for the 0-1 error, whose peaks are narrower (~0.1 rad in φ near the SAM optimum)
SAM_FATOL = 1e-14  # the logistic SAM solve resolves objective values to this (≈ 50 ulps of a loss ~ 1)
EXPECTATION_RANGE = 12.0  # E over Z ~ N(0, 1) is taken on [-12, 12] (the rest weighs < 1e-32)


# --- SAM on all weights, 0-1 loss -----------------------------------------------------------------


def _zoom_max(f, starts: np.ndarray, lower, upper, width, levels: int = 30, points: int = 5):
    """Local maximization by grid zooming, vectorized: around each start, evaluate a ``points``^d grid
    of half-width ``width`` (clipped to the bounds), move to its best point, halve the width; repeat.
    ``f`` maps an (m, d) array of points to m values. Returns the best value and point over all starts."""
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    width = np.asarray(width, dtype=float)
    d = len(lower)
    offsets = np.stack(np.meshgrid(*([np.linspace(-1, 1, points)] * d), indexing="ij"), -1).reshape(-1, d)
    current = np.asarray(starts, dtype=float)
    for _ in range(levels):
        cand = np.clip(current[:, None, :] + offsets[None] * width, lower, upper)  # (starts, grid, d)
        values = f(cand.reshape(-1, d)).reshape(len(current), -1)
        current = cand[np.arange(len(current)), np.argmax(values, axis=1)]
        width = width / 2
    final = f(current)
    k = int(np.argmax(final))
    return float(final[k]), current[k]


def _sphere_point(rho, n, phi, theta):
    """(δ1, Σδ_i, ||δ_{2:}||) for ||δ|| = ρ in coordinates without an edge where the maximum may lie.

    Write δ_{2:} = a 1/√n + b u, u a unit vector orthogonal to 1: Σδ_i = √n a, ||δ_{2:}||² = a² + b², and
    δ1 = ρ sin θ cos φ, a = ρ sin θ sin φ, b = ρ cos θ, φ periodic, θ in [0, π/2]. A loss of Σw_i and
    ||w_{2:}|| depends on b through b² alone, so b >= 0 suffices and θ = π/2 (b = 0, where the maxima
    usually lie) is a mirror: the loss is smooth and flat across it, not cut off at an edge.
    """
    d1 = rho * np.sin(theta) * np.cos(phi)
    a = rho * np.sin(theta) * np.sin(phi)
    b = rho * np.cos(theta)
    return d1, np.sqrt(n) * a, np.sqrt(a * a + b * b)


def _sphere_grid(grid: int):
    """Nodes (φ, θ) of :func:`_sphere_point` spaced π/(grid - 1) apart: φ in [-π, π), θ in [0, π/2]."""
    step = np.pi / (grid - 1)
    phi, theta = np.meshgrid(-np.pi + step * np.arange(2 * (grid - 1)), step * np.arange((grid + 1) // 2),
                             indexing="ij")
    return np.stack([phi.ravel(), theta.ravel()], axis=1), phi.shape, step


def _sphere_peaks(values: np.ndarray, k: int) -> np.ndarray:
    """Flat indices of the (up to) k highest local maxima of values on the (φ, θ) grid of
    :func:`_sphere_grid`: nodes at least as high as every neighbour, diagonal ones included, with φ
    periodic. The nodes θ = 0 are one point (the pole b = ρ), whose neighbours are all nodes of the next
    θ; across θ = π/2 the neighbours are the mirror images, already compared."""
    padded = np.pad(np.pad(values, ((1, 1), (0, 0)), mode="wrap"), ((0, 0), (1, 1)), constant_values=-np.inf)
    peak = np.ones(values.shape, dtype=bool)
    for di, dj in itertools.product((-1, 0, 1), repeat=2):
        if di or dj:
            peak &= values >= padded[1 + di:1 + di + values.shape[0], 1 + dj:1 + dj + values.shape[1]]
    peak[:, 0] = False
    peak[0, 0] = values[0, 0] >= values[:, 1].max()
    idx = np.flatnonzero(peak)
    return idx[np.argsort(values.ravel()[idx])[::-1][:k]]


def _perturbed_sum_and_norm(v, n, dsum, r):
    """Σw_i and ||w_{2:}||_2 of the non-robust weights v·1 + δ_{2:}, given Σδ_i and ||δ_{2:}||_2."""
    w_sum = n * v + dsum
    return w_sum, np.sqrt(np.maximum(n * v * v + 2 * v * dsum + r * r, 1e-300))


def _perturbed_log_risk(w1, v, n, p, eta, d1, dsum, r) -> Bounded:
    """log 0-1 error of (w1 + δ1, v·1 + δ_{2:}) given δ through δ1, Σδ_i and ||δ_{2:}||, with its rounding bound."""
    w_sum, w_l2 = _perturbed_sum_and_norm(v, n, dsum, r)
    return linear_log_risk(w1 + d1, w_sum, w_l2, np.abs(w_sum), p, eta)


def _sphere_max(value, rho: float, n: int, grid: int) -> tuple[float, tuple[float, float, float]]:
    """max over ||δ||_2 = ρ (all n + 1 weights) of ``value(δ1, Σδ_i, ||δ_{2:}||)``, and the maximizer as
    (δ1, Σδ_i, ||δ_{2:}||).

    A two-dimensional search over the edge-free coordinates (φ, θ) of :func:`_sphere_point`. The value need
    not be unimodal on the sphere (near a SAM optimum two almost equal maxima, with δ1 of opposite signs,
    compete), so a grid spaced π/(grid - 1) locates every local maximum and the search zooms in from each
    (the STARTS highest)."""
    nodes, shape, step = _sphere_grid(grid)

    def f(z):  # z: (m, 2) array of (φ, θ)
        return value(*_sphere_point(rho, n, z[:, 0], z[:, 1]))

    starts = nodes[_sphere_peaks(f(nodes).reshape(shape), STARTS)]
    # φ is periodic: its bounds only need to lie beyond the zoom's reach (twice its first width). 24 levels
    # place the maximizer within step·2^-24 (< 1.2e-8 for grid >= 17); at a smooth maximum the value is then
    # off by O(ρ² ||∇²value|| 1e-16), rounding level.
    best, z = _zoom_max(f, starts, [-2 * np.pi, 0], [2 * np.pi, np.pi / 2], [step, step], levels=24)
    return best, tuple(float(x) for x in _sphere_point(rho, n, *z))


def sam_all_weights_objective(w1: float, p: float, eta: float, n: int, rho: float, v: float = 1.0,
                              grid: int = ZERO_ONE_GRID) -> tuple[float, tuple[float, float, float]]:
    """max over ||δ||_2 <= ρ (all n + 1 weights) of the 0-1 error at (w1, v, ..., v) + δ: its log, and the
    maximizing δ as (δ1, Σδ_i, ||δ_{2:}||).

    The 0-1 error is scale invariant (sign(cw·x) = sign(w·x) for c > 0), and every ray from the origin through
    a point of the ball leaves the ball through its sphere, where the error is the same: the maximum over the
    ball is a maximum over the sphere (:func:`_sphere_max`)."""
    return _sphere_max(lambda d1, dsum, r: _perturbed_log_risk(w1, v, n, p, eta, d1, dsum, r).value, rho, n,
                       grid)


@dataclass(frozen=True)
class LiftedOptimum:
    w1: float
    v: float  # the common non-robust weight
    n: int
    objective: float  # log error (0-1) or loss (logistic) at the optimum
    resolution_w1: float  # resolution of the solve in w1
    resolution_v: float = 0.0  # and in v, where v is solved for too

    @property
    def w_r(self) -> float:
        """W_R = w1 / (w2 + ... + w_{n+1})."""
        return self.w1 / (self.n * self.v)

    @property
    def w_r_rtol(self) -> float:
        """Relative resolution of W_R implied by the resolutions of w1 and v."""
        def rel(resolution, value):
            return 0.0 if resolution == 0 else resolution / abs(value) if value else float("inf")

        return rel(self.resolution_w1, self.w1) + rel(self.resolution_v, self.v)


def sam_all_weights_optimum(p: float, eta: float, n: int, rho: float, xatol: float = 1e-7) -> LiftedOptimum:
    """argmin over w1 of the all-weights SAM objective, non-robust weights held at 1 (the papers' gauge).

    A scan over w1 brackets the minimizer, bounded Brent refines it. Brent stops once the bracket it keeps lies
    within 2(√u |w1| + xatol/3) of its answer (u the unit roundoff), which is the resolution reported, provided
    the objective is unimodal there. That is checked, not assumed: neither neighbour at that distance may be
    lower, and the inner maximum recomputed on a grid twice as fine may not be higher; a failure is an error.
    """
    check_parameters(p=p, eta=eta, n=n, rho=rho)
    w_star = float(cf.w1_star(p, eta))  # only to centre the scan; the solve does not use it

    def objective(w, grid=ZERO_ONE_GRID):
        return sam_all_weights_objective(w, p, eta, n, rho, grid=grid)

    scan = w_star * np.geomspace(0.25, 8.0, 41)
    k = int(np.argmin([objective(w)[0] for w in scan]))
    lo, hi = scan[max(k - 1, 0)], scan[min(k + 1, len(scan) - 1)]
    res = optimize.minimize_scalar(lambda w: objective(w)[0], bounds=(lo, hi), method="bounded",
                                   options={"xatol": xatol})
    resolution = 2 * (np.sqrt(np.finfo(float).eps) * abs(res.x) + xatol / 3)
    _check_zero_one_minimum(objective, float(res.x), float(res.fun), resolution, (p, eta, n, rho))
    return LiftedOptimum(float(res.x), 1.0, n, float(res.fun), resolution)


def _check_zero_one_minimum(objective, w1: float, value: float, resolution: float, point) -> None:
    """Raise if ``w1`` is not a minimum of the all-weights 0-1 SAM objective to within ``resolution``, or if its
    inner maximum missed a peak that a grid twice as fine finds (beyond the log error's rounding bound)."""
    p, eta, n, rho = point
    finer, delta = objective(w1, 2 * ZERO_ONE_GRID - 1)
    rounding = float(_perturbed_log_risk(w1, 1.0, n, p, eta, *delta).error)
    if finer > value + rounding:
        raise RuntimeError(f"0-1 all-weights SAM inner maximum (p={p}, η={eta}, n={n}, ρ={rho}) at w1={w1} missed "
                           f"a peak: {value} on the grid, {finer} on one twice as fine")
    for side in (-resolution, resolution):
        if objective(w1 + side)[0] < value - rounding:
            raise RuntimeError(f"0-1 all-weights SAM (p={p}, η={eta}, n={n}, ρ={rho}): w1={w1 + side} is lower than "
                               f"the minimizer found, w1={w1}: the objective is not unimodal where it was solved")


def sam_scale_curve(p: float, eta: float, n: int, rho: float, w_r: float, scales) -> np.ndarray:
    """The all-weights SAM objective (log error) along w = c·(n W_R, 1, ..., 1) for each scale c:
    the classifier is the same for every c; only the perturbation's relative size changes."""
    return np.array([sam_all_weights_objective(c * n * w_r, p, eta, n, rho, v=c)[0] for c in scales])


# --- The logistic loss ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _expectation_nodes(panels: int):
    x, w = np.polynomial.legendre.leggauss(8)
    edges = np.linspace(-EXPECTATION_RANGE, EXPECTATION_RANGE, panels + 1)
    half = (edges[1] - edges[0]) / 2
    z = ((edges[:-1] + edges[1:]) / 2)[:, None] + half * x[None, :]
    wts = half * w[None, :] * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
    return z.ravel(), wts.ravel()


def _newton_distance(grad, w: np.ndarray) -> float:
    """Distance from w to the minimizer, estimated by one Newton step |H⁻¹ g| (H by central differences
    of the gradient): the accuracy of a smooth convex solve."""
    g = grad(w)
    h = 1e-5 * np.maximum(np.abs(w), 1.0)
    cols = [(grad(w + h[i] * e) - grad(w - h[i] * e)) / (2 * h[i]) for i, e in enumerate(np.eye(len(w)))]
    hessian = np.array(cols).T
    return float(np.max(np.abs(np.linalg.solve(0.5 * (hessian + hessian.T), g))))


@dataclass(frozen=True)
class LogisticModel(GaussianModel):
    """Population logistic loss of w = (w1, v, ..., v) on D(p, η, n), optionally under attack."""

    @staticmethod
    def _nodes(scale: float = 1.0):
        """Nodes and weights for E f(μ + s Z), Z ~ N(0, 1): composite 8-point Gauss-Legendre on
        [-12, 12] with panels narrow enough that f varies on each by O(1) at most (softplus has poles
        at distance π from the real line, which makes plain Gauss-Hermite slow for large s)."""
        return _expectation_nodes(int(np.ceil(2 * EXPECTATION_RANGE / min(0.5, 1.5 / max(float(scale), 1e-12)))))


    def loss_general(self, w1, w_sum, w_l2, w_l1, eps=0.0, eps_x1=0.0):
        """E log(1 + exp(-margin)) for the worst-case margin (an ℓ∞ attack only lowers it, and the loss
        is decreasing in it): w1 (y x1) - ε_1|w1| + N(η Σw_i - ε ||w||_1, ||w||_2²)."""
        w1, w_sum, w_l2, w_l1 = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (w1, w_sum, w_l2, w_l1)))
        z, wts = self._nodes(float(np.max(np.abs(w_l2))) if w_l2.size else 1.0)
        base = self.eta * w_sum - eps * w_l1 - eps_x1 * np.abs(w1)
        out = 0.0
        for prob, sign in ((self.p, 1.0), (1 - self.p, -1.0)):
            margin = (sign * w1 + base)[..., None] + w_l2[..., None] * z
            out = out + prob * np.sum(np.logaddexp(0.0, -margin) * wts, axis=-1)
        return out

    def loss(self, w1: float, v: float, eps: float = 0.0, eps_x1: float = 0.0) -> float:
        n = self.n
        return float(self.loss_general(w1, n * v, np.sqrt(n) * abs(v), n * abs(v), eps, eps_x1))

    def gradient(self, w1: float, v: float, eps: float = 0.0, eps_x1: float = 0.0) -> np.ndarray:
        """d loss / d (w1, v), analytically (for w1, v > 0)."""
        n = self.n
        z, wts = self._nodes(np.sqrt(n) * abs(v))
        base = n * v * (self.eta - eps) - eps_x1 * abs(w1)
        g1 = gv = 0.0
        for prob, sign in ((self.p, 1.0), (1 - self.p, -1.0)):
            margin = sign * w1 + base + np.sqrt(n) * v * z
            d = -special.expit(-margin)  # d loss / d margin
            g1 += prob * np.sum(d * wts) * (sign - eps_x1 * np.sign(w1))
            gv += prob * np.sum(d * (n * (self.eta - eps) + np.sqrt(n) * z) * wts)
        return np.array([g1, gv])

    # -- optima --
    def st_optimum(self) -> LiftedOptimum:
        return self._minimize(lambda w: self.loss(*w), lambda w: self.gradient(*w))

    def at_optimum(self, eps: float, full_ball: bool = False) -> LiftedOptimum:
        e1 = eps if full_ball else 0.0
        if full_ball:
            # The attack on x1 costs ε|w1|: a kink at w1 = 0, where BFGS cannot settle. The loss is convex,
            # so w1 = 0 (v solved for) is the minimizer exactly when the loss rises from it towards w1 > 0
            # (towards w1 < 0 it always rises: its slope there is -E σ(-m) (2p - 1 + ε) < 0).
            kink = self._minimize(lambda w: self.loss(0.0, w[0], eps, e1),
                                  lambda w: self.gradient(0.0, w[0], eps, e1)[1:], start=[1.0])
            if self.gradient(np.finfo(float).tiny, kink.v, eps, e1)[0] >= 0:  # the slope at w1 = 0+
                return LiftedOptimum(0.0, kink.v, self.n, kink.objective, 0.0, kink.resolution_v)
        return self._minimize(lambda w: self.loss(*w, eps, e1), lambda w: self.gradient(*w, eps, e1))

    def sam_objective(self, w1: float, v: float, rho: float, grid: int = SPHERE_GRID) -> tuple[float, tuple]:
        """max over ||δ||_2 <= ρ (all n + 1 weights) of the loss at (w1, v·1) + δ, and the maximizer as
        (δ1, Σδ_i, ||δ_{2:}||). The loss is convex in the weights, so its maximum over the ball lies on the
        sphere (:func:`_sphere_max`)."""
        n = self.n

        def value(d1, dsum, r):
            w_sum, w_l2 = _perturbed_sum_and_norm(v, n, dsum, r)
            return self.loss_general(w1 + d1, w_sum, w_l2, np.abs(w_sum))

        return _sphere_max(value, rho, n, grid)

    def sam_optimum(self, rho: float, start: LiftedOptimum | None = None, xatol: float = 1e-7,
                    grid: int = 17) -> LiftedOptimum:
        """SAM with the exact inner maximum over the ℓ2 ball of all weights.

        The objective is convex (a maximum of convex losses) but not smooth: it has a kink wherever two
        inner maxima tie, as they do near its minimizer, and Nelder-Mead stops at scattered points along
        it. So it is solved twice, each time to xatol/100: from ``start`` (the ST optimum unless given:
        pass it where it is at hand), and from the mirror image of that start through the first solution.
        The resolution reported for each coordinate is the larger of ``xatol`` and the two solutions'
        disagreement. At each solution the inner maximum is recomputed on a grid twice as fine; a higher
        value there (beyond SAM_FATOL, what the outer solve resolves) means a missed inner peak: an error.
        """
        start = self.st_optimum() if start is None else start
        x0 = np.array([start.w1, start.v])
        first = self._sam_solve(rho, x0, xatol / 100, grid)
        second = self._sam_solve(rho, 2 * first.x - x0, xatol / 100, grid)
        best = min(first, second, key=lambda r: r.fun)
        resolution = np.maximum(xatol, np.abs(first.x - second.x))
        return LiftedOptimum(float(best.x[0]), float(best.x[1]), self.n, float(best.fun), float(resolution[0]),
                             float(resolution[1]))

    def _sam_solve(self, rho: float, x0, xatol: float, grid: int):
        res = optimize.minimize(lambda w: self.sam_objective(w[0], w[1], rho, grid)[0], x0, method="Nelder-Mead",
                                options={"xatol": xatol, "fatol": SAM_FATOL, "maxiter": 4000})
        if not res.success:
            raise RuntimeError(f"logistic SAM optimum (ρ={rho}) not found from {x0}: {res.message}")
        finer = self.sam_objective(res.x[0], res.x[1], rho, 2 * grid - 1)[0]
        if finer > res.fun + SAM_FATOL:
            raise RuntimeError(f"logistic SAM inner maximum (ρ={rho}) at {res.x} missed a peak: {res.fun} on the "
                               f"grid, {finer} on one twice as fine")
        return res

    def sam_one_step_limit(self, rho: float, steps: int = 5000, lr: float = 0.5) -> LiftedOptimum:
        """Where full-batch SAM as implemented goes: w <- w - lr ∇L(w + ρ g/||g||), g = ∇L(w), both
        gradients taken per weight over all n + 1 weights (by symmetry every non-robust weight moves
        alike, by ∂L/∂w_i = (dL/dv)/n), with the learning rate divided by 10 at 75% and 90% of the steps,
        as in training; the iterates of the last 10% are averaged.

        Its update has no fixed point in general: the normalized ascent direction flips where the
        gradient vanishes, so the iterates settle into a small oscillation whose mean is reported.
        """
        n = self.n
        w = np.array([1.0, 1.0])
        tail = []

        def per_weight(g):  # (dL/dw1, dL/dv) -> (∂L/∂w1, ∂L/∂w_i)
            return np.array([g[0], g[1] / n])

        for t in range(steps):
            g = per_weight(self.gradient(*w))
            norm = np.sqrt(g[0] * g[0] + n * g[1] * g[1]) + 1e-300
            ascended = w + rho * g / norm
            step = lr * 0.1 ** ((t >= 0.75 * steps) + (t >= 0.9 * steps))
            w = w - step * per_weight(self.gradient(*ascended))
            if t >= 0.9 * steps:
                tail.append(w.copy())
        mean = np.mean(tail, axis=0)
        spread = float(np.max(np.abs(np.array(tail) - mean)))
        return LiftedOptimum(float(mean[0]), float(mean[1]), n, self.loss(*mean), spread, spread)

    def w_r_sampling_sd(self, n_samples: int, eps: float = 0.0, mc: int = 400_000, seed: int = 0) -> float:
        """Asymptotic standard deviation of W_R for the logistic fit on ``n_samples`` examples.

        Under the non-robust ℓ∞ attack of size ε the fit is the maximum-likelihood estimate of the
        well-specified model on D(p, η - ε, n), so Cov(ŵ) ≈ I⁻¹/N with I = E[σ(m)(1 - σ(m)) x xᵀ] at
        w = (ln(p/(1-p)), 2(η - ε), ...); the delta method carries it to W_R = w1/Σw_i. I is estimated
        from ``mc`` seeded samples.
        """
        eta = self.eta - eps
        x, y = GaussianModel(self.p, eta, self.n).sample(mc, seed=seed)
        w = np.concatenate([[float(cf.log_odds(self.p))], np.full(self.n, 2 * eta)])
        s = special.expit(x @ w)
        info = (x * (s * (1 - s))[:, None]).T @ x / mc
        cov = np.linalg.inv(info) / n_samples
        total = w[1:].sum()
        grad = np.concatenate([[1 / total], np.full(self.n, -w[0] / total**2)])
        return float(np.sqrt(grad @ cov @ grad))

    def _minimize(self, f, grad, start=(1.0, 1.0)) -> LiftedOptimum:
        """BFGS on log(loss) (same minimizer; scale-free where the loss is astronomically small, as when
        η√n is large), from a neutral start: the loss is convex and the minimizer is found, not assumed."""
        def log_grad(w):
            return grad(w) / f(w)

        res = optimize.minimize(lambda w: np.log(f(w)), np.array(start, dtype=float), jac=log_grad,
                                method="BFGS", options={"gtol": 1e-11, "maxiter": 2000})
        distance = _newton_distance(log_grad, res.x)
        if len(res.x) == 1:  # v alone (w1 held at 0)
            return LiftedOptimum(0.0, float(res.x[0]), self.n, float(f(res.x)), 0.0, distance)
        return LiftedOptimum(float(res.x[0]), float(res.x[1]), self.n, float(f(res.x)), distance, distance)
