"""T1 and T2: the closed-form optima of standard and adversarial training (W Thm 1-2, D Thm 4.1-4.2) against the
numerical optima."""

from __future__ import annotations

import numpy as np

from samat.theory import closed_form as cf
from samat.theory import symbolic as sym
from samat.theory.claims.common import (
    ClaimReport,
    Grid,
    SubCheck,
    closed_form_check,
    mesh,
    symbolic_check,
    verdict,
)
from samat.theory.numeric import (
    at_optimum,
    st_optimum,
)


def check_t1(g: Grid) -> ClaimReport:
    P, E, N = mesh(g.p, g.eta, g.n)
    num = st_optimum(P, E, N)
    params = dict(p=P, eta=E, n=N)
    rounding = cf.rounding_bound(P, E)
    checks = [
        closed_form_check("w1* = ln(p/(1-p))/(2η) vs numerical argmax of u", cf.w1_star(P, E), num, rounding,
                           **params),
        closed_form_check("W_R* = ln(p/(1-p))/(2nη) vs numerical W_R", cf.w_r_star(P, E, N), num, rounding,
                           scale=N, **params),
        symbolic_check("sympy: root of du/dw1 = 0 equals the closed form", sym.w_star(), (sym.p, sym.eta),
                        (P, E), cf.w1_star(P, E), rounding),
    ]
    v = verdict(checks)
    return ClaimReport(
        "T1", "Standard training optimum", "W Thm 1, eq. (8); D Thm 4.1, eq. (8)",
        "w1* = (ln p - ln(1-p)) / (2η);  W_R* = (ln p - ln(1-p)) / (2nη)",
        f"p in {g.p}, η in {g.eta}, n in {g.n}", v, max(c.max_rel_error for c in checks[:2]),
        "relative error of the closed form against the numerical optimum", None, None, checks,
        facts={"points": int(P.size)},
    )


def check_t2(g: Grid) -> ClaimReport:
    P, E, N, F = mesh(g.p, g.eta, g.n, g.at_fraction)
    eps = F * E
    num = at_optimum(P, E, N, eps)
    params = dict(p=P, eta=E, n=N, eps=eps)
    Pb, Eb, Nb, Fb = mesh(g.p, g.eta, g.n, g.at_beyond)
    beyond = at_optimum(Pb, Eb, Nb, Fb * Eb)
    no_opt = ~beyond.found
    rounding = cf.rounding_bound(P, E, eps)
    checks = [
        closed_form_check("w1^AT = ln(p/(1-p))/(2(η-ε)) vs numerical argmax of v", cf.w1_at(P, E, eps), num,
                           rounding, **params),
        closed_form_check("W_R^AT = ln(p/(1-p))/(2n(η-ε)) vs numerical W_R", cf.w_r_at(P, E, N, eps), num,
                           rounding, scale=N, **params),
        symbolic_check("sympy: root of dv/dw1 = 0 equals the closed form", sym.w_at(),
                        (sym.p, sym.eta, sym.eps), (P, E, eps), cf.w1_at(P, E, eps), rounding),
        SubCheck("ε >= η: the AT objective has no finite maximizer (so ε < η is needed)", bool(no_opt.all()),
                 0.0 if no_opt.all() else float("inf"), 0.0, int(no_opt.size),
                 f"{int(no_opt.sum())}/{no_opt.size} points with ε/η in {g.at_beyond}: the robust accuracy still "
                 f"rises at w1 = {np.nanmin(beyond.lo):.3g} or beyond, as far as float64 resolves it"),
    ]
    v = verdict(checks)
    return ClaimReport(
        "T2", "Adversarial training optimum", "W Thm 2, eq. (12); D Thm 4.2, eq. (10)",
        "w1^AT = (ln p - ln(1-p)) / (2(η - ε)) for ε < η;  W_R^AT = w1^AT / n",
        f"p in {g.p}, η in {g.eta}, n in {g.n}, ε/η in {g.at_fraction}", v,
        max(c.max_rel_error for c in checks[:2]), "relative error of the closed form against the numerical optimum",
        None, None, checks, facts={"points": int(P.size)},
    )
