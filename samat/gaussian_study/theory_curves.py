"""The theory side of the study: the population W_R of every method it trains, from theory (0-1 and logistic
losses, each idealization lifted), each with its own accuracy (``*_atol``), which the verdicts use as their
tolerances."""

from __future__ import annotations

from typing import Any

import numpy as np

from samat.gaussian_study.grid import StudyGrid
from samat.theory import closed_form as cf
from samat.theory import symbolic
from samat.theory.lifted import LogisticModel, sam_all_weights_optimum, sam_scale_curve
from samat.theory.numeric import at_optimum, sam_optimum_equal_endpoints, st_optimum


def theory_curves(model, grid: StudyGrid) -> dict[str, Any]:
    """Population W_R of every method the study trains, from theory (0-1 and logistic losses)."""
    p, eta, n = model
    logistic = LogisticModel(p, eta, n)
    st = logistic.st_optimum()
    eps = np.array(sorted(set(grid.at_fractions)), dtype=float) * eta
    rhos = np.array(grid.rhos, dtype=float)
    st01 = st_optimum(p, eta, n)
    full01 = at_optimum(p, eta, n, eps, full_ball=True)
    sam01 = sam_optimum_equal_endpoints(p, eta, n, rhos)
    at_log = [logistic.at_optimum(e) for e in eps]
    at_full_log = [logistic.at_optimum(e, full_ball=True) for e in eps]
    sam_all01 = [sam_all_weights_optimum(p, eta, n, r) for r in rhos]
    sam_log = [logistic.sam_optimum(r, start=st) for r in rhos]
    sam_step = [logistic.sam_one_step_limit(r) for r in rhos]
    w_st01 = float(st01.w1_float())

    def atol01(opt):  # accuracy of a 0-1 W_R: the bracket width in w1, over n
        return (np.asarray(opt.bracket_width) / n).tolist()

    def atol(opts):  # accuracy of lifted W_R values
        return [o.w_r_rtol * abs(o.w_r) for o in opts]

    # scale invariance: the ST classifier at growing scale c, under SAM's fixed radius (the largest ρ)
    scales = np.geomspace(0.25, 64.0, 13)
    scale_curve = sam_scale_curve(p, eta, n, float(rhos.max()), w_st01 / n, scales)

    # Theorem 4 as derived: W_R^SAM / W_R* - 1 = A ρ² + O(ρ⁴), A from the sympy expansion (= 1/(3n))
    derived = symbolic.sam_expansion(order=2).substitute_w_star().A
    coefficient = float(symbolic.lambdify(derived, symbolic.p, symbolic.eta, symbolic.n)(p, eta, n))

    # "_atol": the accuracy of each W_R, from its solve; the verdicts' tolerances
    return {
        "sam_coefficient_derived": coefficient,
        "sam_scale": {"rho": float(rhos.max()), "scales": scales.tolist(),
                      "log_error": np.asarray(scale_curve).tolist(), "log_error_st": float(np.asarray(st01.log_risk))},
        "W_R_st_01": w_st01 / n,
        "W_R_st_01_atol": float(st01.bracket_width) / n,
        "W_R_st_logistic": st.w_r,
        "W_R_st_logistic_atol": atol([st])[0],
        "eps": eps.tolist(),
        "W_R_at_theorem2": (cf.w_r_at(p, eta, n, eps)).tolist(),
        "W_R_at_full_01": np.where(full01.found, full01.w1_float() / n, np.inf).tolist(),
        "W_R_at_full_01_atol": atol01(full01),
        "W_R_at_logistic": [o.w_r for o in at_log],
        "W_R_at_logistic_atol": atol(at_log),
        "W_R_at_full_logistic": [o.w_r for o in at_full_log],
        "W_R_at_full_logistic_atol": atol(at_full_log),
        "rho": rhos.tolist(),
        "W_R_sam_w1_only_01": (sam01.w1_float() / n).tolist(),
        "W_R_sam_w1_only_01_atol": atol01(sam01),
        "W_R_sam_all_01": [o.w_r for o in sam_all01],
        "W_R_sam_all_01_atol": atol(sam_all01),
        "W_R_sam_all_logistic": [o.w_r for o in sam_log],
        "W_R_sam_all_logistic_atol": atol(sam_log),
        "W_R_sam_one_step_logistic": [o.w_r for o in sam_step],
        "W_R_sam_one_step_logistic_atol": atol(sam_step),
    }

