"""The success paths of the commands, each on a tiny setting, checked by what they write (files, their JSON and its
provenance, the lines they print), not only by their exit code: `samat theory plot`, `samat theory solve --precision
mp`, and `samat demo`."""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from samat.cli import demo
from samat.cli.main import main
from samat.empirical.data import FASHION_MNIST_FILES
from samat.theory import closed_form as cf
from samat.theory import plots
from samat.theory.claims import Grid, verify
from samat.theory.numeric import st_optimum
from samat.theory.objectives import accuracy
from tests.empirical.data.helpers import idx_bytes
from tests.helpers import REPO, snapshot

PNG, PDF = b"\x89PNG\r\n\x1a\n", b"%PDF-"
FIGURE_KEYS = {  # the series each figure's data holds, besides provenance, p and eta
    "w1_vs_eps": {"w_star", "eps_at", "eps_at_line", "eps_sam", "eps_sam_line", "n", "at_numeric", "at_closed",
                  "sam_claimed", "sam_numeric", "sam_derived", "sam_per_sample_numeric", "sam_per_sample_derived"},
    "equal_robustness": {"eps_sam", "eps_sam_line", "n", "paper", "numeric", "derived"},
    "sam_coefficient": {"eps", "n", "claimed", "numeric", "derived"},
    "robust_accuracy": {"n", "attack", "w1", "curves", "w_axis", "budgets", "by_w"},
}
U = 2.0**-53  # float64 unit roundoff


def _main(*args) -> tuple[int, str, str]:
    """``samat ARGS`` in this process, its exit code and what it printed (outside a test's capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """`samat theory plot` once (every figure of samat/theory/plots.py: about 15 s of CPU): the folder and the
    output."""
    folder = tmp_path_factory.mktemp("theory") / "figures"
    return folder, _main("theory", "plot", "--out", folder)


def test_theory_plot_draws_every_figure_with_its_data_and_provenance(drawn):
    folder, (code, out, err) = drawn
    assert code == 0, err
    assert out == f"wrote 12 files to {folder}/\n"
    assert [line.strip() for line in err.splitlines()[1:]] == [f"figure {f.name}" for f in plots.FIGURES]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in plots.outputs(folder))
    for figure in plots.FIGURES:
        assert (folder / f"{figure.name}.png").read_bytes().startswith(PNG)
        assert (folder / f"{figure.name}.pdf").read_bytes().startswith(PDF)
        data = json.loads((folder / f"{figure.name}.json").read_text())
        record = data.pop("provenance")
        assert record["inputs"] == {"figure": figure.name} and record["git"]["commit"]
        assert {"numpy", "scipy", "sympy", "matplotlib"} <= set(record["packages"])
        assert set(data) == FIGURE_KEYS[figure.name] | {"p", "eta"}
        assert (data["p"], data["eta"]) == (plots.REFERENCE["p"], plots.REFERENCE["eta"])


def test_theory_plot_series_have_their_shapes_and_meaning(drawn):
    folder = drawn[0]
    d = {f.name: json.loads((folder / f"{f.name}.json").read_text()) for f in plots.FIGURES}
    w, p, eta = d["w1_vs_eps"], plots.REFERENCE["p"], plots.REFERENCE["eta"]
    assert w["n"] == list(plots.N_VALUES) and len(w["at_numeric"]) == len(w["eps_at"])
    for key, axis in (("sam_numeric", "eps_sam"), ("sam_derived", "eps_sam_line"),
                      ("sam_per_sample_numeric", "eps_sam"), ("sam_per_sample_derived", "eps_sam_line")):
        assert [len(curve) for curve in w[key]] == [len(w[axis])] * len(plots.N_VALUES), key
    # SAM read per sample has no finite optimum from ε = ηn on: null there (JSON has no inf), a number below
    for n, curve in zip(w["n"], w["sam_per_sample_numeric"], strict=True):
        assert [v is None for v in curve] == [e >= eta * n for e in w["eps_sam"]], n
    # ST's w1* is Theorem 1's ln(p/(1-p))/(2η), which holds (verification T1): within half the solver's bracket
    # around it, and the closed form's rounding
    bracket, closed = float(st_optimum(p, eta, 1).bracket_width), float(cf.w1_star(p, eta))
    assert abs(w["w_star"] - closed) <= bracket / 2 + 4 * U * closed
    c = d["sam_coefficient"]
    assert c["claimed"] == 2 / 3 and [len(curve) for curve in c["numeric"]] == [len(c["eps"])] * len(c["n"])
    assert c["derived"] == pytest.approx([1 / (3 * n) for n in c["n"]], rel=4 * U, abs=0)  # the derived 1/(3n)
    e = d["equal_robustness"]
    assert [len(curve) for curve in e["numeric"]] == [len(e["eps_sam"])] * len(e["n"])
    r = d["robust_accuracy"]
    assert list(r["curves"]) == list(r["w1"]) == ["ST", "AT ε=0.125", "AT ε=0.25", "SAM ε=0.5", "SAM ε=1.5"]
    for name, curve in r["curves"].items():  # the exact accuracy: clean at budget 0, falling with the budget
        assert curve[0] == float(accuracy(r["w1"][name], p, eta, r["n"]))
        assert all(b <= a for a, b in zip(curve, curve[1:], strict=False)), name
    assert [len(curve) for curve in r["by_w"]] == [len(r["w_axis"])] * len(r["budgets"])


def test_theory_plot_keeps_existing_figures_unless_forced(drawn, tmp_path):
    folder = tmp_path / "figures"
    shutil.copytree(drawn[0], folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, out, err = _main("theory", "plot", "--out", folder)
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"samat theory plot: error: {folder / 'w1_vs_eps.png'} already exists; pass --force")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_theory_solve_in_mpmath_agrees_with_float64_within_the_reported_brackets():
    """Both precisions bracket the same minimizers: their midpoints differ by at most the half-widths' sum (and
    the rounding of the mpmath midpoint to a float64, one ulp). mpmath's brackets are ~1e-48 wide, so this pins
    the float64 solve to its own reported width."""
    args = ("theory", "solve", "--p", "0.8", "--eta", "0.5", "--n", "4", "--eps", "0.1", "--json")
    code, out, err = _main(*args)
    assert code == 0, err
    f64 = json.loads(out)
    code, out, err = _main(*args, "--precision", "mp", "--dps", "40")
    assert code == 0, err
    mp = json.loads(out)
    assert mp["precision"] == "mpmath (40 digits)" and f64["precision"] == "float64" and "notes" not in mp
    for key in ("w_star", "w_at", "w_sam", "w_sam_per_sample"):
        a, b = mp["numeric"][key], f64["numeric"][key]
        wa, wb = mp["numeric"]["bracket_width"][key], f64["numeric"]["bracket_width"][key]
        assert 0 < wa < 1e-35 < wb < 1e-9, key  # 40 digits resolve far below float64's rounding
        assert abs(a - b) <= (wa + wb) / 2 + U * abs(a), key
    closed = mp["closed_form"]  # where a closed form holds, mpmath's optimum is it to float64 rounding
    for key in ("w_star", "w_at", "w_sam_per_sample"):
        assert mp["numeric"][key] == pytest.approx(closed[key], rel=4 * U, abs=0), key
    assert mp["closed_form"] == f64["closed_form"]  # the closed forms do not depend on the solver's precision
    assert mp["numeric"]["theorem3_w_sam_above_w_star"] is True


# --- samat demo ---------------------------------------------------------------------------------------------------

# The demo on a tiny setting through its real code path (samat demo -> theory, experiment, report): its four runs
# on 100 learnable images in the official Fashion-MNIST format for 1 epoch, two columns on 8 images; the theory
# with its cheapest figure and the first four claims (T1-T3, seconds: every claim takes minutes and is tested
# in tests/theory, every figure above).
TINY_COLUMNS = ("natural", "pgd10_linf@8/255")
RUN_OF = {"ST (SGD)": "st-sgd-seed0", "SAM (ρ=0.1)": "sam-rho-0.1-seed0", "SAM (ρ=0.2)": "sam-rho-0.2-seed0",
          "ℓ∞-AT (ε=8/255)": "linf-at-eps-8-255-seed0"}


def write_learnable_fashion(folder: Path, n_train: int = 100, n_test: int = 40, seed: int = 0) -> None:
    """Fashion-MNIST's four idx files of noise images whose class k is a bright 7x7 block at cell k of a 4x4
    grid: the small CNN reaches ~70 % test accuracy in one epoch of 100 images, so the tables hold numbers."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 100, (n, 28, 28), dtype=np.uint8)
        for i, k in enumerate(y):
            r, c = divmod(int(k), 4)
            x[i, 7 * r:7 * r + 7, 7 * c:7 * c + 7] += 150
        for key, array in ((f"{split}_x", x), (f"{split}_y", y)):
            (folder / f"{FASHION_MNIST_FILES[key]}.gz").write_bytes(gzip.compress(idx_bytes(array)))


@pytest.fixture
def tiny_demo(tmp_path, monkeypatch):
    write_learnable_fashion(tmp_path / "fashion")
    tiny = {"data_dir": str(tmp_path / "fashion"), "train_subset": 100, "test_subset": 40, "epochs": 1,
            "batch_size": 10}
    monkeypatch.setenv("SAMAT_THREADS", "1")
    monkeypatch.setattr(demo, "_experiment", functools.partial(demo._experiment, overrides=tiny, n_eval=8,
                                                                columns=TINY_COLUMNS))
    monkeypatch.setattr(plots, "FIGURES", tuple(f for f in plots.FIGURES if f.name == "sam_coefficient"))
    monkeypatch.setattr(verify, "CHECKS", verify.CHECKS[:4])
    threads = torch.get_num_threads()  # samat sets SAMAT_THREADS's number for the process: give it back
    yield tmp_path / "demo"
    torch.set_num_threads(threads)


def _check_demo_output(out: Path, printed: str) -> None:
    """What `samat demo` printed and wrote: the verdicts in words, the table, and where everything is."""
    theory, experiment = out / "theory", out / "fashion-mnist"
    claims = json.loads((theory / "verification.json").read_text())
    assert claims["provenance"]["inputs"]["grid"]["p"] == list(Grid().p)
    lines = printed.splitlines()
    assert lines[:4] == [f"{c['theorem']}  {c['title']}" + (f", SAM read as {c['reading']}" if c["reading"] else "")
                         + f": holds (max rel. error {c['max_rel_error']:.2g})" for c in claims["claims"]]
    assert lines[4] == f"theory report: {theory / 'verification.md'}"
    assert "| **T3**" in (theory / "verification.md").read_text()
    assert sorted((theory / "figures").iterdir()) == sorted(plots.outputs(theory / "figures"))
    assert (f"experiment report: {experiment / 'table.md'} (with figures); its runs: samat experiment status "
            f"fashion_mnist_default --runs-dir {experiment / 'runs'}") in lines
    assert re.fullmatch(r"done in \d+ s", lines[-1])
    md = (experiment / "table.md").read_text()
    assert "| Method | Natural | PGD-10 ℓ∞ 8/255 | seeds |" in md and md.split("\n## Figures")[0].strip() in printed
    rows = next(iter(json.loads((experiment / "table.json").read_text())["tables"].values()))
    assert [r["label"] for r in rows] == list(RUN_OF)
    for row in rows:  # each row is its run's evaluation, in percent
        run = experiment / "runs" / "fashion-mnist-default" / RUN_OF[row["label"]]
        evaluation = json.loads((run / "eval.json").read_text())
        assert evaluation["settings"] == {"n_eval": 8, "seed": 0} and evaluation["columns"] == [TINY_COLUMNS[1]]
        failed = [f"{run.name}: {c['check']}" for c in evaluation["sanity"] if not c["passed"]]
        assert row["seeds_done"] == 1 and row["failed_checks"] == failed  # flagged ⚠ in the table, and listed
        assert f"| {row['label']}{' ⚠' if failed else ''} | " in md and all(f"- {f}" in md for f in failed)
        weights = evaluation["provenance"]["inputs"]["weights"]
        assert weights == json.loads((run / "final.json").read_text())["provenance"]["inputs"]["weights"]
        assert json.loads((run / "config.json").read_text())["config"]["epochs"] == 1
        for column in TINY_COLUMNS:
            assert row[column]["mean"] == pytest.approx(100 * evaluation["accuracy"][column], rel=4 * U, abs=0)
    assert rows[0]["natural"]["mean"] > 10  # learnt something: above chance (10 %) on this data


def test_demo_writes_theory_and_experiment_and_keeps_what_is_finished(tiny_demo, monkeypatch):
    out = tiny_demo
    code, printed, err = _main("demo", "--out", out)
    assert code == 0, err
    _check_demo_output(out, printed)
    assert "drawing figures" in err and "verifying Theorems" in err and err.count("epoch 1/1") == 4

    before = snapshot(out)
    code, again, err = _main("demo", "--out", out)  # finished parts are kept: nothing is trained or drawn again
    assert code == 0, err
    assert "figures already in" in err and "report already in" in err and "4 already finished" in err
    assert "epoch 1/1" not in err and "evaluating" not in err
    kept = {name: data for name, data in snapshot(out).items() if name.startswith("theory/") or "/runs/" in name}
    assert kept == {name: data for name, data in before.items() if name in kept} and len(kept) > 20
    assert again.splitlines()[:-1] == printed.splitlines()[:-1]

    # An interrupted drawing leaves some figures: the next demo draws them (it kept the folder as finished)
    (out / "theory" / "figures" / "sam_coefficient.pdf").unlink()
    code, _, err = _main("demo", "--out", out, "--theory-only")
    assert code == 0 and f"drawing figures into {out / 'theory' / 'figures'}/ (some were missing)" in err
    assert (out / "theory" / "figures" / "sam_coefficient.pdf").read_bytes().startswith(PDF)

    # --force keeps the earlier results until the new ones are done: interrupted, it keeps them aside and says so;
    # the next plain demo gives them back
    before = snapshot(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    make_all = plots.make_all
    monkeypatch.setattr(plots, "make_all", interrupted)
    code, _, err = _main("demo", "--out", out, "--force")
    aside = out / ".theory.replaced"
    assert code == 130 and err.endswith(f"[demo] the earlier results of {out / 'theory'} stay in {aside} until the "
                                        "replacement is done: `samat demo --force` continues it, `samat demo` puts "
                                        "them back\nsamat demo: interrupted\n")
    assert aside.is_dir() and (out / "fashion-mnist" / "table.md").exists()  # the part it did not reach: untouched
    monkeypatch.setattr(plots, "make_all", make_all)
    code, _, err = _main("demo", "--out", out, "--theory-only")
    assert code == 0 and "they are back" in err
    assert snapshot(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["demo", "fashion"]

    # A failed replacement gives the earlier results back at once
    def failing(*args, **kwargs):
        raise RuntimeError("a figure that cannot be drawn")

    monkeypatch.setattr(plots, "make_all", failing)
    with pytest.raises(RuntimeError):
        _main("demo", "--out", out, "--force", "--theory-only")
    assert snapshot(out) == before


def test_demo_force_replaces_only_the_parts_it_runs(tiny_demo):
    """--theory-only --force deleted OUT/segmentation (and OUT/fashion-mnist): every part of OUT but the ones it
    redoes."""
    out = tiny_demo
    code, _, err = _main("demo", "--out", out, "--theory-only")
    assert code == 0, err
    others = {out / "segmentation" / "table.md": "a finished segmentation demo",
              out / "fashion-mnist" / "table.md": "a finished classification demo"}
    for path, text in others.items():
        path.parent.mkdir()
        path.write_text(text)
    theory = snapshot(out / "theory")
    code, _, err = _main("demo", "--out", out, "--theory-only", "--force")
    assert code == 0, err
    assert all(path.read_text() == text for path, text in others.items())
    assert snapshot(out / "theory").keys() == theory.keys()  # redone
    assert sorted(p.name for p in out.iterdir()) == ["fashion-mnist", "segmentation", "theory"]  # nothing aside


def test_demo_force_killed_by_sigterm_loses_nothing(tiny_demo, tmp_path):
    """After a SIGTERM during --force the earlier results stayed hidden in .OUT.replaced, and the next successful
    demo deleted them. Now the next demo puts them back (or, with --force, continues the replacement)."""
    out = tiny_demo
    code, _, err = _main("demo", "--out", out, "--theory-only")
    assert code == 0, err
    before = snapshot(out)
    env = os.environ | {"SAMAT_THREADS": "1"}
    killed = subprocess.Popen([sys.executable, "-m", "samat", "demo", "--out", str(out), "--theory-only", "--force"],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:  # it sets the theory aside at once, then verifies and draws for many seconds: stop it in between
        deadline = time.monotonic() + 120
        while not any(folder.is_dir() for folder in (out / ".theory.replaced", out.parent / ".demo.replaced")):
            assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()[1]
            time.sleep(0.01)
        killed.send_signal(signal.SIGTERM)
        killed.communicate(timeout=60)
    finally:
        killed.kill()
    assert killed.returncode == -signal.SIGTERM
    code, _, err = _main("demo", "--out", out, "--theory-only")
    assert code == 0, err
    assert f"had set the earlier results of {out / 'theory'} aside: they are back" in err
    assert snapshot(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["demo", "fashion"]
