"""Everything about one parameter point, as plain data: numerical optima next to the closed forms."""

from __future__ import annotations

import numpy as np

from samat.theory import closed_form as cf
from samat.theory.backend import FLOAT64, mp_backend
from samat.theory.model import check_parameters, robust_feature_weight
from samat.theory.numeric import Optimum, at_optimum, sam_optimum, sam_per_sample_optimum, st_optimum
from samat.theory.objectives import accuracy


def _value(opt: Optimum) -> float | None:
    return float(opt.w1_float()) if bool(opt.found) else None


def _width(opt: Optimum) -> float | None:
    return float(opt.bracket_width) if bool(opt.found) else None


RESOLVED_RTOL = 1e-6  # a bracket wider than this, relative to the optimum, is reported as not resolved


def at_note(eta: float, eps: float, at: Optimum, mp: bool = False) -> str | None:
    """Why AT has no optimum, when it has none."""
    if bool(at.found):
        return None
    reach = f"the numerical search found the adversarial accuracy still rising at w1 = {float(at.lo):.3g}"
    if eps >= eta:
        signal = "carry no signal" if eps == eta else "point the wrong way"
        return (f"AT has no finite optimum for eps >= eta (here eps={eps:g}, eta={eta:g}): under the worst attack "
                f"the non-robust features {signal}, so the adversarial accuracy keeps rising toward p as w1 -> "
                f"infinity; {reach}. Theorem 2 assumes eps < eta.")
    return f"the AT optimum lies beyond what this precision resolves ({reach}){_retry(mp)}"


def _retry(mp: bool) -> str:
    return "; a larger --dps may resolve it" if mp else "; retry with --precision mp"


def notes(eta: float, eps: float, optima: dict[str, Optimum], mp: bool) -> list[str]:
    """What the numbers do not settle: optima not found, brackets too wide to resolve them, and Theorem 3's
    comparison when the SAM and ST brackets overlap."""
    out = []
    names = {"w_star": "ST (w1*)", "w_at": "AT (w1^AT)", "w_sam": "SAM (w1^SAM)"}
    missing = [names[k] for k, opt in optima.items() if not bool(opt.found) and k != "w_at"]
    if missing:
        out.append(f"no finite optimum found for {' and '.join(missing)}: the objective keeps falling as far as "
                   f"this precision follows it{_retry(mp)}")
    note = at_note(eta, eps, optima["w_at"], mp)
    if note:
        out.append(note)
    for key, opt in optima.items():
        if bool(opt.found):
            w, width = float(opt.w1_float()), float(opt.bracket_width)
            if width > RESOLVED_RTOL * max(abs(w), 1.0):
                out.append(f"{names[key]} is not resolved: its bracket is {width:.3g} wide around {w:.6g} (the "
                           f"objective is flat to rounding there){_retry(mp)}")
    st, sam = optima["w_star"], optima["w_sam"]
    if bool(st.found) and bool(sam.found) and not float(sam.lo) > float(st.hi):
        out.append("Theorem 3 (w1^SAM > w1*) is not decided here: the SAM and ST brackets overlap")
    return out


def per_sample_note(eta: float, n: int, eps: float, opt: Optimum, mp: bool = False) -> str | None:
    """Why SAM as printed (the worst δ per sample) has no optimum, when it has none."""
    if bool(opt.found):
        return None
    reach = f"the numerical search found the accuracy still rising at w1 = {float(opt.lo):.3g}"
    if eps >= eta * n:
        return (f"per-sample SAM has no finite optimum for eps >= eta*n (here eps={eps:g}, eta*n={eta * n:g}): the "
                f"worst delta of every sample lowers its margin by eps, as much as or more than the non-robust "
                f"features' mean margin eta*n gives, so the accuracy keeps rising toward p as w1 -> infinity "
                f"(the same objective as AT with eps/n >= eta); {reach}.")
    return f"the per-sample SAM optimum lies beyond what this precision resolves ({reach}){_retry(mp)}"


def solve_point(p: float, eta: float, n: int, eps: float, precision: str = "float64", dps: int = 50) -> dict:
    """Numerical ST, AT and SAM optima at one point, the papers' closed forms, and derived ones."""
    check_parameters(p=p, eta=eta, n=n, eps=eps)
    bk = FLOAT64 if precision == "float64" else mp_backend(dps)
    st, at, sam = st_optimum(p, eta, n, bk), at_optimum(p, eta, n, eps, bk), sam_optimum(p, eta, n, eps, bk)
    per_sample = sam_per_sample_optimum(p, eta, n, eps, bk)
    w = {"w_star": _value(st), "w_at": _value(at), "w_sam": _value(sam), "w_sam_per_sample": _value(per_sample)}
    found = notes(eta, eps, {"w_star": st, "w_at": at, "w_sam": sam}, bk.is_mp)
    found += [m for m in (per_sample_note(eta, n, eps, per_sample, bk.is_mp),) if m]
    unsettled = [m.rstrip(".") + "." for m in found]
    closed_at = float(cf.w1_at(p, eta, eps)) if eps < eta else None
    from samat.theory import symbolic

    coef = float(symbolic.sam_expansion(order=2).A.subs(symbolic.n, n))
    w_star_cf = float(cf.w1_star(p, eta))
    robust = {k: (None if v is None else float(accuracy(v, p, eta, n, eps))) for k, v in w.items()}
    clean = {k: (None if v is None else float(accuracy(v, p, eta, n))) for k, v in w.items()}
    result = {
        "params": {"p": p, "eta": eta, "n": n, "eps": eps},
        "precision": bk.name if not bk.is_mp else f"mpmath ({dps} digits)",
        "numeric": {
            **w,
            "W_R": {k: (None if v is None else float(robust_feature_weight(v, n))) for k, v in w.items()},
            "bracket_width": {"w_star": _width(st), "w_at": _width(at), "w_sam": _width(sam),
                              "w_sam_per_sample": _width(per_sample)},
            "clean_accuracy": clean,
            "robust_accuracy": robust,
            "theorem3_w_sam_above_w_star": bool(np.asarray(sam.lo > st.hi)) if w["w_sam"] is not None else None,
        },
        "closed_form": {
            "w_star": w_star_cf,
            "W_R_star": float(cf.w_r_star(p, eta, n)),
            "w_at": closed_at,
            "W_R_at": None if closed_at is None else float(cf.w_r_at(p, eta, n, eps)),
            "w_sam_claimed": float(cf.w1_sam_claimed(w_star_cf, eps)),
            "eps_at_equal_w1_claimed": None if eps == 0 else float(cf.eps_at_claimed(eps, eta)),
            # derived, not printed in the papers: SAM's objective read per sample (W eq. 15, D eq. 11)
            "w_sam_per_sample": _finite_or_none(symbolic.per_sample_w1(p, eta, n, eps)),
        },
        "derived": {"sam_coefficient": coef, "w_sam": w_star_cf * (1 + coef * eps**2)},
    }
    if unsettled:
        result["note"] = " ".join(unsettled)
        result["notes"] = unsettled
    return result


def _finite_or_none(value) -> float | None:
    """A float, or None where there is no finite value (no optimum)."""
    value = float(value)
    return value if np.isfinite(value) else None
