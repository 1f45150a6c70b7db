"""What each training step is made of: the step each method gets, and PGD-AT's attack (its budget, steps, random
start, generator, box and summed loss) and the batch it then trains on."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from samat.empirical.training import steps
from samat.empirical.training.setup import build
from samat.empirical.vocabulary import Method
from tests.empirical.helpers import tiny_cfg, tiny_images


def test_each_method_gets_its_step():
    expected = {"sgd": steps.standard_step, "adam": steps.standard_step, "sam": steps.sam_step,
                "asam": steps.sam_step, "esam": steps.esam_step, "pgd_at": steps.adversarial_step}
    assert {m.value: steps.step_for(m) for m in Method if m.value in expected} == expected


def test_adversarial_training_steps_on_the_pgd_batch_of_its_configuration(monkeypatch):
    setup = build(tiny_cfg(method="pgd_at", at_steps=2, at_eps=4 / 255), tiny_images())
    x, y = setup.data.train_x[:16].float() / 255, setup.data.train_y[:16]
    twin = copy.deepcopy(setup.ctx)  # the same weights and optimizer state, stepped by hand below
    calls, trained = [], []
    real_pgd, real_standard = steps.pgd, steps.standard_step

    def recording_pgd(model, xs, ys, **kw):
        calls.append(kw)
        out = real_pgd(model, xs, ys, **kw)
        calls[-1]["x_adv"] = out
        return out

    def recording_standard(ctx, xs, ys, gen):
        trained.append(xs)
        return real_standard(ctx, xs, ys, gen)

    monkeypatch.setattr(steps, "pgd", recording_pgd)
    monkeypatch.setattr(steps, "standard_step", recording_standard)
    gen = torch.Generator().manual_seed(0)
    setup.model.train()
    steps.adversarial_step(setup.ctx, x, y, gen)
    (kw,) = calls
    cfg = setup.cfg
    assert (kw["norm"], kw["eps"], kw["step_size"], kw["steps"]) == (cfg.at_norm, cfg.at_eps, cfg.pgd_step_size,
                                                                  cfg.at_steps)
    assert kw["random_start"] is True and kw["generator"] is gen and kw["box"] == (0.0, 1.0)
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    target = torch.arange(4)
    assert kw["loss_fn"](logits, target).item() == pytest.approx(F.cross_entropy(logits, target, reduction="sum")
                                                                 .item(), rel=1e-6)  # summed, float32 rounding
    (batch,) = trained
    assert batch is kw["x_adv"] and batch.shape == x.shape and not torch.equal(batch, x)
    # the weights are those of one standard step on that batch, bit for bit
    twin.model.train()
    real_standard(twin, kw["x_adv"], y, None)
    for a, b in zip(setup.model.parameters(), twin.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_step_reports_the_batch_loss_and_hits_before_its_update():
    setup = build(tiny_cfg(method="sgd", lr=0.5), tiny_images())
    x, y = setup.data.train_x[:32].float() / 255, setup.data.train_y[:32]
    setup.model.eval()  # no dropout or batch statistics: the forward is the same before and inside the step
    with torch.no_grad():
        logits = setup.model(x)
    loss, hits = steps.standard_step(setup.ctx, x, y, None)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)  # float32 rounding
    assert hits.item() == int((logits.argmax(dim=1) == y).sum())
    assert 0 < hits.item() < len(y)  # an untrained model: the count tells right from wrong


def test_the_loss_is_taken_in_float32_at_least():
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8)
    loss = steps._cross_entropy(logits.bfloat16(), y)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(F.cross_entropy(logits.bfloat16().float(), y).item(), rel=1e-6)
    assert steps._cross_entropy(logits.double(), y).dtype == torch.float64


@pytest.mark.parametrize(("gamma", "keep"), [(0.5, 8), (0.05, 1)])
def test_esam_takes_its_second_gradient_on_the_examples_whose_loss_rises_most(monkeypatch, gamma, keep):
    setup = build(tiny_cfg(method="esam", esam_gamma=gamma, rho=0.5), tiny_images())
    x, y = setup.data.train_x[:16].float() / 255, setup.data.train_y[:16]
    real_loss, seen = steps._loss, []

    def recording_loss(ctx, xs, ys, reduction="mean"):
        out = real_loss(ctx, xs, ys, reduction)
        seen.append((xs, out[1].detach().float()))
        return out

    monkeypatch.setattr(steps, "_loss", recording_loss)
    setup.model.train()
    steps.esam_step(setup.ctx, x, y, torch.Generator().manual_seed(0))
    (x0, at_w), (x1, at_w_e), (chosen_x, _) = seen
    assert torch.equal(x0, x) and torch.equal(x1, x)
    rise = F.cross_entropy(at_w_e, y, reduction="none") - F.cross_entropy(at_w, y, reduction="none")
    expected = x[torch.topk(rise, keep).indices]
    assert len(chosen_x) == keep  # ceil(gamma * batch)
    assert sorted(map(_row_bytes, chosen_x)) == sorted(map(_row_bytes, expected))


def _row_bytes(t: torch.Tensor) -> bytes:
    return t.numpy().tobytes()


def test_adversarial_training_on_the_non_robust_features_leaves_x1_alone(monkeypatch):
    # the Gaussian model's AT (W eq. 3-4): the attack moves x2..x_{n+1} only, within its l-inf budget
    cfg = tiny_cfg(method="pgd_at", at_eps=0.3, at_steps=3).replace(
        dataset="gaussian", model="linear", at_features="non_robust",
        gaussian={"n": 4, "train_size": 64, "test_size": 64})
    setup = build(cfg)
    x, y = setup.data.train_x[:32], setup.data.train_y[:32]
    trained, real_standard = [], steps.standard_step
    monkeypatch.setattr(steps, "standard_step", lambda ctx, xs, ys, gen: trained.append(xs) or real_standard(
        ctx, xs, ys, gen))
    steps.adversarial_step(setup.ctx, x, y, torch.Generator().manual_seed(0))
    (x_adv,) = trained
    assert x_adv.shape == x.shape
    assert torch.equal(x_adv[:, 0], x[:, 0])
    moved = (x_adv[:, 1:] - x[:, 1:]).abs()
    rounding = 2 * torch.finfo(x.dtype).eps * x.abs().max()  # of x + delta and (x + delta) - x in float32
    assert moved.max() <= 0.3 + rounding and moved.max() > 0.15  # within the budget, and attacked


def test_esam_draws_its_mask_from_the_steps_generator_not_the_global_one():
    """The same generator state gives the same ESAM update whatever torch's global generator holds (the mask is
    reproducible from the run's seed alone); another generator state gives another update."""
    results = []
    for global_seed, step_seed in ((1, 0), (2, 0), (1, 7)):
        setup = build(tiny_cfg(method="esam", rho=0.5), tiny_images())
        x, y = setup.data.train_x[:32].float() / 255, setup.data.train_y[:32]
        setup.model.train()
        torch.manual_seed(global_seed)
        steps.esam_step(setup.ctx, x, y, torch.Generator().manual_seed(step_seed))
        results.append(torch.cat([p.detach().flatten() for p in setup.model.parameters()]))
    same_generator, other_global, other_generator = results
    assert torch.equal(same_generator, other_global)
    assert not torch.equal(same_generator, other_generator)


def test_the_eager_context_calls_the_uncompiled_model_and_keeps_everything_else():
    """What the fast path's partial batches step with: the bare model for every forward (the compiled one would
    recompile at another batch size), the rest of the context unchanged."""
    setup = build(tiny_cfg(method="sam", rho=0.1), tiny_images())
    compiled, attack = torch.nn.Identity(), torch.nn.Identity()  # stand-ins for the compiled modules
    ctx = dataclasses.replace(setup.ctx, forward=compiled, attack_forward=attack)
    eager = ctx.eager()
    assert eager.forward is ctx.model and eager.attack_forward is None and eager.attack_model is ctx.model
    assert ctx.forward is compiled and ctx.attack_model is attack  # the fast context itself is left as it was
    unchanged = [f.name for f in dataclasses.fields(ctx) if f.name not in ("forward", "attack_forward")]
    assert all(getattr(eager, name) is getattr(ctx, name) for name in unchanged)
