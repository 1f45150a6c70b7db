"""The segmentation dataset: images with one class per pixel, held as whole tensors like every other dataset.

Images of different sizes share one canvas (the largest height and width of the dataset): each image sits at
the top left of its canvas, the rest is black, and the mask marks it :data:`IGNORE_INDEX`, so that neither the
loss nor mIoU ever counts it. ``train_sizes``/``test_sizes`` keep each image's own size, so that evaluation can
attack and measure every image at that size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from samat.core.errors import ParameterError, SamatError
from samat.core.numbers import is_int
from samat.empirical.data.dataset import Dataset
from samat.empirical.vocabulary import Augment, Task

IGNORE_INDEX = 255  # mask value of unlabelled pixels and canvas padding (VOC's border label; Stanford's -1 maps here)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the normalization of ImageNet-pretrained backbones (torchvision's)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(eq=False)
class SegmentationDataset(Dataset):
    """A train/test split of images (uint8 (N, C, H, W)) and masks (uint8 (N, H, W): a class index per pixel,
    or :data:`IGNORE_INDEX`), with the default training augmentation's crop and scale range."""

    class_names: tuple[str, ...] = ()
    train_sizes: torch.Tensor | None = None  # int64 (N, 2): each image's own (H, W); None: the whole canvas
    test_sizes: torch.Tensor | None = None
    crop: tuple[int, int] = (0, 0)  # default training crop (H, W); (0, 0): the canvas
    scale: tuple[float, float] = (1.0, 1.0)  # default range of the random scale factor

    task: ClassVar[Task] = Task.SEGMENTATION
    ignore_index: ClassVar[int] = IGNORE_INDEX

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.ndim != 4 or y.ndim != 3 or x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[1:]:
                raise ValueError(f"{self.name} {split}: images {tuple(x.shape)} and masks {tuple(y.shape)} must be "
                                 "(N, C, H, W) and (N, H, W)")
            if x.dtype != torch.uint8 or y.dtype != torch.uint8:
                raise ValueError(f"{self.name} {split}: images and masks must be uint8, not {x.dtype}, {y.dtype}")
            sizes = getattr(self, f"{split}_sizes")
            full = torch.tensor([list(x.shape[2:])], dtype=torch.int64).expand(x.shape[0], 2)
            sizes = full.clone() if sizes is None else sizes.to("cpu", torch.int64)
            if sizes.shape != full.shape or (sizes < 1).any() or (sizes > full).any():
                raise ValueError(f"{self.name} {split}: sizes {tuple(sizes.shape)} must be (N, 2), within the canvas")
            setattr(self, f"{split}_sizes", sizes)
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(f"{self.name}: train and test images differ in shape")
        if len(self.class_names) != self.num_classes or self.num_classes > IGNORE_INDEX:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")
        if self.crop == (0, 0):
            self.crop = tuple(self.canvas)
        self.augment = Augment.parse(self.augment, "augment")

    @property
    def canvas(self) -> tuple[int, int]:
        """(H, W) of the stored images."""
        return tuple(self.train_x.shape[2:])

    def to(self, device: torch.device | str) -> SegmentationDataset:
        """The images and masks on ``device`` (uint8 kept); the sizes stay on the CPU (they only group batches)."""
        return replace(self, train_x=self.train_x.to(device), train_y=self.train_y.to(device),
                       test_x=self.test_x.to(device), test_y=self.test_y.to(device))

    def subset(self, train: int | None, test: int | None, seed: int) -> SegmentationDataset:
        """A seeded random subset of ``train`` and ``test`` images (None: the whole split), in their order.

        Unlike classification's subsets it is not stratified: an image holds several classes.
        """
        g = torch.Generator().manual_seed(seed)
        out = self
        for split, size, name in (("train", train, "train_subset"), ("test", test, "test_subset")):
            total = len(getattr(self, f"{split}_y"))
            if size is None:
                continue
            if not is_int(size) or not 1 <= size <= total:
                raise ParameterError(name, size, f"an integer in 1..{total} (the {split} split's size) or None (all)")
            idx = torch.randperm(total, generator=g)[:size].sort().values
            on = idx.to(getattr(self, f"{split}_x").device)
            chosen = {f"{split}_{part}": getattr(out, f"{split}_{part}")[on] for part in ("x", "y")}
            out = replace(out, **chosen, **{f"{split}_sizes": getattr(out, f"{split}_sizes")[idx]})
        return out

    def describe(self) -> str:
        """One line for logs."""
        return (f"{self.name}: segmentation, images {self.input_shape} on a {self.canvas[0]}x{self.canvas[1]} canvas, "
                f"{self.num_classes} classes, train {len(self.train_y)}, test {len(self.test_y)}, augment "
                f"{self.augment} (crop {self.crop[0]}x{self.crop[1]}, scale {self.scale[0]:g}-{self.scale[1]:g}), "
                f"on {self.train_x.device}")


def on_canvas(images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
              canvas: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (C, h, w) and masks (h, w) placed at the top left of (C, H, W) / (H, W) canvases: black images,
    masks :data:`IGNORE_INDEX` outside each image. Returns the stacked images, masks, and sizes (N, 2)."""
    height, width = canvas
    channels = images[0].shape[0] if images else 3
    x = np.zeros((len(images), channels, height, width), dtype=np.uint8)
    y = np.full((len(images), height, width), IGNORE_INDEX, dtype=np.uint8)
    sizes = np.zeros((len(images), 2), dtype=np.int64)
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        h, w = mask.shape
        x[i, :, :h, :w] = image
        y[i, :h, :w] = mask
        sizes[i] = (h, w)
    return x, y, sizes


def check_mask(mask: np.ndarray, image_shape: tuple[int, int], num_classes: int, where: str,
               extra: Sequence[int] = ()) -> None:
    """A one-line SamatError naming ``where`` when the mask does not fit the image or holds an unknown class
    (valid: 0..num_classes-1, :data:`IGNORE_INDEX`, and ``extra``)."""
    if mask.shape != tuple(image_shape):
        raise SamatError(f"{where}: the mask is {mask.shape[1]}x{mask.shape[0]} pixels but its image "
                         f"{image_shape[1]}x{image_shape[0]}: replace the file")
    valid = np.isin(mask, [*range(num_classes), IGNORE_INDEX, *extra])
    if not valid.all():
        bad = int(mask[~valid].flat[0])
        raise SamatError(f"{where}: class {bad} is not one of 0..{num_classes - 1} (or {IGNORE_INDEX}, unlabelled): "
                         "replace the file")


def from_splits(name: str, splits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], classes: tuple[str, ...],
                crop: tuple[int, int], scale: tuple[float, float]) -> SegmentationDataset:
    """A real dataset from its train and test (images, masks, sizes), normalized as ImageNet-pretrained backbones
    expect: torchvision's ImageNet mean and std, as DeepLab implementations do for every dataset."""
    t = {f"{split}_{part}": torch.from_numpy(array) for split, arrays in splits.items()
         for part, array in zip(("x", "y", "sizes"), arrays, strict=True)}
    return SegmentationDataset(name, t["train_x"], t["train_y"], t["test_x"], t["test_y"], len(classes),
                               IMAGENET_MEAN, IMAGENET_STD, Augment.SCALE_CROP_FLIP, class_names=classes,
                               train_sizes=t["train_sizes"], test_sizes=t["test_sizes"], crop=crop, scale=scale)
