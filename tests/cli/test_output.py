"""Output for people: help for every command and option, progress lines without a terminal, readable column
names, tables without float noise, doubled titles or absolute paths, the theory summary in words."""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import re

import pytest

from samat.cli import runtime
from samat.cli.demo import _theory_summary
from samat.cli.main import build_parser
from samat.core.errors import ParameterError
from samat.empirical.attacks.specs import parse_attack
from samat.empirical.experiments.grid import load_experiment
from samat.theory.symbolic import in_papers_notation
from tests.commandline import GAUSSIAN
from tests.helpers import REPO

GAUSSIAN_TOML = ", ".join(f"{k} = {v}" for k, v in GAUSSIAN.items())


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from _parsers(child)


def test_every_command_and_option_has_a_help_line(samat):
    missing = [f"{p.prog} {a.option_strings or a.dest}" for p in _parsers(build_parser()) for a in p._actions
               if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert missing == []
    top = samat("--help")
    assert top.code == 0
    for command in ("theory solve", "train", "eval", "experiment run", "study", "demo"):
        assert f"samat {command}" in top.out
    assert "The ``samat`` command." not in top.out


# Flags of the programs samat runs or names, not its own: git's (provenance), sacct's (job states), sbatch's (help).
OTHER_PROGRAMS_FLAGS = {"--show-toplevel", "--porcelain", "--untracked-files", "--states", "--array"}


def test_every_flag_that_a_message_names_exists():
    """Errors advised "pass --download", a flag no command has. Every --flag in samat's strings (docstrings aside)
    is an option of some samat command."""
    known = {flag for p in _parsers(build_parser()) for a in p._actions for flag in a.option_strings}
    named: dict[str, list[str]] = {}
    for path in sorted((REPO / "samat").rglob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                      and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value,
                                                                                          ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value):
                    named.setdefault(flag, []).append(str(path.relative_to(REPO)))
    assert "--resume" in named and "--overwrite" in named  # the search finds the flags messages advise
    unknown = {flag: where for flag, where in named.items() if flag not in known | OTHER_PROGRAMS_FLAGS}
    assert unknown == {}


@pytest.mark.parametrize(("column", "title"), [
    ("pgd10_linf@1/255", "PGD-10 ℓ∞ 1/255"), ("fgsm_linf", "FGSM ℓ∞ 1/255"), ("autoattack_l2", "AutoAttack ℓ2 32/255"),
    ("stadv", "StAdv"), ("pixle", "Pixle"), ("fab_l2", "FAB ℓ2 32/255"), ("pgd20_l2@0.5", "PGD-20 ℓ2 0.5"),
])
def test_attacks_have_readable_titles(column, title):
    (spec,) = parse_attack(column)
    assert spec.title == title


def _grid(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(f'[experiment]\nname = "g"\ntitle = "Gaussian grid"\nn_eval = 500\ncolumns = ["natural", '
                    f'"pgd10_linf@0.1", "pgd10_linf@0.2", "fgsm_linf@0.1"]\n\n[base]\ndataset = "gaussian"\n'
                    f'model = "linear"\nepochs = 2\nbatch_size = 64\ngaussian = {{ {GAUSSIAN_TOML} }}\n\n'
                    '[[run]]\nlabel = "SGD"\nmethod = "sgd"\n')
    return path


def test_a_grid_reads_well_without_a_terminal(samat, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = _grid(tmp_path)
    nothing = samat("experiment", "report", grid)
    nothing.one_line_error("nothing to report: none of the 1 runs of g is finished", "experiment report")
    assert not (tmp_path / "results").exists()  # no blank figures
    ran = samat("experiment", "run", grid)  # stderr is not a terminal here: lines, not bars
    assert ran.code == 0, ran.err
    assert re.search(r"sgd-seed0: epoch 2/2, train loss [\d.]+, train accuracy [\d.]+ %, test accuracy [\d.]+ %",
                     ran.err)
    assert re.search(r"^  PGD-10 ℓ∞ 0\.2: accuracy \d+\.\d\d % \(", ran.err, re.M) and "\r" not in ran.err
    report = samat("experiment", "report", grid)
    assert report.code == 0 and "![" not in report.out and "| Method | Natural | PGD-10 ℓ∞ 0.1 |" in report.out
    md = (tmp_path / "results" / "g" / "table.md").read_text()
    assert md.count("Gaussian grid") == 1 and str(tmp_path) not in md and "`grid.toml`" in md
    rows = list(csv.DictReader((tmp_path / "results" / "g" / "table.csv").open()))
    assert [r["title"] for r in rows] == ["Natural", "PGD-10 ℓ∞ 0.1", "PGD-10 ℓ∞ 0.2", "FGSM ℓ∞ 0.1"]
    assert rows[1]["column"] == "pgd10_linf@0.1"
    assert all(len(r["mean"].partition(".")[2]) <= 4 for r in rows)  # 85.4, never 85.39999999999999
    evaluated = samat("eval", "runs/g/sgd-seed0", "--attacks", "pgd10_linf@0.1", "--n-eval", "500")
    assert "PGD-10 ℓ∞ 0.1" in evaluated.out and " %" in evaluated.out


def test_a_column_of_several_budgets_is_one_column_per_budget_in_every_table(tmp_path):
    """Parsed once when the file is read: the tables, the evaluation and the report see one column per budget."""
    grid = _grid(tmp_path)
    grid.write_text(grid.read_text().replace('"pgd10_linf@0.1", "pgd10_linf@0.2"', '"pgd10_linf@0.1,0.2"'))
    exp = load_experiment(grid)
    assert exp.tables[0].columns == ("natural", "pgd10_linf@0.1", "pgd10_linf@51/255", "fgsm_linf@0.1")
    assert list(exp.attacks) == ["pgd10_linf@0.1", "pgd10_linf@51/255", "fgsm_linf@0.1"]
    assert [exp.column_title(c) for c in exp.tables[0].columns] == ["Natural", "PGD-10 ℓ∞ 0.1", "PGD-10 ℓ∞ 0.2",
                                                                      "FGSM ℓ∞ 0.1"]


def test_status_says_where_the_demo_keeps_its_runs(samat, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results/demo/fashion-mnist/runs/fashion-mnist-default").mkdir(parents=True)
    status = samat("experiment", "status", "fashion_mnist_default")
    assert status.code == 0 and status.out.startswith("new")
    assert "--runs-dir results/demo/fashion-mnist/runs" in status.err


def test_the_theory_summary_is_in_words(tmp_path):
    claims = [{"theorem": "T4", "title": "Small-ε size of the SAM optimum", "verdict": "fails", "max_rel_error": 1.0,
               "corrected": "(eps**2/(3*n) + 1)*(log(p) - log(1 - p))/(2*eta)", "corrected_verdict": "holds"}]
    path = tmp_path / "verification.json"
    path.write_text(json.dumps({"claims": claims}))
    summary = _theory_summary(path)
    assert "corrected form w1*·(ε²/(3·n) + 1), which holds" in summary
    assert "**" not in summary and "log(" not in summary
    assert in_papers_notation("2*eta**2*n/5 + 6*n/eps_SAM**2") == "2·η²·n/5 + 6·n/ε_SAM²"


def test_threads_are_torchs_unless_chosen_and_wait_passively(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    runtime.prepare_process()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # set before torch loads (samat.cli.main calls it first)
    monkeypatch.delenv("SAMAT_THREADS", raising=False)
    assert runtime.chosen_threads() is None
    monkeypatch.setenv("SAMAT_THREADS", "3")
    assert runtime.chosen_threads() == 3
    monkeypatch.setenv("SAMAT_THREADS", "many")
    with pytest.raises(ParameterError, match="SAMAT_THREADS"):
        runtime.chosen_threads()


@pytest.mark.parametrize("threads", ["9", "1000", "5000", "100000"])
def test_threads_beyond_four_per_core_are_refused(monkeypatch, threads):
    """100000 threads ran out of memory, 5000 crashed OpenMP, 1000 on 2 cores ran 80 times slower."""
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setenv("SAMAT_THREADS", "8")
    assert runtime.chosen_threads() == 8
    monkeypatch.setenv("SAMAT_THREADS", threads)
    with pytest.raises(ParameterError, match=rf"^SAMAT_THREADS={threads} is invalid: SAMAT_THREADS must be an "
                                             r"integer in \[1, 8\] \(CPU threads for torch: at most 4 per core, "
                                             r"and this process may use 2\)$"):
        runtime.chosen_threads()


def test_more_threads_than_cores_is_a_warning(monkeypatch):
    import torch

    before, said = torch.get_num_threads(), []
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    try:
        for threads in ("2", "3"):
            monkeypatch.setenv("SAMAT_THREADS", threads)
            assert runtime.use_cpu_threads(said.append) == int(threads)
    finally:
        torch.set_num_threads(before)
    assert said == ["warning: SAMAT_THREADS=3 is more than the 2 cores this process may use: the threads take turns "
                    "on them, which gains nothing and can be much slower"]


def test_samat_threads_beyond_reason_is_one_line_before_the_work(samat, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMAT_THREADS", "100000")
    result = samat("train", "--dataset", "gaussian", "--model", "linear", "--epochs", "1", "--runs-dir",
                   tmp_path / "runs")
    result.one_line_error("SAMAT_THREADS=100000 is invalid", "train")
    assert not any((tmp_path / "runs").iterdir())


def test_train_names_the_step_it_takes_in_its_first_line(samat, tmp_path, monkeypatch):
    """The first line says which step trains the full batches; where the fast path is off, the next line says why
    and how to skip it, and final.json records what ran."""
    from samat.empirical.training import setup

    common = ("train", "--dataset", "gaussian", "--model", "linear", "--epochs", "1", "--no-progress", "--runs-dir",
              tmp_path, "--set", f"gaussian={json.dumps(GAUSSIAN)}")
    plain = samat(*common, "--name", "plain")
    assert plain.code == 0 and plain.err.splitlines()[0].endswith("(sgd on gaussian/linear, 1 epochs; eager step)")
    monkeypatch.setattr(setup, "inductor_missing", lambda device: "no C++ compiler was found (simulated)")
    asked = samat(*common, "--name", "asked", "--compile")
    first, second = asked.err.splitlines()[:2]
    assert asked.code == 0 and first.endswith("1 epochs; eager step)"), asked.err
    assert second == "  asked: fast path off: no C++ compiler was found (simulated); training on the eager step " \
                     "(--set compile=false --set cuda_graph=false skips the fast path)"
    assert json.loads((tmp_path / "asked" / "final.json").read_text())["step_path"] == "eager"
