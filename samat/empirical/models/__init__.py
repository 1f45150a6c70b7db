"""The networks the papers train, built by name, each with its input normalization inside.

Every model's first module is :class:`Normalize`, so every attack works on [0, 1] pixels with eps in pixel
units, and the mean and standard deviation travel in ``state_dict`` (RobustBench's convention).

>>> import torch
>>> model = build_model("small_cnn", input_shape=(1, 28, 28), num_classes=10, mean=(0.286,), std=(0.353,))
>>> model(torch.rand(4, 1, 28, 28)).shape
torch.Size([4, 10])

Architectures (:class:`~empirical.vocabulary.Architecture`, built by the table :data:`BUILDERS`):

- ``prn18``: PreActResNet-18 (He et al. 2016), :mod:`.preact_resnet`; both papers' main backbone.
- ``wrn28_10``: WideResNet-28-10 (Zagoruyko & Komodakis 2016), :mod:`.wide_resnet`; duality paper Table 6.
- ``deit_tiny``: DeiT-Tiny on 4x4 patches (Touvron et al. 2021), :mod:`.deit`; duality paper Table 6.
- ``small_cnn``: a 3-conv BatchNorm CNN, :mod:`.small_cnn`; the project's CPU runs on Fashion-MNIST.
- ``linear``: bias-free w . x with the logistic loss, :mod:`.linear`; the papers' Gaussian model (Section 3).
- ``deeplabv3_resnet50`` / ``deeplabv3_mobilenetv2``: DeepLabv3 for semantic segmentation, :mod:`.deeplab`;
  duality paper Tables 8 and 9; ``deeplabv3_small``, the DeepLab head on a 4-layer CNN, the project's CPU runs of
  segmentation. Their options (output stride, auxiliary head, width, ...) are
  :class:`~.deeplab.DeepLabOptions`, passed as ``options``.
- ``transformer``: a Hugging Face sequence classifier on token ids, :mod:`.transformer` (D Table 10's
  distilbert-base-uncased); ``options`` name it (``model``: a hub name or a folder) and the tokenizer's ``pad_id``.
  Importing this package never imports transformers (the text extra): building one does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from samat.core.errors import ParameterError
from samat.core.numbers import is_int
from samat.empirical.vocabulary import Architecture, Task

from .deeplab import (
    DeepLabOptions,
    DeepLabV3,
    deeplabv3_mobilenetv2,
    deeplabv3_resnet50,
    deeplabv3_small,
    load_backbone,
)
from .deit import DeiT, deit_tiny
from .linear import LinearClassifier
from .normalize import Normalize
from .preact_resnet import PreActResNet18
from .small_cnn import SmallCNN
from .transformer import TextClassifier, build_text_classifier
from .wide_resnet import WideResNet, wrn28_10

__all__ = ["BUILDERS", "Architecture", "DeepLabOptions", "DeepLabV3", "DeiT", "LinearClassifier", "Normalize",
           "PreActResNet18", "SmallCNN", "TextClassifier", "WideResNet", "build_model", "count_parameters",
           "load_backbone"]

DEIT_PATCH_SIZE = 4  # 8x8 = 64 tokens on 32x32 images
SMALL_CNN_MIN_SIZE = 8  # three 2x2 max-pools must leave at least one pixel


Builder = Callable[..., nn.Module]  # (input shape, number of classes, mean, std, **options) -> the network


def _deit(shape, num_classes, mean, std):
    channels, height, width = shape
    if height % DEIT_PATCH_SIZE or width % DEIT_PATCH_SIZE:
        raise ParameterError("input_shape", shape,
                             f"(C, H, W) with H and W divisible by deit_tiny's patch size {DEIT_PATCH_SIZE}")
    return deit_tiny((height, width), num_classes, channels, mean, std, patch_size=DEIT_PATCH_SIZE)


def _small_cnn(shape, num_classes, mean, std):
    channels, height, width = shape
    if min(height, width) < SMALL_CNN_MIN_SIZE:
        raise ParameterError("input_shape", shape, f"(C, H, W) with H and W >= {SMALL_CNN_MIN_SIZE} for small_cnn")
    return SmallCNN((height, width), num_classes, channels, mean, std)


def _linear(shape, num_classes, mean, std):
    if len(shape) == 1:
        return LinearClassifier(shape[0], num_classes)
    return LinearClassifier(math.prod(shape), num_classes, mean, std)


def _deeplab(build):
    def builder(shape, num_classes, mean, std, **options):
        return build(num_classes, shape[0], mean, std, DeepLabOptions(**options))
    return builder


def _transformer(shape, num_classes, mean, std, *, model: str, pad_id: int):
    return build_text_classifier(model, num_classes, pad_id)


# One entry per architecture: (input shape, number of classes, mean, std) -> the network, on the CPU; the
# segmentation networks also take their options (DeepLabOptions' fields) as keywords.
BUILDERS: dict[Architecture, Builder] = {
    Architecture.PRN18: lambda shape, k, mean, std: PreActResNet18(k, shape[0], mean, std),
    Architecture.WRN28_10: lambda shape, k, mean, std: wrn28_10(k, shape[0], mean, std),
    Architecture.DEIT_TINY: _deit,
    Architecture.SMALL_CNN: _small_cnn,
    Architecture.LINEAR: _linear,
    Architecture.DEEPLABV3_RESNET50: _deeplab(deeplabv3_resnet50),
    Architecture.DEEPLABV3_MOBILENETV2: _deeplab(deeplabv3_mobilenetv2),
    Architecture.DEEPLABV3_SMALL: _deeplab(deeplabv3_small),
    Architecture.TRANSFORMER: _transformer,
}


def build_model(arch: str, *, input_shape: tuple[int, ...], num_classes: int,
                mean: tuple[float, ...] = (), std: tuple[float, ...] = (),
                options: Mapping[str, Any] | None = None) -> nn.Module:
    """Build ``arch`` for inputs of shape ``input_shape`` ((C, H, W) images or (D,) vectors), on the CPU.

    ``options`` configure a segmentation network (:class:`~.deeplab.DeepLabOptions`' fields) or name a text
    classifier (``model``, ``pad_id``: :mod:`.transformer`; its ``input_shape`` is (L,), token ids); the image
    classifiers take none.

    ``mean`` and ``std`` (one value per channel, pixel units; empty for none) go into the model's first
    module, :class:`Normalize`. Raises :class:`~core.errors.ParameterError` when ``arch`` is unknown or
    cannot take the input: the convolutional and transformer models need images, DeiT needs H and W
    divisible by its patch size (4), vectors take no normalization. ``linear`` flattens images.
    """
    arch = Architecture.parse(arch, "model")
    if arch.task is Task.TEXT:
        if not is_int(num_classes) or num_classes < 2:
            raise ParameterError("num_classes", num_classes, "an integer >= 2")
        if not options or set(options) != {"model", "pad_id"}:
            raise ParameterError("options", dict(options or {}), f"model and pad_id for {arch}")
        return BUILDERS[arch](tuple(input_shape), int(num_classes), (), (), **options)
    shape = tuple(input_shape)
    if len(shape) not in (1, 3) or not all(is_int(s) and s > 0 for s in shape):
        raise ParameterError("input_shape", shape, "(C, H, W) for images or (D,) for vectors, positive integers")
    shape = tuple(int(s) for s in shape)
    if not is_int(num_classes) or num_classes < 2:
        raise ParameterError("num_classes", num_classes, "an integer >= 2")
    mean, std = tuple(mean), tuple(std)
    if len(shape) == 1:
        if not arch.vectors:
            raise ParameterError("input_shape", shape, f"(C, H, W) for {arch}: only linear takes vectors")
        if mean or std:
            raise ParameterError("mean", mean, "() for vector inputs (no normalization)")
    elif mean and len(mean) != shape[0]:
        raise ParameterError("mean", mean, f"a tuple of {shape[0]} values (one per input channel) or ()")
    if options and arch.task is Task.CLASSIFICATION:
        raise ParameterError("options", dict(options), f"empty for {arch} (only segmentation networks take options)")
    return BUILDERS[arch](shape, int(num_classes), mean, std, **(options or {}))


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not; buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
