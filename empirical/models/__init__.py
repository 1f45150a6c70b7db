"""The networks the papers train, built by name, each with its input normalization inside.

Every model's first module is :class:`Normalize`, so every attack works on [0, 1] pixels with eps in pixel
units, and the mean and standard deviation travel in ``state_dict`` (RobustBench's convention).

>>> import torch
>>> model = build_model("small_cnn", input_shape=(1, 28, 28), num_classes=10, mean=(0.286,), std=(0.353,))
>>> model(torch.rand(4, 1, 28, 28)).shape
torch.Size([4, 10])

Architectures (``ARCHITECTURES``):

- ``prn18``: PreActResNet-18 (He et al. 2016), :mod:`.preact_resnet`; both papers' main backbone.
- ``wrn28_10``: WideResNet-28-10 (Zagoruyko & Komodakis 2016), :mod:`.wide_resnet`; duality paper Table 6.
- ``deit_tiny``: DeiT-Tiny on 4x4 patches (Touvron et al. 2021), :mod:`.deit`; duality paper Table 6.
- ``small_cnn``: a 3-conv BatchNorm CNN, :mod:`.small_cnn`; the project's CPU runs on Fashion-MNIST.
- ``linear``: bias-free w . x with the logistic loss, :mod:`.linear`; the papers' Gaussian model (Section 3).
"""

from __future__ import annotations

import math

from torch import nn

from empirical.config import ARCHITECTURES, is_int
from theory.errors import ParameterError

from .deit import DeiT, deit_tiny
from .linear import LinearClassifier
from .normalize import Normalize
from .preact_resnet import PreActResNet18
from .small_cnn import SmallCNN
from .wide_resnet import WideResNet, wrn28_10

__all__ = ["ARCHITECTURES", "DeiT", "LinearClassifier", "Normalize", "PreActResNet18", "SmallCNN", "WideResNet",
           "build_model", "count_parameters"]

DEIT_PATCH_SIZE = 4  # 8x8 = 64 tokens on 32x32 images
SMALL_CNN_MIN_SIZE = 8  # three 2x2 max-pools must leave at least one pixel


def build_model(arch: str, *, input_shape: tuple[int, ...], num_classes: int,
                mean: tuple[float, ...] = (), std: tuple[float, ...] = ()) -> nn.Module:
    """Build ``arch`` for inputs of shape ``input_shape`` ((C, H, W) images or (D,) vectors), on the CPU.

    ``mean`` and ``std`` (one value per channel, pixel units; empty for none) go into the model's first
    module, :class:`Normalize`. Raises :class:`~theory.errors.ParameterError` when ``arch`` is unknown or
    cannot take the input: the convolutional and transformer models need images, DeiT needs H and W
    divisible by its patch size (4), vectors take no normalization. ``linear`` flattens images.
    """
    if arch not in ARCHITECTURES:
        raise ParameterError("model", arch, f"one of {', '.join(ARCHITECTURES)}")
    shape = tuple(input_shape)
    if len(shape) not in (1, 3) or not all(is_int(s) and s > 0 for s in shape):
        raise ParameterError("input_shape", shape, "(C, H, W) for images or (D,) for vectors, positive integers")
    shape = tuple(int(s) for s in shape)
    if not is_int(num_classes) or num_classes < 2:
        raise ParameterError("num_classes", num_classes, "an integer >= 2")
    num_classes = int(num_classes)
    mean, std = tuple(mean), tuple(std)
    if len(shape) == 1:
        if arch != "linear":
            raise ParameterError("input_shape", shape, f"(C, H, W) for {arch}: only linear takes vectors")
        if mean or std:
            raise ParameterError("mean", mean, "() for vector inputs (no normalization)")
        return LinearClassifier(shape[0], num_classes)
    channels, height, width = shape
    if mean and len(mean) != channels:
        raise ParameterError("mean", mean, f"a tuple of {channels} values (one per input channel) or ()")
    match arch:
        case "prn18":
            return PreActResNet18(num_classes, channels, mean, std)
        case "wrn28_10":
            return wrn28_10(num_classes, channels, mean, std)
        case "deit_tiny":
            if height % DEIT_PATCH_SIZE or width % DEIT_PATCH_SIZE:
                raise ParameterError("input_shape", shape,
                                     f"(C, H, W) with H and W divisible by deit_tiny's patch size {DEIT_PATCH_SIZE}")
            return deit_tiny((height, width), num_classes, channels, mean, std, patch_size=DEIT_PATCH_SIZE)
        case "small_cnn":
            if min(height, width) < SMALL_CNN_MIN_SIZE:
                raise ParameterError("input_shape", shape,
                                     f"(C, H, W) with H and W >= {SMALL_CNN_MIN_SIZE} for small_cnn")
            return SmallCNN((height, width), num_classes, channels, mean, std)
        case _:  # "linear"
            return LinearClassifier(math.prod(shape), num_classes, mean, std)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not; buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
