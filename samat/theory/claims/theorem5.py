"""T5: the equal-robustness relation between ε_SAM and ε_AT (W Thm 5, D Thm 4.5), under both readings, with the
papers' qualitative corollaries and the derived relation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from samat.theory import closed_form as cf
from samat.theory import symbolic as sym
from samat.theory.backend import FLOAT64, Backend, mp_backend
from samat.theory.claims.common import (
    DECISIVE,
    PER_SAMPLE,
    POPULATION,
    ClaimReport,
    Grid,
    SubCheck,
    U,
    checked_sam_optimum,
    limit_check,
    mesh,
    params_at,
    verdict,
)
from samat.theory.claims.fits import Extrapolation, extrapolate
from samat.theory.numeric import (
    at_optimum,
    equal_robustness_at_budget,
    sam_optimum_equal_endpoints,
    sam_per_sample_optimum,
    st_optimum,
)


@dataclass(frozen=True)
class _EqualRobustness:
    """At every (p, η, n, ε_SAM): the AT budget ε_AT whose optimum equals w1^SAM, with its relative accuracy."""

    P: np.ndarray
    E: np.ndarray
    N: np.ndarray
    ES: np.ndarray
    eps_sam: np.ndarray  # the grid's ε_SAM (along each row)
    eps_at: np.ndarray
    eps_at_hi: np.ndarray  # upper end of ε_AT's bracket
    rel_acc: np.ndarray
    agree: SubCheck  # the SAM shortcut against the direct solve

    def rows(self, a: np.ndarray) -> np.ndarray:
        """One row per (p, η, n), ε_SAM along the row."""
        return a.reshape(-1, len(self.eps_sam))


def _budget_rel_accuracy(E, w1, w1_width, eps_at, eps_at_width) -> np.ndarray:
    """Relative accuracy of an equal-robustness budget ε_AT (floats): its own bracket, plus the bracket of the
    target w1 carried through dε_AT/dw1 = (η - ε_AT)/w1 (Theorem 2's closed form, verified as T2)."""
    return eps_at_width / eps_at + (E - eps_at) * (w1_width / 2) / (np.abs(w1) * eps_at)


def _t5_numeric(g: Grid) -> _EqualRobustness:
    P, E, N, ES = mesh(g.p, g.eta, g.n, g.t5_eps_sam)
    sam, _, agree = checked_sam_optimum(P, E, N, ES)
    budget = equal_robustness_at_budget(P, E, N, sam.w1)
    eps_at = budget.value
    rel_acc = _budget_rel_accuracy(E, sam.w1, sam.bracket_width, eps_at, budget.bracket_width)
    return _EqualRobustness(P, E, N, ES, np.asarray(g.t5_eps_sam), eps_at, budget.hi, rel_acc, agree)


def _t5_series(E, ES, lead, eps_at, rel_acc, bk: Backend) -> tuple[np.ndarray, ...]:
    """The two quantities whose limits T5's derived relation gives, with their errors, as floats: the leading
    order ε_AT·lead/(η ε_SAM²) (-> 1) and the constant η/ε_AT - lead/ε_SAM². Computed in ``bk`` (``eps_at``'s
    precision): the constant is a difference of two terms of size 3n/ε_SAM². The errors carry ε_AT's relative
    accuracy, plus 4 ulps of each value for its rounding to float64 and the fit's arithmetic."""
    with bk.context():
        E, ES, lead = (bk.asarray(a) for a in (E, ES, lead))
        ratio, inverse = eps_at * lead / (E * ES**2), E / eps_at
        ratio, inverse, residual = (bk.to_float(a) for a in (ratio, inverse, inverse - lead / ES**2))
    return ratio, ratio * rel_acc + 4 * U * abs(ratio), residual, inverse * rel_acc + 4 * U * abs(residual)


def _t5_fits(eps_sam, series, rows) -> tuple[Extrapolation, Extrapolation]:
    """The leading order and the constant of T5's derived relation, each extrapolated to ε_SAM -> 0."""
    ratio, ratio_err, residual, residual_err = (rows(a) for a in series)
    return extrapolate(eps_sam, ratio, ratio_err), extrapolate(eps_sam, residual, residual_err)


def _t5_mpmath(g: Grid, P, E, N, lead) -> tuple[Extrapolation, Extrapolation]:
    """T5's derived relation at the points (p, η, n) given, from mpmath solves at ε_SAM in g.t5_mp_eps_sam.

    w1^SAM is the equal-endpoints root in ``g.t5_mp_dps`` digits (its start bracket, [w1* - ε, w1* + ε], only needs
    w1* from float64), then ε_AT its equal-robustness budget in the same precision."""
    bk = mp_backend(g.t5_mp_dps)
    es = np.asarray(g.t5_mp_eps_sam)
    Pc, Ec, Nc, Lc = (np.asarray(a, dtype=float)[:, None] for a in (P, E, N, lead))
    sam = sam_optimum_equal_endpoints(Pc, Ec, Nc, es[None, :], bk=bk, st=st_optimum(Pc, Ec, Nc))
    budget = equal_robustness_at_budget(Pc, Ec, Nc, sam.w1, bk=bk)
    E2, ES2, L2 = np.broadcast_arrays(Ec, es[None, :], Lc)
    rel_acc = _budget_rel_accuracy(E2, sam.w1_float(), sam.bracket_width, bk.to_float(budget.value),
                                   budget.bracket_width)
    return _t5_fits(es, _t5_series(E2, ES2, L2, budget.value, rel_acc, bk), lambda a: a.reshape(len(P), -1))


def _merge(fit: Extrapolation, other: Extrapolation, where: np.ndarray) -> Extrapolation:
    """``fit`` with the rows ``where`` replaced by ``other``'s (which has one row per True)."""
    def put(a, b):
        out = np.array(a, dtype=float)
        out[where] = b
        return out

    return Extrapolation(*(put(getattr(fit, f), getattr(other, f)) for f in ("c0", "c1", "tol", "scatter")))


def _t5_corrected(q: _EqualRobustness, g: Grid) -> tuple[SubCheck, SubCheck, np.ndarray, dict]:
    """The derived relation η/ε_AT = lead/ε_SAM² + constant + O(ε_SAM²) against the numerics: its leading order
    and its constant, each extrapolated to ε_SAM -> 0; and the ε_AT it predicts.

    Where the float64 extrapolation is not decisive (its uncertainty above DECISIVE of the scale), the point is
    re-solved in mpmath at smaller ε_SAM (:func:`_t5_mpmath`)."""
    relation = sym.equal_robustness()
    P, E, N, ES, rows = q.P, q.E, q.N, q.ES, q.rows
    lead = np.asarray(sym.lambdify(relation.lead, sym.n)(N), dtype=float) * np.ones_like(N)
    const_expr = relation.constant.subs(sym.w_star_sym, sym.w_star())
    const = sym.evaluate(const_expr, (sym.p, sym.eta, sym.n), P, E, N)  # rounded once: U |const|
    const_rows = rows(const)[:, 0]
    const_scale = np.maximum(np.abs(const_rows), 1.0)
    lead_fit, const_fit = _t5_fits(q.eps_sam, _t5_series(E, ES, lead, q.eps_at, q.rel_acc, FLOAT64), rows)
    redo = (lead_fit.tol > DECISIVE) | (const_fit.tol > DECISIVE * const_scale)
    if redo.any():
        P1, E1, N1, L1 = (rows(a)[redo, 0] for a in (P, E, N, lead))
        lead_mp, const_mp = _t5_mpmath(g, P1, E1, N1, L1)
        lead_fit, const_fit = _merge(lead_fit, lead_mp, redo), _merge(const_fit, const_mp, redo)
    note = (f"; {int(redo.sum())} of them from mpmath solves ({g.t5_mp_dps} digits) at ε_SAM in "
            f"{tuple(g.t5_mp_eps_sam)}, where the float64 extrapolation was not decisive" if redo.any() else "")
    lead_check, _ = limit_check("corrected leading order: ε_AT·3n/(η ε_SAM²) -> 1", lead_fit.c0, lead_fit.tol,
                                 1.0, 1.0, "extrapolated ratios", note)
    const_check, _ = limit_check("corrected constant: η/ε_AT - 3n/ε_SAM² -> (2 + η²n + w1*²/n)/5", const_fit.c0,
                                  const_fit.tol, const_rows, const_scale, "extrapolated constants", note,
                                  U * np.abs(const_rows))
    P1, E1, N1 = (rows(a)[:, 0] for a in (P, E, N))
    still = (lead_fit.tol > DECISIVE) | (const_fit.tol > DECISIVE * const_scale)
    facts = {"mp_points": int(redo.sum()), "mp_eps_sam": list(g.t5_mp_eps_sam), "mp_dps": g.t5_mp_dps,
             "undecided": [params_at(i, p=P1, eta=E1, n=N1) for i in np.flatnonzero(still)]}
    return lead_check, const_check, E / (lead / ES**2 + const), facts


def _t5_corollaries(g: Grid, q: _EqualRobustness) -> list[SubCheck]:
    """The qualitative conclusions the papers draw from Theorem 5."""
    bigger = q.ES > q.eps_at_hi
    Pe, Ee, Ne, Fe = mesh(g.p, g.eta, g.n, (0.05, 0.25, 0.5, 0.9))
    at_same = at_optimum(Pe, Ee, Ne, Fe * Ee)
    sam_same, _, _ = checked_sam_optimum(Pe, Ee, Ne, Fe * Ee)
    at_more = at_same.found & (at_same.lo > sam_same.hi)
    return [
        SubCheck("corollary: ε_SAM > ε_AT at equal W_R", bool(bigger.all()), 0.0, 0.0, int(q.P.size),
                 f"{int(bigger.sum())}/{bigger.size} points"),
        SubCheck("corollary: at equal budget ε < η, AT gives the larger w1 (and W_R)", bool(at_more.all()), 0.0, 0.0,
                 int(Pe.size), f"{int(at_more.sum())}/{at_more.size} points with ε/η in (0.05, 0.25, 0.5, 0.9)"),
    ]


def check_t5(g: Grid) -> ClaimReport:
    q = _t5_numeric(g)
    P, E, N, ES, rows, es = q.P, q.E, q.N, q.ES, q.rows, q.eps_sam
    claimed = cf.eps_at_claimed(ES, E)
    rel = np.abs(claimed - q.eps_at) / q.eps_at
    lhs, rhs = cf.theorem5_lhs(ES), 2 * E / q.eps_at
    rel_form = np.abs(lhs - rhs) / rhs
    limit = extrapolate(es, rows(rel), rows(q.rel_acc * (1 + rel)))
    implied, claim_bad = limit_check(
        "2 + 3/ε_SAM² ≈ 2η/ε_AT at equal w1: relative error of the implied ε_AT -> 0 as ε_SAM -> 0",
        limit.c0, limit.tol, 0.0, 1.0, "the relative error of ε_AT extrapolates (ε_SAM -> 0) to")
    lead_check, const_check, corrected_eps_at, mp_facts = _t5_corrected(q, g)
    rel_corr = np.abs(corrected_eps_at - q.eps_at) / q.eps_at
    checks = [
        implied,
        SubCheck("the relation in the paper's own form: |(2 + 3/ε_SAM²) - 2η/ε_AT| / (2η/ε_AT)", implied.holds,
                 float(rel_form.max()), implied.tolerance, int(P.size),
                 f"between {rel_form.min():.3g} and {rel_form.max():.3g} over the grid"),
        *_t5_corollaries(g, q),
        q.agree,
    ]
    corrected_checks = [lead_check, const_check]
    v, cv = verdict(checks[:2]), verdict(corrected_checks)
    relation = sym.equal_robustness()
    two_eta = relation.two_eta_over_eps_at().subs(sym.w_star_sym, sym.w_star())
    p_ref, eta_ref = g.p[len(g.p) // 2], g.eta[len(g.eta) // 2]
    table = [{"p": p_ref, "eta": eta_ref, "n": int(N[i]), "eps_SAM": float(ES[i]),
              "eps_AT_numeric": float(q.eps_at[i]), "eps_AT_paper": float(claimed[i]),
              "eps_AT_corrected": float(corrected_eps_at[i]), "rel_error_paper": float(rel[i]),
              "rel_error_corrected": float(rel_corr[i])}
             for i in np.flatnonzero((P == p_ref) & (E == eta_ref))]
    P1, E1, N1 = (rows(a)[:, 0] for a in (P, E, N))
    params = dict(p=P1, eta=E1, n=N1)
    implied_over_numeric = {int(nv): float(np.median(limit.c0[N1 == nv])) + 1 for nv in np.unique(N1)}
    return ClaimReport(
        "T5", "Equal-robustness relation between ε_SAM and ε_AT", "W Thm 5, eq. (32); D Thm 4.5, eq. (14)",
        "2 + 3/ε_SAM² ≈ 2η/ε_AT when AT and SAM return the same w1 (W_R)",
        f"p in {g.p}, η in {g.eta}, n in {g.n}, ε_SAM in [{es.min():.2g}, {es.max():.2g}]",
        v, float(rel.max()), "relative error of the ε_AT that the relation implies, against the numerical one",
        None if v == "holds" else sym.as_text(two_eta), None if v == "holds" else cv,
        checks + corrected_checks,
        failing=[params_at(i, **params) | {"limit_rel_error": float(limit.c0[i])}
                 for i in np.flatnonzero(claim_bad)[:20]],
        table=table,
        facts={"implied_over_numeric_by_n": [{"n": nv, "ratio": r} for nv, r in implied_over_numeric.items()],
               "lead": sym.as_text(relation.lead), "constant": sym.as_text(relation.constant),
               "two_eta_over_eps_at": sym.as_text(relation.two_eta_over_eps_at()), "lead_holds": lead_check.holds,
               "constant_holds": const_check.holds, "eps_sam_bigger_holds": checks[2].holds,
               "at_larger_holds": checks[3].holds, **mp_facts},
        reading=POPULATION,
    )


def check_t5_per_sample(g: Grid) -> ClaimReport:
    P, E, N, ES = mesh(g.p, g.eta, g.n, g.t5_eps_sam)
    ps = sam_per_sample_optimum(P, E, N, ES)
    f = ps.found  # ε_SAM < ηn; elsewhere neither per-sample SAM nor AT(ε_SAM/n) has an optimum
    budget = equal_robustness_at_budget(P[f], E[f], N[f], ps.w1_float()[f])
    eps_at = budget.value
    rel_acc = _budget_rel_accuracy(E[f], ps.w1_float()[f], ps.bracket_width[f], eps_at, budget.bracket_width)
    derived = ES[f] / N[f]
    err = np.abs(eps_at - derived)
    derived_ok = err <= eps_at * rel_acc + U * derived
    ratio = cf.eps_at_claimed(ES[f], E[f]) / eps_at
    limit = sp.limit(cf.theorem5_eps_at(sym.eps_sam, sym.eta) / sym.per_sample_eps_at(), sym.eps_sam, 0, "+")
    smallest = ES[f] == np.min(g.t5_eps_sam)
    checks = [
        SubCheck("2 + 3/ε_SAM² ≈ 2η/ε_AT at equal w1: the implied ε_AT over the numerical one -> 1 as ε_SAM -> 0",
                 bool(limit == 1), float(np.max(np.abs(ratio - 1))), 0.0, int(f.sum()),
                 f"with ε_AT = ε_SAM/n (checked below) the ratio is 2ηnε_SAM/(2ε_SAM² + 3) -> {sym.as_text(limit)} "
                 f"(sympy); numerically {ratio[smallest].min():.3g}..{ratio[smallest].max():.3g} at "
                 f"ε_SAM = {np.min(g.t5_eps_sam):.2g}"),
        SubCheck("derived: ε_AT = ε_SAM/n at equal w1 (and W_R), against the numerical ε_AT",
                 bool(derived_ok.all() and sym.per_sample_is_at(sym.eps / sym.n)), float(np.max(err / derived)),
                 float(np.max(rel_acc)), int(f.sum()),
                 f"{int(derived_ok.sum())}/{int(f.sum())} points within ε_AT's accuracy; at {int((~f).sum())} points "
                 f"ε_SAM >= ηn, where neither per-sample SAM nor AT at ε_SAM/n >= η has a finite optimum"),
        *_t5_per_sample_corollaries(g, ES[f] > budget.hi, N[f]),
    ]
    v, cv = verdict(checks[:1]), verdict(checks[1:2])
    return ClaimReport(
        "T5", "Equal-robustness relation between ε_SAM and ε_AT", "W Thm 5, eq. (32); D Thm 4.5, eq. (14)",
        "2 + 3/ε_SAM² ≈ 2η/ε_AT when AT and SAM return the same w1 (W_R)",
        f"p in {g.p}, η in {g.eta}, n in {g.n}, ε_SAM in [{np.min(g.t5_eps_sam):.2g}, {np.max(g.t5_eps_sam):.2g}]",
        v, float(np.max(np.abs(ratio - 1))), "relative error of the ε_AT that the relation implies, against the "
        "numerical one", None if v == "holds" else sym.as_text(2 * sym.eta / sym.per_sample_eps_at()),
        None if v == "holds" else cv, checks,
        failing=[] if v == "holds" else [
            params_at(i, p=P[f], eta=E[f], n=N[f]) | {"implied_over_numeric": float(ratio[i])}
            for i in np.flatnonzero(smallest)[:20]],
        facts={"limit": sym.as_text(limit), "ratio_min": float(ratio[smallest].min()),
               "ratio_max": float(ratio[smallest].max()), "derived_holds": checks[1].holds,
               "eps_sam_bigger_holds": checks[2].holds, "at_larger_holds": checks[3].holds,
               "ties_at_n1": bool((N[f] == 1).any())},
        reading=PER_SAMPLE,
    )


def _t5_per_sample_corollaries(g: Grid, bigger: np.ndarray, n: np.ndarray) -> list[SubCheck]:
    """The papers' qualitative conclusions from Theorem 5, under the per-sample reading (where SAM(ε) = AT(ε/n))."""
    Pe, Ee, Ne, Fe = mesh(g.p, g.eta, g.n, (0.05, 0.25, 0.5, 0.9))
    at_same, ps_same = at_optimum(Pe, Ee, Ne, Fe * Ee), sam_per_sample_optimum(Pe, Ee, Ne, Fe * Ee)
    at_more = at_same.found & ps_same.found & (at_same.lo > ps_same.hi)

    def where_not(ok, n_of, why):
        return "" if ok.all() else f"; not at n in {sorted({int(v) for v in n_of[~ok]})} ({why})"

    return [
        SubCheck("corollary: ε_SAM > ε_AT at equal W_R", bool(bigger.all()), 0.0, 0.0, int(bigger.size),
                 f"{int(bigger.sum())}/{bigger.size} points" + where_not(bigger, n, "there ε_AT = ε_SAM/n = ε_SAM")),
        SubCheck("corollary: at equal budget ε < η, AT gives the larger w1 (and W_R)", bool(at_more.all()), 0.0, 0.0,
                 int(Pe.size), f"{int(at_more.sum())}/{at_more.size} points with ε/η in (0.05, 0.25, 0.5, 0.9)"
                 + where_not(at_more, Ne, "there per-sample SAM(ε) is AT(ε): the same w1")),
    ]
