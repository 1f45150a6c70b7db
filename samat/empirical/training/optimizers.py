"""Optimizers: the base SGD/Adam, and the weight perturbation of the SAM family.

SAM (Foret et al. 2021) minimizes max_{||e|| <= ρ} L(w + e) (W eq. 1, D eq. 4) with one ascent step:

    e(w) = ρ g / ||g||                          (SAM)
    e(w) = ρ T² g / ||T g||,  T = |w| + η       (ASAM, Kwon et al. 2021: the adaptive, scale-invariant ball)
    e(w) ← e(w) ⊙ m / β,  m ~ Bernoulli(β)      (ESAM's stochastic weight perturbation, Du et al. 2022)

then takes the base optimizer's step with the gradient at w + e(w), from w. This module only moves
the weights there and back (``ascend``/``restore``, as davda54/sam's first_step/second_step: the way
back restores a copy saved into buffers allocated once, so w is exactly what it was, not w + e - e); the
forward and backward passes, and ESAM's data selection, belong to the training step
(:mod:`samat.empirical.training.steps`). Written here rather than taken from pytorch-optimizer so that the update
is a few fused ``torch._foreach`` ops, the distributed trainer controls which gradients the ascent
sees, and ESAM shares the code; tests check SAM and ASAM against pytorch-optimizer step for step.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import torch

from samat.empirical.training.config import TrainConfig
from samat.empirical.vocabulary import Ascent, Optimizer

ASAM_ETA = 0.01  # Kwon et al. 2021, §4: T_w = |w| + η with η = 0.01


class WeightPerturbation:
    """Moves parameters to w + e(w) and back; ``rho`` is the radius ρ."""

    def __init__(self, params: Iterable[torch.nn.Parameter], rho: float, *, adaptive: bool = False,
                 adaptive_eta: float = ASAM_ETA, keep_probability: float = 1.0) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.rho = rho
        self.adaptive = adaptive
        self.adaptive_eta = adaptive_eta
        self.keep_probability = keep_probability
        self._copies: list[torch.Tensor] | None = None  # one per parameter, allocated at the first ascend
        self._moved: tuple[list[torch.nn.Parameter], list[torch.Tensor]] | None = None  # (parameters, their copies)

    @torch.no_grad()
    def ascend(self, generator: torch.Generator | None = None) -> None:
        """w <- w + e(w), from the gradients currently in .grad (which the caller then clears)."""
        if self._moved is not None:
            raise RuntimeError("ascend() twice without restore(): the weights are already perturbed")
        if self._copies is None:
            self._copies = [torch.empty_like(p) for p in self.params]
        chosen = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i] for i in chosen]
        grads = [p.grad for p in params]
        saved = [self._copies[i] for i in chosen]
        self._moved = (params, saved)
        if not params:
            return
        torch._foreach_copy_(saved, params)
        if self.adaptive:
            scales = torch._foreach_add(torch._foreach_abs(params), self.adaptive_eta)  # T
            scaled = torch._foreach_mul(grads, scales)  # T g
        else:
            scales, scaled = None, grads
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(scaled)))
        factor = self.rho / (norm + 1e-12)
        offsets = torch._foreach_mul(torch._foreach_mul(scaled, scales), factor) if self.adaptive else \
            torch._foreach_mul(grads, factor)
        if self.keep_probability < 1:
            masks = [torch.rand(p.shape, generator=generator, device=p.device) < self.keep_probability
                     for p in params]
            torch._foreach_mul_(offsets, [m.to(o.dtype) / self.keep_probability
                                          for m, o in zip(masks, offsets, strict=True)])
        torch._foreach_add_(params, offsets)

    @torch.no_grad()
    def restore(self) -> None:
        """w + e(w) -> w, bit for bit (restored from the copy taken by ``ascend``)."""
        if self._moved is None:
            raise RuntimeError("restore() without ascend()")
        params, saved = self._moved
        if params:
            torch._foreach_copy_(params, saved)
        self._moved = None


def build_optimizer(cfg: TrainConfig, params: Iterable[torch.nn.Parameter],
                    no_decay: Collection[torch.nn.Parameter] = ()) -> torch.optim.Optimizer:
    """The base optimizer: SGD (lr 0.1, momentum 0.9, wd 5e-4) or Adam (lr 1e-3), per the papers; AdamW (lr 5e-5
    for fine-tuning, D Section 5.3) as transformers' Trainer builds it: torch's AdamW with betas (0.9, 0.999) and
    eps 1e-8, weight decay on every parameter but those in ``no_decay`` (biases and LayerNorm weights)."""
    params = list(params)
    if cfg.optimizer_name is Optimizer.ADAM:
        return torch.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    if cfg.optimizer_name is Optimizer.ADAMW:
        exempt = {id(p) for p in no_decay}
        groups = [{"params": [p for p in params if id(p) not in exempt], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if id(p) in exempt], "weight_decay": 0.0}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate, betas=(0.9, 0.999),
                                 eps=1e-8)
    return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group's learning rate to ``lr``: in place where it is a tensor (the fast path's, see
    :func:`make_capturable`), so that compiled or captured code, which reads that tensor, sees the new value."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Make the base optimizer's step free of host synchronisations, so that a CUDA graph can capture it: each
    group's learning rate becomes a 0-dim float32 tensor on ``device`` (changed in place by
    :func:`set_learning_rate`), and on CUDA the update is the fused kernel (one launch for all parameters; Adam's
    step counters on the device, ``capturable``). Call it again after ``load_state_dict``, which brings back the
    saved groups' settings. The update is the same SGD/Adam step, up to float32 rounding."""
    cuda = device.type == "cuda"
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)
        if cuda:
            group["fused"], group["foreach"] = True, False
            if "capturable" in group:  # Adam: its step counters live on the device
                group["capturable"] = True
    if cuda:
        for state in optimizer.state.values():
            if isinstance(state.get("step"), torch.Tensor):
                state["step"] = state["step"].to(device=device, dtype=torch.float32)


def make_eager(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Undo :func:`make_capturable` (the fast path was given up): the learning rate ``lr`` as a Python float, the
    update PyTorch's default for the device (not fused), Adam's step counters back on the CPU. The optimizer then
    steps exactly as one that was never made capturable."""
    for group in optimizer.param_groups:
        group["lr"] = float(lr)
        if "fused" in group:
            group["fused"], group["foreach"] = None, None
        if "capturable" in group:
            group["capturable"] = False
    for state in optimizer.state.values():
        if isinstance(state.get("step"), torch.Tensor):
            state["step"] = state["step"].to(device="cpu", dtype=torch.float32)


def build_perturbation(cfg: TrainConfig, params: Iterable[torch.nn.Parameter]) -> WeightPerturbation | None:
    """The SAM-family perturbation for the configured method, or None for the other methods."""
    ascent = cfg.method.ascent
    if ascent is Ascent.GRADIENT:
        return WeightPerturbation(params, cfg.rho)
    if ascent is Ascent.ADAPTIVE:
        return WeightPerturbation(params, cfg.rho, adaptive=True)
    if ascent is Ascent.STOCHASTIC:
        return WeightPerturbation(params, cfg.rho, keep_probability=cfg.esam_beta)
    return None
