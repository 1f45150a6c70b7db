"""The duality map: at which AT budget ε_AT(ρ) is adversarial training as robust as SAM with radius ρ, and the
exponent b of the exchange rate ε_AT ∝ ρ^b, held against the two readings of SAM's objective (W Thm 5, D Thm 4.5,
as corrected in docs/THEORY.md):

* population max-min (the papers' proofs): η/ε_AT = 3n/ρ² + O(1), so b -> 2 as ρ -> 0;
* per sample (the objective as W eq. 15 and D eq. 11 print it): ε_AT = ρ/n exactly, so b = 1.

Everything here works on robust-accuracy curves, measured (:mod:`samat.empirical.experiments.duality`, the study's
trained linear models) or exact (:mod:`samat.theory.duality.exact`), and needs no torch:

1. **Inversion** (:func:`invert`). AT's robust accuracy over its budgets ε_1 < ... < ε_K is made monotone, and the
   level of SAM(ρ) is read off it: ε_AT(ρ) is the budget at which the monotone curve, linear in log ε between
   budgets, reaches SAM's robust accuracy. AT's curve may fall (a large budget trades clean accuracy for robustness
   at its own budget, and an attack column of smaller budget sees the loss: D Table 4's AA. column falls from 58.6
   at ε = 1/255 to 52.4 at 8/255): the map uses its rising branch, up to its highest point (the *peak*), with dips
   before the peak pooled by isotonic regression (pool-adjacent-violators), and says so. Nothing is extrapolated:
   below the smallest budget's accuracy is BELOW, above the peak's is ABOVE. Where the curve is flat at exactly the
   level, ε_AT is the geometric midpoint of the flat stretch.
2. **Uncertainty** (:func:`bootstrap_accuracies`). Every run (budget or radius) is trained with the same seeds and
   evaluated on the same test images, so the accuracies are a crossed design: seeds x images. Each resample draws
   the seeds with replacement and, independently, the images with replacement, the same draw for every run (the
   pairing by image and by seed is kept), and the whole map is recomputed on it: the "pigeonhole" bootstrap for
   crossed random effects (Owen 2007, Ann. Appl. Stat. 1(2), 2007), which is mildly conservative. With few seeds
   the seed part of the interval is rough (two seeds give three distinct seed draws).
3. **Intervals** (:func:`conservative_interval`). Percentile intervals over the resamples, in which a resample that
   falls below AT's range counts as smaller than every budget, one above as larger (ranks are kept, nothing is
   extrapolated: an interval end may read "below the smallest budget"); a quantity a resample cannot give at all
   (a fit with a point outside the range) counts against both ends, so that a result missing in more than half the
   tail probability widens the interval to the whole line.
4. **Exponent** (:func:`fit_exponent`): least squares of log ε_AT = a + b log ρ over the radii whose ε_AT and its
   whole interval lie inside AT's range; b's interval from the same resamples, or, for exact curves, from the
   inversion's brackets (:func:`slope_bound`). :func:`verdict` reads it: "consistent with slope 2", "consistent
   with slope 1", "neither", or "undecided" (the interval covers both, or too few radii map inside the range).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BELOW, INSIDE, ABOVE = -1, 0, 1  # where a level lies against AT's curve (its smallest budget, its peak)
STATUS = {BELOW: "below the smallest budget", INSIDE: "inside", ABOVE: "above the largest budget"}

POPULATION_SLOPE = 2.0  # η/ε_AT = 3n/ρ² + O(1): population max-min reading (docs/THEORY.md, T5 derived)
PER_SAMPLE_SLOPE = 1.0  # ε_AT = ρ/n: per-sample reading (SAM(ρ) is AT(ρ/n))
CONSISTENT_2 = "consistent with slope 2"
CONSISTENT_1 = "consistent with slope 1"
NEITHER = "neither"
UNDECIDED = "undecided"
MIN_FIT_POINTS = 2  # radii a slope needs


# --- 1. Inversion ---------------------------------------------------------------------------------------------


def isotonic(values: np.ndarray) -> np.ndarray:
    """The non-decreasing least-squares fit of a sequence with equal weights (pool-adjacent-violators), along the
    last axis."""
    values = np.asarray(values, dtype=float)
    out = np.empty_like(values)
    for index in np.ndindex(values.shape[:-1]):
        blocks: list[list[float]] = []  # [sum, count] of each pooled block
        for v in values[index]:
            blocks.append([v, 1.0])
            while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
                total, count = blocks.pop()
                blocks[-1][0] += total
                blocks[-1][1] += count
        out[index] = np.concatenate([np.full(int(c), s / c) for s, c in blocks])
    return out


def rising_branch(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AT's curves (..., K) made monotone: the index of each curve's peak (its first highest point), and the curve
    with dips before the peak pooled (isotonic) and held at the peak's value beyond it (the map never uses the
    budgets past the peak)."""
    curves = np.asarray(curves, dtype=float)
    peak = np.argmax(curves, axis=-1)
    fitted = np.empty_like(curves)
    for index in np.ndindex(curves.shape[:-1]):
        top = int(peak[index])
        fitted[index][: top + 1] = isotonic(curves[index][: top + 1])
        fitted[index][top + 1:] = fitted[index][top]
    return peak, fitted


@dataclass(frozen=True)
class Inversion:
    """The AT budget of equal robust accuracy for each level: log ε_AT (nan outside AT's range), where the level
    lies (BELOW, INSIDE, ABOVE), and the budgets that bracket it (indices; -1 outside)."""

    log_eps: np.ndarray  # (..., M)
    status: np.ndarray  # (..., M)
    lower: np.ndarray  # (..., M): ε_AT lies in [budgets[lower], budgets[upper]]
    upper: np.ndarray
    peak: np.ndarray  # (...,): index of AT's peak; budgets beyond it are not used

    @property
    def eps(self) -> np.ndarray:
        return np.exp(self.log_eps)


def check_ladder(values, name: str, minimum: int = 3) -> np.ndarray:
    """A ladder of budgets or radii as an array: at least ``minimum`` finite positive values, strictly increasing;
    a ValueError naming ``name`` otherwise (the grid's reader says it in the file's words first)."""
    a = np.asarray(values, dtype=float)
    if a.ndim != 1 or len(a) < minimum:
        raise ValueError(f"{name} must hold at least {minimum} values, not {a.size}")
    if not np.all(np.isfinite(a) & (a > 0)):
        raise ValueError(f"{name} must be finite and positive")
    if not np.all(np.diff(a) > 0):
        raise ValueError(f"{name} must be strictly increasing")
    return a


def invert(budgets, at_curves, levels) -> Inversion:
    """ε_AT at which AT's robust accuracy (``at_curves`` (..., K) over ``budgets`` (K,)) reaches each of ``levels``
    (..., M): monotone interpolation, linear in log ε, on the rising branch; never extrapolated (see the module)."""
    log_b = np.log(check_ladder(budgets, "budgets", minimum=2))
    at_curves, levels = np.asarray(at_curves, dtype=float), np.asarray(levels, dtype=float)
    peak, fitted = rising_branch(at_curves)
    k = len(log_b)
    g = fitted[..., None, :]  # (..., 1, K) against levels (..., M, 1)
    lv = levels[..., None]
    first = np.sum(g < lv, axis=-1)  # first node at or above the level
    last = np.minimum(np.sum(g <= lv, axis=-1) - 1, peak[..., None])  # last node at or below it (not past the peak)
    below = levels < fitted[..., :1]
    above = levels > np.take_along_axis(fitted, peak[..., None], axis=-1)
    inside = ~below & ~above
    lo_i = np.clip(np.where(last >= first, first, first - 1), 0, k - 1)
    hi_i = np.clip(np.where(last >= first, last, first), 0, k - 1)
    g_lo = np.take_along_axis(fitted, lo_i, axis=-1)
    g_hi = np.take_along_axis(fitted, hi_i, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(g_hi > g_lo, (levels - g_lo) / (g_hi - g_lo), 0.5)  # flat stretch: its midpoint
    log_eps = log_b[lo_i] + share * (log_b[hi_i] - log_b[lo_i])
    status = np.where(below, BELOW, np.where(above, ABOVE, INSIDE))
    return Inversion(np.where(inside, log_eps, np.nan), status, np.where(inside, lo_i, -1),
                     np.where(inside, hi_i, -1), peak)


def interpolate(budgets, values, log_eps) -> np.ndarray:
    """``values`` (..., K) over ``budgets`` read at log ε (..., M), linear in log ε between budgets (AT's clean
    accuracy at ε_AT); nan where log ε is nan or outside the budgets."""
    log_b = np.log(np.asarray(budgets, dtype=float))
    values, log_eps = np.asarray(values, dtype=float), np.asarray(log_eps, dtype=float)
    inside = np.isfinite(log_eps) & (log_eps >= log_b[0]) & (log_eps <= log_b[-1])
    x = np.where(inside, log_eps, log_b[0])
    right = np.clip(np.searchsorted(log_b, x, side="right"), 1, len(log_b) - 1)
    left = right - 1
    v_left = np.take_along_axis(values, left, axis=-1)
    v_right = np.take_along_axis(values, right, axis=-1)
    share = (x - log_b[left]) / (log_b[right] - log_b[left])
    return np.where(inside, v_left + share * (v_right - v_left), np.nan)


def falls(curves: np.ndarray) -> np.ndarray:
    """Where AT's curve (..., K) falls from one budget to the next: (..., K-1) bool."""
    curves = np.asarray(curves, dtype=float)
    return curves[..., 1:] < curves[..., :-1]


# --- 2. Resampling ---------------------------------------------------------------------------------------------


def bootstrap_accuracies(correct: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Accuracies of every run in the full data and in ``resamples`` pigeonhole resamples.

    ``correct`` (..., S, N): per seed and test image, whether each run (leading axes: column, run) gets the image
    right (0/1, or any score in [0, 1]). Every resample draws S seeds and N images with replacement, the same draw
    for every run and column. Returns (1 + resamples, ...): the first row is the full data (the point estimate)."""
    correct = np.asarray(correct, dtype=float)
    *lead, s, n = correct.shape
    rng = np.random.default_rng(seed)
    seed_counts = rng.multinomial(s, np.full(s, 1 / s), size=resamples + 1).astype(float)  # (B+1, S)
    seed_counts[0] = 1.0
    flat = correct.reshape(-1, s, n)
    out = np.empty((resamples + 1, flat.shape[0]))
    chunk = max(1, (1 << 22) // max(n, 1))  # the image counts of this many resamples at a time
    for start in range(0, resamples + 1, chunk):
        stop = min(resamples + 1, start + chunk)
        image_counts = rng.multinomial(n, np.full(n, 1 / n), size=stop - start).astype(float)  # (b, N)
        if start == 0:
            image_counts[0] = 1.0
        per_seed = flat @ image_counts.T  # (runs, S, b): correct images counted with their multiplicity
        out[start:stop] = np.einsum("rsb,bs->br", per_seed, seed_counts[start:stop]) / (s * n)
    return out.reshape(resamples + 1, *lead)


def conservative_interval(values: np.ndarray, level: float, low_fill: np.ndarray | None = None,
                          high_fill: np.ndarray | None = None) -> tuple[float, float]:
    """The percentile interval at ``level`` of resampled ``values`` (B,), nan where a resample gives none.

    ``low_fill``/``high_fill`` (B, bool): resamples known to lie below / above every value (a level below or above
    AT's range): they rank as -inf / +inf. Any other nan counts as -inf for the lower end and +inf for the upper
    one, so an end is infinite when such resamples exceed its tail probability."""
    v = np.asarray(values, dtype=float)
    missing = np.isnan(v)
    low_fill = np.zeros(v.shape, bool) if low_fill is None else np.asarray(low_fill, bool)
    high_fill = np.zeros(v.shape, bool) if high_fill is None else np.asarray(high_fill, bool)
    unknown = missing & ~low_fill & ~high_fill
    lows = np.where(low_fill | unknown, -np.inf, np.where(high_fill, np.inf, v))
    highs = np.where(high_fill | unknown, np.inf, np.where(low_fill, -np.inf, v))
    tail = (1 - level) / 2
    return float(np.quantile(lows, tail, method="inverted_cdf")), float(
        np.quantile(highs, 1 - tail, method="inverted_cdf"))


# --- 3. The exponent --------------------------------------------------------------------------------------------


def slope_weights(log_rho) -> np.ndarray:
    """c with b = Σ c_i y_i for the least-squares slope of y on log ρ (c_i = (x_i - x̄)/Σ(x - x̄)²)."""
    x = np.asarray(log_rho, dtype=float)
    dx = x - x.mean()
    return dx / np.sum(dx * dx)


@dataclass(frozen=True)
class Fit:
    """log ε_AT = intercept + slope log ρ over the radii ``points`` (indices); nan with fewer than 2."""

    slope: np.ndarray
    intercept: np.ndarray
    points: tuple[int, ...]


def fit_exponent(log_rho, log_eps, points) -> Fit:
    """Least squares of log ε_AT on log ρ over the radii ``points``, for each row of ``log_eps`` (..., M)."""
    points = tuple(int(i) for i in points)
    log_eps = np.asarray(log_eps, dtype=float)
    if len(points) < MIN_FIT_POINTS:
        nan = np.full(log_eps.shape[:-1], np.nan)
        return Fit(nan, nan, points)
    x = np.asarray(log_rho, dtype=float)[list(points)]
    y = log_eps[..., list(points)]
    slope = y @ slope_weights(x)
    return Fit(slope, y.mean(axis=-1) - slope * x.mean(), points)


def slope_bound(log_rho, points, log_error) -> float:
    """The largest change of the least-squares slope over ``points`` when each log ε_AT may be off by up to
    ``log_error`` (M,): Σ |c_i| δ_i (exact curves: the inversion's brackets)."""
    points = list(points)
    c = slope_weights(np.asarray(log_rho, dtype=float)[points])
    return float(np.sum(np.abs(c) * np.asarray(log_error, dtype=float)[points]))


def verdict(low: float, high: float, points: int) -> str:
    """What b's interval [low, high] says about the two readings (module docstring)."""
    if points < MIN_FIT_POINTS or np.isnan(low) or np.isnan(high):
        return UNDECIDED
    two = low <= POPULATION_SLOPE <= high
    one = low <= PER_SAMPLE_SLOPE <= high
    if two and one:
        return UNDECIDED
    if two:
        return CONSISTENT_2
    if one:
        return CONSISTENT_1
    return NEITHER


# --- The map of one attack column -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnMap:
    """The duality map of one attack column: point estimates from the full data, intervals from the resamples.
    Accuracies are fractions; ε and ρ are in the ladders' units."""

    radii: np.ndarray  # (M,)
    budgets: np.ndarray  # (K,)
    at_accuracy: np.ndarray  # (K,) AT's robust accuracy
    sam_accuracy: np.ndarray  # (M,) SAM's robust accuracy
    inversion: Inversion  # (M,)
    eps_interval: np.ndarray  # (M, 2): ε_AT's interval (an end below budgets[0] or above budgets[-1]: outside)
    clean_difference: np.ndarray  # (M,) SAM's clean accuracy minus AT's at ε_AT (nan outside AT's range)
    clean_interval: np.ndarray  # (M, 2)
    fit: Fit  # over the radii whose ε_AT and its whole interval lie inside AT's range
    slope_interval: tuple[float, float]
    slope_undefined: float  # share of resamples in which a fitted radius maps outside AT's range
    verdict: str
    fall_share: np.ndarray  # (K-1,) share of resamples in which AT's curve falls from budget k to k+1
    level: float
    resamples: int

    @property
    def monotone(self) -> bool:
        """Whether AT's curve (point estimate) never falls from one budget to the next."""
        return not bool(falls(self.at_accuracy).any())


def column_map(radii, budgets, at_robust, sam_robust, at_clean, sam_clean, *, level: float = 0.95) -> ColumnMap:
    """The map of one column from resampled accuracies: ``at_*`` (1 + B, K) and ``sam_*`` (1 + B, M), row 0 from the
    full data, rows 1.. from the resamples (as :func:`bootstrap_accuracies` gives them; B >= 1)."""
    radii = check_ladder(radii, "radii", minimum=MIN_FIT_POINTS)
    budgets = check_ladder(budgets, "budgets", minimum=2)
    at_robust, sam_robust = np.asarray(at_robust, float), np.asarray(sam_robust, float)
    if len(at_robust) < 2:
        raise ValueError("column_map needs the full data and at least one resample (rows), not "
                         f"{len(at_robust)} row(s)")
    inv = invert(budgets, at_robust, sam_robust)  # (1 + B, M)
    below, above = inv.status[1:] == BELOW, inv.status[1:] == ABOVE
    eps_interval = np.exp([conservative_interval(inv.log_eps[1:, m], level, below[:, m], above[:, m])
                           for m in range(len(radii))])
    difference = np.asarray(sam_clean, float) - interpolate(budgets, at_clean, inv.log_eps)
    clean_interval = np.array([conservative_interval(difference[1:, m], level) for m in range(len(radii))])
    point = Inversion(*(a[0] for a in (inv.log_eps, inv.status, inv.lower, inv.upper, inv.peak)))
    inside = [m for m in range(len(radii)) if point.status[m] == INSIDE
              and eps_interval[m, 0] >= budgets[0] and eps_interval[m, 1] <= budgets[-1]]
    fits = fit_exponent(np.log(radii), inv.log_eps, inside)
    if len(inside) >= MIN_FIT_POINTS:
        slope_interval = conservative_interval(fits.slope[1:], level)
        undefined = float(np.isnan(fits.slope[1:]).mean())
    else:
        slope_interval, undefined = (float("nan"), float("nan")), float("nan")
    return ColumnMap(radii, budgets, at_robust[0], sam_robust[0], point, eps_interval, difference[0], clean_interval,
                     Fit(fits.slope[0], fits.intercept[0], fits.points), slope_interval, undefined,
                     verdict(*slope_interval, len(inside)), falls(at_robust[1:]).mean(axis=0), level,
                     len(at_robust) - 1)


def budget_interval_text(low: float, high: float, budgets, show, show_budget=None) -> str:
    """ε_AT's interval for people: "[0.31, 0.52]", "[< 0.25, 0.52]", "[0.31, > 4]": an end outside AT's range as
    below the smallest budget or above the largest (``show`` formats a measured budget, ``show_budget`` one of the
    ladder's; default ``show``)."""
    show_budget = show_budget or show

    def end(x: float) -> str:
        if x < budgets[0]:
            return f"< {show_budget(budgets[0])}"
        return f"> {show_budget(budgets[-1])}" if x > budgets[-1] else show(x)

    return f"[{end(low)}, {end(high)}]"


def log_bracket_error(log_eps: np.ndarray, log_left: np.ndarray, log_right: np.ndarray) -> np.ndarray:
    """How far log ε_AT may lie from the true budget that lies in [left, right]: the larger distance to an end."""
    return np.maximum(np.abs(log_eps - log_left), np.abs(log_right - log_eps))
