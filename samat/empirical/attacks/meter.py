"""The size of an attack's perturbations, checked against its budget up to float32 rounding."""

from __future__ import annotations

import math

import torch

from samat.core.errors import ParameterError
from samat.empirical.attacks.specs import AttackSpec
from samat.empirical.data import IMAGE_BOX, Box
from samat.empirical.vocabulary import Norm

UNIT_ROUNDOFF = 2.0**-24  # float32: |fl(a) - a| <= u |a|

def norm_tolerance(norm: Norm, eps: float, dim: int, scale: float | torch.Tensor = 1.0) -> float | torch.Tensor:
    """Float32 slack on ``||x_adv - x|| <= eps`` for an attack that projects in float32.

    The projection leaves ``|delta| <= eps (1 + 2u)`` per coordinate (linf clamp against float32(eps), one
    rounding in re-forming delta) or ``||delta||_2 <= eps (1 + (log2 d + 4) u)`` (the computed norm of a
    d-vector has relative error about log2(d) u under pairwise summation, plus the division and the
    rescaling); forming ``x + delta`` then rounds each coordinate by at most ``u * scale``, where scale
    bounds |x_adv| (a number, or a tensor of per-sample bounds for per-sample tolerances). The difference is
    measured in float64, so it adds nothing. A factor 2 covers the different orders of operations in
    torchattacks' attacks. u = 2^-24.
    """
    u = UNIT_ROUNDOFF
    if norm is Norm.LINF:
        return 2 * (2 * u * eps + u * scale)
    if norm is Norm.L2:
        return 2 * ((math.log2(max(dim, 2)) + 4) * u * eps + u * scale * math.sqrt(dim))
    return 0.0  # l0 counts and StAdv's clamped flow are exact


class PerturbationMeter:
    """Perturbation sizes of an attack's outputs, batch by batch, reduced once: a hot loop adds each batch with
    :meth:`add` (tensor work on the batch's device, no host synchronisation) and reads :meth:`summary` after.

    linf/l2: ``||x_adv - x||`` (computed in float64); l0: changed pixel positions; flow (StAdv, pass the
    attack's ``last_flow``): the largest |flow component| in pixels. Each sample is held to its budget up to
    :func:`norm_tolerance`, with ``scale`` the largest |coordinate| of that sample's x and x_adv (at least 1).
    ``box`` None skips the box check (``in_box`` is then None).
    """

    def __init__(self, spec: AttackSpec, *, box: Box | None = IMAGE_BOX) -> None:
        self.spec, self.box = spec, box
        self._sizes: list[torch.Tensor] = []
        self._slack: list[torch.Tensor] = []
        self._in_box: list[torch.Tensor] = []

    def add(self, x: torch.Tensor, x_adv: torch.Tensor, *, flow: torch.Tensor | None = None) -> None:
        s = self.spec
        x, x_adv = x.detach(), x_adv.detach()
        if s.norm is Norm.FLOW:
            if flow is None:
                raise ParameterError("flow", None, "StAdv's flow field (N, 2, H, W) for a flow-norm report")
            per = flow.detach().double().flatten(1).abs().amax(1)
        else:
            diff = x_adv.double() - x.double()
            if s.norm is Norm.LINF:
                per = diff.flatten(1).abs().amax(1)
            elif s.norm is Norm.L2:
                per = diff.flatten(1).norm(dim=1)
            else:  # l0: a pixel position counts once whatever the number of channels it changes
                changed = (diff != 0).any(1) if diff.dim() == 4 else diff != 0
                per = changed.flatten(1).sum(1).double()
        self._sizes.append(per)
        if s.eps is not None and len(x):
            scale = torch.maximum(x.flatten(1).abs().amax(1), x_adv.flatten(1).abs().amax(1)).double().clamp_min(1.0)
            slack = norm_tolerance(s.norm, s.eps, math.prod(x.shape[1:]), scale)
            self._slack.append(torch.as_tensor(slack, dtype=torch.float64, device=per.device).expand(per.shape))
        if self.box is not None:
            self._in_box.append(((x_adv >= self.box[0]) & (x_adv <= self.box[1])).all())

    def sizes(self) -> torch.Tensor:
        """Every sample's perturbation size so far, in the order added (float64)."""
        return torch.cat(self._sizes) if self._sizes else torch.zeros(0, dtype=torch.float64)

    def summary(self) -> dict:
        """``max`` perturbation, largest ``tolerance``, ``within_eps`` (True when the spec has no budget) and
        ``in_box`` (None without a box) over everything added, with one host synchronisation."""
        s, per = self.spec, self.sizes()
        slack = torch.cat(self._slack) if self._slack else torch.zeros_like(per)
        ok = per <= s.eps + slack if s.eps is not None else torch.ones_like(per, dtype=torch.bool)
        in_box = torch.stack(self._in_box).all() if self._in_box else torch.ones((), dtype=torch.bool)
        zero = torch.zeros(1, dtype=torch.float64, device=per.device)
        # max(0, ...) of an empty batch is 0; one tensor to the host for all four numbers
        stats = torch.stack([torch.cat([zero, per]).max(), torch.cat([zero, slack]).max(),
                             ok.all().double(), in_box.to(per.device).double()]).tolist()
        return {
            "attack": s.label,
            "norm": s.norm.value,
            "eps": s.eps,
            "max": stats[0],
            "tolerance": stats[1],
            "within_eps": s.eps is None or bool(stats[2]),
            "in_box": None if self.box is None else bool(stats[3]),
        }


def perturbation_report(
    x: torch.Tensor, x_adv: torch.Tensor, spec: AttackSpec, *, flow: torch.Tensor | None = None,
    box: Box | None = IMAGE_BOX,
) -> dict:
    """Per-sample perturbation size in the spec's norm, and whether it respects the budget and the box: a
    :class:`PerturbationMeter`'s summary of one batch, with the sizes as ``per_sample``."""
    meter = PerturbationMeter(spec, box=box)
    meter.add(x, x_adv, flow=flow)
    return meter.summary() | {"per_sample": meter.sizes().tolist()}

