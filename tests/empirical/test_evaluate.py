"""Evaluation runs: eval.json, the sanity checks (which must be able to fail), bad input, and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from empirical.evaluate import attack_columns, eval_indices, evaluate, evaluate_path
from empirical.experiment import load_experiment, run_experiment, write_report
from empirical.train import train
from tests.empirical.test_train import tiny_cfg, tiny_images
from theory.errors import ParameterError, SamatError

REPO = Path(__file__).resolve().parents[2]
CHEAP = ["fgsm_linf@2/255", "pgd10_linf@2/255", "pgd10_linf@8/255", "pgd10_l2@64/255"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train(tiny_cfg(epochs=4), root / "st", progress=False, data=tiny_images())
    return root / "st"


def _load(run_dir):
    from empirical.evaluate import load_trained

    return load_trained(run_dir, device=torch.device("cpu"), dataset="tiny")


def test_eval_json_holds_numbers_and_passing_sanity_checks(trained_run, monkeypatch):
    monkeypatch.setattr("empirical.evaluate.load_trained", _patched_loader)
    result = evaluate_path(trained_run, CHEAP, n_eval=64, seed=0, progress=False, log=lambda m: None)
    saved = json.loads((trained_run / "eval.json").read_text())
    assert saved["accuracy"] == result["accuracy"]
    assert all(isinstance(v, float) for v in saved["accuracy"].values())
    assert saved["settings"] == {"n_eval": 64, "seed": 0}
    for column in CHEAP:
        assert saved["accuracy"][column] <= saved["accuracy"]["natural"]
    assert saved["sanity_passed"], [c for c in saved["sanity"] if not c["passed"]]
    names = " ".join(c["check"] for c in saved["sanity"])
    for needle in ("robust <= clean", "within budget", "does not increase with eps", "more PGD steps",
                   "large attack"):
        assert needle in names


def test_existing_evaluation_is_extended_not_redone(trained_run, monkeypatch):
    monkeypatch.setattr("empirical.evaluate.load_trained", _patched_loader)
    evaluate_path(trained_run, CHEAP[:1], n_eval=64, seed=0, overwrite=True, progress=False, log=lambda m: None)
    first = json.loads((trained_run / "eval.json").read_text())
    calls = []
    evaluate_path(trained_run, CHEAP[:2], n_eval=64, seed=0, progress=False, log=calls.append)
    second = json.loads((trained_run / "eval.json").read_text())
    assert second["accuracy"][CHEAP[0]] == first["accuracy"][CHEAP[0]] and CHEAP[1] in second["accuracy"]
    assert any(CHEAP[1] in c and CHEAP[0] not in c for c in calls if c.startswith("evaluating"))
    with pytest.raises(SamatError, match="--overwrite"):
        evaluate_path(trained_run, CHEAP[:1], n_eval=32, seed=0, progress=False, log=lambda m: None)


def _patched_loader(path, *, device, data_dir=None, model=None, dataset=None):
    """The tiny dataset is not a registered one: load it by hand, the way load_trained would."""
    from empirical.evaluate import Loaded
    from empirical.models import build_model
    from empirical.runs import RunDir

    data = tiny_images()
    run = RunDir(path)
    net = build_model("small_cnn", input_shape=data.input_shape, num_classes=4, mean=data.mean, std=data.std)
    net.load_state_dict(torch.load(run.weights))
    return Loaded(net.eval(), data.test_x, data.test_y, 4, run.path, "small_cnn on tiny")


class GradientMasked(nn.Module):
    """Logits that carry no gradient: a gradient attack cannot move them (obfuscated gradients)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        logits = self.model(x)
        return 10 * nn.functional.one_hot(logits.argmax(1), logits.shape[1]).float() + 0 * logits


def test_sanity_checks_catch_gradient_masking(trained_run):
    data = tiny_images()
    from empirical.models import build_model

    net = build_model("small_cnn", input_shape=data.input_shape, num_classes=4, mean=data.mean, std=data.std)
    net.load_state_dict(torch.load(trained_run / "model.pt"))
    result = evaluate(GradientMasked(net.eval()), data.test_x[:64], data.test_y[:64], CHEAP[1:2], num_classes=4,
                      progress=False)
    failed = [c["check"] for c in result["sanity"] if not c["passed"]]
    assert any("large attack" in c for c in failed) and not result["sanity_passed"]


def test_same_subset_for_every_model():
    a, b = eval_indices(10_000, 500, seed=3), eval_indices(10_000, 500, seed=3)
    assert torch.equal(a, b) and len(torch.unique(a)) == 500
    assert not torch.equal(a, eval_indices(10_000, 500, seed=4))


def test_attack_columns_parse_lists_and_reject_bad_ones():
    assert attack_columns(["natural", "pgd10_linf@1/255,2/255", "stadv", "average"]) == [
        "pgd10_linf@1/255", "pgd10_linf@2/255", "stadv"]
    with pytest.raises(ParameterError, match="attack=pgd_bogus"):
        attack_columns(["pgd_bogus"])
    with pytest.raises(ParameterError, match="eps"):
        attack_columns(["pgd10_linf@-1/255"])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "samat", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


@pytest.mark.parametrize(("extra", "needle"), [
    (["--attacks", "fgsm_bogus"], "attack=fgsm_bogus is invalid"),
    (["--attacks", "pgd10_linf@-2/255"], "eps="),
])
def test_eval_cli_bad_input_is_one_line(tmp_path, extra, needle):
    run = tmp_path / "run"
    cfg = tiny_cfg(epochs=1).replace(dataset="gaussian", model="linear", gaussian={"n": 4, "train_size": 64,
                                                                                 "test_size": 64})
    train(cfg, run, progress=False)
    out = run_cli("eval", str(run), "--n-eval", "16", "--no-progress", *extra)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr
    assert len([line for line in out.stderr.splitlines() if line.startswith("samat")]) == 1


def test_checkpoint_of_another_architecture_is_one_line(tmp_path):
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    cfg = tiny_cfg(epochs=1).replace(dataset="fashion_mnist", train_subset=256, test_subset=64)
    train(cfg, tmp_path / "run", progress=False)
    for arch in ("prn18", "deit_tiny"):
        out = run_cli("eval", str(tmp_path / "run" / "model.pt"), "--model", arch, "--n-eval", "16")
        assert out.returncode == 2 and f"does not fit model {arch} on fashion_mnist" in out.stderr
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_missing_checkpoint_is_one_line(tmp_path):
    out = run_cli("eval", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "does not exist" in out.stderr and out.stderr.count("\n") == 1


def test_experiment_report_fills_robust_columns_and_plots(tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text("""
[experiment]
name = "g"
seeds = [0]
n_eval = 128
tables = [ { title = "T", columns = ["natural", "pgd10_linf@0.05", "pgd10_linf@0.2", "average"] } ]
[base]
dataset = "gaussian"
model = "linear"
epochs = 2
batch_size = 64
gaussian = { p = 0.8, eta = 0.3, n = 6, train_size = 512, test_size = 512 }
[[run]]
label = "SGD"
method = "sgd"
[run.paper.T]
natural = 90.0
[[run]]
label = "AT (ε=0.1)"
method = "pgd_at"
at_eps = 0.1
""")
    exp = load_experiment(config, runs_dir=tmp_path / "runs")
    run_experiment(exp, progress=False, log=lambda m: None)
    paths = write_report(exp, tmp_path / "report")
    rows = json.loads(paths["json"].read_text())["T"]
    for row in rows:
        a, b = row["pgd10_linf@0.05"]["mean"], row["pgd10_linf@0.2"]["mean"]
        assert a is not None and b is not None and b <= a <= row["natural"]["mean"]
        assert row["average"]["mean"] == pytest.approx((a + b) / 2)
    assert (tmp_path / "report" / "robust_vs_eps.png").exists() and (tmp_path / "report" / "tradeoff.png").exists()
    assert "![tradeoff](tradeoff.png)" in paths["markdown"].read_text()
