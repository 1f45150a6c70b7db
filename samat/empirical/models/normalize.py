"""Input normalization inside the model, so that every attack works on [0, 1] pixels.

RobustBench's convention: the per-channel mean and standard deviation are registered buffers, so they travel
with ``state_dict`` and ``.to(device)``, and an attack's eps is always in pixel units.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from samat.core.errors import ParameterError


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with ``mean`` and ``std`` as buffers of shape ``(1, C, 1, 1)``.

    With ``mean == std == ()`` it is the identity (its buffers are then empty), which is what vector inputs use.

    >>> Normalize((0.5,), (0.25,))(torch.ones(1, 1, 2, 2)).flatten().tolist()
    [2.0, 2.0, 2.0, 2.0]
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...] = (), std: tuple[float, ...] = ()) -> None:
        super().__init__()
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if len(mean) != len(std):
            raise ParameterError("std", std, f"a tuple of {len(mean)} values, one per channel of mean={mean}")
        if not all(math.isfinite(m) for m in mean):
            raise ParameterError("mean", mean, "a tuple of finite numbers")
        if not all(math.isfinite(s) and s > 0 for s in std):
            raise ParameterError("std", std, "a tuple of finite numbers > 0")
        self.identity = not mean  # fixed at construction: no data-dependent branch in forward
        shape = (1, len(mean), 1, 1) if mean else (0,)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(shape))

    @property
    def channels(self) -> int:
        """Number of channels normalized (0 for the identity)."""
        return self.mean.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        if self.identity:
            return "identity"
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
