"""The training engine: every method learns, SAM's perturbation is what it claims, BatchNorm is left
alone by the second pass, runs resume exactly, and bad configurations are refused in one line."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from empirical.config import TrainConfig
from empirical.data import Dataset
from empirical.experiment import load_experiment, run_experiment, write_report
from empirical.models import build_model
from empirical.optim import ASAM_ETA, WeightPerturbation
from empirical.runs import RunDir
from empirical.train import STEPS, TrainingDiverged, build, running_stats_frozen, train
from theory.errors import ParameterError, SamatError

REPO = Path(__file__).resolve().parents[2]
METHODS = ("sgd", "adam", "sam", "asam", "esam", "pgd_at")


def tiny_images(n_train=256, n_test=64, seed=0) -> Dataset:
    """Random 1x12x12 images whose class is the brightest quadrant (learnable in a few steps)."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        x = torch.randint(0, 120, (n, 1, 12, 12), generator=g, dtype=torch.uint8)
        y = torch.randint(0, 4, (n,), generator=g)
        for k in range(4):
            r, c = divmod(k, 2)
            x[y == k, :, r * 6:(r + 1) * 6, c * 6:(c + 1) * 6] += 120
        return x, y

    (xtr, ytr), (xte, yte) = split(n_train), split(n_test)
    return Dataset("tiny", xtr, ytr, xte, yte, 4, (0.4,), (0.3,), "crop_flip")


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(dataset="tiny", model="small_cnn", epochs=3, batch_size=32, at_eps=8 / 255, at_steps=3, lr=0.05)
    return TrainConfig.from_dict(base | kw)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_lowers_the_loss_on_a_fixed_batch(method):
    setup = build(tiny_cfg(method=method), tiny_images())
    x = setup.data.train_x[:64].float() / 255
    y = setup.data.train_y[:64]
    loss_fn = nn.CrossEntropyLoss()

    def current_loss():
        setup.model.eval()
        with torch.no_grad():
            return loss_fn(setup.model(x), y).item()

    before = current_loss()
    gen = torch.Generator().manual_seed(0)
    for _ in range(25):
        setup.model.train()
        STEPS[method](setup.ctx, x, y, gen)
    assert current_loss() < 0.8 * before


def _params_and_grads(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    nn.functional.cross_entropy(model(x), y).backward()
    return model, x, y


def test_sam_perturbation_has_norm_rho_and_is_undone_exactly():
    model, _, _ = _params_and_grads()
    before = [p.detach().clone() for p in model.parameters()]
    pert = WeightPerturbation(model.parameters(), radius=0.37)
    pert.ascend()
    offset = torch.cat([(p.detach() - b).ravel() for p, b in zip(model.parameters(), before, strict=True)])
    assert torch.linalg.vector_norm(offset).item() == pytest.approx(0.37, rel=1e-5)
    grads = torch.cat([p.grad.ravel() for p in model.parameters()])
    assert torch.nn.functional.cosine_similarity(offset, grads, dim=0).item() == pytest.approx(1.0, abs=1e-5)
    pert.descend()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_asam_perturbation_has_adaptive_norm_rho():
    """ASAM's offset has ||T^-1 e|| = ρ with T = |w| + η (Kwon et al. 2021), not ||e|| = ρ."""
    model, _, _ = _params_and_grads()
    before = [p.detach().clone() for p in model.parameters()]
    pert = WeightPerturbation(model.parameters(), radius=0.5, adaptive=True)
    pert.ascend()
    scaled = torch.cat([((p.detach() - b) / (b.abs() + ASAM_ETA)).ravel()
                        for p, b in zip(model.parameters(), before, strict=True)])
    plain = torch.cat([(p.detach() - b).ravel() for p, b in zip(model.parameters(), before, strict=True)])
    assert torch.linalg.vector_norm(scaled).item() == pytest.approx(0.5, rel=1e-5)
    assert abs(torch.linalg.vector_norm(plain).item() - 0.5) > 1e-3
    pert.descend()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_step_matches_pytorch_optimizer(adaptive):
    """One SAM (ASAM with η = 0) step equals pytorch-optimizer's SAM first_step/second_step."""
    from pytorch_optimizer import SAM

    ours, x, y = _params_and_grads()
    ref = copy.deepcopy(ours)
    for model in (ours, ref):
        model.zero_grad()
    loss = nn.functional.cross_entropy

    opt = torch.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    pert = WeightPerturbation(ours.parameters(), 0.2, adaptive=adaptive, adaptive_eta=0.0)
    loss(ours(x), y).backward()
    pert.ascend()
    opt.zero_grad()
    loss(ours(x), y).backward()
    pert.descend()
    opt.step()

    sam = SAM(ref.parameters(), torch.optim.SGD, rho=0.2, adaptive=adaptive, lr=0.1, momentum=0.9)
    loss(ref(x), y).backward()
    sam.first_step(zero_grad=True)
    loss(ref(x), y).backward()
    sam.second_step(zero_grad=True)
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["sam", "asam", "esam", "pgd_at"])
def test_second_pass_leaves_batchnorm_statistics_alone(method):
    """After a step, BN running statistics are those of the first, clean forward pass only."""
    setup = build(tiny_cfg(method=method), tiny_images())
    x = setup.data.train_x[:32].float() / 255
    y = setup.data.train_y[:32]
    reference = copy.deepcopy(setup.model).train()
    with torch.no_grad():
        reference(x)  # the one tracked pass (for AT it sees the attacked batch instead, so only the count compares)
    STEPS[method](setup.ctx, x, y, torch.Generator().manual_seed(0))
    for (name, a), (_, b) in zip(setup.model.named_buffers(), reference.named_buffers(), strict=True):
        if "num_batches_tracked" in name:
            assert torch.equal(a, b), name  # exactly one tracked forward pass per step
        elif method != "pgd_at" and ("running" in name):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_running_stats_frozen_restores_tracking():
    model = build_model("small_cnn", input_shape=(1, 12, 12), num_classes=4)
    state = copy.deepcopy(model.state_dict())
    with running_stats_frozen(model):
        model(torch.rand(8, 1, 12, 12))
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    model(torch.rand(8, 1, 12, 12))
    assert not torch.equal(model.state_dict()["features.1.running_mean"], state["features.1.running_mean"])


@pytest.mark.parametrize("method", ["sgd", "sam", "esam", "pgd_at"])
def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, method):
    data = tiny_images()
    cfg = tiny_cfg(method=method)
    straight = train(cfg, tmp_path / "straight", progress=False, data=data)
    partial = train(cfg, tmp_path / "resumed", progress=False, stop_after=1, data=data)
    assert partial["status"] == "partial" and RunDir(tmp_path / "resumed").status() == "partial"
    with pytest.raises(SamatError, match="--resume"):
        train(cfg, tmp_path / "resumed", progress=False, data=data)
    resumed = train(cfg, tmp_path / "resumed", resume=True, progress=False, data=data)
    a = torch.load(tmp_path / "straight" / "model.pt")
    b = torch.load(tmp_path / "resumed" / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight["test_acc"] == resumed["test_acc"]
    rows = RunDir(tmp_path / "resumed").read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_resume_refuses_a_different_configuration(tmp_path):
    data = tiny_images()
    train(tiny_cfg(), tmp_path / "run", progress=False, stop_after=1, data=data)
    with pytest.raises(SamatError, match="differs in rho"):
        train(tiny_cfg(rho=0.3), tmp_path / "run", resume=True, progress=False, data=data)


def test_finished_run_is_not_overwritten_unless_asked(tmp_path):
    data = tiny_images()
    cfg = tiny_cfg(epochs=1)
    train(cfg, tmp_path / "run", progress=False, data=data)
    stamp = (tmp_path / "run" / "model.pt").stat().st_mtime_ns
    with pytest.raises(SamatError, match="finished; pass --overwrite"):
        train(cfg, tmp_path / "run", progress=False, data=data)
    with pytest.raises(SamatError, match="finished"):
        train(cfg, tmp_path / "run", resume=True, progress=False, data=data)
    assert (tmp_path / "run" / "model.pt").stat().st_mtime_ns == stamp
    train(cfg, tmp_path / "run", overwrite=True, progress=False, data=data)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    data = tiny_images()
    cfg = tiny_cfg()
    train(cfg, tmp_path / "run", progress=False, stop_after=1, data=data)
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)

    def broken_step(ctx, x, y, gen):
        return torch.tensor(float("nan")), torch.tensor(0)

    monkeypatch.setitem(STEPS, "sgd", broken_step)
    with pytest.raises(TrainingDiverged, match="became nan in epoch 2.*kept the checkpoint of epoch 1"):
        train(cfg, tmp_path / "run", resume=True, progress=False, data=data)
    after = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert after["epoch"] == 1 and all(torch.equal(after["model"][k], saved["model"][k]) for k in saved["model"])
    assert not RunDir(tmp_path / "run").finished


def test_run_directory_holds_config_with_provenance_and_metrics(tmp_path):
    train(tiny_cfg(epochs=2), tmp_path / "run", progress=False, data=tiny_images())
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    assert doc["config"]["seed"] == 0 and doc["config"]["method"] == "sgd"
    assert {"torch", "git", "python", "created"} <= set(doc["provenance"])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(isinstance(r[k], float) for r in rows for k in ("train_loss", "train_acc", "test_acc", "seconds"))


def test_learning_rate_schedule_is_piecewise_per_iteration():
    cfg = tiny_cfg(epochs=100)
    assert cfg.lr_factor(0.0) == 1 and cfg.lr_factor(0.7499) == 1
    assert cfg.lr_factor(0.75) == pytest.approx(0.1) and cfg.lr_factor(0.9) == pytest.approx(0.01)


@pytest.mark.parametrize(("change", "name", "valid"), [
    ({"method": "sgdd"}, "method", "one of sgd, adam, sam, asam, esam, pgd_at"),
    ({"rho": -0.1}, "rho", ">= 0"),
    ({"at_eps": "-8/255"}, "at_eps", ">= 0"),
    ({"epochs": 0}, "epochs", "integer >= 1"),
    ({"at_norm": "l3"}, "at_norm", "one of linf, l2"),
    ({"bogus": 1}, "config key", "one of dataset"),
])
def test_config_validation_names_the_parameter(change, name, valid):
    with pytest.raises(ParameterError) as err:
        tiny_cfg(**change)
    assert str(err.value).startswith(f"{name}=") and valid in str(err.value)


def test_eps_strings_are_parsed_once_at_the_edge():
    assert tiny_cfg(at_eps="8/255").at_eps == pytest.approx(8 / 255)
    assert tiny_cfg(at_eps="8/255", at_steps=10).pgd_step == pytest.approx(2.5 * 8 / 255 / 10)


@pytest.mark.parametrize(("args", "needle"), [
    (["--method", "foo"], "method=foo is invalid: method must be one of sgd"),
    (["--rho", "-1"], "rho=-1.0 is invalid: rho must be >= 0"),
    (["--set", "nonsense=1"], "config key=nonsense is invalid"),
])
def test_train_cli_bad_input_is_one_line(tmp_path, args, needle):
    out = subprocess.run([sys.executable, "-m", "samat", "train", "--runs-dir", str(tmp_path), *args],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and needle in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_experiment_runs_grid_skips_finished_and_reports(tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text("""
[experiment]
name = "g"
seeds = [0, 1]
tables = [ { title = "Paper T", columns = ["natural"] } ]
[base]
dataset = "gaussian"
model = "linear"
epochs = 2
batch_size = 64
gaussian = { p = 0.8, eta = 0.3, n = 6, train_size = 512, test_size = 512 }
[[run]]
label = "SGD"
method = "sgd"
[run.paper."Paper T"]
natural = 91.5
[[run]]
label = "AT (ε=0.1)"
method = "pgd_at"
at_eps = 0.1
at_features = "non_robust"
""")
    exp = load_experiment(config, runs_dir=tmp_path / "runs")
    assert len(exp.runs) == 4
    first = run_experiment(exp, progress=False, log=lambda m: None)
    assert all(o["status"] == "trained" for o in first)
    second = run_experiment(exp, progress=False, log=lambda m: None)
    assert all(o["status"] == "skipped (finished)" for o in second)
    paths = write_report(exp, tmp_path / "report")
    md = paths["markdown"].read_text()
    assert "| SGD |" in md and "91.5" in md and "2/2" in md
    csv_text = paths["csv"].read_text().splitlines()
    assert csv_text[0] == "table,label,column,mean,std,n,paper" and len(csv_text) == 3
