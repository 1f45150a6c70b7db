"""The options CUDA runs take by default, on the CPU where torch allows them: bf16 autocast, channels_last and
torch.compile (the aot_eager backend: the graph capture of inductor without its minutes of code generation), in a
training step and in the training loop, against a float64 reference.

Tolerances. channels_last only reorders the float32 sums of a convolution, so its step is as close to the float64
step as the contiguous float32 step is, within the factor 4 of tests/empirical/training/test_fast.py (another summation
order has an error of the same bound, not of the same value). bf16 autocast rounds both operands of every
convolution and linear layer to 8 significant bits, a relative error of at most u = 2**-8 each, and accumulates in
float32. The small CNN has 5 such layers (3 convolutions, 2 linear): the forward pass rounds 10 operands, the
backward pass 20 more (each layer's input gradient and weight gradient are products of two rounded operands). To
first order the errors add along that path, so the loss is within 10u and the step's update within 30u = 0.117 of
float64, relative and in norm (measured: 1.4e-4 and 0.058 for SGD, 0.067 for SAM). A wrong step is further off: an
update skipped or doubled by 1.0, SAM's update taken as SGD's by 0.44, SAM at half its radius by 0.25 (measured).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from samat.empirical.training.loop import train
from samat.empirical.training.runs import RunDir
from samat.empirical.training.setup import Setup, build
from tests.empirical.helpers import tiny_cfg, tiny_images

BF16_U = 2.0**-8  # unit roundoff of bfloat16 (8 significant bits)
FORWARD_ROUNDINGS, STEP_ROUNDINGS = 10, 30  # see the module's docstring
ERROR_RATIO = 4  # channels_last against contiguous float32 (tests/empirical/training/test_fast.py)


@pytest.fixture(scope="module")
def data():
    return tiny_images()


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _step(setup: Setup, data, dtype=torch.float32, batches: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The losses of ``batches`` training steps from the setup's initial weights, and the weights' total change,
    in float64; the inputs laid out as the training loop lays them out."""
    if dtype == torch.float64:
        setup.model.double()
    start = [p.detach().double().clone() for p in setup.model.parameters()]
    gen = torch.Generator().manual_seed(0)
    setup.model.train()
    losses = []
    for k in range(batches):
        x, y = data.train_x[32 * k:32 * (k + 1)].to(dtype) / 255, data.train_y[32 * k:32 * (k + 1)]
        if setup.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        losses.append(setup.step(setup.ctx, x, y, gen)[0].double())
    change = torch.cat([(p.detach().double() - s).ravel() for p, s in zip(setup.model.parameters(), start,
                                                                          strict=True)])
    return torch.stack(losses), change


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("method", ["sgd", "sam"])  # one pass; two passes, the second at the perturbed weights
def test_channels_last_steps_as_the_contiguous_step_to_float32_rounding(data, method):
    cfg = tiny_cfg(method=method)
    reference = _step(build(cfg, data), data, torch.float64, batches=3)
    contiguous = _step(build(cfg.replace(channels_last=False), data), data, batches=3)
    setup = build(cfg.replace(channels_last=True), data)
    conv = setup.model.features[0]
    assert setup.channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)
    tested = _step(setup, data, batches=3)
    for i, what in enumerate(("losses", "weight change")):
        delta = float((contiguous[i] - reference[i]).abs().max())
        allowed = ERROR_RATIO * max(delta, 2.0**-24 * float(reference[i].abs().max()))
        assert float((tested[i] - reference[i]).abs().max()) <= allowed, what
        assert allowed < 1e-3 * float(reference[i].abs().max())  # far below a wrong step's error


CUDA_DEFAULTS = {"bf16": True, "channels_last": True, "compile": "aot_eager"}  # what a CUDA run takes (but inductor)


@pytest.mark.parametrize(("method", "options"), [("sgd", {"bf16": True}), ("sam", {"bf16": True}),
                                                 ("sam", CUDA_DEFAULTS)], ids=["sgd-bf16", "sam-bf16", "sam-all"])
def test_bf16_autocast_step_is_the_float64_step_to_bf16_rounding(fresh_dynamo, data, method, options):
    cfg = tiny_cfg(method=method)
    ref_loss, ref_change = _step(build(cfg, data), data, torch.float64)
    setup = build(cfg.replace(**options), data)
    assert setup.bf16 and setup.compile_backend == options.get("compile")
    with setup.ctx.autocast():  # the step's passes really run in bf16
        assert setup.ctx.forward(data.train_x[:2].float() / 255).dtype == torch.bfloat16
    loss, change = _step(setup, data)
    assert float((loss - ref_loss).abs() / ref_loss) <= FORWARD_ROUNDINGS * BF16_U
    assert _relative(change, ref_change) <= STEP_ROUNDINGS * BF16_U < 0.5  # a wrong step is off by 1.0
    assert float((loss - ref_loss).abs() / ref_loss) > 2.0**-24  # not the float32 step: bf16 did round


# The default CUDA configuration (bf16 autocast, channels_last, compiled, and on CUDA each step a CUDA graph) over
# several steps, for ST, SAM, ESAM and PGD-AT: run on the CPU here (aot_eager, no graph), on CUDA in
# tests/empirical/training/test_fast.py (inductor and the graph) with the same function.
DEFAULT_METHODS = ("sgd", "sam", "esam", "pgd_at")
# Two discontinuities no rounding bound covers, and how these tests stay clear of them (the float32 tests of
# test_fast.py, TF32 off, check both as they are, where a tie is far below a float32 rounding):
# - ESAM keeps the batch's sharpest fraction gamma for its second pass; examples whose sharpness differs by less
#   than bf16's rounding swap sides of the cut-off. gamma = 1 keeps the whole batch (its masks and second pass
#   still run).
# - PGD's l-inf steps follow the sign of the input gradient, which bf16's rounding flips where it is near zero.
#   However the attack's passes round, x_adv stays within eps of x, so it differs from the float64 attack's by at
#   most 2 eps per pixel: in norm, 2 eps sqrt(d) against the u |x| that bf16 already rounds the first layer's input
#   by, that is ceil(2 eps sqrt(d) / (u |x|)) more roundings of that operand (5 for eps = 1/255 on the tiny images,
#   whose pixels' root mean square is about 0.45); eps = 1/255 keeps the bound below a step's size.
SMOOTH = {"esam": {"esam_gamma": 1.0}, "pgd_at": {"at_eps": 1 / 255}}


def steps_within_bf16_rounding(cfg, data, device: str, batches: int = 2) -> Setup:
    """``cfg`` (the default configuration on ``device``) trained ``batches`` full batches from the same initial
    weights as the eager float64 step: the first loss within 10u (plus the attack's share, see SMOOTH) and the
    weights' change within 30u of the float64 step's change per step (see the module's docstring), summed over
    the steps (the second step's gradient is taken at weights off by the first step's error, a second-order
    effect). Returns the setup."""
    reference = build(cfg.replace(bf16=False, channels_last=False, compile=False, cuda_graph=False), data)
    ref_losses, ref_changes = _steps(reference, data, torch.float64, batches)
    setup = build(cfg, data)
    losses, changes = _steps(setup, data, torch.float32, batches)
    attack = 0
    if cfg.method.adversarial:
        inputs = [data.train_x[32 * k:32 * (k + 1)].double() / 255 for k in range(batches)]
        attack = max(math.ceil(2 * cfg.at_eps * x.numel() ** 0.5 / (BF16_U * float(x.norm()))) for x in inputs)
    updates = [ref_changes[0]] + [b - a for a, b in zip(ref_changes, ref_changes[1:], strict=False)]
    allowed = (STEP_ROUNDINGS + attack) * BF16_U * sum(float(u.norm()) for u in updates)
    loss_error = float((losses[0] - ref_losses[0]).abs() / ref_losses[0])
    assert loss_error <= (FORWARD_ROUNDINGS + attack) * BF16_U
    error = float((changes[-1] - ref_changes[-1]).norm())
    assert error <= allowed, (error, allowed)
    assert allowed < 0.5 * min(float(u.norm()) for u in updates)  # a step skipped or doubled is further off
    assert loss_error > 2.0**-24  # bf16 did round
    return setup


def _steps(setup: Setup, data, dtype, batches: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The losses of ``batches`` steps on the first full batches, and the weights' total change after each, in
    float64 on the CPU."""
    if dtype == torch.float64:
        setup.model.double()
    start = torch.cat([p.detach().double().cpu().ravel() for p in setup.model.parameters()])
    gen = torch.Generator(device=setup.device).manual_seed(0)
    setup.model.train()
    setup.set_learning_rate(setup.cfg.learning_rate)
    losses, changes = [], []
    for k in range(batches):
        x = (data.train_x[32 * k:32 * (k + 1)].to(dtype) / 255).to(setup.device)
        y = data.train_y[32 * k:32 * (k + 1)].to(setup.device)
        if setup.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        losses.append(setup.step(setup.ctx, x, y, gen)[0].double().cpu())
        changes.append(torch.cat([p.detach().double().cpu().ravel() for p in setup.model.parameters()]) - start)
    return torch.stack(losses), changes


@pytest.mark.parametrize("method", DEFAULT_METHODS)
def test_the_default_cuda_configuration_steps_within_bf16_rounding(fresh_dynamo, data, method):
    cfg = tiny_cfg(method=method, **SMOOTH.get(method, {})).replace(**CUDA_DEFAULTS)
    setup = steps_within_bf16_rounding(cfg, data, "cpu")
    assert setup.step_path == "compiled" and setup.bf16 and setup.channels_last


def test_training_loop_with_bf16_and_channels_last_on_a_cpu_trains_and_records_them(data, tmp_path):
    run = RunDir(tmp_path / "run")
    summary = train(tiny_cfg(method="pgd_at", bf16=True, channels_last=True, epochs=2), run.path, progress=False,
                    data=data)
    assert summary["status"] == "finished" and summary["device"] == "cpu"
    provenance = json.loads(run.config.read_text())["provenance"]
    assert (provenance["bf16"], provenance["channels_last"], provenance["compile"]) == (True, True, None)
    rows = run.read_metrics()
    assert [r["round"] for r in rows] == [1, 2] and rows[1]["train_loss"] < rows[0]["train_loss"]
    weights = torch.load(run.weights)
    assert all(t.dtype in (torch.float32, torch.int64) for t in weights.values())  # bf16 only inside the passes
