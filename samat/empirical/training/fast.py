"""The fast path of the training step (one process): full batches through the compiled model and, on CUDA, the
whole step replayed as one CUDA graph; a batch of any other size (an epoch's last, partial one) through the
eager step, so that nothing is compiled or captured twice.

PRN-18 at batch 128 on an H100-class GPU is bound by launching kernels, not by arithmetic: the eager step
launches hundreds of small kernels from Python (forward, backward, SAM's second pass, PGD's ten passes, the
optimizer), and the GPU waits for them. A CUDA graph records those launches once and replays them with one
call. What the capture needs, and where it comes from:

- static shapes: each full batch is copied into tensors allocated once; other sizes take the eager step
  (padding the batch instead would change BatchNorm's batch statistics);
- no host synchronisation inside the step: the learning rate is a tensor on the device, changed in place, and
  the update is the fused kernel (:func:`~.optimizers.make_capturable`); losses stay on the device;
- the step's random numbers (PGD's random start, ESAM's masks) come from a generator registered with the graph,
  whose state is copied from the caller's generator before each replay and back after it, so the graph draws
  exactly what the eager step would draw from that generator; what the model draws itself (dropout) comes from
  the device's default generator, which CUDA graphs advance at each replay as the eager kernels would;
- bf16 autocast without its weight cache (set up by :func:`~.setup.build`);
- the same state before and after the warm-up: capture needs a few steps to have run first (cuDNN's algorithm
  search, compilation, the optimizer's lazily created state), and those steps are undone (weights, BatchNorm
  statistics, optimizer state, the default generators' draws) before the graph is captured, so the first replay
  is the run's first step. Optimizer state created by the warm-up is zeroed, which is exactly a fresh state:
  SGD's momentum ``0.9 * 0 + g = g`` is its first step's ``buf = g``, and Adam's moments and step count start
  at zero;
- the run's own device: warm-up, capture and replay run on streams of ``x.device``, whatever device is current.

The fast path cannot take a run down. Its first full batch is a trial: everything the step changes is saved
first (weights, buffers, optimizer state, the step's generator and the default ones), and if compiling or
capturing raises, all of it is put back, the reason is reported once (``on_fallback``), and that batch and every
later one take the eager step: the run then ends on the weights of a run that never tried the fast path, bit
for bit. The step functions themselves are those of :mod:`.steps`, unchanged: the eager path, the compiled one
and the graph run the same code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from samat.empirical.training.steps import Step, StepContext, StepResult

EAGER, COMPILED, GRAPH = "eager", "compiled", "graph"  # the training step's paths, as recorded in final.json


class FastStep:
    """A method's step, with full batches (``batch_size`` examples) compiled and, with ``graph``, replayed as one
    CUDA graph; any other batch eagerly. Called like the step itself: ``fast(ctx, x, y, gen)``.

    ``fallback`` is None while the fast path is on, else the one-line reason it was given up (then every batch
    takes the eager step); ``on_fallback(reason)`` is called once, when that happens, before the eager step runs
    the batch the fast path failed on."""

    def __init__(self, step: Step, batch_size: int, *, graph: bool, warmup: int = 2,
                 on_fallback: Callable[[str], None] | None = None) -> None:
        self.step, self.batch_size, self.graph, self.warmup = step, batch_size, graph, warmup
        self.on_fallback = on_fallback
        self.fallback: str | None = None
        self._tried = False  # the first full batch ran the fast path without an error
        self._captured: _CapturedStep | None = None

    @property
    def path(self) -> str:
        """What full batches run: "graph", "compiled", or "eager" once the fast path was given up."""
        if self.fallback is not None:
            return EAGER
        return GRAPH if self.graph else COMPILED

    def __call__(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> StepResult:
        if self.fallback is not None or len(y) != self.batch_size:
            return self.step(ctx.eager(), x, y, gen)
        if self._tried:
            return self._fast(ctx, x, y, gen)
        saved = _snapshot(ctx, gen, x.device)
        try:
            result = self._fast(ctx, x, y, gen)
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)  # an error of the first launches shows here, not later
        except Exception as err:  # noqa: BLE001 - whatever compile or capture raises, the run goes on eagerly
            self._captured = None
            _restore(ctx, saved, gen, new_state="drop")
            self.fallback = _reason(err, self.graph)
            if self.on_fallback is not None:
                self.on_fallback(self.fallback)
            return self.step(ctx.eager(), x, y, gen)
        self._tried = True
        return result

    def _fast(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> StepResult:
        if not self.graph:
            return self.step(ctx, x, y, gen)
        if self._captured is None:
            self._captured = _CapturedStep(self.step, ctx, x, y, gen, self.warmup)
        return self._captured.replay(ctx, x, y, gen)


def _reason(err: Exception, graph: bool) -> str:
    """One line: what failed, and the error's type and first line."""
    import torch._dynamo.exc as dynamo_errors

    what = "compiling the model" if isinstance(err, dynamo_errors.TorchDynamoException) else \
        ("capturing the step as a CUDA graph" if graph else "the compiled step")
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    message = lines[0] if lines else ""
    if len(message) > 200:
        message = message[:197] + "..."
    return f"{what} failed ({type(err).__name__}{': ' + message if message else ''})"


class _CapturedStep:
    """One step of ``step`` on a batch shaped like (x, y), captured as a CUDA graph on ``x.device``; ``replay`` runs
    it on a new batch. The graph is bound to ``ctx`` (its model, optimizer and learning-rate tensors)."""

    def __init__(self, step: Step, ctx: StepContext, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator,
                 warmup: int) -> None:
        self.device = device = x.device
        self.ctx, self.lrs = ctx, [group["lr"] for group in ctx.optimizer.param_groups]
        if not all(isinstance(lr, torch.Tensor) and lr.device == device for lr in self.lrs):
            raise RuntimeError("a captured step needs the learning rate as a tensor on the device "
                               "(empirical.training.optimizers.make_capturable)")
        self.x, self.y = x.clone(), y.clone()  # clone keeps the memory format (channels_last)
        self.gen = torch.Generator(device=device)
        self.gen.set_state(gen.get_state())
        with torch.cuda.device(device):
            saved = _snapshot(ctx, gen, device)
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    step(ctx, self.x, self.y, self.gen)
            torch.cuda.current_stream(device).wait_stream(side)
            _restore(ctx, saved, gen, new_state="zero")  # also the default generators' draws (dropout)
            self.gen.set_state(gen.get_state())
            self.graph = torch.cuda.CUDAGraph()
            self.graph.register_generator_state(self.gen)
            ctx.optimizer.zero_grad(set_to_none=True)
            # the capture stream of the run's device (torch.cuda.graph's default is one stream, made once on
            # whichever device was current the first time)
            self.capture_stream = torch.cuda.Stream(device)
            with torch.cuda.graph(self.graph, stream=self.capture_stream):
                self.loss, self.correct = step(ctx, self.x, self.y, self.gen)

    def replay(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> StepResult:
        if ctx is not self.ctx or any(g["lr"] is not lr for g, lr in zip(ctx.optimizer.param_groups, self.lrs,
                                                                          strict=True)):
            raise RuntimeError("the captured step was replayed with another context or learning-rate tensor")
        with torch.cuda.device(self.device):
            self.x.copy_(x)
            self.y.copy_(y)
            self.gen.set_state(gen.get_state())
            self.graph.replay()
            gen.set_state(self.gen.get_state())
            return self.loss.clone(), self.correct.clone()  # the graph overwrites its outputs at the next replay


@dataclass
class _Saved:
    """Everything a step changes: parameters and buffers, the optimizer's state, and the generators it draws from
    (the step's own, the CPU's default one and, on CUDA, the device's default one: dropout)."""

    model: list[torch.Tensor]
    optimizer: dict[torch.nn.Parameter, dict]
    gen: torch.Tensor
    cpu_rng: torch.Tensor
    cuda_rng: torch.Tensor | None
    device: torch.device


def _snapshot(ctx: StepContext, gen: torch.Generator, device: torch.device) -> _Saved:
    model = [t.detach().clone() for t in ctx.model.state_dict(keep_vars=True).values()]
    optimizer = {p: {key: value.detach().clone() if isinstance(value, torch.Tensor) else value
                     for key, value in state.items()} for p, state in ctx.optimizer.state.items()}
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return _Saved(model, optimizer, gen.get_state(), torch.get_rng_state(), cuda_rng, device)


@torch.no_grad()
def _restore(ctx: StepContext, saved: _Saved, gen: torch.Generator, *, new_state: str) -> None:
    """Undo steps in place (a graph records addresses): the weights, buffers, generators and the optimizer state
    that existed before; the state the steps created is zeroed (``new_state="zero"``: a fresh state, kept
    allocated for the capture, see the module's docstring) or dropped (``"drop"``: as if never created)."""
    if ctx.perturbation is not None:
        with contextlib.suppress(RuntimeError):  # a SAM step stopped between its ascent and its way back
            ctx.perturbation.restore()
    for tensor, value in zip(ctx.model.state_dict(keep_vars=True).values(), saved.model, strict=True):
        tensor.detach().copy_(value)
    for p in ctx.model.parameters():
        p.grad = None
    for p in list(ctx.optimizer.state):
        state, before = ctx.optimizer.state[p], saved.optimizer.get(p, {})
        for key in list(state):
            value = state[key]
            if key in before:
                if isinstance(value, torch.Tensor):
                    value.copy_(before[key])
                else:
                    state[key] = before[key]
            elif new_state == "drop":
                del state[key]
            elif isinstance(value, torch.Tensor):
                value.zero_()
        if not state and p not in saved.optimizer:
            del ctx.optimizer.state[p]
    gen.set_state(saved.gen)
    torch.set_rng_state(saved.cpu_rng)
    if saved.cuda_rng is not None:
        torch.cuda.set_rng_state(saved.cuda_rng, saved.device)
