"""The verification report and the command line, end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

from samat.cli import main
from tests.helpers import REPO, run_cli
from theory import closed_form, verify


@pytest.fixture(scope="module")
def quick_reports():
    return {r.theorem: r for r in verify.run(verify.Grid.quick())}


def test_verdicts_come_out_of_the_computation(quick_reports):
    verdicts = {k: r.verdict for k, r in quick_reports.items()}
    assert verdicts == {"T1": "holds", "T2": "holds", "T3": "holds", "T4": "fails", "T5": "fails"}
    for key in ("T4", "T5"):
        assert quick_reports[key].corrected_verdict == "holds"
        assert quick_reports[key].failing, "a failing claim must say where it fails"


def test_a_wrong_closed_form_is_caught(monkeypatch):
    """Mutation: perturb Theorem 1's formula by one part in a million, and T1 must fail."""
    true = closed_form.w1_star
    monkeypatch.setattr(verify.cf, "w1_star", lambda p, eta: true(p, eta) * (1 + 1e-6))
    report = verify.check_t1(verify.Grid.quick())
    assert report.verdict == "fails" and report.max_rel_error == pytest.approx(1e-6, rel=1e-3)


def test_a_right_coefficient_would_pass(monkeypatch):
    """The T4 machinery is not biased toward failing: with 1/(3n) claimed... per n, it holds."""
    g = verify.Grid.quick()
    g = verify.Grid(**{**g.__dict__, "n": (1,)})
    monkeypatch.setattr(verify.cf, "THEOREM4_COEFFICIENT", 1 / 3)
    monkeypatch.setattr(verify.cf, "w1_sam_claimed", lambda w, e: np.asarray(w) * (1 + np.asarray(e) ** 2 / 3))
    assert verify.check_t4(g).verdict == "holds"


def test_solve_json_contract():
    out = run_cli("theory", "solve", "--p", "0.8", "--eta", "0.5", "--n", "4", "--eps", "0.1", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data["numeric"]) >= {"w_star", "w_at", "w_sam", "bracket_width"} and "closed_form" in data
    assert "accuracy" not in data["numeric"]  # the bracket width is not an accuracy
    assert data["numeric"]["w_at"] == pytest.approx(data["closed_form"]["w_at"], rel=1e-9)


def test_solve_without_at_optimum_explains_why():
    out = run_cli("theory", "solve", "--p", "0.8", "--eta", "0.5", "--n", "4", "--eps", "0.5", "--json")
    data = json.loads(out.stdout)
    assert out.returncode == 0 and data["numeric"]["w_at"] is None and "eps >= eta" in data["note"]


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
    assert doc["provenance"]["inputs"]["grid"]["p"] == list(verify.Grid.quick().p)
    rows = doc["claims"]
    assert [r["theorem"] for r in rows] == ["T1", "T2", "T3", "T4", "T5"]
    for r in rows:
        assert r["verdict"] in ("holds", "fails") and isinstance(r["max_rel_error"], float) and r["summary"]
        if r["corrected"] is not None:
            sp.sympify(r["corrected"])  # parsable
    md = (tmp_path / "verification.md").read_text()
    assert "| **T4**" in md and "## Figures" in md
    assert main(["theory", "verify", "--out", str(tmp_path), "--quick"]) == 2  # finished result kept


def test_theory_never_imports_torch():
    code = ("import sys, theory.verify, theory.report, theory.plots, theory.solve, samat.cli; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
