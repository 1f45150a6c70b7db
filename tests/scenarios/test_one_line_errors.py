"""Each input that ended in a traceback (or did the wrong thing quietly) now gets a one-line error naming the
command and the parameter, exit code 2, before any work. One row per command of the report."""

from __future__ import annotations

import json

import pytest
import torch

from samat.empirical.attacks.specs import budget_problem, parse_attack
from samat.empirical.evaluation.store import unpack_mask
from samat.empirical.evaluation.trained import eval_indices, load_trained, locate
from samat.empirical.experiments.grid import load_experiment
from samat.empirical.experiments.runner import run_experiment
from samat.empirical.inference import correct_mask
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.loop import train
from samat.empirical.training.runs import RunDir, file_sha256
from tests.commandline import GAUSSIAN, gaussian_cfg, samat_with_read_only
from tests.empirical.helpers import write_grid
from tests.helpers import snapshot

SEED_RANGE = "an integer in [0, 2**63 - 1]"
TRAIN = ("train", "--dataset", "gaussian", "--model", "linear", "--epochs", "1", "--no-progress")

SOLVE = ("--p", "0.8", "--eta", "0.5")
CASES = [
    # (command, args, needle); {run}: a finished run, {file}: a plain file, {folder}: an existing folder
    ("theory solve", [*SOLVE, "--n", "inf", "--eps", "0.1"], "n=inf is invalid: n must be finite"),
    ("theory solve", [*SOLVE, "--n", "4", "--eps", "inf"], "eps=inf is invalid: eps must be finite"),
    ("theory solve", ["--p", "0.8", "--eta", "inf", "--n", "4", "--eps", "0.1"], "eta must be finite"),
    ("theory solve", [*SOLVE, "--n", "4", "--eps", "1e309"], "eps must be finite"),
    ("train", ["--epochs", "inf"], "'inf' is not an integer (it must be finite)"),
    ("train", [*TRAIN[1:], "--seed", "99999999999999999999999"], f"seed must be {SEED_RANGE}"),
    ("eval", ["{run}", "--seed", "99999999999999999999999"], f"seed must be {SEED_RANGE}"),
    ("eval", ["{run}", "--seed", "-1"], f"seed must be {SEED_RANGE}"),
    ("train", [*TRAIN[1:], "--set", 'gaussian={"n": 1e9}'], "of memory, and this machine has"),
    ("train", ["--config", "{folder}"], "is a folder: give a file"),
    ("theory verify", ["--out", "{file}", "--quick"], "--out {file} is a file, not a folder"),
    ("theory plot", ["--out", "{file}"], "--out {file} is a file, not a folder"),
    ("train", [*TRAIN[1:], "--runs-dir", "{file}"], "--runs-dir {file} is a file, not a folder"),
    ("eval", ["{run}", "--attacks", "pgd10_linf@"], "at least one budget after '@'"),
    ("eval", ["{run}", "--attacks", "pgd99999999999999999999_linf"], "PGD with 1 to 10,000 steps"),
    ("train", ["--method", "pgd_at", "--at-eps", "2"], "at_eps must be < 1 for l-inf on images"),
    ("train", ["--dataset", "fashion_mnist", "--method", "pgd_at", "--at-norm", "l2", "--at-eps", "1000", "--epochs",
               "1", "--train-subset", "64", "--test-subset", "64", "--runs-dir", "{folder}"],
     "at_eps=1000.0 is invalid: at_eps must be < 28 for l2 on 1x28x28 images in [0, 1] (the box's diameter √784"),
    ("train", [*TRAIN[1:], "--at-steps", "20000", "--method", "pgd_at"], "at_steps must be an integer in [1, 10,000]"),
    ("train", [*TRAIN[1:], "--name", "../escape"], "--name=../escape is invalid"),
    ("train", [*TRAIN[1:], "--name", "a/b"], "--name=a/b is invalid"),
    # a run's other files are not weights (it said "made for other weights... evaluating again", then "corrupt")
    ("eval", ["{run}/config.json"], "{run}/config.json is not a weights file (samat eval reads .pt or .pth files): "
     "give the run directory ({run}) or its model.pt"),
    ("eval", ["{run}/metrics.jsonl", "--attacks", "fgsm_linf@0.1"], "{run}/metrics.jsonl is not a weights file"),
    # an unknown flag is named with the command that does not know it (it said only "samat: error")
    ("train", [*TRAIN[1:], "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ("experiment run", ["fashion_mnist_default", "--epochs", "3"], "unrecognized arguments: --epochs 3"),
    ("eval", ["{run}", "--epochs", "3"], "unrecognized arguments: --epochs 3"),
]


@pytest.mark.parametrize(("command", "args", "needle"), CASES, ids=[f"{c} {' '.join(a)}" for c, a, _ in CASES])
def test_bad_input_is_one_line_naming_the_command(samat, fresh_run, tmp_path, monkeypatch, command, args, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain-file").write_text("")
    (tmp_path / "a-folder").mkdir()
    where = {"{run}": str(fresh_run), "{file}": "plain-file", "{folder}": "a-folder"}

    def fill(text: str) -> str:
        for key, value in where.items():
            text = text.replace(key, value)
        return text

    before = sorted(p.name for p in tmp_path.iterdir())
    result = samat(*command.split(), *[fill(a) for a in args])
    result.one_line_error(fill(needle), command)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written outside, nothing escaped
    assert not (tmp_path.parent / "escape").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_on_a_missing_device_fails_before_saying_anything(samat, tmp_path):
    result = samat(*TRAIN, "--device", "cuda", "--runs-dir", tmp_path / "runs")
    result.one_line_error("device=cuda is invalid", "train")
    assert "training" not in result.err and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", [["theory", "verify", "--quick", "--out"], ["theory", "plot", "--out"],
                                     ["train", *TRAIN[1:], "--runs-dir"]])
def test_read_only_output_folder_is_refused_before_the_work(tmp_path, command):
    folder = tmp_path / "read-only"
    folder.mkdir()
    result = samat_with_read_only(folder, *command, folder)
    result.one_line_error(f"cannot write in {'--runs-dir' if command[0] == 'train' else '--out'} {folder}",
                          " ".join(command[:2]) if command[0] == "theory" else "train")
    assert list(folder.iterdir()) == []


def test_eval_of_a_read_only_run_is_refused_before_attacking(fresh_run):
    before = snapshot(fresh_run)
    result = samat_with_read_only(fresh_run, "eval", fresh_run, "--attacks", "fgsm_linf@0.1")
    result.one_line_error("cannot write in run directory", "eval")
    assert "evaluating" not in result.err and snapshot(fresh_run) == before


def test_fractions_of_decimals_are_budgets_everywhere(samat):
    assert TrainConfig.from_dict({"at_eps": "1.5/255"}).at_eps == 1.5 / 255
    (spec,) = parse_attack("pgd10_linf@1.5/255")
    assert spec.eps == 1.5 / 255 and spec.label == "pgd10_linf@1.5/255" and spec.title == "PGD-10 ℓ∞ 1.5/255"
    result = samat("theory", "solve", "--p", "0.8", "--eta", "0.5", "--n", "4", "--eps", "1.5/255", "--json")
    assert result.code == 0 and '"eps": 0.0058823529411764' in result.out


def test_unresolved_solves_say_so(samat):
    result = samat("theory", "solve", "--p", "0.9999999999999999", "--eta", "0.5", "--n", "4", "--eps", "0.1")
    assert result.code == 0
    assert "note: SAM (w1^SAM) is not resolved" in result.out
    assert "Theorem 3 (w1^SAM > w1*) is not decided" in result.out
    huge = samat("theory", "solve", "--p", "0.8", "--eta", "0.5", "--n", "1e300", "--eps", "0.1")
    assert "no finite optimum found for ST (w1*) and SAM (w1^SAM)" in huge.out and "AT optimum" in huge.out
    assert "--precision mp" in huge.out


def test_a_gaussian_model_that_fits_in_memory_trains(samat, tmp_path):
    """The memory check refuses n = 1e9 (above) but lets a model that fits train: as asked, to the end."""
    table = dict(GAUSSIAN, n=20)
    result = samat(*TRAIN, "--runs-dir", tmp_path, "--name", "r", "--set", f"gaussian={table}".replace("'", '"'))
    assert result.code == 0, result.err
    run = RunDir(tmp_path / "r")
    assert run.finished and run.read_final()["epochs"] == 1 and run.load_config().gaussian["n"] == 20
    assert torch.load(run.weights)["weight"].shape == (21,)  # w over x1..x_{n+1}


def test_train_and_eval_accept_the_same_seeds_and_use_them(samat, tmp_path):
    """The largest seed both accept is recorded and used: training's initialization and batches differ from seed
    0's, and the evaluation's images are the subset that seed draws."""
    largest = 2**63 - 1
    gaussian = f"gaussian={GAUSSIAN}".replace("'", '"')
    for name, seed in (("r", largest), ("zero", 0)):
        trained = samat(*TRAIN, "--runs-dir", tmp_path, "--name", name, "--seed", seed, "--set", gaussian)
        assert trained.code == 0, trained.err
    run = RunDir(tmp_path / "r")
    assert run.load_config().seed == largest
    assert not torch.equal(torch.load(run.weights)["weight"], torch.load(tmp_path / "zero" / "model.pt")["weight"])
    evaluated = samat("eval", run.path, "--attacks", "fgsm_linf@0.1", "--seed", largest, "--n-eval", "64")
    assert evaluated.code == 0, evaluated.err
    evaluation = json.loads((run.path / "eval.json").read_text())
    assert evaluation["settings"] == {"n_eval": 64, "seed": largest}
    loaded = load_trained(locate(run.path), device=torch.device("cpu"))
    picked = eval_indices(len(loaded.y), 64, largest)
    assert not torch.equal(picked, eval_indices(len(loaded.y), 64, 0))
    hits = correct_mask(loaded.model, loaded.x[picked], loaded.y[picked])  # image by image: another subset's
    assert torch.equal(unpack_mask(evaluation["correct"]["natural"], 64), hits)  # would differ (~1e-11 chance)


def test_eval_refuses_weights_that_diverged_in_one_line(samat, fresh_run):
    """`samat eval` of a run whose model.pt held NaN said "sanity checks: 3/3 passed"."""
    evaluated = samat("eval", fresh_run, "--attacks", "fgsm_linf@0.1", "--n-eval", "64")
    assert evaluated.code == 0, evaluated.err
    weights = torch.load(fresh_run / "model.pt")
    torch.save({k: torch.full_like(v, float("nan")) for k, v in weights.items()}, fresh_run / "model.pt")
    samat("eval", fresh_run, "--attacks", "fgsm_linf@0.1", "--n-eval", "64").one_line_error(
        f"{fresh_run / 'model.pt'} holds non-finite weights (NaN or inf in", "eval")
    # an eval.json that an earlier version made of these weights is not shown as their evaluation either
    record = json.loads((fresh_run / "eval.json").read_text())
    record["provenance"]["inputs"]["weights"]["sha256"] = file_sha256(fresh_run / "model.pt")
    (fresh_run / "eval.json").write_text(json.dumps(record))
    samat("eval", fresh_run, "--attacks", "fgsm_linf@0.1", "--n-eval", "64").one_line_error(
        "holds non-finite weights", "eval")


def test_resuming_a_read_only_run_is_refused_before_training(tmp_path):
    """`--resume` of a run in a read-only folder trained an epoch, then said "free some space"."""
    values = gaussian_cfg(epochs=3).to_dict()
    run = tmp_path / "runs" / "g"
    train(gaussian_cfg(epochs=3), run, progress=False, stop_after=1)
    before = snapshot(run)
    (tmp_path / "config.json").write_text(json.dumps(values))
    result = samat_with_read_only(run, "train", "--config", tmp_path / "config.json", "--runs-dir", run.parent,
                                  "--name", "g", "--resume", "--no-progress")
    result.one_line_error(f"cannot write in the run directory {run} (", "train")
    assert "nothing was trained; make it writable and continue with --resume" in result.err
    assert "epoch 2" not in result.err and snapshot(run) == before


@pytest.fixture
def finished_grid(tmp_path):
    """A one-run Gaussian grid with no attack column, trained: (its file, its runs folder)."""
    grid = write_grid(tmp_path, 'name = "g"')
    runs = tmp_path / "runs"
    load = load_experiment(grid, runs_dir=runs)
    run_experiment(load, progress=False, log=lambda m: None)
    return grid, runs


def test_output_folders_are_checked_before_the_work(samat, tmp_path, finished_grid):
    """`experiment run --report FILE`, `experiment report --out FILE` and `study --publish FILE` trained or studied
    first, then gave a traceback."""
    grid, runs = finished_grid
    file = tmp_path / "a-file"
    file.write_text("")
    fresh = tmp_path / "fresh-runs"
    samat("experiment", "run", grid, "--runs-dir", fresh, "--report", file).one_line_error(
        f"--report {file} is a file, not a folder", "experiment run")
    assert not any(fresh.rglob("*.json"))  # nothing trained
    samat("experiment", "report", grid, "--runs-dir", runs, "--out", file).one_line_error(
        f"--out {file} is a file, not a folder", "experiment report")
    study = tmp_path / "study"
    samat("study", "--quick", "--out", study, "--publish", file).one_line_error(
        f"--publish {file} is a file, not a folder", "study")
    assert not (study / "runs").exists()  # nothing studied
    samat("study", "--quick", "--out", file).one_line_error(f"--out {file} is a file, not a folder", "study")
    samat("study", "--duality", "--quick", "--out", study, "--publish", file / "p").one_line_error(
        f"cannot write in --publish {file / 'p'}", "study")  # the duality study too, before its runs
    assert not (study / "duality").exists()
    samat("study", "--duality", "--quick", "--out", file / "x").one_line_error(f"cannot write in --out {file / 'x'}",
                                                                                "study")


def test_a_read_only_report_folder_is_refused_before_the_report(tmp_path, finished_grid):
    grid, runs = finished_grid
    folder = tmp_path / "report"
    folder.mkdir()
    result = samat_with_read_only(folder, "experiment", "report", grid, "--runs-dir", runs, "--out", folder)
    result.one_line_error(f"cannot write in --out {folder}", "experiment report")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(("attack", "needle"), [
    ("fgsm_linf@2", "eps=2 is invalid: eps must be < 1 for l-inf on images in [0, 1] (a budget of 1 lets the attack "
                    "paint any image), e.g. 8/255 (attack fgsm_linf@2)"),
    ("pgd10_l2@1000", "eps=1000 is invalid: eps must be < 28 for l2 on 1x28x28 images"),
])
def test_an_attack_budget_follows_the_rule_of_adversarial_training(samat, tmp_path, attack, needle):
    """`eval --attacks fgsm_linf@2` ran with ε = 2 while `train --at-eps 2` was refused, and an ℓ2 budget had no
    limit at all: one rule per norm (attacks.specs.budget_problem), checked before the weights or data are read."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config(TrainConfig.from_dict({"dataset": "fashion_mnist", "model": "small_cnn"}), {})
    (run.path / "model.pt").write_bytes(b"never read")
    samat("eval", run.path, "--attacks", attack).one_line_error(needle, "eval")
    assert not (run.path / "eval.json").exists()
    grid = write_grid(tmp_path, f'name = "g"\ncolumns = ["natural", "{attack}"]', base='[base]\ndataset = '
                      '"fashion_mnist"\nmodel = "small_cnn"\n')
    samat("experiment", "status", grid).one_line_error(f"{needle.split(' (attack')[0]}", "experiment status")


def test_the_budget_rule_leaves_vectors_and_budgets_inside_the_box_alone():
    assert TrainConfig.from_dict({"dataset": "fashion_mnist", "method": "pgd_at", "at_norm": "l2", "at_eps": 27.9})
    assert TrainConfig.from_dict({"dataset": "gaussian", "model": "linear", "method": "pgd_at", "at_eps": 3})
    (spec,) = parse_attack("pgd10_l2@1000")  # the Gaussian model's vectors have no box
    assert budget_problem(spec.norm, spec.eps, (7,)) is None
    assert budget_problem(spec.norm, 55.4, (3, 32, 32)) is None and budget_problem(spec.norm, 55.5, (3, 32, 32))
    assert budget_problem(spec.norm, 1000, None) is None  # images of sizes not known yet: only l-inf's rule
