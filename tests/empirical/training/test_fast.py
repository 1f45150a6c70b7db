"""The fast training step (empirical.training.fast): the compiled step (inductor's CPU backend here, in CI), and on
CUDA the step replayed as one CUDA graph, match the eager step to float rounding; the partial batch and later
epochs compile nothing; the learning rate as a tensor is set in place; a fast path the device cannot take is
refused before any work; and a fast path that fails falls back to the eager step (one line, "eager" recorded,
the weights of a plain run bit for bit).

Tolerance. Two float32 evaluations of the same step differ only in rounding, which the eager step's own error
calibrates: the same trajectory in float64 (the model, inputs and optimizer state in float64) is the reference,
δ is the eager float32 trajectory's largest distance from it, and the fast trajectory must stay within 4δ of it.
Each float32 sum of n terms carries an error bounded by (n - 1)u times the sum of magnitudes whatever the order of
its terms (Higham, Accuracy and Stability, §4.2), so another order (a fused or reordered kernel) has errors of
the same bound, not the same value; 4 allows the fast path's errors to be twice as large as eager's in either
direction. A wrong fast path (a missed update, BatchNorm statistics moved by the wrong pass, a stale learning
rate) moves weights by lr * gradient, orders of magnitude beyond that.
"""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from torch._dynamo.utils import counters

from samat.core.errors import ParameterError
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.fast import FastStep
from samat.empirical.training.loop import train
from samat.empirical.training.optimizers import make_capturable, set_learning_rate
from samat.empirical.training.precision import tf32
from samat.empirical.training.runs import RunDir
from samat.empirical.training.setup import Setup, build, resolve_device
from tests.empirical.helpers import tiny_cfg, tiny_images
from tests.empirical.training.test_cuda_options_on_cpu import DEFAULT_METHODS, SMOOTH, steps_within_bf16_rounding

METHODS = ("sgd", "sam", "pgd_at")  # ST, SAM and PGD-AT: one pass, two passes, the attack's loop
SIZES = (32, 32, 20, 32)  # full batches around a partial one (batch size 32): it takes the eager step
ERROR_RATIO = 4  # see the module's docstring


def _build(cfg: TrainConfig) -> Setup:
    return build(cfg, tiny_images())


def _batches(sizes=SIZES, device="cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    data, out, start = tiny_images(), [], 0
    for n in sizes:
        out.append(((data.train_x[start:start + n].float() / 255).to(device), data.train_y[start:start + n].to(device)))
        start += n
    return out


def _trajectory(setup: Setup, batches, dtype=torch.float32) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The losses of ``setup.step`` on the batches, and every floating tensor of the model's state after them."""
    gen = torch.Generator(device=setup.device).manual_seed(0)
    setup.model.train()
    losses = [setup.step(setup.ctx, x.to(dtype), y, gen)[0].double() for x, y in batches]
    state = [t.detach().double() for t in setup.model.state_dict().values() if t.is_floating_point()]
    return torch.stack(losses), state


def _distance(a, b) -> float:
    if isinstance(a, torch.Tensor):
        return float((a.cpu() - b.cpu()).abs().max())
    return max(_distance(s, t) for s, t in zip(a, b, strict=True))


def _reference(cfg: TrainConfig, batches) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The eager trajectory in float64 (model, inputs, optimizer state and loss)."""
    setup = _build(cfg.replace(compile=False, cuda_graph=False))
    setup.model.double()
    return _trajectory(setup, batches, torch.float64)


def assert_rounding_close(cfg: TrainConfig, fast: TrainConfig, batches, path: str) -> Setup:
    """``fast``'s trajectory is as close to the float64 one as the eager float32 trajectory, within ERROR_RATIO,
    and its full batches took ``path`` (not the eager step of a fallback). On CUDA both float32 trajectories run
    with TF32 off: TF32 rounds the operands of convolutions to 10 bits, an error that differs between the eager
    kernels and the graph's (fused update, other algorithms), and that Adam's first step, lr * g / |g|, turns into
    a flipped sign wherever a gradient is near zero. In float32 such flips need a gradient within float32's
    rounding of zero. Returns the fast setup."""
    precision = tf32(False) if resolve_device(cfg.device).type == "cuda" else contextlib.nullcontext()
    reference = _reference(cfg, batches)
    with precision:
        eager = _trajectory(_build(cfg.replace(compile=False, cuda_graph=False)), batches)
    setup = _build(fast)
    with precision:
        tested = _trajectory(setup, batches)
    assert setup.step_path == path, setup.fallback
    for i, what in enumerate(("loss", "weights")):
        delta = _distance(eager[i], reference[i])
        scale = max(float(t.abs().max()) for t in (reference[i] if i else [reference[i]]))
        allowed = ERROR_RATIO * max(delta, 2.0**-24 * scale)  # at least one float32 rounding of the largest value
        assert _distance(tested[i], reference[i]) <= allowed, f"{what}: {_distance(tested[i], reference[i])} > " \
            f"{allowed} (eager float32 is {delta} from float64)"
        assert allowed < 1e-3 * scale  # far below what a wrong step changes (lr * gradient, ~1e-2 here)
    return setup


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


VARIANTS = {"sgd": 1, "sam": 2, "pgd_at": 2}  # compiled graphs: the pass, plus SAM's second / PGD's attack passes


@pytest.mark.parametrize("method", METHODS)
def test_inductor_compiled_step_matches_the_eager_step_and_the_partial_batch_compiles_nothing(fresh_dynamo, method):
    """torch.compile with inductor's CPU backend (C++ kernels, built with the machine's C compiler: .ci/setup
    installs one) on the real ST, SAM and PGD-AT steps at full batches, against the float64 reference within the
    eager step's own rounding. Each variant of the step is compiled once (SAM's second pass and PGD's attack
    passes keep BatchNorm's statistics still, a variant of their own); the partial batch takes the eager step and
    compiles nothing (it would be another graph: the shapes are static). Where inductor cannot run, the setup
    falls back to the eager step and the test fails on its path, naming the reason."""
    cfg = tiny_cfg(method=method)
    before = counters["stats"]["unique_graphs"]
    assert_rounding_close(cfg, cfg.replace(compile="inductor"), _batches(), path="compiled")
    assert counters["stats"]["unique_graphs"] - before == VARIANTS[method]


def test_the_training_loop_compiles_once_and_never_again_in_later_epochs(fresh_dynamo, tmp_path):
    """Two epochs of batches of 32, 32 and 16 through train() with inductor: the graphs counted at the end of each
    epoch are SAM's two variants, compiled in the first epoch's first batch; the partial batches and the second
    epoch compile nothing."""
    data = tiny_images(n_train=80)
    before, per_epoch = counters["stats"]["unique_graphs"], []
    summary = train(tiny_cfg(method="sam", compile="inductor", epochs=2), tmp_path / "run", progress=False, data=data,
                    log=lambda line: per_epoch.append((counters["stats"]["unique_graphs"] - before, line)))
    assert [count for count, _ in per_epoch] == [VARIANTS["sam"]] * 2, per_epoch  # a fallback's line would show
    assert summary["status"] == "finished" and summary["step_path"] == "compiled"
    provenance = json.loads(RunDir(tmp_path / "run").config.read_text())["provenance"]
    assert provenance["compile"] == "inductor" and provenance["cuda_graph"] is False


def test_cpu_training_stays_eager_by_default():
    setup = _build(tiny_cfg(device="cpu"))
    fast = _build(tiny_cfg(method="sam", compile="aot_eager"))
    assert isinstance(fast.step, FastStep) and fast.compile_backend == "aot_eager" and not fast.cuda_graph
    assert setup.compile_backend is None and not setup.cuda_graph and not isinstance(setup.step, FastStep)
    assert all(isinstance(g["lr"], float) for g in setup.ctx.optimizer.param_groups)


def test_cuda_graph_on_a_cpu_is_refused_before_the_run_folder_exists(tmp_path):
    with pytest.raises(ParameterError) as err:
        train(tiny_cfg(device="cpu", cuda_graph=True), tmp_path / "run", progress=False, data=tiny_images())
    assert str(err.value).startswith("cuda_graph=True") and "CUDA" in str(err.value)
    assert not (tmp_path / "run").exists()


def test_tensor_learning_rate_is_set_in_place_and_steps_as_the_float_one():
    models = []
    for capturable in (False, True):
        setup = _build(tiny_cfg(method="sgd", device="cpu"))
        if capturable:
            make_capturable(setup.ctx.optimizer, setup.device)
        lr_objects = [g["lr"] for g in setup.ctx.optimizer.param_groups]
        set_learning_rate(setup.ctx.optimizer, 0.5)  # a power of two: the same number in float32 and float64
        assert [g["lr"] for g in setup.ctx.optimizer.param_groups] == ([0.5] if not capturable else lr_objects)
        _trajectory(setup, _batches((32, 32)))
        models.append([t.detach() for t in setup.model.state_dict().values()])
    # the update multiplies by the same lr (0.5 exactly in both): identical weights, bit for bit
    assert all(torch.equal(a, b) for a, b in zip(*models, strict=True))


# --- GPU variants ------------------------------------------------------------------------------------------


GPU_METHODS = ("sgd", "adam", "sam", "asam", "esam", "pgd_at")


def _cuda_cfg(method: str, device: str = "cuda", **kw) -> TrainConfig:
    return tiny_cfg(method=method, device=device, bf16=False, channels_last=False, **kw)


@pytest.mark.gpu
@pytest.mark.parametrize("method", GPU_METHODS)
def test_cuda_graph_replays_the_eager_step(fresh_dynamo, method):
    """The captured step (eager kernels, fused update) against the eager step, float32 with TF32 off, partial
    batch included; ESAM's cut-off and PGD's sign steps as they are."""
    cfg = _cuda_cfg(method)
    assert_rounding_close(cfg, cfg.replace(compile=False, cuda_graph=True), _batches(device="cuda"), path="graph")


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS)
def test_compiled_and_graphed_step_matches_the_eager_step(fresh_dynamo, method):
    """Inductor's kernels inside the captured step, in float32 (TF32 off)."""
    cfg = _cuda_cfg(method)
    assert_rounding_close(cfg, cfg.replace(compile="inductor", cuda_graph=True), _batches(device="cuda"),
                          path="graph")


@pytest.mark.gpu
@pytest.mark.parametrize("method", DEFAULT_METHODS)
def test_the_default_cuda_configuration_steps_as_the_eager_step_within_bf16_rounding(fresh_dynamo, method):
    """What a GPU user runs: no option set on CUDA (bf16 autocast, channels_last, inductor, the CUDA graph) against
    the eager step in float64 (the float32 step is within 1e-6 of it, far below bf16's u = 2**-8), for ST, SAM, ESAM
    and PGD-AT, with the bound derived in test_cuda_options_on_cpu.py (the same function runs there on the CPU)."""
    cfg = tiny_cfg(method=method, device="cuda", **SMOOTH.get(method, {}))
    setup = steps_within_bf16_rounding(cfg, tiny_images(), "cuda")
    assert (setup.step_path, setup.compile_backend, setup.bf16, setup.channels_last) == ("graph", "inductor", True,
                                                                                          True)


@pytest.mark.gpu
def test_the_step_is_captured_on_the_runs_own_device():
    """Warm-up, capture and replay run on streams of the run's device, whatever device is current: on a machine
    with two GPUs the run takes the last one while the first is current; on one GPU the capture stream's device is
    still checked."""
    device = f"cuda:{torch.cuda.device_count() - 1}"
    cfg = _cuda_cfg("sgd", device=device)
    with torch.cuda.device(0):
        setup = assert_rounding_close(cfg, cfg.replace(compile=False, cuda_graph=True), _batches(device=device),
                                      path="graph")
    assert setup.step._captured.capture_stream.device == setup.device == torch.device(device)


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS)
def test_graphed_step_never_synchronises_and_draws_from_the_callers_generator(method):
    setup = _build(_cuda_cfg(method, compile=False, cuda_graph=True))
    batches = _batches((32, 32, 32), device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    setup.model.train()
    setup.step(setup.ctx, *batches[0], gen)  # warm-up and capture (cuDNN's search may synchronise)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, y in batches[1:]:
            before = gen.get_state()
            setup.step(setup.ctx, x, y, gen)
            # PGD's random start comes from the caller's generator, which moves on as the eager step would move it
            assert torch.equal(gen.get_state(), before) == (method != "pgd_at")
    finally:
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.gpu
def test_cuda_defaults_take_the_fast_path():
    setup = _build(tiny_cfg(device="cuda"))
    assert setup.compile_backend == "inductor" and setup.cuda_graph and isinstance(setup.step, FastStep)
    assert all(isinstance(g["lr"], torch.Tensor) and g["fused"] for g in setup.ctx.optimizer.param_groups)


# --- The fast path falls back: a failure while compiling or capturing, or inductor missing its compiler ----------


def _failing_after(monkeypatch, backend: str, graphs: int) -> list[int]:
    """Make ``backend`` compile ``graphs`` graphs as usual and raise on the next one (a compile failure in the middle
    of a step: SAM's second pass, after its first pass moved BatchNorm's statistics and its ascent the weights)."""
    from torch._dynamo.backends import registry

    real, calls = registry.lookup_backend(backend), []

    def failing(gm, example_inputs, **kw):
        calls.append(1)
        if len(calls) > graphs:
            raise RuntimeError("simulated compiler failure\n(second line of the compiler's message)")
        return real(gm, example_inputs, **kw)

    monkeypatch.setitem(registry._COMPILER_FNS, backend, failing)
    return calls


def _run(cfg: TrainConfig, folder, data) -> tuple[dict, list[str], dict]:
    """Train ``cfg`` into ``folder``; the final summary, the lines the run said, and its weights."""
    said: list[str] = []
    summary = train(cfg, folder, progress=False, data=data, log=said.append)
    return summary, said, torch.load(RunDir(folder).weights)


def assert_fell_back(tmp_path, fast: TrainConfig, data, needle: str) -> None:
    """The run with ``fast`` completes on the eager step: it says so once, records "eager" and ends on the weights
    of the run that never tried the fast path, bit for bit."""
    summary, said, weights = _run(fast, tmp_path / "fast", data)
    _, _, eager = _run(fast.replace(compile=False, cuda_graph=False), tmp_path / "eager", data)
    notices = [line for line in said if "fast path off" in line]
    assert len(notices) == 1 and needle in notices[0] and "--set compile=false --set cuda_graph=false" in notices[0]
    assert "\n" not in notices[0]
    final = RunDir(tmp_path / "fast").read_final()
    assert final["step_path"] == "eager" and needle in final["fast_path_off"]
    assert summary["status"] == "finished" and all(r["step_path"] == "eager" for r in
                                                   RunDir(tmp_path / "fast").read_metrics())
    assert weights.keys() == eager.keys() and all(torch.equal(weights[k], eager[k]) for k in weights)


@pytest.mark.parametrize("method", ["sam", "pgd_at"])
def test_a_compile_failure_mid_step_falls_back_to_the_eager_step(fresh_dynamo, monkeypatch, tmp_path, method):
    """The first pass compiles; the second variant (SAM's frozen-statistics pass, PGD's attack pass) fails. What the
    first pass changed (BatchNorm statistics, the ascent, the generator's draws) is put back."""
    calls = _failing_after(monkeypatch, "aot_eager", graphs=1)
    assert_fell_back(tmp_path, tiny_cfg(method=method, compile="aot_eager", epochs=2), tiny_images(n_train=80),
                      "compiling the model failed (BackendCompilerFailed")
    assert len(calls) == 2  # one graph compiled, the second failed, and nothing was compiled after that


def simulate_a_failing_capture(monkeypatch) -> None:
    """The CUDA-graph path on the CPU: the optimizer made capturable (the learning rate a float32 tensor), and a
    capture that fails after its warm-up steps moved the weights, the optimizer's state and the generators."""
    from samat.empirical.training import fast, setup

    class FailingCapture:
        def __init__(self, step, ctx, x, y, gen, warmup):
            for _ in range(warmup):
                step(ctx, x, y, gen)
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing (simulated)")

    monkeypatch.setattr(fast, "_CapturedStep", FailingCapture)
    # a configuration with cuda_graph=false (the plain run compared with) keeps the eager step
    monkeypatch.setattr(setup, "fast_path",
                        lambda cfg, device, world: setup.FastPath(None, cfg.cuda_graph is not False))


CAPTURE_FAILED = "capturing the step as a CUDA graph failed (RuntimeError: CUDA error"


@pytest.mark.parametrize("method", ["adam", "pgd_at"])
def test_a_capture_failure_after_the_warm_up_falls_back_to_the_eager_step(monkeypatch, tmp_path, method):
    """The fallback puts back what the warm-up moved (Adam's moments, PGD's generator) and the optimizer as the
    eager step has it, so the weights are a plain run's bit for bit."""
    simulate_a_failing_capture(monkeypatch)
    assert_fell_back(tmp_path, tiny_cfg(method=method, epochs=2), tiny_images(n_train=80), CAPTURE_FAILED)


def test_inductor_without_its_compiler_trains_on_the_eager_step(monkeypatch, tmp_path):
    from samat.empirical.training import setup

    monkeypatch.setattr(setup, "inductor_missing", lambda device: "no C++ compiler was found (simulated)")
    assert_fell_back(tmp_path, tiny_cfg(method="sgd", compile="inductor", epochs=1), tiny_images(n_train=80),
                      "no C++ compiler was found (simulated)")
    assert RunDir(tmp_path / "fast").load_config().compile == "inductor"  # what was asked stays recorded


def test_the_compiled_path_is_recorded_and_shown(fresh_dynamo, tmp_path):
    from samat.empirical.training.setup import FastPath

    summary, said, _ = _run(tiny_cfg(method="sgd", compile="aot_eager", epochs=1), tmp_path / "run",
                            tiny_images(n_train=80))
    assert summary["step_path"] == RunDir(tmp_path / "run").read_final()["step_path"] == "compiled"
    assert not any("fast path off" in line for line in said) and "fast_path_off" not in summary
    assert FastPath("inductor", True).describe() == "CUDA-graph step (compiled with inductor)"
    assert FastPath(None, True).describe() == "CUDA-graph step" and FastPath(None, False).describe() == "eager step"
    assert FastPath("aot_eager", False).describe() == "compiled step (aot_eager)"


# --- FastStep's own bookkeeping on the CPU: the graph path with a stand-in capture, the trial, the reason --------

class EagerCapture:
    """A stand-in for the CUDA-graph capture on a CPU: it records what it was given and "replays" by running the
    step eagerly on the batch it is handed, so that FastStep's graph path can be followed here."""

    made: list[EagerCapture] = []

    def __init__(self, step, ctx, x, y, gen, warmup):
        self.step, self.ctx, self.gen, self.shape, self.replays = step, ctx, gen, tuple(x.shape), []
        EagerCapture.made.append(self)

    def replay(self, ctx, x, y, gen):
        self.replays.append((ctx, x, y, gen))
        return self.step(ctx, x, y, gen)


def _steps(step, setup: Setup, batches) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    setup.model.train()
    for x, y in batches:
        step(setup.ctx, x, y, gen)
    return [t.detach().clone() for t in setup.model.state_dict().values()]


def test_the_graph_path_captures_once_on_a_full_batch_and_replays_every_full_batch(monkeypatch):
    """The capture is made once, on the first full batch, with the run's context and the caller's generator; each
    full batch (the first included) is a replay of that batch with the caller's generator; the partial batch takes
    the eager step; everything the step changes is saved once, for the first batch's trial only. PGD-AT draws its
    random start from the generator, so the weights match the eager step's bit for bit only if every draw does."""
    from samat.empirical.training import fast

    EagerCapture.made = []
    monkeypatch.setattr(fast, "_CapturedStep", EagerCapture)
    saved = []
    real_snapshot = fast._snapshot
    monkeypatch.setattr(fast, "_snapshot", lambda *a: saved.append(1) or real_snapshot(*a))
    batches = _batches((32, 32, 20, 32))
    setup = _build(tiny_cfg(method="pgd_at", device="cpu"))
    stepper = FastStep(setup.step, 32, graph=True)
    weights = _steps(stepper, setup, batches)
    plain = _build(tiny_cfg(method="pgd_at", device="cpu"))
    assert all(torch.equal(a, b) for a, b in zip(weights, _steps(plain.step, plain, batches), strict=True))
    capture, = EagerCapture.made
    assert capture.ctx is setup.ctx and capture.shape == tuple(batches[0][0].shape) and stepper.path == "graph"
    assert [(x is xb, y is yb) for (_, x, y, _), (xb, yb) in zip(capture.replays, [batches[i] for i in (0, 1, 3)],
                                                                 strict=True)] == [(True, True)] * 3
    assert all(ctx is setup.ctx and gen is capture.gen for ctx, _, _, gen in capture.replays)
    assert len(saved) == 1


def test_a_failed_trial_puts_back_the_optimizer_state_it_found(monkeypatch):
    """Momentum buffers from earlier steps (a resumed run) are put back as they were when the first full batch's
    fast path fails after moving them, and the constructor's on_fallback is told: the run goes on as the eager
    step's, bit for bit."""
    class FailingCapture:
        def __init__(self, step, ctx, x, y, gen, warmup):
            for _ in range(warmup):
                step(ctx, x, y, gen)
            raise RuntimeError("simulated capture failure")

    from samat.empirical.training import fast

    batches = _batches((32, 32, 32, 32))
    plain = _build(tiny_cfg(method="sgd", device="cpu"))
    expected = _steps(plain.step, plain, batches)
    setup = _build(tiny_cfg(method="sgd", device="cpu"))
    _steps(setup.step, setup, batches[:2])  # the momentum buffers exist before the fast path's first batch
    said: list[str] = []
    stepper = FastStep(setup.step, 32, graph=True, on_fallback=said.append)
    monkeypatch.setattr(fast, "_CapturedStep", FailingCapture)
    weights = _steps(stepper, setup, batches[2:])
    assert said == ["capturing the step as a CUDA graph failed (RuntimeError: simulated capture failure)"]
    assert stepper.path == "eager" and all(torch.equal(a, b) for a, b in zip(weights, expected, strict=True))
    momentum = [plain.ctx.optimizer.state[p]["momentum_buffer"] for p in plain.model.parameters()]
    assert all(torch.equal(setup.ctx.optimizer.state[p]["momentum_buffer"], m)
               for p, m in zip(setup.model.parameters(), momentum, strict=True))


def test_the_fallbacks_reason_is_one_line_naming_what_failed():
    from torch._dynamo.exc import TorchDynamoException

    from samat.empirical.training.fast import _reason

    assert _reason(RuntimeError("boom\nsecond line"), graph=True) == \
        "capturing the step as a CUDA graph failed (RuntimeError: boom)"
    assert _reason(RuntimeError("boom"), graph=False) == "the compiled step failed (RuntimeError: boom)"
    assert _reason(TorchDynamoException("no"), graph=True) == "compiling the model failed (TorchDynamoException: no)"
    assert _reason(ValueError(), graph=False) == _reason(ValueError("\n  \n"), graph=False) == \
        "the compiled step failed (ValueError)"
    for length, kept in ((200, 200), (201, 197)):
        reason = _reason(RuntimeError("x" * length), graph=False)
        assert reason == f"the compiled step failed (RuntimeError: {'x' * kept}{'...' if kept < length else ''})"
