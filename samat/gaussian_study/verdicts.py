"""Verdicts of the Gaussian study: each of the papers' claims, per (p, η, n), with each idealization
lifted (theory) and in the trained linear models, computed from ``summary.json``.

Tolerances come from the numbers themselves: a population optimum's own accuracy (``*_atol`` of
:func:`samat.gaussian_study.theory_curves.theory_curves`), and for trained models a Student-t interval over seeds
(:func:`samat.gaussian_study.statistics.interval`; each seed draws its own training sample; changes against ST are
paired by seed). Each trained verdict row is a family-wise 95% statement: its interval is Bonferroni-corrected
over all the comparisons of its claim and setting in the study (every (p, η, n) and every ρ or ε), so that a
claim which holds everywhere is called "fails" somewhere with probability at most 5%.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from samat.gaussian_study.statistics import interval
from samat.theory import closed_form as cf

CLAIMS = {
    "T1": "ST optimum: W_R* = ln(p/(1-p)) / (2nη) (W Thm 1, D Thm 4.1)",
    "T2": "AT optimum: W_R^AT = ln(p/(1-p)) / (2n(η-ε)) > W_R* (W Thm 2, D Thm 4.2)",
    "T3": "SAM raises the robust feature weight: W_R^SAM > W_R* for ρ > 0 (W Thm 3, D Thm 4.3)",
    "T4": "size of the rise: W_R^SAM / W_R* - 1 ≈ (2/3)ρ² (W Thm 4, D Thm 4.4); derived: ρ²/(3n)",
    "T5": "equal robustness: SAM(ρ) and AT(ε_AT) give the same W_R when 2 + 3/ρ² = 2η/ε_AT (W Thm 5, D Thm 4.5)",
}


@dataclass(frozen=True)
class Verdict:
    claim: str
    setting: str
    model: str
    verdict: str  # "holds", "fails", or "undecided" (neither resolved by the accuracy at hand)
    evidence: str


def _direction(change: float, tol: float) -> str:
    return "raises" if change > tol else "lowers" if change < -tol else "unresolved"


def _pct(x: float) -> str:
    return f"{100 * x:+.3g}%"


def _rows(entry: dict, method: str) -> list[dict]:
    return sorted((r for r in entry["trained"] if r["method"] == method), key=lambda r: r["rho"] or r["at_eps"] or 0.0)


def _inside(value: float, iv: tuple[float, float]) -> bool:
    mean, half = iv
    return abs(value - mean) <= half


def _raises(directions: list[str]) -> str:
    """T3's verdict: raises everywhere; fails where it is resolved to lower; else undecided."""
    return "holds" if all(d == "raises" for d in directions) else "fails" if "lowers" in directions else "undecided"


def _all(flags: list[bool]) -> str:
    return "holds" if all(flags) else "fails"


@dataclass(frozen=True)
class _Setting:
    """One (p, η, n) of the study: its summary entry, and what every claim's verdicts share."""

    key: str
    entry: dict
    models: int  # number of (p, η, n) in the study: the Bonferroni factor's first part

    @property
    def th(self) -> dict:
        return self.entry["theory"]

    @property
    def eps(self) -> np.ndarray:
        return np.array(self.th["eps"])

    @property
    def rho(self) -> np.ndarray:
        return np.array(self.th["rho"])

    @property
    def thm2(self) -> np.ndarray:
        return np.asarray(self.th["W_R_at_theorem2"])

    @property
    def w_star(self) -> float:
        return float(cf.w_r_star(self.entry["p"], self.entry["eta"], self.entry["n"]))

    @property
    def seeds(self) -> int:
        return _rows(self.entry, "sgd")[0]["seeds"]

    def verdict(self, claim: str, setting: str, verdict: str, evidence: str) -> Verdict:
        return Verdict(claim, setting, self.key, verdict, evidence)


def _change_tol(value, value_atol, base, base_atol):
    """Accuracy of value/base - 1 from the accuracies of both."""
    return (value_atol + abs(value / base) * base_atol) / abs(base)


def _values(th: dict, name: str) -> np.ndarray:
    """A theory curve as floats; null (no finite optimum, as JSON writes inf) becomes inf again."""
    return np.array([np.inf if v is None else v for v in th[name]], dtype=float)


def model_verdicts(key: str, entry: dict, models: int) -> list[Verdict]:
    """Every claim for one (p, η, n) of ``models``: theory with idealizations lifted, then trained models."""
    s = _Setting(key, entry, models)
    return [*_t1(s), *_t2_theory(s), *_t2_trained(s), *_sam_theory(s), *_sam_trained(s)]


def _t1(s: _Setting) -> list[Verdict]:
    th, w_star = s.th, s.w_star
    err = abs(th["W_R_st_logistic"] / w_star - 1)
    tol = th["W_R_st_logistic_atol"] / w_star
    st = _rows(s.entry, "sgd")[0]
    iv = interval(st["W_R"], s.models)
    return [
        s.verdict("T1", "logistic population (lifted: the trainers' loss)", "holds" if err <= tol else "fails",
                  f"relative difference {err:.1e}, solver accuracy {tol:.1e}"),
        s.verdict("T1", f"trained (SGD, N = {st['train_size']}, {s.seeds} seeds)",
                  "holds" if _inside(w_star, iv) else "fails", f"W_R {iv[0]:.4f} ± {iv[1]:.4f} vs {w_star:.4f}"),
    ]


def _t2_theory(s: _Setting) -> list[Verdict]:
    th, eps, thm2 = s.th, s.eps, s.thm2
    rel = np.abs(np.asarray(th["W_R_at_logistic"]) / thm2 - 1)
    tols = np.asarray(th["W_R_at_logistic_atol"]) / thm2
    out = [s.verdict("T2", "logistic population (lifted)", _all(list(rel <= tols)),
                     f"largest relative difference {rel.max():.1e} (solver accuracy {tols.max():.1e}) over ε = "
                     + ", ".join(f"{e:g}" for e in eps))]
    for name, label in (("W_R_at_full_01", "full ℓ∞ ball, x1 attacked too (0-1, lifted)"),
                        ("W_R_at_full_logistic", "full ℓ∞ ball (logistic, lifted)")):
        values, atols = _values(th, name), np.asarray(th[name + "_atol"], dtype=float)
        st_name = "W_R_st_01" if name.endswith("01") else "W_R_st_logistic"
        dirs = [("no finite optimum" if not np.isfinite(v) else
                 _direction(v / th[st_name] - 1, _change_tol(v, a, th[st_name], th[st_name + "_atol"])))
                for v, a in zip(values, atols, strict=True)]
        detail = "; ".join(f"ε={e:g}: {v:.4f} vs Thm 2 {t2:.4f} ({d} W_R)" for e, v, t2, d in
                           zip(eps, values, thm2, dirs, strict=True))
        out.append(s.verdict("T2", label, _all([d == "raises" and abs(v - t2) <= a for v, t2, d, a in
                                                zip(values, thm2, dirs, atols, strict=True)]), detail))
    return out


def _t2_trained(s: _Setting) -> list[Verdict]:
    thm2, comparisons = s.thm2, s.models * len(s.eps)
    at = _rows(s.entry, "at_nonrobust")
    ivs = [interval(r["W_R"], comparisons) for r in at]
    out = [s.verdict("T2", f"trained (PGD-AT on the non-robust features, {s.seeds} seeds)",
                     _all([_inside(t2, iv) for iv, t2 in zip(ivs, thm2, strict=True)]),
                     "; ".join(f"ε={r['at_eps']:g}: {iv[0]:.4f} ± {iv[1]:.4f} vs {t2:.4f}" for r, iv, t2 in
                               zip(at, ivs, thm2, strict=True)))]
    at_all = _rows(s.entry, "at_all")
    full = s.th["W_R_at_full_logistic"]
    ivs = [interval(r["W_R"], comparisons) for r in at_all]
    out.append(s.verdict(
        "T2", "trained (PGD-AT on all features) vs the lifted logistic optimum",
        _all([_inside(f, iv) for iv, f in zip(ivs, full, strict=True)]),
        "; ".join(f"ε={r['at_eps']:g}: {iv[0]:.4f} ± {iv[1]:.4f} vs {f:.4f} (change vs ST "
                  f"{_pct(r['W_R_change_vs_st'][0])})" for r, iv, f in zip(at_all, ivs, full, strict=True))))
    return out


THEORY_SAM = (("W_R_sam_w1_only_01", "idealized (papers' model: 0-1, SAM on w1 alone)", "W_R_st_01"),
              ("W_R_sam_all_01", "SAM on all weights, ℓ2 ball (0-1, lifted)", "W_R_st_01"),
              ("W_R_sam_all_logistic", "SAM on all weights, exact inner max (logistic, lifted)", "W_R_st_logistic"),
              ("W_R_sam_one_step_logistic", "SAM as implemented, one ascent step (logistic, lifted)",
               "W_R_st_logistic"))


@dataclass(frozen=True)
class _SamTargets:
    """What T4 and T5 predict for the relative rise of W_R at each ρ."""

    claimed: np.ndarray  # Theorem 4 as the papers state it: (2/3)ρ²
    derived: np.ndarray  # as derived: ρ²/(3n)
    implied_eps: np.ndarray  # the ε_AT that Theorem 5 pairs with each ρ
    t5_change: np.ndarray  # Theorem 2's rise at that ε_AT


def _sam_targets(s: _Setting) -> _SamTargets:
    p, eta, n, rho = s.entry["p"], s.entry["eta"], s.entry["n"], s.rho
    implied_eps = cf.eps_at_claimed(rho, eta)
    return _SamTargets(cf.w1_sam_claimed(1.0, rho) - 1, s.th["sam_coefficient_derived"] * rho**2, implied_eps,
                       cf.w_r_at(p, eta, n, implied_eps) / s.w_star - 1)


def _sam_theory(s: _Setting) -> list[Verdict]:
    """T3, T4 and T5 in theory: each SAM variant against ST."""
    th, rho, t = s.th, s.rho, _sam_targets(s)
    out = []
    for name, label, base in THEORY_SAM:
        values = np.asarray(th[name])
        change = values / th[base] - 1
        tol = np.array([_change_tol(v, a, th[base], th[base + "_atol"]) for v, a in
                        zip(values, th[name + "_atol"], strict=True)])
        dirs = [_direction(c, tl) for c, tl in zip(change, tol, strict=True)]
        out.append(s.verdict("T3", label, _raises(dirs), "; ".join(f"ρ={r:g}: {_pct(c)} ({d})" for r, c, d in
                                                                   zip(rho, change, dirs, strict=True))))
        out.append(s.verdict("T4", label, _all(list(np.abs(change - t.claimed) <= tol)),
                             "; ".join(f"ρ={r:g}: {_pct(c)} vs claimed {_pct(a)}, derived {_pct(b)}" for r, c, a, b in
                                       zip(rho, change, t.claimed, t.derived, strict=True))))
        out.append(s.verdict("T5", label, _all(list(np.abs(change - t.t5_change) <= tol)),
                             "; ".join(f"ρ={r:g} ↔ ε_AT={e:.3g}: AT (Thm 2) {_pct(tc)}, SAM {_pct(c)}"
                                       for r, e, tc, c in zip(rho, t.implied_eps, t.t5_change, change, strict=True))))
    return out


def _sam_trained(s: _Setting) -> list[Verdict]:
    """T3, T4 and T5 in trained models: the change of W_R against ST, paired by seed."""
    rho, t = s.rho, _sam_targets(s)
    out = []
    for method, name in (("sam", "SAM"), ("asam", "ASAM")):
        rows = _rows(s.entry, method)
        ivs = [interval(r["W_R_change_vs_st"], s.models * len(rho)) for r in rows]
        dirs = [_direction(m, h) for m, h in ivs]
        out.append(s.verdict("T3", f"trained ({name}, {s.seeds} seeds, change paired with ST)", _raises(dirs),
                             "; ".join(f"ρ={r['rho']:g}: {_pct(m)} ± {100 * h:.2g}% "
                                       f"({'no detectable change' if d == 'unresolved' else d})"
                                       for r, (m, h), d in zip(rows, ivs, dirs, strict=True))))
        out.append(s.verdict(
            "T4", f"trained ({name})", _all([_inside(a, iv) for a, iv in zip(t.claimed, ivs, strict=True)]),
            "; ".join(f"ρ={r:g}: claimed {_pct(a)} {'inside' if _inside(a, iv) else 'outside'}, derived "
                      f"{_pct(b)} {'inside' if _inside(b, iv) else 'outside'} the interval"
                      for r, a, b, iv in zip(rho, t.claimed, t.derived, ivs, strict=True))))
        out.append(s.verdict(
            "T5", f"trained ({name}) against Theorem 2 at the paired ε_AT",
            _all([_inside(tc, iv) for tc, iv in zip(t.t5_change, ivs, strict=True)]),
            "; ".join(f"ρ={r:g} ↔ ε_AT={e:.3g}: AT gives {_pct(tc)}, {name} {_pct(iv[0])} ± {100 * iv[1]:.2g}%"
                      for r, e, tc, iv in zip(rho, t.implied_eps, t.t5_change, ivs, strict=True))))
    return out


def verdicts(summary: dict[str, Any]) -> list[Verdict]:
    models = len(summary["models"])
    return [v for key, entry in summary["models"].items() for v in model_verdicts(key, entry, models)]
