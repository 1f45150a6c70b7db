"""Batched PGD (Madry et al. 2018) for adversarial training and for unboxed vector data.

The papers' other evaluation attacks are built on torchattacks (:mod:`samat.empirical.attacks.build`); this one is
the inner maximisation of adversarial training, ``max_{||delta|| <= eps} CE(f(x + delta), y)``, written so that a
training loop can call it every step on a GPU:

- no host synchronisation inside the loop (no ``.item()``, no data-dependent Python branches);
- only input gradients (``torch.autograd.grad`` w.r.t. delta): parameters' ``.grad``, ``requires_grad`` and
  ``model.training`` are left as they were (the caller picks train or eval mode for the attack);
- the perturbation, the step and the projection are kept in float32, so it works under
  ``torch.autocast(dtype=torch.bfloat16)``;
- all randomness comes from ``generator``.

Example::

    >>> x_adv = pgd(model, x, y, norm="linf", eps=8 / 255, step_size=2 / 255, steps=10)  # doctest: +SKIP
    >>> fgsm = dict(steps=1, step_size=8 / 255, random_start=False)
    >>> x_fgsm = pgd(model, x, y, norm="linf", eps=8 / 255, **fgsm)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from samat.core.errors import ParameterError
from samat.empirical.data import IMAGE_BOX, Box
from samat.empirical.vocabulary import THREAT_NORMS, Norm

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _threat_norm(norm: str) -> Norm:
    """linf or l2 (any spelling :meth:`Norm.parse` reads), else a ParameterError."""
    try:
        parsed = Norm.parse(norm, "norm")
    except ParameterError:
        parsed = None
    if parsed not in THREAT_NORMS:
        raise ParameterError("norm", norm, "one of " + ", ".join(THREAT_NORMS))
    return parsed


def default_step_size(eps: float, steps: int) -> float:
    """PGD's step size where none is given: 2.5 ε / steps (Madry et al. 2018; RobustBench), enough to cross the
    ball from a random start within the steps. The one place this rule is written (the evaluation's attacks and
    adversarial training both use it)."""
    return 2.5 * eps / steps


def _check(norm: str, eps: float, step_size: float, steps: int) -> Norm:
    norm = _threat_norm(norm)
    if not (math.isfinite(eps) and eps >= 0):
        raise ParameterError("eps", eps, "a finite number >= 0 (input units, e.g. 8/255)")
    if not (math.isfinite(step_size) and step_size >= 0):
        raise ParameterError("step_size", step_size, "a finite number >= 0 (input units, e.g. 2/255)")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ParameterError("steps", steps, "an integer >= 0")
    return norm


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a (N,) tensor to broadcast against ``like`` (N, ...)."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def _l2(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(p=2, dim=1)


def _unit(v: torch.Tensor) -> torch.Tensor:
    """Each sample divided by its L2 norm; a zero sample stays zero (no additive guard, so tiny norms are exact)."""
    return v / _per_sample(_l2(v).clamp_min(torch.finfo(v.dtype).tiny), v)


def project(delta: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Euclidean projection of each sample's perturbation onto the ``norm`` ball of radius ``eps``.

    linf: clamp every coordinate to [-eps, eps]; l2: rescale by eps / ||delta||_2 where that norm exceeds eps.
    A sample already inside the ball is returned unchanged, however small its norm (no guard on the norm
    alters it: the division only happens where norm > eps >= 0, so never by zero).
    """
    norm = _threat_norm(norm)
    if norm == "linf":
        return delta.clamp(-eps, eps)
    if norm == "l2":
        size = _l2(delta)
        outside = size > eps
        factor = torch.where(outside, eps / torch.where(outside, size, torch.ones_like(size)), 1.0)
        return delta * _per_sample(factor, delta)
    raise ParameterError("norm", norm, "one of " + ", ".join(THREAT_NORMS))


def sample_ball(x: torch.Tensor, norm: str, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A perturbation drawn uniformly from the ``norm`` ball of radius ``eps`` (float32, shape of x).

    l2: a Gaussian direction times the radius eps * U^(1/d), which is uniform in the d-dimensional ball.
    """
    shape, dev = x.shape, x.device
    norm = _threat_norm(norm)
    if norm == "linf":
        return (torch.rand(shape, generator=generator, device=dev, dtype=torch.float32) * 2 - 1) * eps
    if norm == "l2":
        d = math.prod(shape[1:])
        direction = torch.randn(shape, generator=generator, device=dev, dtype=torch.float32)
        direction = _unit(direction)
        u = torch.rand(shape[0], generator=generator, device=dev, dtype=torch.float32)
        return direction * _per_sample(eps * u.pow(1.0 / d), direction)
    raise ParameterError("norm", norm, "one of " + ", ".join(THREAT_NORMS))


def _clip_to_box(x: torch.Tensor, delta: torch.Tensor, box: Box | None) -> torch.Tensor:
    """The largest delta' (coordinate-wise towards 0) with x + delta' inside the box; it never leaves the ball."""
    if box is None:
        return delta
    return (x + delta).clamp(box[0], box[1]) - x


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str,
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    box: Box | None = IMAGE_BOX,
    loss_fn: LossFn | None = None,
) -> torch.Tensor:
    """Projected gradient ascent on the loss (Madry et al. 2018, eq. 2), returning the last iterate, detached.

    Args:
        model: maps inputs to logits; used in whatever mode (train/eval) the caller left it.
        x: (N, C, H, W) images or (N, D) feature vectors; y: (N,) integer labels.
        norm: "linf" (steps ``step_size * sign(grad)``, projection by clamping) or "l2" (steps ``step_size * grad
            / ||grad||_2`` per sample, projection onto the ball).
        eps, step_size: radius and step size in input units (e.g. 8/255 and 2/255 for images in [0, 1]);
            :func:`default_step_size` gives the usual step.
        steps: number of ascent steps; 0 returns x (or the random start when ``random_start``).
            FGSM (Goodfellow et al. 2015) is ``steps=1, step_size=eps, random_start=False``.
        random_start: start from a point drawn uniformly from the ball (Madry et al.).
        generator: source of all randomness (the random start); None uses torch's global RNG.
        box: valid input range, :data:`~samat.empirical.data.IMAGE_BOX` for images; None leaves the input
            unclamped (vector data).
        loss_fn: ``loss_fn(logits, y) -> scalar`` to ascend; default cross-entropy summed over the batch
            (the sum keeps per-sample gradients independent of the batch size; the step is normalised anyway).
    """
    norm = _check(norm, eps, step_size, steps)
    loss_fn = loss_fn or (lambda logits, target: F.cross_entropy(logits.float(), target, reduction="sum"))
    x = x.detach()
    xf = x.float()
    delta = torch.zeros_like(xf)
    if random_start:
        delta = _clip_to_box(xf, sample_ball(xf, norm, eps, generator), box)
    for _ in range(steps):
        delta.requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(model((xf + delta).to(x.dtype)), y)
            (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            grad = grad.float()
            if norm == "linf":
                step = grad.sign()
            else:
                step = _unit(grad)
            delta = _clip_to_box(xf, project(delta.detach() + step_size * step, norm, eps), box)
    x_adv = xf + delta.detach()
    if box is not None:
        x_adv = x_adv.clamp(box[0], box[1])  # x + ((x + d).clamp - x) can round one ulp outside the box
    return x_adv.to(x.dtype).detach()
