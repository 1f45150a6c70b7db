"""The training engine: every method learns, SAM's perturbation is what it claims, BatchNorm is left
alone by the second pass, runs resume exactly, and bad configurations are refused in one line."""

from __future__ import annotations

import copy
import hashlib
import json
import re

import pytest
import torch
from torch import nn

from samat.core.errors import ParameterError, SamatError
from samat.empirical.experiments.grid import load_experiment
from samat.empirical.experiments.report.tables import write_report
from samat.empirical.experiments.runner import run_experiment
from samat.empirical.models import build_model
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.loop import TrainingDiverged, train
from samat.empirical.training.optimizers import ASAM_ETA, WeightPerturbation
from samat.empirical.training.runs import RunDir
from samat.empirical.training.setup import build
from samat.empirical.training.steps import STEPS, running_stats_frozen
from tests.empirical.helpers import SGD_RUN, run_cli, tiny_cfg, tiny_images, write_grid

METHODS = ("sgd", "adam", "sam", "asam", "esam", "pgd_at")


@pytest.mark.parametrize("method", METHODS)
def test_each_method_lowers_the_loss_on_a_fixed_batch(method, monkeypatch):
    setup = build(tiny_cfg(method=method), tiny_images())
    x = setup.data.train_x[:64].float() / 255
    y = setup.data.train_y[:64]
    loss_fn = nn.CrossEntropyLoss()
    climbs = _record_ascents(setup, x, y, monkeypatch) if setup.ctx.perturbation is not None else []

    def current_loss():
        setup.model.eval()
        with torch.no_grad():
            return loss_fn(setup.model(x), y).item()

    before = current_loss()
    gen = torch.Generator().manual_seed(0)
    for _ in range(25):
        setup.model.train()
        STEPS[method](setup.ctx, x, y, gen)
    # 25 steps on one fixed batch of 64 all but memorize it: after/before measured <= 6e-5 for every method over
    # 6 data and weight seeds. 1e-2 keeps a 100-fold margin, and still fails a step that merely halves the loss.
    assert current_loss() < 1e-2 * before
    # A descent in place of SAM's ascent lowers the loss too: the SAM family must have climbed at every step.
    assert len(climbs) == (25 if setup.ctx.perturbation is not None else 0)
    for lower, higher in climbs:
        assert higher > lower


def _record_ascents(setup, x, y, monkeypatch) -> list[tuple[float, float]]:
    """Wrap the perturbation's ascent: at each step, check that the offset e is the method's ascent direction with
    radius ρ, measured against a gradient of the batch loss taken here, independently of the step's own backward
    pass; record the batch loss at w and at w + e (batch statistics, running ones left alone)."""
    pert, model, cfg = setup.ctx.perturbation, setup.model, setup.cfg
    ascend, climbs = pert.ascend, []

    def batch_loss():
        with running_stats_frozen(model):
            return nn.functional.cross_entropy(model(x), y)

    def checked_ascend(generator=None):
        params = pert.params
        w = [p.detach().clone() for p in params]
        g = torch.autograd.grad(batch_loss(), params)
        with torch.no_grad():
            lower = batch_loss().item()
            ascend(generator)
            higher = batch_loss().item()
        climbs.append((lower, higher))
        e = torch.cat([(p.detach() - b).ravel() for p, b in zip(params, w, strict=True)]).double()
        g = torch.cat([t.ravel() for t in g]).double()
        t = torch.cat([(b.abs() + ASAM_ETA).ravel() for b in w]).double() if pert.adaptive else torch.ones_like(g)
        kept = (e != 0).double() if pert.keep_probability < 1 else torch.ones_like(g)
        # SAM: e = ρ g / ||g||; ASAM: T⁻¹ e = ρ T g / ||T g||; ESAM: SAM's e on the kept weights, over β.
        direction = t * g * kept
        expected_norm = cfg.rho * (direction.norm() / (t * g).norm()).item() / pert.keep_probability
        # e carries the float32 roundings of its formula and of w + e (a few u relative to ||w|| + ρ, as in the
        # perturbation tests above: <= 1e-5 relative), and this gradient differs from the step's by reduction
        # order only (float32, ~u per term): 1e-4 relative and 1 - cos <= 1e-6 are far below the difference a
        # wrong sign (cos = -1) or a missing rescaling (1/β = 1.67) makes.
        assert (e / t).norm().item() == pytest.approx(expected_norm, rel=1e-4)
        cosine = nn.functional.cosine_similarity(e / t, direction, dim=0).item()
        assert cosine == pytest.approx(1.0, abs=1e-6)

    monkeypatch.setattr(pert, "ascend", checked_ascend)
    return climbs


def _params_and_grads(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    nn.functional.cross_entropy(model(x), y).backward()
    return model, x, y


# Rounding bounds for the perturbation tests: float32, u = 2^-24 = 6.0e-8; the model has 66 weights (largest
# tensor 35) with ||w|| = 1.94.


def test_sam_perturbation_has_norm_rho_and_is_undone_exactly():
    model, _, _ = _params_and_grads()
    before = [p.detach().clone() for p in model.parameters()]
    pert = WeightPerturbation(model.parameters(), rho=0.37)
    pert.ascend()
    offset = torch.cat([(p.detach() - b).ravel() for p, b in zip(model.parameters(), before, strict=True)])
    # ||g|| as the norm of per-tensor norms (<= 35 squares, then 4): 41u; rho/||g|| and g * factor: 2u; w + e
    # rounded by u|w + e| per weight: u (||w|| + rho) / rho = 6u of rho; the test's p - b and 66-term norm: 67u.
    # Sum 116u = 6.9e-6 < 1e-5 (measured: 1.6u).
    assert torch.linalg.vector_norm(offset).item() == pytest.approx(0.37, rel=1e-5)
    grads = torch.cat([p.grad.ravel() for p in model.parameters()])
    # e's direction differs from g's only by the roundings of g * factor and of w + e: an angle of at most
    # u (1 + (||w|| + rho) / rho) = 7u, so 1 - cos <= (7u)^2 / 2 = 9e-14; the cosine is taken in float64
    # (error ~1e-14) because float32's own worst case, 3 * 66u = 1.2e-5, would hide that.
    cosine = torch.nn.functional.cosine_similarity(offset.double(), grads.double(), dim=0).item()
    assert cosine == pytest.approx(1.0, abs=1e-12)
    pert.restore()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_asam_perturbation_has_adaptive_norm_rho():
    """ASAM's offset has ||T^-1 e|| = ρ with T = |w| + η (Kwon et al. 2021), not ||e|| = ρ."""
    model, _, _ = _params_and_grads()
    before = [p.detach().clone() for p in model.parameters()]
    pert = WeightPerturbation(model.parameters(), rho=0.5, adaptive=True)
    pert.ascend()
    scaled = torch.cat([((p.detach() - b) / (b.abs() + ASAM_ETA)).ravel()
                        for p, b in zip(model.parameters(), before, strict=True)])
    plain = torch.cat([(p.detach() - b).ravel() for p, b in zip(model.parameters(), before, strict=True)])
    # T, T g, the norms (41u), the factor and two products: 45u; w + e rounded by u|w + e| per weight is at most
    # u (1 + |e / T|) in these scaled units (|w| <= T): u (sqrt(66) + rho) / rho = 17u of rho; the test's division,
    # subtraction and 66-term norm: 68u. Sum 130u = 7.7e-6 < 1e-5 (measured: 2u).
    assert torch.linalg.vector_norm(scaled).item() == pytest.approx(0.5, rel=1e-5)
    assert abs(torch.linalg.vector_norm(plain).item() - 0.5) > 1e-3
    pert.restore()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_esam_perturbation_is_sams_on_a_random_fraction_over_keep_probability():
    """ESAM's offset (Du et al. 2022): SAM's ρ g / ||g|| on the weights a Bernoulli(β) mask keeps, divided by β (so
    that its expectation is SAM's); the mask comes from the generator passed to ``ascend``."""
    beta, u = 0.6, 2.0**-24
    model, _, _ = _params_and_grads()
    before = torch.cat([p.detach().ravel() for p in model.parameters()])

    def offset(pert, generator=None):
        pert.ascend(generator)
        e = torch.cat([p.detach().ravel() for p in model.parameters()]) - before
        pert.restore()
        return e

    e_sam = offset(WeightPerturbation(model.parameters(), rho=0.37))
    esam = WeightPerturbation(model.parameters(), rho=0.37, keep_probability=beta)
    e = offset(esam, torch.Generator().manual_seed(0))
    kept = e != 0
    # 66 weights kept with probability 0.6: 39.6 expected, standard deviation 4.0; 5 of them either way.
    assert 19 <= int(kept.sum()) <= 60
    # Each offset carries the roundings of its formula (g * factor, the mask over β: 2u relative) and of w + e
    # and of the test's subtraction (u |w + e| each): 8u (|w| + |e|) bounds both sides' together.
    tolerance = 8 * u * (before.abs() + e.abs())
    assert ((e - e_sam / beta).abs() <= tolerance)[kept].all()
    assert (e_sam[kept].abs() * (1 / beta - 1) > tolerance[kept]).any()  # the test can see a missing 1/β
    assert torch.equal(e, offset(esam, torch.Generator().manual_seed(0)))
    assert not torch.equal(e, offset(esam, torch.Generator().manual_seed(1)))


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
    pert.restore()
    opt.step()

    sam = SAM(ref.parameters(), torch.optim.SGD, rho=0.2, adaptive=adaptive, lr=0.1, momentum=0.9)
    loss(ref(x), y).backward()
    sam.first_step(zero_grad=True)
    loss(ref(x), y).backward()
    sam.second_step(zero_grad=True)
    # The same formulas; only the global gradient norm is summed in another order (norm of per-tensor norms vs
    # root of summed squares), each within 41u, so the ascents differ by ||de|| <= 82u rho = 9.8e-7. The second
    # gradients then differ by <= ||H|| ||de|| (||H|| = 0.80 here, from the float64 Hessian), and the first SGD
    # step moves each weight by lr times that: <= 0.1 * 0.80 * 9.8e-7 = 7.8e-8 < atol. rtol = 1e-5 = 168u covers
    # the few roundings of w - lr g relative to w (measured: identical).
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
    assert [r["round"] for r in rows] == [1, 2, 3]


def test_the_run_records_torchs_threads_of_each_round(tmp_path):
    """Float results on a CPU depend on torch's thread count (a convolution's sums are split across threads), so
    each round's row says how many there were, and final.json every count the rounds used."""
    data, cfg, before = tiny_images(), tiny_cfg(), torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        train(cfg, tmp_path / "run", progress=False, stop_after=1, data=data)
        torch.set_num_threads(2)
        train(cfg, tmp_path / "run", resume=True, progress=False, data=data)
    finally:
        torch.set_num_threads(before)
    run = RunDir(tmp_path / "run")
    assert [r["torch_threads"] for r in run.read_metrics()] == [1, 2, 2]
    assert run.read_final()["torch_threads"] == [1, 2]


def test_each_epoch_draws_its_own_shuffle_augmentation_and_esam_masks(tmp_path, monkeypatch):
    """The epochs of one run differ in batch order, augmentation and ESAM's masks (a generator seeded by the seed
    alone would repeat them every epoch, and the resume tests above, comparing two runs with the same flaw, would
    not notice); two runs with the same seed repeat each other exactly."""
    data = tiny_images(n_train=64, n_test=16)
    cfg = tiny_cfg(method="esam", epochs=2, augment="crop_flip")  # 2 steps of 32 per epoch
    steps: list[dict] = []  # per step of the current run: its batch and the weights ESAM moved
    ascend, esam = WeightPerturbation.ascend, STEPS["esam"]

    def recording_ascend(self, generator=None):
        before = [p.detach().clone() for p in self.params]
        ascend(self, generator)
        steps[-1]["moved"] = torch.cat([(p.detach() != b).ravel() for p, b in zip(self.params, before, strict=True)])

    def recording_step(ctx, x, y, gen):
        steps.append({"x": x.clone(), "y": y.clone()})
        return esam(ctx, x, y, gen)

    monkeypatch.setattr(WeightPerturbation, "ascend", recording_ascend)
    monkeypatch.setitem(STEPS, "esam", recording_step)
    runs = []
    for name in ("first", "again"):
        steps.clear()
        train(cfg, tmp_path / name, progress=False, data=data)
        runs.append([dict(step) for step in steps])
    first, again = runs
    assert len(first) == 4
    for a, b in zip(first, again, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in ("x", "y", "moved"))
    labels = [torch.cat([s["y"] for s in first[i:i + 2]]) for i in (0, 2)]
    assert torch.equal(labels[0].sort().values, labels[1].sort().values)  # one pass over the same data...
    assert not torch.equal(labels[0], labels[1])  # ...in another order
    # The same 64 images either way; augmented again, they are another set (a repeated crop and flip per image
    # would give the same set in another order).
    images = [{s["x"][j].numpy().tobytes() for s in first[i:i + 2] for j in range(len(s["x"]))} for i in (0, 2)]
    assert images[0] != images[1]
    # ESAM moves a fraction β = 0.6 of the weights; two independent masks agree on 0.6² + 0.4² = 52% of them, the
    # same mask on all (but the few whose offset rounds away). Over the small CNN's 32,244 weights the standard
    # deviation of either share is below 0.3%: 0.75 lies dozens of them from both.
    moved = [first[i]["moved"] for i in (0, 2)]
    assert all(0.5 < m.double().mean() < 0.7 for m in moved)
    assert (moved[0] == moved[1]).double().mean() < 0.75


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
    weights = torch.load(tmp_path / "run" / "model.pt")
    torch.save({k: torch.zeros_like(v) for k, v in weights.items()}, tmp_path / "run" / "model.pt")
    again = train(cfg, tmp_path / "run", overwrite=True, progress=False, data=data)
    # Retrained from scratch: the weights of the same seed again (not the zeros left in the folder), one epoch's
    # metrics (not appended to the old ones), and a summary that records the new weights.
    retrained = torch.load(tmp_path / "run" / "model.pt")
    assert retrained.keys() == weights.keys() and all(torch.equal(retrained[k], weights[k]) for k in weights)
    assert again["status"] == "finished" and [r["round"] for r in RunDir(tmp_path / "run").read_metrics()] == [1]
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert final["provenance"]["inputs"]["weights"]["sha256"] == hashlib.sha256(
        (tmp_path / "run" / "model.pt").read_bytes()).hexdigest()


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
    assert after["round"] == 1 and all(torch.equal(after["model"][k], saved["model"][k]) for k in saved["model"])
    assert not RunDir(tmp_path / "run").finished


def test_weights_that_diverge_never_finish_a_run_nor_reach_a_kept_checkpoint(tmp_path):
    """lr = 1e6 with one step per epoch: the losses stay finite (each is computed before its step) while the weights
    overflow. The run finished, model.pt held inf, and a later NaN loss said it "kept the checkpoint of epoch 1",
    which was already non-finite."""
    run = RunDir(tmp_path / "run")
    with pytest.raises(TrainingDiverged, match="became non-finite") as err:
        train(tiny_cfg(lr=1e6, epochs=3, batch_size=256), run.path, progress=False, data=tiny_images())
    assert not run.finished and not run.weights.exists()
    # The overflow reaches the BatchNorm statistics in epoch 3 (1 and 2 threads alike); what the run says it kept
    # is the last checkpoint, epoch 2's, and its weights are finite.
    assert re.search(r"in epoch 3 .*kept the checkpoint of epoch 2:", str(err.value)), str(err.value)
    kept = run.read_checkpoint()
    assert kept["round"] == 2
    assert all(torch.isfinite(t).all() for t in kept["model"].values() if t.is_floating_point())


def test_weights_made_nan_by_a_step_with_a_finite_loss_stop_the_run_before_the_checkpoint(tmp_path, monkeypatch):
    data = tiny_images()
    cfg = tiny_cfg()
    train(cfg, tmp_path / "run", progress=False, stop_after=1, data=data)
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    step, calls = STEPS["sgd"], []

    def poisoning_step(ctx, x, y, gen):  # the last step of epoch 2 (8 steps an epoch) leaves a NaN weight
        loss, correct = step(ctx, x, y, gen)
        calls.append(1)
        if len(calls) == 8:
            with torch.no_grad():
                next(ctx.model.parameters()).view(-1)[0] = float("nan")
        return loss, correct

    monkeypatch.setitem(STEPS, "sgd", poisoning_step)
    with pytest.raises(TrainingDiverged, match=r"the weights became non-finite \(NaN or inf in [\w.]+\) in epoch 2 "
                                               r"of .*; stopped, and kept the checkpoint of epoch 1: lower"):
        train(cfg, tmp_path / "run", resume=True, progress=False, data=data)
    after = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert after["round"] == 1 and all(torch.equal(after["model"][k], saved["model"][k]) for k in saved["model"])
    # a checkpoint with such weights (written by an earlier version) is not resumed
    after["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                      for k, v in after["model"].items()}
    torch.save(after, tmp_path / "run" / "checkpoint.pt")
    monkeypatch.setitem(STEPS, "sgd", step)
    with pytest.raises(SamatError, match="checkpoint.pt holds non-finite weights"):
        train(cfg, tmp_path / "run", resume=True, progress=False, data=data)


def test_run_directory_holds_config_with_provenance_and_metrics(tmp_path):
    train(tiny_cfg(epochs=2), tmp_path / "run", progress=False, data=tiny_images())
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    assert doc["config"]["seed"] == 0 and doc["config"]["method"] == "sgd"
    assert {"packages", "git", "python", "created", "device"} <= set(doc["provenance"])
    assert "torch" in doc["provenance"]["packages"]
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    weights = final["provenance"]["inputs"]["weights"]
    assert weights["sha256"] == hashlib.sha256((tmp_path / "run" / "model.pt").read_bytes()).hexdigest()
    assert final["provenance"]["inputs"]["config"] == json.loads(json.dumps(tiny_cfg(epochs=2).identity()))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2]
    assert all(isinstance(r[k], float) for r in rows for k in ("train_loss", "train_acc", "test_acc", "seconds"))


def test_learning_rate_schedule_is_piecewise_per_iteration(tmp_path, monkeypatch):
    cfg = tiny_cfg(epochs=100)
    assert cfg.lr_factor(0.0) == 1 and cfg.lr_factor(0.7499) == 1
    assert cfg.lr_factor(0.75) == pytest.approx(0.1) and cfg.lr_factor(0.9) == pytest.approx(0.01)
    # In a run the rate changes at the step, not at the next epoch: 2 epochs of 256 / 32 = 8 steps, milestones at
    # 30% and 60% of the 16 steps, so steps 5 and 10 (from 0) are the first decayed ones, inside epochs 1 and 2.
    seen, sgd = [], STEPS["sgd"]

    def recording_step(ctx, x, y, gen):
        seen.append(ctx.optimizer.param_groups[0]["lr"])
        return sgd(ctx, x, y, gen)

    monkeypatch.setitem(STEPS, "sgd", recording_step)
    run = train(tiny_cfg(epochs=2, lr_milestones=[0.3, 0.6]), tmp_path / "run", progress=False, data=tiny_images())
    # lr * 0.1^k against lr * 0.1 * ... : a few float64 roundings apart (~1e-16 relative)
    assert seen == pytest.approx([0.05] * 5 + [0.005] * 5 + [0.0005] * 6, rel=1e-12)
    # The history records each epoch's last rate; a per-epoch schedule would have recorded 0.05 for epoch 1.
    assert [row["lr"] for row in run["history"]] == pytest.approx([0.005, 0.0005], rel=1e-12)


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


@pytest.mark.parametrize(("change", "name", "valid"), [
    ({"rho": float("inf")}, "rho", ">= 0 and finite"),
    ({"rho": "inf"}, "rho", ">= 0 and finite"),
    ({"weight_decay": float("inf")}, "weight_decay", ">= 0 and finite"),
    ({"at_eps": "inf"}, "at_eps", ">= 0 and finite"),
    ({"at_step_size": float("inf")}, "at_step_size", "> 0 and finite"),
    ({"lr": float("nan")}, "lr", "> 0 and finite"),
    ({"rho": None}, "rho", "a number"),
    ({"lr_milestones": 0.5}, "lr_milestones", "a list of fractions in (0, 1)"),
    ({"lr_milestones": [0.5, 1.0]}, "lr_milestones", "fractions in (0, 1)"),
    ({"gaussian": 3}, "gaussian", "a table with keys among p, eta, n, train_size, test_size, seed"),
    ({"gaussian": {"q": 1}}, "gaussian", "a table with keys among p, eta"),
    ({"gaussian": {"p": 2}}, "gaussian.p", "in (0.5, 1)"),
    ({"gaussian": {"n": 2.5}}, "gaussian.n", "an integer >= 1"),
    ({"data_dir": 5}, "data_dir", "a folder (text) or null"),
    ({"data_dir": ""}, "data_dir", "a folder (text) or null"),
    ({"device": 0}, "device", "auto, cpu, cuda or cuda:N"),
    ({"bf16": "maybe"}, "bf16", "true, false or null"),
    ({"channels_last": 1}, "channels_last", "true, false or null"),
    ({"compile": "fast"}, "compile", "true, false, null (automatic) or a backend: inductor, aot_eager, eager"),
    ({"cuda_graph": "yes"}, "cuda_graph", "true, false or null"),
    ({"augment": "rotate"}, "augment", "one of none, crop, crop_flip"),
    ({"model": "resnet50"}, "model", "one of prn18, wrn28_10, deit_tiny, small_cnn, linear"),
    ({"dataset": 5}, "dataset", "a dataset name"),
    ({"dataset": "gaussian", "model": "linear", "augment": "crop"}, "augment", "none or null for the gaussian"),
    ({"at_features": "non_robust"}, "at_features", "'all' for image data"),
])
def test_config_refuses_infinite_and_mistyped_values(change, name, valid):
    """Checked when the configuration is made, before a run directory exists: nothing reaches the loop."""
    with pytest.raises(ParameterError) as err:
        tiny_cfg(**change)
    assert str(err.value).startswith(f"{name}=") and valid in str(err.value) and "\n" not in str(err.value)


def test_config_accepts_paths_numpy_integers_and_dataset_spellings(tmp_path):
    import numpy as np

    cfg = tiny_cfg(data_dir=tmp_path, epochs=np.int64(2), dataset="Fashion-MNIST", bf16=False, channels_last=None)
    assert cfg.data_dir == str(tmp_path) and type(cfg.epochs) is int and cfg.dataset == "fashion_mnist"
    saved = json.loads(json.dumps(cfg.to_dict()))  # serializable as it is saved in config.json, and read back
    assert TrainConfig.from_dict(saved) == cfg and saved["data_dir"] == str(tmp_path) and saved["epochs"] == 2


def test_eps_strings_are_parsed_once_at_the_edge():
    assert tiny_cfg(at_eps="8/255").at_eps == pytest.approx(8 / 255)
    assert tiny_cfg(at_eps="8/255", at_steps=10).pgd_step_size == pytest.approx(2.5 * 8 / 255 / 10)


@pytest.mark.parametrize(("args", "needle"), [
    (["--method", "foo"], "method=foo is invalid: method must be one of sgd"),
    (["--rho", "-1"], "rho=-1.0 is invalid: rho must be >= 0"),
    (["--set", "nonsense=1"], "config key=nonsense is invalid"),
])
def test_train_cli_bad_input_is_one_line(tmp_path, args, needle):
    out = run_cli("train", "--runs-dir", str(tmp_path), *args, timeout=120)
    assert out.returncode == 2 and needle in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (["--method", "sam", "--set", "rho=inf"], "rho=inf is invalid: rho must be >= 0 and finite"),
    (["--set", "lr_milestones=0.5"], "lr_milestones=0.5 is invalid"),
    (["--set", "gaussian=3"], "gaussian=3 is invalid"),
    (["--dataset", "gaussian", "--model", "linear", "--set", 'gaussian={"q": 1}'], "gaussian=q is invalid"),
    (["--set", "data_dir=5"], "data_dir=5 is invalid"),
    (["--set", "bf16=maybe"], "bf16=maybe is invalid"),
    (["--dataset", "nonsense"], "dataset=nonsense is invalid: dataset must be one of cifar10"),
])
def test_train_cli_refuses_bad_values_before_making_the_run_directory(tmp_path, args, needle):
    runs = tmp_path / "runs"
    out = run_cli("train", "--runs-dir", str(runs), "--no-progress", *args, timeout=120)
    assert out.returncode == 2 and needle in out.stderr and "Traceback" not in out.stderr
    assert [line for line in out.stderr.splitlines() if "error" in line] == out.stderr.splitlines()[-1:]
    assert not runs.exists()


def test_train_cli_runs_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    out = run_cli("train", "--runs-dir", str(tmp_path / "file"), "--no-progress", "--dataset", "gaussian",
                  "--model", "linear", "--epochs", "1", timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines()[-1].startswith("samat train: error: --runs-dir")
    assert "is a file, not a folder" in out.stderr


def test_data_that_cannot_load_leaves_a_finished_run_alone_even_with_overwrite(tmp_path):
    train(tiny_cfg(epochs=1), tmp_path / "run", progress=False, data=tiny_images())
    missing = tiny_cfg(epochs=1, dataset="cifar10", data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(SamatError, match="CIFAR-10 not found"):
        train(missing, tmp_path / "run", overwrite=True, progress=False)
    assert RunDir(tmp_path / "run").finished


def test_experiment_runs_grid_skips_finished_and_reports(tmp_path):
    config = write_grid(tmp_path, """
name = "g"
seeds = [0, 1]
tables = [ { title = "Paper T", columns = ["natural"] } ]
""", SGD_RUN + """[run.paper."Paper T"]
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
    assert csv_text[0] == "table,label,column,title,mean,std,n,paper" and len(csv_text) == 3


@pytest.mark.parametrize(("content", "suffix", "needle"), [
    ("[1, 2]", ".json", "must hold a table of settings, not a list"),
    ("{bad", ".json", "is not valid JSON"),
    ("x = ", ".toml", "is not valid TOML"),
])
def test_train_config_file_that_cannot_be_read_is_one_line(tmp_path, capsys, content, suffix, needle):
    from samat.cli.main import main

    path = tmp_path / f"config{suffix}"
    path.write_text(content)
    assert main(["train", "--config", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and not (tmp_path / "runs").exists()
