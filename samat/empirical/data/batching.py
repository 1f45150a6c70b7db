"""Device-side batching: images converted to float and augmented on the tensor's own device, a batch at a
time, with no DataLoader workers (as KellerJordan/cifar10-airbench does). All randomness of a pass (shuffle
order, crop offsets, flips) comes from one ``torch.Generator``, so the same generator state gives the same
batches and a run can be resumed exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from samat.core.errors import ParameterError
from samat.core.numbers import is_int
from samat.empirical.vocabulary import Augment

# (inputs, targets, generator, the batch's indices into the stored data) -> augmented (inputs, targets)
PairAugment = Callable[[torch.Tensor, torch.Tensor, torch.Generator | None, torch.Tensor],
                        tuple[torch.Tensor, torch.Tensor]]
CROP_PADDING = 4  # pixels of reflect padding for the random crop (CIFAR convention)
Box = tuple[float, float]  # the range every input coordinate must stay in
IMAGE_BOX: Box = (0.0, 1.0)  # the [0, 1] box of images as models see them (as_inputs), where attacks must stay


def to_float_images(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1] (x / 255)."""
    if x_uint8.dtype != torch.uint8:
        raise TypeError(f"to_float_images expects uint8 images, got {x_uint8.dtype}")
    return x_uint8.to(torch.float32).div_(255)


def as_inputs(x: torch.Tensor) -> torch.Tensor:
    """Stored examples to model inputs: uint8 images become float32 in [0, 1] (:data:`IMAGE_BOX`), token ids (int64)
    stay as they are, other inputs become float32."""
    if x.dtype == torch.uint8:
        return to_float_images(x)
    return x if x.dtype == torch.int64 else x.to(torch.float32)


def _check_augment(x: torch.Tensor, mode: str, generator: torch.Generator | None) -> Augment:
    """What ``augment_batch`` needs of its arguments (checked once per stream by BatchStream); the mode parsed."""
    mode = Augment.parse(mode, "augment")
    if mode is Augment.NONE:
        return mode
    if x.ndim != 4:
        raise ParameterError("augment", mode, f"'none' for inputs of shape {tuple(x.shape[1:])} (not images)")
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"the generator is on {generator.device} but the data on {x.device}: "
                         "create it with torch.Generator(device=x.device)")
    return mode


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator | None) -> torch.Tensor:
    """Augment a float batch (N, C, H, W) in [0, 1], all samples at once on x's device.

    "crop_flip": random crop of the 4-pixel reflect-padded image plus horizontal flip with
    probability 1/2 (the standard CIFAR augmentation); "crop": the crop only; "none": identity.
    Draws, in order, the crop offsets (2, N) and the flip coins (N,) from ``generator``.
    """
    return _augment(x, _check_augment(x, mode, generator), generator)


def _augment(x: torch.Tensor, mode: str, generator: torch.Generator | None) -> torch.Tensor:
    """``augment_batch`` without the checks of its arguments."""
    if mode == "none":
        return x
    n, c, h, w = x.shape
    p = CROP_PADDING
    padded = F.pad(x, (p, p, p, p), mode="reflect")
    # Crop: each sample's window starts at its own offset (oy, ox) in [0, 2p]; two gathers pick it out.
    offsets = torch.randint(0, 2 * p + 1, (2, n), generator=generator, device=x.device)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # (N, W)
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * p))
    out = out.gather(3, cols[:, None, None, :].expand(n, c, h, w))
    if mode == "crop_flip":
        flip = torch.rand(n, generator=generator, device=x.device) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(3), out)
    return out


class BatchStream:
    """Device-side batching: one pass over (x, y) in batches; images are converted to float in [0, 1]
    and augmented on the tensor's own device.

    Iterating again starts a new pass (a new shuffle drawn from ``generator``). Random draws happen
    as the pass proceeds: the permutation at the first batch, then each batch's augmentation.

    ``augment`` is a mode of :class:`~empirical.vocabulary.Augment` (applied to x), or a callable
    ``(x, y, generator, indices) -> (x, y)`` that augments inputs and targets together (segmentation's masks). ``steps``
    makes a pass exactly that many full batches, shuffling again whenever the data runs out (what a schedule
    counted in iterations trains on); None: one pass over the data.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool,
                 augment: str | PairAugment = "none", generator: torch.Generator | None = None,
                 drop_last: bool = False, steps: int | None = None) -> None:
        if not is_int(batch_size) or batch_size < 1:
            raise ParameterError("batch_size", batch_size, "an integer >= 1")
        self.joint = augment if callable(augment) else None
        if self.joint is not None:
            augment = "none"
        augment = _check_augment(x, augment, generator)  # once here, not per batch: every batch is on x's device
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
        if steps is not None and not (is_int(steps) and steps >= 1 and batch_size <= x.shape[0]):
            raise ParameterError("batch_size", batch_size, f"at most the {x.shape[0]} training examples, so that "
                                 "every iteration gets a full batch")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle, self.augment, self.generator, self.drop_last = shuffle, augment, generator, drop_last
        self.steps = steps

    def __len__(self) -> int:
        if self.steps is not None:
            return self.steps
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self) -> Iterator[torch.Tensor]:
        """The batches' indices: one pass, or ``steps`` full batches drawn from as many passes as they need."""
        n, device = self.x.shape[0], self.x.device
        if self.steps is None:
            order = (torch.randperm(n, generator=self.generator, device=device) if self.shuffle
                     else torch.arange(n, device=device))
            for i in range(len(self)):
                yield order[i * self.batch_size:(i + 1) * self.batch_size]
            return
        order, used = None, n
        for _ in range(self.steps):
            if used + self.batch_size > n:
                order = (torch.randperm(n, generator=self.generator, device=device) if self.shuffle
                         else torch.arange(n, device=device))
                used = 0
            yield order[used:used + self.batch_size]
            used += self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in self._order():
            x, y = as_inputs(self.x[idx]), self.y[idx].to(torch.int64)
            if self.joint is not None:
                yield self.joint(x, y, self.generator, idx)
            else:
                yield _augment(x, self.augment, self.generator), y
