"""What every claim's check shares: the grid it is checked over, the records of a check and of a claim (its
verdict), and the comparisons a verdict is computed from (a closed form against the numerical optimum within its
bracket, a sympy expression against the float64 one, an extrapolated limit against a target), with the SAM optimum
that T3-T5 start from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from samat.theory import closed_form as cf
from samat.theory import symbolic as sym
from samat.theory.backend import FLOAT64
from samat.theory.numeric import (
    Optimum,
    sam_optimum,
    sam_optimum_equal_endpoints,
)

U = FLOAT64.unit_roundoff


# The two readings of SAM's objective (T3-T5 are checked under each):
POPULATION = "population max-min"  # max over δ of the population error (the proofs, W eq. 19 on)


PER_SAMPLE = "per-sample"  # the max over δ inside the expectation, as W eq. (15) and D eq. (11) print it


@dataclass(frozen=True)
class Grid:
    """Parameters over which every claim is checked."""

    p: tuple[float, ...] = (0.55, 0.7, 0.8, 0.9, 0.99)
    eta: tuple[float, ...] = (0.05, 0.2, 0.5, 1.0, 2.0)
    n: tuple[int, ...] = (1, 2, 5, 20, 100)
    at_fraction: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)  # ε_AT / η for Theorem 2
    at_beyond: tuple[float, ...] = (1.0, 1.5, 3.0)  # ε_AT / η where no optimum should exist
    sam_eps: tuple[float, ...] = (0.01, 0.05, 0.2, 0.5, 1.0, 2.0)  # Theorem 3
    sam_eps_compare: tuple[float, ...] = (0.01, 0.03, 0.1)  # Theorem 4, direct comparison
    fit_eps: tuple[float, ...] = tuple(np.logspace(-3, -1.5, 7))  # Theorem 4, ε -> 0 fit
    t5_eps_sam: tuple[float, ...] = tuple(np.logspace(-2, -1, 6))
    t5_mp_eps_sam: tuple[float, ...] = (2.5e-4, 5e-4, 1e-3)  # T5 in mpmath where float64 cannot decide
    t5_mp_dps: int = 40
    mp_spot_checks: int = 2  # (p, η, n) points re-solved directly in mpmath at tiny ε

    @classmethod
    def quick(cls) -> Grid:
        """A small grid for tests and smoke runs."""
        return cls(p=(0.6, 0.9), eta=(0.2, 1.0), n=(1, 5), at_fraction=(0.25, 0.75), at_beyond=(1.0, 2.0),
                   sam_eps=(0.05, 0.5), sam_eps_compare=(0.01, 0.1), fit_eps=tuple(np.logspace(-3, -1.5, 5)),
                   t5_eps_sam=tuple(np.logspace(-2, -1, 3)), mp_spot_checks=1)


@dataclass
class SubCheck:
    name: str
    holds: bool
    max_rel_error: float
    tolerance: float  # the largest relative tolerance that was applied
    points: int
    detail: str
    worst: dict | None = None


@dataclass
class ClaimReport:
    """One claim's verdict and the checks behind it; :mod:`samat.theory.report` writes it for people."""

    theorem: str
    title: str
    refs: str
    claim: str
    regime: str
    verdict: str  # "holds" | "fails"
    max_rel_error: float
    error_measure: str
    corrected: str | None
    corrected_verdict: str | None
    checks: list[SubCheck]
    failing: list[dict] = field(default_factory=list)
    table: list[dict] = field(default_factory=list)
    facts: dict = field(default_factory=dict)  # the numbers the report's summary of this claim is written from
    seconds: float = 0.0
    reading: str | None = None  # POPULATION or PER_SAMPLE for the SAM claims; None where SAM plays no part

    @property
    def key(self) -> str:
        """The claim and its reading, as one name: "T1", "T3 (per-sample)"."""
        return self.theorem if self.reading is None else f"{self.theorem} ({self.reading})"

    def to_json(self) -> dict:
        return asdict(self)


def mesh(*axes):
    return [a.ravel() for a in np.meshgrid(*(np.asarray(x, dtype=float) for x in axes), indexing="ij")]


def params_at(i, **arrays) -> dict:
    return {k: float(v[i]) for k, v in arrays.items()}


def closed_form_check(name: str, closed, numeric: Optimum, rounding, scale=1.0, **params) -> SubCheck:
    """|closed - numeric| <= half the numeric bracket + the closed form's rounding (both scaled)."""
    value = numeric.w1_float() / scale
    err = np.abs(closed - value)
    tol = (numeric.bracket_width / 2 + rounding) / scale
    ok = numeric.found & (err <= tol)
    rel = np.where(numeric.found, err / np.abs(closed), np.inf)
    worst = int(np.argmax(rel))
    return SubCheck(
        name, bool(ok.all()), float(rel.max()), float(np.max(tol / np.abs(closed))), int(rel.size),
        f"{int(ok.sum())}/{ok.size} points within the numerical bracket"
        + ("" if numeric.found.all() else f"; {int((~numeric.found).sum())} without a numerical optimum"),
        params_at(worst, **params) | {"closed": float(closed[worst]), "numeric": float(value[worst])},
    )


def symbolic_check(name: str, expr, args, values, reference, rounding) -> SubCheck:
    """The sympy expression, evaluated to 30 digits, against the float64 closed form."""
    derived = sym.evaluate(expr, args, *values)
    err = np.abs(derived - reference)
    return SubCheck(name, bool((err <= rounding).all()), float((err / np.abs(reference)).max()),
                    float((rounding / np.abs(reference)).max()), int(err.size), f"sympy: {sym.as_text(expr)}")


DECISIVE = 0.1  # an extrapolated limit decides a point only if its uncertainty is below 10% of its scale


def limit_check(name: str, limit, tol, target, scale, what: str, note: str = "",
                 target_err=0.0) -> tuple[SubCheck, np.ndarray]:
    """Compare extrapolated limits with a target (itself good to ``target_err``), at the points where the
    extrapolation is decisive. Returns the check and the mask of decisive points that disagree."""
    limit, tol = np.asarray(limit, dtype=float), np.asarray(tol, dtype=float)
    target, scale = np.broadcast_to(target, limit.shape), np.broadcast_to(scale, limit.shape)
    decisive = tol <= DECISIVE * scale
    agree = np.abs(limit - target) <= tol + target_err
    rel = np.abs(limit - target) / scale
    d = decisive if decisive.any() else np.ones_like(decisive)
    check = SubCheck(
        name, bool(decisive.any() and agree[decisive].all()), float(rel[d].max()), float((tol / scale)[d].max()),
        int(decisive.sum()),
        f"{what} {limit[d].min():.6g}..{limit[d].max():.6g}; decisive at {int(decisive.sum())}/{limit.size} points "
        f"(uncertainty <= {DECISIVE:.0%} of the scale){note}, of which {int((agree & decisive).sum())} agree",
    )
    return check, decisive & ~agree


def verdict(checks: list[SubCheck]) -> str:
    return "holds" if all(c.holds for c in checks) else "fails"


def take(opt: Optimum, mask: np.ndarray) -> Optimum:
    """The points ``mask`` of a float64 optimum."""
    return Optimum(*(np.asarray(getattr(opt, f))[mask] for f in ("w1", "lo", "hi", "found", "log_risk")))


def checked_sam_optimum(P, E, N, eps) -> tuple[Optimum, np.ndarray, SubCheck]:
    """SAM optima: the direct max-min solve, and the equal-endpoints root where float64 cannot
    resolve the direct one. Returns the merged optimum (as float arrays), a mask of points that
    used the shortcut, and the agreement check of the two where both resolve."""
    direct = sam_optimum(P, E, N, eps)
    short = sam_optimum_equal_endpoints(P, E, N, eps)
    both = direct.found & short.found
    diff = np.abs(direct.w1_float() - short.w1_float())
    allowed = (direct.bracket_width + short.bracket_width) / 2
    agree = ~both | (diff <= allowed)
    # Use the direct solve wherever it is at least as sharp as the shortcut.
    sharpest = np.maximum(short.bracket_width, U * np.abs(short.w1_float()))
    use_short = ~direct.found | (direct.bracket_width > 64 * sharpest)
    pick = lambda a, b: np.where(use_short, a, b)  # noqa: E731
    merged = Optimum(pick(short.w1_float(), direct.w1_float()), pick(short.lo, direct.lo), pick(short.hi, direct.hi),
                     pick(short.found, direct.found), pick(short.log_risk, direct.log_risk))
    rel = np.where(both, diff / np.abs(short.w1_float()), 0.0)
    check = SubCheck(
        "equal-endpoints shortcut agrees with the direct max-min solve", bool(agree.all()), float(rel.max()),
        float(np.max(np.where(both, allowed / np.abs(short.w1_float()), 0))), int(both.sum()),
        f"{int((both & agree).sum())}/{int(both.sum())} points agree within the brackets; the shortcut is used at "
        f"{int(use_short.sum())} points where the direct float64 solve is flat to rounding",
    )
    return merged, use_short, check


def per_sample_is_at_check() -> SubCheck:
    same = sym.per_sample_is_at(sym.eps / sym.n)
    return SubCheck("sympy: per-sample SAM with budget ε has, term by term, AT's objective with budget ε/n", same,
                    0.0, 0.0, 1, "the worst δ of every sample lowers its margin by ε whatever w1 is, as an ℓ∞ "
                    "attack of size ε/n on the n non-robust features does")


def per_sample_closed(P, E, N, EPS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The derived per-sample optimum (:func:`samat.theory.symbolic.per_sample_w1`), nan where ε >= ηn; the mask where
    it exists; and its rounding bound there (nan elsewhere)."""
    closed, finite = sym.per_sample_w1(P, E, N, EPS), EPS < E * N
    rounding = np.full(P.shape, np.nan)
    rounding[finite] = cf.rounding_bound_per_sample(*(a[finite] for a in (P, E, N, EPS)))
    return closed, finite, rounding
