"""What training needs to know about semantic segmentation (D Section 5.2): the ``segmentation`` table of a
configuration, the objective (per-pixel cross-entropy with the ignore label), the joint augmentation of images
and masks, the ImageNet weights of the backbone, and the test scores of a round (pixel accuracy and mIoU).

The ``segmentation`` table (every key optional)::

    segmentation = { output_stride = 16, aux = false, aux_weight = 0.5, width = 1.0, aspp_channels = 256,
                     atrous_rates = [6, 12, 18], dropout = 0.1, crop = [513, 513], scale = [0.5, 2.0],
                     backbone_weights = "mobilenet_v2-b0353104.pth" }

``crop`` and ``scale`` default to the dataset's (VOC: 513x513 and 0.5-2, as in VainF/DeepLabV3Plus-Pytorch);
``backbone_weights`` is an ImageNet ``state_dict`` file in torchvision's layout (D Table 9 starts from ImageNet
weights; without one the backbone starts from random initialization, which D Table 8 uses).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samat.core.errors import ParameterError, SamatError, checked_table
from samat.core.numbers import is_int
from samat.empirical.data import JointAugment, SegmentationDataset
from samat.empirical.models import DeepLabOptions, load_backbone
from samat.empirical.pixelwise import miou_score, pixel_accuracy, pixel_accuracy_sum, pixel_loss, predicted_confusion
from samat.empirical.vocabulary import Architecture

MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(DeepLabOptions))
SEGMENTATION_FIELDS = (*MODEL_FIELDS, "aux_weight", "crop", "scale", "backbone_weights")
PRETRAINED = (Architecture.DEEPLABV3_MOBILENETV2,)  # the networks the paper starts from ImageNet weights (Table 9)


@dataclass(frozen=True)
class SegmentationSpec:
    """A configuration's ``segmentation`` table, parsed and validated."""

    model: DeepLabOptions = field(default_factory=DeepLabOptions)
    aux_weight: float = 0.5  # weight of the auxiliary head's loss (torchvision's reference scripts), when aux
    crop: tuple[int, int] | None = None  # None: the dataset's
    scale: tuple[float, float] | None = None  # None: the dataset's
    backbone_weights: str | None = None  # an ImageNet state_dict file in torchvision's layout

    @classmethod
    def from_table(cls, table: object, name: str = "segmentation") -> SegmentationSpec:
        """The spec of a ``segmentation`` table; a bad key or value is a ParameterError naming ``name.key``."""
        values = checked_table(table, name, SEGMENTATION_FIELDS)
        if isinstance(values.get("atrous_rates"), list):
            values["atrous_rates"] = tuple(values["atrous_rates"])
        try:
            model = DeepLabOptions(**{k: values.pop(k) for k in MODEL_FIELDS if k in values})
        except ParameterError as err:
            raise ParameterError(f"{name}.{err.name}", err.value, err.valid) from None
        spec = cls(model, **{k: v for k, v in values.items() if k in ("aux_weight", "backbone_weights")})
        spec._check(name)
        crop, scale = values.get("crop"), values.get("scale")
        if crop is not None:
            if not (isinstance(crop, list | tuple) and len(crop) == 2 and all(is_int(c) and c >= 1 for c in crop)):
                raise ParameterError(f"{name}.crop", crop, "two integers >= 1: [height, width]")
            object.__setattr__(spec, "crop", (int(crop[0]), int(crop[1])))
        if scale is not None:
            ok = isinstance(scale, list | tuple) and len(scale) == 2 and all(
                isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) for s in scale)
            if not (ok and 0 < scale[0] <= scale[1]):
                raise ParameterError(f"{name}.scale", scale, "two numbers 0 < low <= high, e.g. [0.5, 2.0]")
            object.__setattr__(spec, "scale", (float(scale[0]), float(scale[1])))
        return spec

    def _check(self, name: str) -> None:
        w = self.aux_weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not (math.isfinite(w) and w >= 0):
            raise ParameterError(f"{name}.aux_weight", w, "a finite number >= 0")
        if self.backbone_weights is not None:
            path = self.backbone_weights
            if not isinstance(path, str) or not Path(path).is_file():
                raise ParameterError(f"{name}.backbone_weights", path, "an existing state_dict file (ImageNet "
                                     "weights in torchvision's layout, e.g. mobilenet_v2-b0353104.pth)")

    @property
    def model_options(self) -> dict[str, Any]:
        """The network's options, as :func:`samat.empirical.models.build_model` takes them."""
        return dataclasses.asdict(self.model)


def backbone_note(model: Architecture, spec: SegmentationSpec) -> str | None:
    """One line for the log when a network the paper starts from ImageNet weights gets none (or None)."""
    if model in PRETRAINED and spec.backbone_weights is None:
        return (f"note: no ImageNet weights for {model.display}'s backbone (segmentation.backbone_weights): it starts "
                "from random initialization, while D Table 9 starts from ImageNet-pretrained weights")
    return None


def load_backbone_weights(model: nn.Module, spec: SegmentationSpec) -> None:
    """Copy the ImageNet weights named by the spec into the model's backbone (nothing when it names none)."""
    if spec.backbone_weights is None:
        return
    try:
        state = torch.load(spec.backbone_weights, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same one-line error
        raise SamatError(f"cannot read {spec.backbone_weights} as a state_dict ({type(err).__name__}): give "
                         "ImageNet weights saved with torch.save(model.state_dict())") from None
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise SamatError(f"{spec.backbone_weights} holds a {type(state).__name__}, not a state_dict")
    load_backbone(model, state, spec.backbone_weights)


def joint_augment(data: SegmentationDataset, spec: SegmentationSpec, device: torch.device) -> JointAugment:
    """The training augmentation: random scale, crop and flip with the spec's crop and scale (the dataset's by
    default), each window placed on its image."""
    return JointAugment(spec.crop or data.crop, spec.scale or data.scale, sizes=data.train_sizes.to(device))


def objective(spec: SegmentationSpec) -> tuple:
    """(loss, correct) for :class:`~empirical.training.steps.Objective`: per-pixel cross-entropy (with the
    auxiliary head's at ``aux_weight``), and Σ per-image pixel accuracy."""
    weight = float(spec.aux_weight) if spec.model.aux else 0.0

    def loss(output, y, reduction="mean"):
        return pixel_loss(output, y, reduction, aux_weight=weight)

    return loss, pixel_accuracy_sum


def test_scores(model: nn.Module, data: SegmentationDataset, *, batch_size: int, bf16: bool,
                channels_last: bool) -> dict[str, float]:
    """Pixel accuracy and mIoU (D eq. 15) on the test split, every image at its own size."""
    matrix = predicted_confusion(model, data.test_x, data.test_y, data.test_sizes, data.num_classes,
                                 batch_size=batch_size, bf16=bf16, channels_last=channels_last).sum(0)
    return {"test_acc": float(pixel_accuracy(matrix)), "test_miou": miou_score(matrix)}
