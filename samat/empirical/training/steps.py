"""The training step of every method: what happens to one batch. The loop (:mod:`.loop`) is shared.

- SGD / Adam: one forward-backward pass (:func:`standard_step`);
- SAM / ASAM: gradient at w, climb to w + e(w), gradient there, step from w (:func:`sam_step`; D eq. 4);
- ESAM: SAM's climb on a random fraction of the weights, the second gradient on the sharpest part of the batch
  (:func:`esam_step`);
- PGD-AT: train on the PGD-attacked batch (:func:`adversarial_step`; W eq. 3-4, D eq. 2-3).

:func:`step_for` picks the step from the method's entry in :class:`~empirical.vocabulary.Method`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samat.empirical.attacks.build import parameters_frozen
from samat.empirical.attacks.pgd import pgd
from samat.empirical.training.config import TrainConfig
from samat.empirical.training.optimizers import WeightPerturbation
from samat.empirical.vocabulary import Ascent, AtFeatures, Method

StepResult = tuple[torch.Tensor, torch.Tensor]  # (mean loss of the batch, number correct), on the device


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    # the loss in float32 at least (bf16 logits under autocast), in float64 for a float64 model
    wide = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(wide, y, reduction=reduction)


def _hits(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) == y).sum()


@dataclass(frozen=True)
class Objective:
    """What a batch is scored by: ``loss(output, y, reduction)``, with reduction "mean" (trained on), "none" (per
    example: ESAM's selection) or "sum" (what PGD ascends), and ``correct(output, y)``, the batch's examples
    right (segmentation: the sum of the images' pixel accuracies; :mod:`.segmentation`)."""

    loss: Callable[..., torch.Tensor] = _cross_entropy
    correct: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _hits


CLASSIFICATION = Objective()


@contextlib.contextmanager
def running_stats_frozen(model: nn.Module) -> Iterator[None]:
    """BatchNorm uses batch statistics but does not update its running ones (nor their counter).

    For SAM's second pass (davda54/sam's disable_running_stats) and for the attack's forward
    passes in adversarial training: only the clean first pass, or the pass on the adversarial
    batch that is trained on, may move the running statistics.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


class _FixedPrefix(nn.Module):
    """The model as a function of x[:, k:] with x[:, :k] held fixed (AT on the non-robust features)."""

    def __init__(self, model: nn.Module, prefix: torch.Tensor) -> None:
        super().__init__()
        self.model, self.prefix = model, prefix

    def forward(self, rest: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat([self.prefix, rest], dim=1))


@dataclass
class StepContext:
    cfg: TrainConfig
    model: nn.Module  # the module whose parameters are trained (BatchNorm toggles act on it)
    forward: nn.Module  # what to call: the model, or its torch.compile'd version
    optimizer: torch.optim.Optimizer
    perturbation: WeightPerturbation | None
    autocast: Callable[[], contextlib.AbstractContextManager]
    box: tuple[float, float] | None  # valid input range for attacks; None for vector data
    # Data-parallel only (empirical.training.distributed): the bare (or compiled) module for PGD's input-gradient
    # passes, which need no gradient all-reduce (None: ``forward``), and the context of SAM's first
    # forward-backward (DDP's no_sync for per-replica perturbations)
    attack_forward: nn.Module | None = None
    ascent_gradient: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    objective: Objective = CLASSIFICATION

    @property
    def attack_model(self) -> nn.Module:
        return self.forward if self.attack_forward is None else self.attack_forward

    def eager(self) -> StepContext:
        """The same context with the uncompiled model (for batches of another size: nothing recompiles)."""
        return dataclasses.replace(self, forward=self.model, attack_forward=None)


def _loss(ctx: StepContext, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> tuple:
    with ctx.autocast():
        output = ctx.forward(x)
    return ctx.objective.loss(output, y, reduction), output


@torch.no_grad()
def _correct(ctx: StepContext, output, y: torch.Tensor) -> torch.Tensor:
    return ctx.objective.correct(output, y)


def standard_step(ctx: StepContext, x, y, gen) -> StepResult:
    """SGD / Adam: one forward-backward pass on the batch."""
    loss, output = _loss(ctx, x, y)
    ctx.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    ctx.optimizer.step()
    return loss.detach(), _correct(ctx, output, y)


def sam_step(ctx: StepContext, x, y, gen) -> StepResult:
    """SAM / ASAM: gradient at w, climb to w + e(w), gradient there, step from w (D eq. 4)."""
    ctx.optimizer.zero_grad(set_to_none=True)
    with ctx.ascent_gradient():
        loss, output = _loss(ctx, x, y)
        loss.backward()
    ctx.perturbation.ascend(gen)
    ctx.optimizer.zero_grad(set_to_none=True)
    with running_stats_frozen(ctx.model):
        _loss(ctx, x, y)[0].backward()
    ctx.perturbation.restore()
    ctx.optimizer.step()
    return loss.detach(), _correct(ctx, output, y)


def esam_step(ctx: StepContext, x, y, gen) -> StepResult:
    """ESAM (Du et al. 2022): stochastic weight perturbation, then sharpness-sensitive data selection.

    The second gradient is taken only on the fraction γ of the batch whose loss rises most under
    the perturbation, L(w + e; x_i) - L(w; x_i).
    """
    ctx.optimizer.zero_grad(set_to_none=True)
    with ctx.ascent_gradient():
        per_sample, output = _loss(ctx, x, y, reduction="none")
        loss = per_sample.mean()
        loss.backward()
    ctx.perturbation.ascend(gen)
    ctx.optimizer.zero_grad(set_to_none=True)
    with running_stats_frozen(ctx.model):
        with torch.no_grad():
            sharpness = _loss(ctx, x, y, reduction="none")[0] - per_sample.detach()
        keep = max(1, math.ceil(ctx.cfg.esam_gamma * len(y)))
        chosen = torch.topk(sharpness, keep).indices
        _loss(ctx, x[chosen], y[chosen])[0].backward()
    ctx.perturbation.restore()
    ctx.optimizer.step()
    return loss.detach(), _correct(ctx, output, y)


def adversarial_step(ctx: StepContext, x, y, gen) -> StepResult:
    """PGD adversarial training (Madry et al.; W eq. 3-4, D eq. 2-3): train on the PGD-attacked batch.

    The attack's forward passes use batch statistics without moving the running ones. The
    returned accuracy is on the adversarial batch (robust training accuracy).
    """
    cfg = ctx.cfg
    attack = dict(norm=cfg.at_norm, eps=cfg.at_eps, step_size=cfg.pgd_step_size, steps=cfg.at_steps, random_start=True,
                  generator=gen, box=ctx.box, loss_fn=lambda output, target: ctx.objective.loss(output, target, "sum"))
    with running_stats_frozen(ctx.model), parameters_frozen(ctx.model), ctx.autocast():
        if cfg.at_features is AtFeatures.NON_ROBUST:  # vector data: keep the robust feature x1 untouched
            rest = pgd(_FixedPrefix(ctx.attack_model, x[:, :1]), x[:, 1:], y, **attack)
            x_adv = torch.cat([x[:, :1], rest], dim=1)
        else:
            x_adv = pgd(ctx.attack_model, x, y, **attack)
    return standard_step(ctx, x_adv, y, gen)


Step = Callable[[StepContext, torch.Tensor, torch.Tensor, torch.Generator], StepResult]


def step_for(method: Method) -> Step:
    """The step of a method, from its vocabulary entry: adversarial inputs, else its weight ascent."""
    if method.adversarial:
        return adversarial_step
    if method.ascent is Ascent.STOCHASTIC:
        return esam_step
    if method.ascent is not Ascent.NONE:
        return sam_step
    return standard_step


STEPS: dict[Method, Step] = {m: step_for(m) for m in Method}
