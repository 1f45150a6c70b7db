"""The papers' evaluation threat models, as data, and the attacks that realise them.

"On the duality between SAM and AT", Section 5.1.1 and Tables 2-7, evaluates against FGSM (l-inf, 1/255),
10-step PGD (l-inf 1/255, l2 32/255), AutoAttack (standard, l2 32/255), StAdv (Xiao et al. 2018), FAB
(10 steps, l2 32/255) and the black-box Pixle (at most 5 iterations), "mostly implemented by torchattacks".
"SAM alone can improve adversarial robustness" uses 10-step PGD at l-inf 1/255, 2/255 and l2 16/255, 32/255.

Each threat model is a frozen :class:`AttackSpec` (eps in pixel-intensity units, parsed once from strings
like "8/255" by :func:`parse_eps`); :data:`REGISTRY` holds the papers' entries, :func:`expand` and
:func:`parse_attack` give one spec per eps, and :func:`build_attack` turns a spec into a seeded callable
``attack(x, y) -> x_adv``. torchattacks provides every attack except StAdv, implemented here (:class:`StAdv`).

Choices the papers leave open, stated once here:

- PGD step size ``alpha = 2.5 * eps / steps`` (Madry et al. 2018; RobustBench), with a uniform random start;
  torchattacks' default ``alpha = 2/255`` would exceed the papers' eps = 1/255.
- Pixle: ``max_iterations=5`` per restart, torchattacks' defaults otherwise (20 restarts, patches of 2-10 px).
- FAB: untargeted, 1 restart, 10 steps (torchattacks' defaults apart from eps and steps).
- StAdv: see :class:`StAdv` (flow bound 1 px per axis, 100 Adam steps, tau = 0.05, kappa = 0).
- Points the model already misclassifies are returned unattacked (x_adv = x), as AutoAttack and RobustBench
  do, so that robust accuracy (correct on x_adv) never counts a point that is wrong on x.

Example::

    >>> specs = parse_attack("pgd10_linf@1/255,2/255")  # doctest: +SKIP
    >>> attack = build_attack(specs[0], model, num_classes=10, seed=0, device="cpu")  # doctest: +SKIP
    >>> robust_acc = (model(attack(x, y)).argmax(1) == y).float().mean()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

import numpy as np
import torch
import torchattacks
from torch import nn
from torchattacks.attack import Attack

from empirical.adversarial import pgd
from empirical.config import parse_number
from empirical.evaluate import correct_mask
from theory.errors import ParameterError

UNIT_ROUNDOFF = 2.0**-24  # float32: |fl(a) - a| <= u |a|
Box = tuple[float, float]
IMAGE_BOX: Box = (0.0, 1.0)


class Norm(StrEnum):
    """How a perturbation is measured."""

    LINF = "linf"
    L2 = "l2"
    L0 = "l0"  # number of changed pixel positions (Pixle rearranges pixels; it has no budget)
    FLOW = "flow"  # largest per-axis displacement of StAdv's flow field, in pixels


class Method(StrEnum):
    FGSM = "fgsm"
    PGD = "pgd"
    AUTOATTACK = "autoattack"
    FAB = "fab"
    PIXLE = "pixle"
    STADV = "stadv"


GRADIENT_METHODS = (Method.FGSM, Method.PGD)  # the ones that also run on unboxed vectors


# ---------------------------------------------------------------------------------------------------------
# Specs: threat models as data
# ---------------------------------------------------------------------------------------------------------


def parse_eps(text: str | float) -> float:
    """A budget from a user string: "8/255", "0.5", "1e-3" (or a number). Must be finite and >= 0."""
    value = parse_number(text, "eps")  # the one parser of "8/255"-style numbers (TrainConfig's at_eps uses it too)
    if not (math.isfinite(value) and value >= 0):
        raise ParameterError("eps", text, "a finite number >= 0 (pixel units, e.g. 8/255)")
    return value


def format_eps(eps: float | None, norm: Norm) -> str:
    """The inverse of :func:`parse_eps` for labels: k/255 for intensity budgets that are multiples of 1/255."""
    if eps is None:
        return ""
    if norm in (Norm.LINF, Norm.L2):
        k = Fraction(eps * 255).limit_denominator(1)
        if float(k) / 255 == eps:
            return f"{int(k)}/255"
    return repr(eps)


@dataclass(frozen=True)
class AttackSpec:
    """One evaluation threat model. Build it with :func:`spec`, :func:`expand` or :func:`parse_attack`."""

    name: str  # registry name, e.g. "pgd10_linf"
    method: Method
    norm: Norm
    eps: float | None  # budget: intensity units for linf/l2 (1/255 ...), pixels for flow; None: no budget
    steps: int | None  # iterations (PGD/FAB/StAdv steps, Pixle iterations per restart); None: fixed by method
    step_ratio: float | None = None  # step size / eps: PGD 2.5/steps, FGSM 1, StAdv Adam lr / max flow
    restarts: int = 1  # Pixle restarts
    tau: float = 0.0  # StAdv flow-smoothness weight
    kappa: float = 0.0  # StAdv margin floor

    def __post_init__(self) -> None:
        if self.eps is not None and not (math.isfinite(self.eps) and self.eps >= 0):
            raise ParameterError("eps", self.eps, "a finite number >= 0 (pixel units, e.g. 8/255)")
        if self.steps is not None and (isinstance(self.steps, bool) or self.steps < 0):
            raise ParameterError("steps", self.steps, "an integer >= 0")
        if self.restarts < 1:
            raise ParameterError("restarts", self.restarts, "an integer >= 1")

    @property
    def step_size(self) -> float | None:
        """Absolute step size (PGD alpha; StAdv Adam learning rate in pixels)."""
        if self.step_ratio is None or self.eps is None:
            return None
        return self.step_ratio * self.eps

    @property
    def label(self) -> str:
        """A column name that :func:`parse_attack` reads back to this spec, e.g. "pgd10_linf@1/255"."""
        return self.name if self.eps is None else f"{self.name}@{format_eps(self.eps, self.norm)}"

    def at(self, eps: float | str) -> AttackSpec:
        """The same attack at another budget; relative step sizes scale with it."""
        if self.eps is None:
            raise ParameterError("eps", eps, f"absent for {self.name} (it has no perturbation budget)")
        return dataclasses.replace(self, eps=parse_eps(eps))


def _pgd(name: str, norm: Norm, eps: float, steps: int) -> AttackSpec:
    return AttackSpec(name, Method.PGD, norm, eps, steps, step_ratio=2.5 / steps)


REGISTRY: dict[str, AttackSpec] = {
    s.name: s
    for s in (
        AttackSpec("fgsm_linf", Method.FGSM, Norm.LINF, 1 / 255, steps=1, step_ratio=1.0),
        _pgd("pgd10_linf", Norm.LINF, 1 / 255, 10),
        _pgd("pgd10_l2", Norm.L2, 32 / 255, 10),
        AttackSpec("autoattack_l2", Method.AUTOATTACK, Norm.L2, 32 / 255, steps=None),
        AttackSpec("autoattack_linf", Method.AUTOATTACK, Norm.LINF, 8 / 255, steps=None),
        AttackSpec("fab_l2", Method.FAB, Norm.L2, 32 / 255, steps=10),
        AttackSpec("pixle", Method.PIXLE, Norm.L0, None, steps=5, restarts=20),
        AttackSpec("stadv", Method.STADV, Norm.FLOW, 1.0, steps=100, step_ratio=0.1, tau=0.05, kappa=0.0),
    )
}
_PGD_NAME = re.compile(r"pgd(\d+)_(linf|l2)")


def spec(name: str) -> AttackSpec:
    """The registry entry ``name`` at its default budget; ``pgd<N>_linf`` / ``pgd<N>_l2`` give N-step PGD."""
    key = name.strip().lower()
    if key in REGISTRY:
        return REGISTRY[key]
    m = _PGD_NAME.fullmatch(key)
    if m and int(m.group(1)) >= 1:
        base = REGISTRY[f"pgd10_{m.group(2)}"]
        return _pgd(key, base.norm, base.eps or 0.0, int(m.group(1)))
    raise ParameterError("attack", name, "one of " + ", ".join(REGISTRY) + ", or pgd<N>_linf / pgd<N>_l2")


def expand(name: str, eps_list: Iterable[float | str] | None = None) -> tuple[AttackSpec, ...]:
    """One spec per budget in ``eps_list`` (default: the registry's budget)."""
    base = spec(name)
    if eps_list is None:
        return (base,)
    return tuple(base.at(e) for e in eps_list)


def parse_attack(text: str) -> tuple[AttackSpec, ...]:
    """Specs from a user string ``name[@eps[,eps...]]``, e.g. "pgd10_linf@1/255,2/255" or "stadv@0.5"."""
    name, _, eps_text = text.partition("@")
    return expand(name, [e for e in eps_text.split(",") if e.strip()] if eps_text.strip() else None)


# Table 2/3 columns of the duality paper, in the tables' order.
PAPER_COLUMNS: tuple[AttackSpec, ...] = tuple(
    spec(n) for n in ("fgsm_linf", "pgd10_linf", "pgd10_l2", "autoattack_l2", "stadv", "fab_l2", "pixle")
)
# "SAM alone can improve adversarial robustness", Tables 1-2: 10-step PGD at two budgets per norm.
SAM_ALONE_COLUMNS: tuple[AttackSpec, ...] = expand("pgd10_linf", ["1/255", "2/255"]) + expand(
    "pgd10_l2", ["16/255", "32/255"]
)


# ---------------------------------------------------------------------------------------------------------
# StAdv (Xiao et al. 2018)
# ---------------------------------------------------------------------------------------------------------


def bilinear_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample x (N, C, H, W) at every pixel p displaced by flow[:, :, p] (pixels; channel 0 = along W, 1 = along H).

    ``out[n, c, i, j] = x[n, c, i + v, j + u]`` with bilinear interpolation between the four neighbours of the
    displaced position, clipped to the image (border padding): Xiao et al. 2018, eq. (1). This is
    ``F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)`` with the grid
    ``2 * (p + flow) / (size - 1) - 1``, computed in pixel coordinates instead: grid_sample's normalise /
    unnormalise round trip is inexact in float32 (a zero flow changes about 1 pixel in 4 of a 28x28 image),
    while here a zero or integer flow reproduces (shifts of) the input exactly.
    """
    n, c, h, w = x.shape
    flow = flow.to(torch.float32)
    rows = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w)
    px = (cols + flow[:, 0]).clamp(0, w - 1)  # border padding: clip the source position to the image
    py = (rows + flow[:, 1]).clamp(0, h - 1)
    x0 = px.floor().clamp(max=max(w - 2, 0))
    y0 = py.floor().clamp(max=max(h - 2, 0))
    wx, wy = px - x0, py - y0  # interpolation weights in [0, 1]
    x0i, y0i = x0.long(), y0.long()
    x1i, y1i = (x0i + 1).clamp(max=w - 1), (y0i + 1).clamp(max=h - 1)
    flat = x.reshape(n, c, h * w)

    def at(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        idx = (yi * w + xi).reshape(n, 1, h * w).expand(n, c, h * w)
        return flat.gather(2, idx).reshape(n, c, h, w)

    wx, wy = wx.unsqueeze(1).to(x.dtype), wy.unsqueeze(1).to(x.dtype)
    top = (1 - wx) * at(y0i, x0i) + wx * at(y0i, x1i)
    bottom = (1 - wx) * at(y1i, x0i) + wx * at(y1i, x1i)
    return (1 - wy) * top + wy * bottom


def flow_smoothness(flow: torch.Tensor, delta: float = 1e-8) -> torch.Tensor:
    """Xiao et al. 2018, eq. (4), per sample: sum over pixels p and their 4-neighbours q of
    ``sqrt(|u_p - u_q|^2 + |v_p - v_q|^2 + delta) - sqrt(delta)``.

    Each neighbouring pair appears twice (once from each end), as in the paper's double sum. ``delta`` keeps
    the gradient finite where neighbours agree; subtracting sqrt(delta) makes a constant flow cost exactly 0.
    """
    dh = flow[:, :, :, 1:] - flow[:, :, :, :-1]
    dv = flow[:, :, 1:, :] - flow[:, :, :-1, :]
    root = math.sqrt(delta)
    th = (dh.pow(2).sum(1) + delta).sqrt() - root
    tv = (dv.pow(2).sum(1) + delta).sqrt() - root
    return 2 * (th.flatten(1).sum(1) + tv.flatten(1).sum(1))


def cw_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``Z_y - max_{i != y} Z_i`` per sample (Carlini & Wagner 2017); negative iff misclassified (bar ties)."""
    z_y = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(nn.functional.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    return z_y - others.amax(1)


class StAdv(Attack):
    r"""Spatially transformed adversarial examples (Xiao et al. 2018), untargeted, in torchattacks' style.

    Minimises ``max(Z_y(x_f) - max_{i != y} Z_i(x_f), -kappa) + tau * L_flow(f)`` over a flow field f of shape
    (N, 2, H, W), where ``x_f = bilinear_warp(x, f)`` and L_flow is :func:`flow_smoothness`; Adam for
    ``steps`` steps from f = 0, each step followed by clamping every component of f to [-max_flow, max_flow].
    Per sample it keeps the best iterate: a successful one (misclassified) before any other, then the lowest
    objective. The flow of the last call is left in ``self.last_flow``.

    Defaults and why:

    - ``tau = 0.05`` and ``kappa = 0``: Xiao et al.'s values (Section 4).
    - ``max_flow = 1`` pixel per axis: every output pixel stays a blend of its source pixel's 3x3
      neighbourhood. Xiao et al. bound the flow only through L_flow; a hard bound makes this a threat model
      (Laidlaw & Feizi 2021 use 0.05 in grid units, 0.775 px on 32x32 CIFAR; 1 px is close and independent
      of the image size).
    - Adam with ``steps = 100`` and ``lr = 0.1 * max_flow``: Xiao et al. use L-BFGS, which does not take a
      per-pixel box; Adam with projection is Laidlaw & Feizi's choice (lr 0.01 grid units, about 0.15 px on
      CIFAR), and 100 steps let a component cross its whole range several times.
    """

    def __init__(
        self,
        model: nn.Module,
        max_flow: float = 1.0,
        steps: int = 100,
        lr: float | None = None,
        tau: float = 0.05,
        kappa: float = 0.0,
        box: Box = IMAGE_BOX,
    ) -> None:
        super().__init__("StAdv", model)
        if not (math.isfinite(max_flow) and max_flow >= 0):
            raise ParameterError("max_flow", max_flow, "a finite number >= 0 (pixels)")
        self.max_flow, self.steps, self.tau, self.kappa, self.box = max_flow, steps, tau, kappa, box
        self.lr = 0.1 * max_flow if lr is None else lr
        self.supported_mode = ["default"]
        self.last_flow: torch.Tensor | None = None

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        n, _, h, w = images.shape
        flow = torch.zeros(n, 2, h, w, device=images.device, dtype=torch.float32, requires_grad=True)
        opt = torch.optim.Adam([flow], lr=self.lr)
        best_flow = torch.zeros_like(flow).detach()
        best_adv = images.clone()
        best_success = torch.zeros(n, dtype=torch.bool, device=images.device)
        best_obj = torch.full((n,), float("inf"), device=images.device)
        for i in range(self.steps + 1):
            with torch.enable_grad():
                adv = bilinear_warp(images, flow).clamp(*self.box)
                logits = self.get_logits(adv)
                obj = cw_margin(logits.float(), labels).clamp(min=-self.kappa) + self.tau * flow_smoothness(flow)
            with torch.no_grad():
                success = logits.argmax(1) != labels
                better = (success & ~best_success) | ((success == best_success) & (obj < best_obj))
                best_success |= success
                best_obj = torch.where(better, obj.detach(), best_obj)
                best_flow = torch.where(better[:, None, None, None], flow.detach(), best_flow)
                best_adv = torch.where(better[:, None, None, None], adv.detach(), best_adv)
            if i == self.steps:
                break
            (flow.grad,) = torch.autograd.grad(obj.sum(), flow)  # input gradient only: parameters untouched
            opt.step()
            with torch.no_grad():
                flow.clamp_(-self.max_flow, self.max_flow)
        self.last_flow = best_flow
        return best_adv


# ---------------------------------------------------------------------------------------------------------
# Building seeded attacks
# ---------------------------------------------------------------------------------------------------------


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch (CPU and ``device``) and numpy's global RNGs for the block, then restore the caller's state."""
    devices = [device] if device.type == "cuda" else []
    np_state = np.random.get_state()  # noqa: NPY002 - Pixle uses the legacy global RNG
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        torch.random.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        np.random.seed(seed % 2**32)  # noqa: NPY002 - Pixle draws from numpy's global RNG
        try:
            yield
        finally:
            np.random.set_state(np_state)  # noqa: NPY002


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters for the block; every module's mode and requires_grad restored after.

    Freezing matters: torchattacks' FAB calls ``.backward()``, which would otherwise add to parameters' .grad.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


class BuiltAttack:
    """``attack(x, y) -> x_adv``: a spec bound to a model, a seed and a device. See :func:`build_attack`."""

    def __init__(
        self, spec: AttackSpec, model: nn.Module, *, num_classes: int, seed: int, device: torch.device,
        box: Box | None | str = "auto",
    ) -> None:
        self.spec, self.model, self.num_classes, self.seed, self.device, self.box = (
            spec, model, num_classes, seed, device, box)
        self.last_flow: torch.Tensor | None = None  # StAdv's flow for the last call (zero where not attacked)
        self._torchattack: Attack | None = None

    def _make_torchattack(self) -> Attack:
        s, m = self.spec, self.model
        if s.method is Method.FGSM:
            return torchattacks.FGSM(m, eps=s.eps)
        if s.method is Method.PGD:
            cls = torchattacks.PGD if s.norm is Norm.LINF else torchattacks.PGDL2
            return cls(m, eps=s.eps, alpha=s.step_size, steps=s.steps, random_start=True)
        if s.method is Method.AUTOATTACK:
            return torchattacks.AutoAttack(m, norm=_AA_NORM[s.norm], eps=s.eps, version="standard",
                                           n_classes=self.num_classes, seed=self.seed)
        if s.method is Method.FAB:
            return torchattacks.FAB(m, norm=_AA_NORM[s.norm], eps=s.eps, steps=s.steps, n_restarts=1,
                                    seed=self.seed, n_classes=self.num_classes)
        if s.method is Method.PIXLE:
            return torchattacks.Pixle(m, restarts=s.restarts, max_iterations=s.steps)
        assert s.method is Method.STADV
        return StAdv(m, max_flow=s.eps, steps=s.steps, lr=s.step_size, tau=s.tau, kappa=s.kappa)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, clean: torch.Tensor | None = None) -> torch.Tensor:
        """x_adv for (x, y); ``clean`` (bool (N,), whether the model classifies x correctly) saves the forward
        pass that finds the points to leave unattacked, when the caller already has it."""
        s = self.spec
        x, y = x.to(self.device), y.to(self.device)
        image = x.dim() == 4
        box = (IMAGE_BOX if image else None) if self.box == "auto" else self.box
        own_pgd = s.method in GRADIENT_METHODS and (not image or box != IMAGE_BOX)
        if not own_pgd and not (image and box == IMAGE_BOX):
            raise ParameterError("attack", s.name, f"used on (N, C, H, W) images in [0, 1] only, got {tuple(x.shape)}"
                                 f" with box {box}")
        with _evaluating(self.model), _seeded(self.seed, self.device):
            if clean is None:
                with torch.no_grad():
                    clean = self.model(x).argmax(1) == y
            if own_pgd:
                gen = torch.Generator(device=self.device).manual_seed(self.seed)
                x_adv = pgd(self.model, x, y, norm=s.norm.value, eps=s.eps, alpha=s.step_size, steps=s.steps,
                            random_start=s.method is Method.PGD, generator=gen, box=box)
            else:
                if self._torchattack is None:
                    self._torchattack = self._make_torchattack()
                x_adv = self._torchattack(x, y)
        keep = clean.to(self.device).view(-1, *([1] * (x.dim() - 1)))
        if s.method is Method.STADV:
            self.last_flow = torch.where(keep, self._torchattack.last_flow, 0.0)
        return torch.where(keep, x_adv.to(x.dtype), x).detach()


_AA_NORM = {Norm.LINF: "Linf", Norm.L2: "L2"}


def build_attack(
    spec: AttackSpec, model: nn.Module, *, num_classes: int, seed: int, device: torch.device | str,
    box: Box | None | str = "auto",
) -> BuiltAttack:
    """A reproducible attack ``(x, y) -> x_adv`` for ``spec`` on ``model`` (which maps [0, 1] images to logits).

    Every call runs in eval mode with frozen parameters and with torch's and numpy's RNGs seeded from ``seed``
    (the caller's RNG states, modes and requires_grad flags are restored afterwards); AutoAttack and FAB also
    get ``seed`` directly. Points misclassified on x are returned as x.

    ``box="auto"`` keeps images (N, C, H, W) in [0, 1] and leaves vectors (N, D) unclamped; FGSM/PGD then run
    on :func:`empirical.adversarial.pgd` (same algorithm as torchattacks', without the box). ``box=None`` or
    another range forces that path for images too. AutoAttack, FAB, Pixle and StAdv are image-only and raise
    a :class:`ParameterError` on anything else.
    """
    if num_classes < 2:
        raise ParameterError("num_classes", num_classes, "an integer >= 2")
    return BuiltAttack(spec, model, num_classes=num_classes, seed=int(seed), device=torch.device(device), box=box)


# ---------------------------------------------------------------------------------------------------------
# Checks on the result
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# AutoAttack: torchattacks' re-implementation against the reference code
# ---------------------------------------------------------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _quiet_reference(capture: _Capture) -> Iterator[None]:
    """Route pyautoattack's 'auto-attack' logger into ``capture``; restore its settings and sys.settrace after
    (its dynamic-defence check calls ``sys.settrace`` and then clears any tracer, e.g. coverage's)."""
    logger = logging.getLogger("auto-attack")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    tracer = sys.gettrace()
    logger.handlers, logger.propagate = [capture], False
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate, logger.handlers = saved[1], saved[2]
        sys.settrace(tracer)


def crosscheck_autoattack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float | str, norm: str = "L2", seed: int,
    batch_size: int = 250,
) -> dict:
    """Robust accuracy under standard AutoAttack from torchattacks and from the reference code (pyautoattack).

    Both run on the same model, images and seed, in eval mode with frozen parameters. Accuracies are fractions
    in [0, 1]; ``difference`` is torchattacks minus reference; ``disagreements`` counts the images that one
    finds robust and the other does not. The reference's log warnings are returned, not printed.
    """
    from pyautoattack import AutoAttack as ReferenceAutoAttack  # the wheel's import name, not "autoattack"

    norm_enum = {"linf": Norm.LINF, "l2": Norm.L2}.get(norm.lower())
    if norm_enum is None:
        raise ParameterError("norm", norm, "L2 or Linf")
    eps_value = parse_eps(eps)
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    aa_spec = spec(f"autoattack_{norm_enum.value}").at(eps_value)
    num_classes = int(_peek_classes(model, x))

    attack = build_attack(aa_spec, model, num_classes=num_classes, seed=seed, device=device)
    t0 = time.perf_counter()
    x_ta = torch.cat([attack(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    t_ta = time.perf_counter() - t0

    capture = _Capture()
    with _evaluating(model), _seeded(seed, device), _quiet_reference(capture):
        reference = ReferenceAutoAttack(model, norm=_AA_NORM[norm_enum], eps=eps_value, version="standard",
                                        device=device, seed=seed)
        reference.verbose = False
        t0 = time.perf_counter()
        x_ref = reference.run_standard_evaluation(x, y, batch_size=batch_size)[0]
        t_ref = time.perf_counter() - t0

    with _evaluating(model):
        clean = correct_mask(model, x, y, batch_size=batch_size)
        robust_ta = correct_mask(model, x_ta, y, batch_size=batch_size) & clean
        robust_ref = correct_mask(model, x_ref.to(device), y, batch_size=batch_size) & clean
    n = len(x)
    acc_ta, acc_ref = int(robust_ta.sum()) / n, int(robust_ref.sum()) / n
    return {
        "n": n,
        "norm": _AA_NORM[norm_enum],
        "eps": eps_value,
        "seed": seed,
        "clean_accuracy": int(clean.sum()) / n,
        "robust_accuracy_torchattacks": acc_ta,
        "robust_accuracy_reference": acc_ref,
        "difference": acc_ta - acc_ref,
        "disagreements": int((robust_ta != robust_ref).sum()),
        "seconds_torchattacks": t_ta,
        "seconds_reference": t_ref,
        "reference_warnings": capture.messages,
    }


def _peek_classes(model: nn.Module, x: torch.Tensor) -> int:
    with _evaluating(model), torch.no_grad():
        return model(x[:1]).shape[1]
