"""The papers' closed forms, each written once, exactly as the papers state them.

Equation numbers: "W" is the workshop paper ("SAM alone can improve adversarial robustness"),
"D" the duality paper ("On the duality between SAM and AT"). These are the *claims* under test;
nothing here is assumed correct. Corrections are derived in :mod:`samat.theory.symbolic`.
"""

from __future__ import annotations

import numpy as np

from samat.core.errors import ParameterError
from samat.theory.model import check_parameters


def log_odds(p):
    """ln p - ln(1 - p), the numerator shared by Theorems 1 and 2."""
    return np.log(p) - np.log1p(-np.asarray(p, dtype=float))


def rounding_bound(p, eta, eps=0.0, u=None):
    """An absolute bound on the float64 rounding of w1* / w1^AT as computed here (``u``: the unit roundoff of
    another precision).

    ln p - ln(1-p) is a difference of two logs (each good to an ulp or two of itself), so near
    p = 1/2 its relative error grows like (|ln p| + |ln(1-p)|) / |ln p - ln(1-p)|.
    """
    u = np.finfo(np.float64).eps / 2 if u is None else u
    p = np.asarray(p, dtype=float)
    logs = np.abs(np.log(p)) + np.abs(np.log1p(-p))
    value = np.abs(log_odds(p)) / (2 * np.abs(np.asarray(eta, dtype=float) - np.asarray(eps, dtype=float)))
    return 4 * u * logs / (2 * np.abs(np.asarray(eta, dtype=float) - np.asarray(eps, dtype=float))) + 4 * u * value


def rounding_bound_per_sample(p, eta, n, eps, u=None):
    """An absolute bound on how far the per-sample SAM optimum n ln(p/(1-p)) / (2(ηn - ε)), derived in
    :func:`samat.theory.symbolic.w_sam_per_sample` from the exact float inputs, can lie from the minimizer of its
    objective as evaluated in float64 (ε < ηn). That objective is AT's at the budget ε/n (rounding_bound there),
    but its mean margin ηn - ε is formed from the float product ηn, whose rounding (u ηn) the difference
    magnifies by ηn/|ηn - ε|. ``u``: the unit roundoff of another precision the objective is evaluated in."""
    u = np.finfo(np.float64).eps / 2 if u is None else u
    p, eta, n, eps = (np.asarray(v, dtype=float) for v in (p, eta, n, eps))
    value = np.abs(log_odds(p)) * n / (2 * np.abs(eta * n - eps))
    return rounding_bound(p, eta, eps / n, u) + 4 * u * value * eta * n / np.abs(eta * n - eps)


def w1_star(p, eta):
    """Theorem 1 (W eq. 8/11): w1* = (ln p - ln(1-p)) / (2η)."""
    check_parameters(p=p, eta=eta)
    return log_odds(p) / (2 * np.asarray(eta, dtype=float))


def w_r_star(p, eta, n):
    """Theorem 4.1 (D eq. 8): W_R* = (ln p - ln(1-p)) / (2 n η)."""
    check_parameters(p=p, eta=eta, n=n)
    return log_odds(p) / (2 * np.asarray(n, dtype=float) * np.asarray(eta, dtype=float))


def _require_eps_below_eta(eta, eps) -> None:
    check_parameters(eta=eta, eps=eps)
    if np.any(np.asarray(eps) >= np.asarray(eta)):
        raise ParameterError(
            "eps", eps, "< eta for the AT optimum to exist (Theorem 2 assumes eps < eta; "
            "for eps >= eta the adversarial accuracy keeps rising toward p as w1 -> infinity)",
        )


def w1_at(p, eta, eps):
    """Theorem 2 (W eq. 12): w1^AT = (ln p - ln(1-p)) / (2(η - ε)), for ε < η."""
    check_parameters(p=p)
    _require_eps_below_eta(eta, eps)
    return log_odds(p) / (2 * (np.asarray(eta, dtype=float) - np.asarray(eps, dtype=float)))


def w_r_at(p, eta, n, eps):
    """Theorem 4.2 (D eq. 10): W_R^AT = (ln p - ln(1-p)) / (2 n (η - ε)), for ε < η."""
    check_parameters(p=p, n=n)
    _require_eps_below_eta(eta, eps)
    eta, eps = np.asarray(eta, dtype=float), np.asarray(eps, dtype=float)
    return log_odds(p) / (2 * np.asarray(n, dtype=float) * (eta - eps))


def theorem3_holds(w_sam, w_star) -> np.ndarray:
    """Theorem 3 (W eq. 16) / 4.3 (D eq. 12): w1^SAM > w1*  (equivalently W_R^SAM > W_R*)."""
    return np.asarray(w_sam) > np.asarray(w_star)


THEOREM4_COEFFICIENT = 2.0 / 3.0  # W Theorem 4 and D eq. 13


def w1_sam_claimed(w_star, eps):
    """Theorem 4 (W) / 4.4 (D eq. 13): w1^SAM ≈ w1* + (2/3) w1* ε² (same form for W_R)."""
    eps = np.asarray(eps, dtype=float)
    return np.asarray(w_star, dtype=float) * (1 + THEOREM4_COEFFICIENT * eps**2)


def eps_at_claimed(eps_sam, eta):
    """Theorem 5 (W eq. 32) / 4.5 (D eq. 14): 2 + 3/ε_SAM² ≈ 2η/ε_AT, solved for ε_AT (floats or arrays)."""
    return theorem5_eps_at(np.asarray(eps_sam, dtype=float), np.asarray(eta, dtype=float))


def theorem5_eps_at(eps_sam, eta):
    """The same relation on any numbers that support arithmetic (sympy symbols too, for its limits)."""
    return 2 * eta / (2 + 3 / eps_sam**2)


def theorem5_lhs(eps_sam):
    """The left side 2 + 3/ε_SAM² of Theorem 5 (W eq. 32)."""
    return 2 + 3 / np.asarray(eps_sam, dtype=float) ** 2
