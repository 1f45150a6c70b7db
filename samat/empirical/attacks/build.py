"""A threat model bound to a model, a seed and a device: ``attack(x, y) -> x_adv``.

torchattacks provides every attack except StAdv (:mod:`.stadv`), PGD on unboxed vectors (:mod:`.pgd`) and Pixle,
which runs on whole batches (:mod:`.pixle`; torchattacks' image-by-image Pixle is ``pixle_torchattacks``).
Points the model already misclassifies are returned unattacked (x_adv = x), as AutoAttack and RobustBench do,
so that robust accuracy (correct on x_adv) never counts a point that is wrong on x.

Example::

    >>> specs = parse_attack("pgd10_linf@1/255,2/255")  # doctest: +SKIP
    >>> attack = build_attack(specs[0], model, num_classes=10, seed=0, device="cpu")  # doctest: +SKIP
    >>> robust_acc = (model(attack(x, y)).argmax(1) == y).float().mean()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torchattacks
from torch import nn
from torchattacks.attack import Attack

from samat.core.errors import ParameterError
from samat.empirical.attacks.pgd import LossFn, pgd
from samat.empirical.attacks.pixle import BatchedPixle
from samat.empirical.attacks.specs import GRADIENT_ALGORITHMS, TEXT_ALGORITHMS, Algorithm, AttackSpec
from samat.empirical.attacks.stadv import StAdv
from samat.empirical.data import IMAGE_BOX, Box
from samat.empirical.vocabulary import Norm


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
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
def parameters_frozen(model: nn.Module) -> Iterator[None]:
    """The parameters do not require gradients for the block (restored after): PGD's passes need the input's
    gradient only. Eager autograd skips the weight gradients anyway; a compiled model's backward graph would
    compute them all unless the parameters are frozen."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters for the block; every module's mode and requires_grad restored after.

    Freezing matters: torchattacks' FAB calls ``.backward()``, which would otherwise add to parameters' .grad.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with parameters_frozen(model):
            yield
    finally:
        for m, mode in modes:
            m.training = mode


class BuiltAttack:
    """``attack(x, y) -> x_adv``: a spec bound to a model, a seed and a device. See :func:`build_attack`."""

    def __init__(
        self, spec: AttackSpec, model: nn.Module, *, num_classes: int, seed: int, device: torch.device,
        box: Box | None | str = "auto", loss: LossFn | None = None,
    ) -> None:
        self.spec, self.model, self.num_classes, self.seed, self.device, self.box, self.loss = (
            spec, model, num_classes, seed, device, box, loss)
        self.last_flow: torch.Tensor | None = None  # StAdv's flow for the last call (zero where not attacked)
        self._torchattack: Attack | None = None

    def _make_torchattack(self) -> Attack:
        s, m = self.spec, self.model
        if s.algorithm is Algorithm.FGSM:
            return torchattacks.FGSM(m, eps=s.eps)
        if s.algorithm is Algorithm.PGD:
            cls = torchattacks.PGD if s.norm is Norm.LINF else torchattacks.PGDL2
            return cls(m, eps=s.eps, alpha=s.step_size, steps=s.steps, random_start=True)
        if s.algorithm is Algorithm.AUTOATTACK:
            return torchattacks.AutoAttack(m, norm=s.norm.autoattack, eps=s.eps, version="standard",
                                           n_classes=self.num_classes, seed=self.seed)
        if s.algorithm is Algorithm.FAB:
            return torchattacks.FAB(m, norm=s.norm.autoattack, eps=s.eps, steps=s.steps, n_restarts=1,
                                    seed=self.seed, n_classes=self.num_classes)
        if s.algorithm is Algorithm.PIXLE_TORCHATTACKS:
            return torchattacks.Pixle(m, restarts=s.restarts, max_iterations=s.steps)
        assert s.algorithm is Algorithm.STADV
        return StAdv(m, max_flow=s.eps, steps=s.steps, lr=s.step_size, tau=s.tau, kappa=s.kappa)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, clean: torch.Tensor | None = None) -> torch.Tensor:
        """x_adv for (x, y); ``clean`` (bool (N,), whether the model classifies x correctly) saves the forward
        pass that finds the points to leave unattacked, when the caller already has it."""
        s = self.spec
        x, y = x.to(self.device), y.to(self.device)
        image = x.dim() == 4
        box = (IMAGE_BOX if image else None) if self.box == "auto" else self.box
        own_pgd = s.algorithm in GRADIENT_ALGORITHMS and (self.loss is not None or not image or box != IMAGE_BOX)
        if not own_pgd and not (image and box == IMAGE_BOX):
            raise ParameterError("attack", s.name, f"used on (N, C, H, W) images in [0, 1] only, got {tuple(x.shape)}"
                                 f" with box {box}")
        with evaluating(self.model), seeded(self.seed, self.device):
            if clean is None and self.loss is None:
                with torch.no_grad():
                    clean = self.model(x).argmax(1) == y
            if own_pgd:
                gen = torch.Generator(device=self.device).manual_seed(self.seed)
                x_adv = pgd(self.model, x, y, norm=s.norm.value, eps=s.eps, step_size=s.step_size, steps=s.steps,
                            random_start=s.algorithm is Algorithm.PGD, generator=gen, box=box, loss_fn=self.loss)
                if self.loss is not None:  # every example is attacked: "wrong" is not one bit per example here
                    return x_adv.detach()
            elif s.algorithm is Algorithm.PIXLE:
                gen = torch.Generator(device=self.device).manual_seed(self.seed)
                pixle = BatchedPixle(self.model, restarts=s.restarts, max_iterations=s.steps)
                x_adv = pixle(x, y, gen)
            else:
                if self._torchattack is None:
                    self._torchattack = self._make_torchattack()
                x_adv = self._torchattack(x, y)
        keep = clean.to(self.device).view(-1, *([1] * (x.dim() - 1)))
        if s.algorithm is Algorithm.STADV:
            self.last_flow = torch.where(keep, self._torchattack.last_flow, 0.0)
        return torch.where(keep, x_adv.to(x.dtype), x).detach()


def build_attack(
    spec: AttackSpec, model: nn.Module, *, num_classes: int, seed: int, device: torch.device | str,
    box: Box | None | str = "auto", loss: LossFn | None = None,
) -> BuiltAttack:
    """A reproducible attack ``(x, y) -> x_adv`` for ``spec`` on ``model`` (which maps [0, 1] images to logits).

    Every call runs in eval mode with frozen parameters and with torch's and numpy's RNGs seeded from ``seed``
    (the caller's RNG states, modes and requires_grad flags are restored afterwards); AutoAttack and FAB also
    get ``seed`` directly. Points misclassified on x are returned as x.

    ``box="auto"`` keeps images (N, C, H, W) in [0, 1] and leaves vectors (N, D) unclamped; FGSM/PGD then run
    on :func:`samat.empirical.attacks.pgd.pgd` (same algorithm as torchattacks', without the box). ``box=None`` or
    another range forces that path for images too. AutoAttack, FAB, Pixle and StAdv are image-only and raise
    a :class:`ParameterError` on anything else.

    ``loss`` (``loss(output, y) -> scalar``, e.g. the summed per-pixel cross-entropy of a segmentation network)
    replaces the cross-entropy of the labels that FGSM and PGD ascend; they then run on
    :func:`~samat.empirical.attacks.pgd.pgd` and attack every example (the task, not the attack, says what a
    wrong prediction is). Other attacks do not take a loss.
    """
    if num_classes < 2:
        raise ParameterError("num_classes", num_classes, "an integer >= 2")
    if spec.algorithm in TEXT_ALGORITHMS:
        raise ParameterError("attack", spec.name, "an attack on images or vectors (pso and iga attack sentences: "
                             "evaluate a text run)")
    if loss is not None and spec.algorithm not in GRADIENT_ALGORITHMS:
        raise ParameterError("attack", spec.name, "fgsm or pgd for a loss of the task's own (an attack on its "
                             "gradient)")
    return BuiltAttack(spec, model, num_classes=num_classes, seed=int(seed), device=torch.device(device), box=box,
                       loss=loss)


