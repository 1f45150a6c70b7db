"""The verification report and the command line, end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

from samat.cli.main import main
from samat.theory import claims, closed_form
from samat.theory.claims.optima import check_t1
from samat.theory.claims.theorem4 import check_t4
from samat.theory.claims.theorem5 import check_t5
from tests.helpers import REPO, run_cli

POP, PS = f"({claims.POPULATION})", f"({claims.PER_SAMPLE})"


@pytest.fixture(scope="module")
def quick_reports():
    return {r.key: r for r in claims.run(claims.Grid.quick())}


def test_verdicts_come_out_of_the_computation(quick_reports):
    verdicts = {k: r.verdict for k, r in quick_reports.items()}
    assert verdicts == {"T1": "holds", "T2": "holds", f"T3 {POP}": "holds", f"T3 {PS}": "holds",
                        f"T4 {POP}": "fails", f"T4 {PS}": "fails", f"T5 {POP}": "fails", f"T5 {PS}": "fails"}
    for key in (f"T4 {POP}", f"T4 {PS}", f"T5 {POP}", f"T5 {PS}"):
        assert quick_reports[key].corrected_verdict == "holds"
        assert quick_reports[key].failing, "a failing claim must say where it fails"


def test_per_sample_reading_says_what_differs(quick_reports):
    """Per sample, SAM is AT at ε/n: T3 holds (in the limit where no finite optimum exists), the rise is first
    order (T4), and ε_AT = ε_SAM/n (T5), whose ties at n = 1 break the corollaries."""
    t3, t4, t5 = (quick_reports[f"T{k} {PS}"] for k in (3, 4, 5))
    assert t3.facts["is_at"] and t3.facts["derived_holds"]
    assert 0.9 < t4.facts["order_min"] <= t4.facts["order_max"] < 1.5 and t4.facts["leading"] == "eps/(eta*n)"
    assert t5.corrected == "2*eta*n/eps_SAM" and t5.facts["limit"] == "0"
    assert not t5.facts["eps_sam_bigger_holds"] and t5.facts["ties_at_n1"]


def test_t5_constant_is_decided_at_every_point():
    """Where float64 extrapolation from ε_SAM >= 0.01 cannot pin η/ε_AT - 3n/ε_SAM² (large w1*²/n, large n), the
    check re-solves in mpmath at smaller ε_SAM: every point is decided, and agrees with the derived constant."""
    g = claims.Grid.quick()
    g = claims.Grid(**{**g.__dict__, "p": (0.55, 0.99), "eta": (0.05, 2.0), "n": (1, 100)})
    report = check_t5(g)
    constant = next(c for c in report.checks if c.name.startswith("corrected constant"))
    assert report.facts["mp_points"] > 0 and report.facts["undecided"] == []
    assert constant.holds and "decisive at 8/8 points" in constant.detail


def test_a_wrong_closed_form_is_caught(monkeypatch):
    """Mutation: perturb Theorem 1's formula by one part in a million, and T1 must fail."""
    true = closed_form.w1_star
    monkeypatch.setattr(closed_form, "w1_star", lambda p, eta: true(p, eta) * (1 + 1e-6))
    report = check_t1(claims.Grid.quick())
    assert report.verdict == "fails" and report.max_rel_error == pytest.approx(1e-6, rel=1e-3)


def test_a_right_coefficient_would_pass(monkeypatch):
    """The T4 machinery is not biased toward failing: with 1/(3n) claimed... per n, it holds."""
    g = claims.Grid.quick()
    g = claims.Grid(**{**g.__dict__, "n": (1,)})
    monkeypatch.setattr(closed_form, "THEOREM4_COEFFICIENT", 1 / 3)
    monkeypatch.setattr(closed_form, "w1_sam_claimed", lambda w, e: np.asarray(w) * (1 + np.asarray(e) ** 2 / 3))
    assert check_t4(g).verdict == "holds"


def test_solve_json_contract():
    out = run_cli("theory", "solve", "--p", "0.8", "--eta", "0.5", "--n", "4", "--eps", "0.1", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data["numeric"]) >= {"w_star", "w_at", "w_sam", "w_sam_per_sample", "bracket_width"}
    assert "accuracy" not in data["numeric"]  # the bracket width is not an accuracy
    assert data["numeric"]["w_at"] == pytest.approx(data["closed_form"]["w_at"], rel=1e-9)
    num, closed = data["numeric"], data["closed_form"]["w_sam_per_sample"]
    assert abs(num["w_sam_per_sample"] - closed) <= num["bracket_width"]["w_sam_per_sample"] / 2 + 1e-15 * closed


def test_solve_without_at_or_per_sample_optimum_explains_why():
    """eps = eta*n = 2 eta: neither AT nor SAM read per sample has a finite optimum, and the note says why."""
    out = run_cli("theory", "solve", "--p", "0.8", "--eta", "0.5", "--n", "2", "--eps", "1", "--json")
    data = json.loads(out.stdout)
    assert out.returncode == 0 and data["numeric"]["w_at"] is None and "eps >= eta " in data["note"]
    assert data["numeric"]["w_sam_per_sample"] is None and data["closed_form"]["w_sam_per_sample"] is None
    assert "eps >= eta*n" in data["note"] and data["numeric"]["w_sam"] is not None


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--p", "1.5"], "p=1.5 is invalid: p must be in (0.5, 1)"),
     (["--eta", "-2"], "eta=-2 is invalid: eta must be > 0"),
     (["--n", "2.5"], "n='2.5' is invalid: n must be an integer >= 1"),
     (["--eps", "-0.1"], "eps=-0.1 is invalid: eps must be >= 0"),
     (["--p", "abc"], "p='abc' is invalid")],
)
def test_bad_input_is_one_line_with_exit_code_2(args, needle):
    base = {"--p": "0.8", "--eta": "0.5", "--n": "3", "--eps": "0.1"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    out = run_cli("theory", "solve", *[x for kv in base.items() for x in kv])
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and needle in out.stderr and "Traceback" not in out.stderr


def test_python_dash_m_samat_theory_is_the_same_command():
    out = subprocess.run([sys.executable, "-m", "samat", "theory", "solve", "--p", "0.7", "--eta", "1", "--n", "1",
                          "--eps", "0.2"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0 and "w1^SAM" in out.stdout


def test_verify_writes_report_and_refuses_to_overwrite(tmp_path):
    assert main(["theory", "verify", "--out", str(tmp_path), "--quick"]) == 0
    doc = json.loads((tmp_path / "verification.json").read_text())
    assert doc["provenance"]["inputs"]["grid"]["p"] == list(claims.Grid.quick().p)
    rows = doc["claims"]
    assert [r["theorem"] for r in rows] == ["T1", "T2", "T3", "T3", "T4", "T4", "T5", "T5"]
    readings = [claims.POPULATION, claims.PER_SAMPLE] * 3
    assert [r["reading"] for r in rows] == [None, None, *readings]
    for r in rows:
        assert r["verdict"] in ("holds", "fails") and isinstance(r["max_rel_error"], float) and r["summary"]
        if r["corrected"] is not None:
            sp.sympify(r["corrected"])  # parsable
    md = (tmp_path / "verification.md").read_text()
    assert "| **T4**" in md and "## Figures" in md
    assert main(["theory", "verify", "--out", str(tmp_path), "--quick"]) == 2  # finished result kept


def test_theory_never_imports_torch():
    code = ("import sys, samat.theory.claims.verify, samat.theory.claims.report, samat.theory.plots, "
            "samat.theory.solve, "
            "samat.theory.duality.curves, samat.theory.duality.exact, samat.cli; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
