"""T3: SAM raises the robust feature weight (W Thm 3, D Thm 4.3), under both readings of SAM's objective."""

from __future__ import annotations

import numpy as np

from samat.theory import symbolic as sym
from samat.theory.claims.common import (
    PER_SAMPLE,
    POPULATION,
    ClaimReport,
    Grid,
    SubCheck,
    checked_sam_optimum,
    closed_form_check,
    mesh,
    params_at,
    per_sample_closed,
    per_sample_is_at_check,
    take,
    verdict,
)
from samat.theory.numeric import (
    sam_per_sample_optimum,
    st_optimum,
)


def check_t3(g: Grid) -> ClaimReport:
    P, E, N, EPS = mesh(g.p, g.eta, g.n, g.sam_eps)
    st = st_optimum(P, E, N)
    sam, shortcut, agree = checked_sam_optimum(P, E, N, EPS)
    above = sam.found & (sam.lo > st.hi)
    below = sam.found & (sam.hi < st.lo)
    undecided = ~above & ~below
    margin = (sam.w1 - st.w1_float()) / st.w1_float()
    violation = np.maximum(0.0, -margin)
    i_min = int(np.nanargmin(np.where(sam.found, margin, np.inf)))
    params = dict(p=P, eta=E, n=N, eps=EPS)
    checks = [
        SubCheck("w1^SAM > w1*, resolved beyond both brackets", bool(above.all()), float(violation.max()), 0.0,
                 int(P.size), f"{int(above.sum())} above, {int(below.sum())} below, {int(undecided.sum())} undecided; "
                 f"smallest relative gain (w1^SAM - w1*)/w1* = {margin[i_min]:.3g}",
                 params_at(i_min, **params)),
        SubCheck("W_R^SAM > W_R* (the same inequality divided by n)", bool(above.all()), float(violation.max()), 0.0,
                 int(P.size), "W_R = w1/n with n > 0, so the W_R form follows point by point"),
        agree,
    ]
    v = verdict(checks)
    return ClaimReport(
        "T3", "SAM increases the robust feature weight", "W Thm 3, eq. (16); D Thm 4.3, eq. (12)",
        "w1^SAM > w1*  (equivalently W_R^SAM > W_R*) for every ε > 0",
        f"p in {g.p}, η in {g.eta}, n in {g.n}, ε in {g.sam_eps}", v, float(violation.max()),
        "largest relative violation max(0, (w1* - w1^SAM)/w1*)", None, None, checks,
        failing=[params_at(i, **params) for i in np.flatnonzero(~above)[:20]],
        facts={"points": int(P.size), "smallest_gain": float(margin[i_min]),
               "smallest_gain_at": params_at(i_min, **params), "not_established": int((~above).sum())},
        reading=POPULATION,
    )


def check_t3_per_sample(g: Grid) -> ClaimReport:
    P, E, N, EPS = mesh(g.p, g.eta, g.n, g.sam_eps)
    st, ps = st_optimum(P, E, N), sam_per_sample_optimum(P, E, N, EPS)
    closed, finite, rounding = per_sample_closed(P, E, N, EPS)
    above = ps.found & (ps.lo > st.hi)
    unbounded = ~ps.found & (ps.lo > st.hi)  # still falling far beyond w1*
    margin = np.where(ps.found, (ps.w1_float() - st.w1_float()) / st.w1_float(), np.inf)
    i_min = int(np.argmin(margin))
    params = dict(p=P, eta=E, n=N, eps=EPS)
    checks = [
        SubCheck("w1^SAM > w1* where a finite optimum exists (ε < ηn), resolved beyond both brackets",
                 bool(above[finite].all()), float(np.maximum(0.0, -margin[finite]).max()), 0.0, int(finite.sum()),
                 f"{int(above[finite].sum())}/{int(finite.sum())} above; smallest relative gain "
                 f"(w1^SAM - w1*)/w1* = {margin[i_min]:.3g}", params_at(i_min, **params)),
        SubCheck("ε >= ηn: no finite optimum, the objective falls all the way as w1 -> ∞ (above w1*)",
                 bool(unbounded[~finite].all()), 0.0, 0.0, int((~finite).sum()),
                 f"{int(unbounded[~finite].sum())}/{int((~finite).sum())} points: still falling at w1 = "
                 f"{np.min(ps.lo[~finite], initial=np.inf):.3g} or beyond, as far as float64 resolves it"),
        closed_form_check("derived w1^SAM = n ln(p/(1-p)) / (2(ηn - ε)) vs the numerical optimum (ε < ηn)",
                           closed[finite], take(ps, finite), rounding[finite],
                           **{k: v[finite] for k, v in params.items()}),
        per_sample_is_at_check(),
    ]
    v = verdict(checks[:2])
    return ClaimReport(
        "T3", "SAM increases the robust feature weight", "W Thm 3, eq. (16); D Thm 4.3, eq. (12)",
        "w1^SAM > w1*  (equivalently W_R^SAM > W_R*) for every ε > 0",
        f"p in {g.p}, η in {g.eta}, n in {g.n}, ε in {g.sam_eps}", v, float(np.maximum(0.0, -margin[finite]).max()),
        "largest relative violation max(0, (w1* - w1^SAM)/w1*)", None, None, checks,
        failing=[params_at(i, **params) for i in np.flatnonzero(~(above | unbounded))[:20]],
        facts={"points": int(P.size), "finite": int(finite.sum()), "unbounded": int(unbounded.sum()),
               "smallest_gain": float(margin[i_min]), "smallest_gain_at": params_at(i_min, **params),
               "derived_holds": checks[2].holds, "derived": sym.as_text(sym.w_sam_per_sample()),
               "is_at": checks[3].holds},
        reading=PER_SAMPLE,
    )
