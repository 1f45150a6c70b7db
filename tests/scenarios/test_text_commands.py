"""The text task from the command line: the demo's report (a generated corpus, said so), ``samat eval`` of a text
run, and bad input: one line naming the parameter and its valid values, exit code 2, no traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from samat.cli import demo
from samat.cli.main import main
from tests.text import RESOURCES, needs_text

pytestmark = needs_text


@pytest.fixture
def samat(capsys, monkeypatch):
    """``samat ARGS`` in this process, on one thread: (exit code, stdout, stderr)."""
    monkeypatch.setenv("SAMAT_THREADS", "1")
    threads = torch.get_num_threads()

    def run(*args):
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as stop:
            code = stop.code
        out, err = capsys.readouterr()
        return int(code or 0), out, err

    yield run
    torch.set_num_threads(threads)


def one_line_error(result, command: str, *needles: str) -> None:
    code, _, err = result
    assert code == 2 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == err.splitlines()[-1:] and errors[0].startswith(f"samat {command}: error: "), err
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_the_demo_reports_a_generated_corpus_with_both_recipes(standins, tmp_path):
    table = demo._text_experiment(tmp_path / "text", n_eval=2, overrides={"epochs": 1, "train_subset": 256},
                                  resources=RESOURCES)
    text = table.read_text()
    assert "a generated corpus, not the paper's data" in text.splitlines()[0]
    assert "| Method | Natural | PSO ASR | IGA ASR | seeds |" in text and "## Attack details" in text
    assert "| ST (AdamW) |" in text and "| SAM (ρ=0.05) |" in text
    assert (tmp_path / "text" / "attacks.png").is_file() and (tmp_path / "text" / "curves.png").is_file()
    dump = json.loads((tmp_path / "text" / "table.json").read_text())
    assert {r["column"] for r in dump["tables"]["attack details"]} == {"pso", "iga"}


def test_eval_of_a_text_run_prints_the_success_rates(samat, standins, trained_run, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    code, out, err = samat("eval", run, "--attacks", "pso", "--n-eval", "3")
    assert code == 0, err
    assert "PSO (PSOZang2020)" in out and "success rate" in out and "queries" in out
    assert "sanity checks: 3/3 passed" in out


def _three_labels(folder: Path) -> Path:
    import datasets

    data = {split: datasets.Dataset.from_dict({"text": ["good", "bad", "so so"], "label": [1, 0, 2]})
            for split in ("train", "validation", "test")}
    datasets.DatasetDict(data).save_to_disk(str(folder))
    return folder


@pytest.mark.parametrize("case", ["missing model folder", "folder without files", "three labels",
                                  "max length beyond the model", "not a recipe", "image attack on text"])
def test_bad_text_input_is_one_line(samat, standins, tiny_model, trained_run, tmp_path, case):
    train = ["train", "--runs-dir", tmp_path / "runs", "--model", "transformer", "--method", "adamw", "--set",
             "epochs=1", "--device", "cpu"]
    text = {"model": str(tiny_model), "max_length": 32}

    def with_text(**changes):
        return ["--set", "text=" + json.dumps(text | changes)]

    if case == "missing model folder":
        result = samat(*train, "--dataset", "generated_reviews", *with_text(model=str(tmp_path / "nope")))
        one_line_error(result, "train", "text.model=", "config.json")
    elif case == "folder without files":
        (tmp_path / "empty").mkdir()
        result = samat(*train, "--dataset", "rotten_tomatoes", "--data-dir", tmp_path / "empty", *with_text())
        one_line_error(result, "train", "rt-polarity.pos", "dataset_dict.json")
    elif case == "three labels":
        folder = _three_labels(tmp_path / "three")
        result = samat(*train, "--dataset", "rotten_tomatoes", "--data-dir", folder, *with_text())
        one_line_error(result, "train", "labels={0, 1, 2}", "0 and 1")
    elif case == "max length beyond the model":
        result = samat(*train, "--dataset", "generated_reviews", *with_text(max_length=100))
        one_line_error(result, "train", "text.max_length=100", "8..64")
    elif case == "not a recipe":
        result = samat("eval", trained_run, "--attacks", "textfooler")
        one_line_error(result, "eval", "attack=textfooler", "pso", "iga")
    else:
        result = samat("eval", trained_run, "--attacks", "pgd10_linf")
        one_line_error(result, "eval", "attack=pgd10_linf", "pso or iga")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))


def test_the_text_demo_without_the_extra_names_it(samat, monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "textattack" else real(name, *a))
    result = samat("demo", "--task", "text", "--out", tmp_path / "demo")
    one_line_error(result, "demo", "pip install 'samat[text]'", "textattack")
    assert not (tmp_path / "demo").exists()
