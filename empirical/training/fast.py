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
  exactly what the eager step would draw from that generator;
- bf16 autocast without its weight cache (set up by :func:`~.setup.build`);
- the same state before and after the warm-up: capture needs a few steps to have run first (cuDNN's algorithm
  search, compilation, the optimizer's lazily created state), and those steps are undone (weights, BatchNorm
  statistics, optimizer state) before the graph is captured, so the first replay is the run's first step.
  Optimizer state created by the warm-up is zeroed, which is exactly a fresh state: SGD's momentum
  ``0.9 * 0 + g = g`` is its first step's ``buf = g``, and Adam's moments and step count start at zero.

The step functions themselves are those of :mod:`.steps`, unchanged: the eager path, the compiled one and the
graph run the same code.
"""

from __future__ import annotations

import torch

from empirical.training.steps import Step, StepContext, StepResult


class FastStep:
    """A method's step, with full batches (``batch_size`` examples) compiled and, with ``graph``, replayed as one
    CUDA graph; any other batch eagerly. Called like the step itself: ``fast(ctx, x, y, gen)``."""

    def __init__(self, step: Step, batch_size: int, *, graph: bool, warmup: int = 2) -> None:
        self.step, self.batch_size, self.graph, self.warmup = step, batch_size, graph, warmup
        self._captured: _CapturedStep | None = None

    def __call__(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> StepResult:
        if len(y) != self.batch_size:
            return self.step(ctx.eager(), x, y, gen)
        if not self.graph:
            return self.step(ctx, x, y, gen)
        if self._captured is None:
            self._captured = _CapturedStep(self.step, ctx, x, y, gen, self.warmup)
        return self._captured.replay(ctx, x, y, gen)


class _CapturedStep:
    """One step of ``step`` on a batch shaped like (x, y), captured as a CUDA graph; ``replay`` runs it on a new
    batch. The graph is bound to ``ctx`` (its model, optimizer and learning-rate tensors)."""

    def __init__(self, step: Step, ctx: StepContext, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator,
                 warmup: int) -> None:
        device = x.device
        self.ctx, self.lrs = ctx, [group["lr"] for group in ctx.optimizer.param_groups]
        if not all(isinstance(lr, torch.Tensor) and lr.device == device for lr in self.lrs):
            raise RuntimeError("a captured step needs the learning rate as a tensor on the device "
                               "(empirical.training.optimizers.make_capturable)")
        self.x, self.y = x.clone(), y.clone()  # clone keeps the memory format (channels_last)
        self.gen = torch.Generator(device=device)
        self.gen.set_state(gen.get_state())
        saved = _snapshot(ctx)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                step(ctx, self.x, self.y, self.gen)
        torch.cuda.current_stream(device).wait_stream(side)
        _restore(ctx, saved)
        self.gen.set_state(gen.get_state())
        self.graph = torch.cuda.CUDAGraph()
        self.graph.register_generator_state(self.gen)
        ctx.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.loss, self.correct = step(ctx, self.x, self.y, self.gen)

    def replay(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> StepResult:
        if ctx is not self.ctx or any(g["lr"] is not lr for g, lr in zip(ctx.optimizer.param_groups, self.lrs,
                                                                          strict=True)):
            raise RuntimeError("the captured step was replayed with another context or learning-rate tensor")
        self.x.copy_(x)
        self.y.copy_(y)
        self.gen.set_state(gen.get_state())
        self.graph.replay()
        gen.set_state(self.gen.get_state())
        return self.loss.clone(), self.correct.clone()  # the graph overwrites its outputs at the next replay


def _snapshot(ctx: StepContext) -> dict:
    """Copies of everything a step changes: parameters, buffers (BatchNorm statistics) and optimizer state."""
    model = [t.detach().clone() for t in ctx.model.state_dict(keep_vars=True).values()]
    optimizer = {(id(p), key): value.detach().clone() for p, state in ctx.optimizer.state.items()
                 for key, value in state.items() if isinstance(value, torch.Tensor)}
    return {"model": model, "optimizer": optimizer}


@torch.no_grad()
def _restore(ctx: StepContext, saved: dict) -> None:
    """Undo the warm-up in place (the graph records addresses): values back, optimizer state that the warm-up
    created zeroed (a fresh state, see the module's docstring)."""
    for tensor, value in zip(ctx.model.state_dict(keep_vars=True).values(), saved["model"], strict=True):
        tensor.detach().copy_(value)
    for p, state in ctx.optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                before = saved["optimizer"].get((id(p), key))
                value.copy_(before) if before is not None else value.zero_()
