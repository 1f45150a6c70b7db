"""The options CUDA runs take by default, on the CPU where torch allows them: bf16 autocast, channels_last and
torch.compile (the aot_eager backend: the graph capture of inductor without its minutes of code generation), in a
training step and in the training loop, against a float64 reference.

Tolerances. channels_last only reorders the float32 sums of a convolution, so its step is as close to the float64
step as the contiguous float32 step is, within the factor 4 of tests/empirical/test_fast.py (another summation
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

import pytest
import torch

from empirical.training.loop import train
from empirical.training.runs import RunDir
from empirical.training.setup import Setup, build
from tests.empirical.helpers import tiny_cfg, tiny_images

BF16_U = 2.0**-8  # unit roundoff of bfloat16 (8 significant bits)
FORWARD_ROUNDINGS, STEP_ROUNDINGS = 10, 30  # see the module's docstring
ERROR_RATIO = 4  # channels_last against contiguous float32 (tests/empirical/test_fast.py)


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


def test_training_loop_with_bf16_and_channels_last_on_a_cpu_trains_and_records_them(data, tmp_path):
    run = RunDir(tmp_path / "run")
    summary = train(tiny_cfg(method="pgd_at", bf16=True, channels_last=True, epochs=2), run.path, progress=False,
                    data=data)
    assert summary["status"] == "finished" and summary["device"] == "cpu"
    provenance = json.loads(run.config.read_text())["provenance"]
    assert (provenance["bf16"], provenance["channels_last"], provenance["compile"]) == (True, True, None)
    rows = run.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["train_loss"] < rows[0]["train_loss"]
    weights = torch.load(run.weights)
    assert all(t.dtype in (torch.float32, torch.int64) for t in weights.values())  # bf16 only inside the passes
