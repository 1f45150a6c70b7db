"""The dataset container: a train/test split held as whole tensors, and its stratified subsets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from samat.core.errors import ParameterError, SamatError
from samat.core.numbers import is_int
from samat.empirical.vocabulary import Augment, Task


@dataclass(eq=False)  # eq=False: tensors do not compare to a single bool
class Dataset:
    """A train/test split held as whole tensors."""

    name: str  # "cifar10" | "cifar100" | "fashion_mnist" | "tinyimagenet" | "gaussian"
    train_x: torch.Tensor  # images: uint8 (N, C, H, W); vectors: float32 (N, D)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]  # per-channel mean of the training images, [0, 1] units; () for vectors
    std: tuple[float, ...]  # per-channel std (population); () for vectors
    augment: Augment  # default training augmentation

    task: ClassVar[Task] = Task.CLASSIFICATION  # segmentation: empirical.data.segmentation.SegmentationDataset

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.ndim not in (2, 4) or y.ndim != 1 or x.shape[0] != y.shape[0] or y.dtype != torch.int64:
                raise ValueError(f"{self.name} {split}: x {tuple(x.shape)} and y {tuple(y.shape)} {y.dtype} "
                                 "must be (N, C, H, W) or (N, D) and int64 (N,)")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(f"{self.name}: train and test inputs differ in shape")
        self.augment = Augment.parse(self.augment, "augment")

    @property
    def kind(self) -> Literal["image", "vector"]:
        return "image" if self.train_x.ndim == 4 else "vector"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) for images, (D,) for vectors."""
        return tuple(self.train_x.shape[1:])

    def to(self, device: torch.device | str) -> Dataset:
        """The same data on ``device`` (dtypes kept: images stay uint8, 4x smaller than float)."""
        return replace(self, train_x=self.train_x.to(device), train_y=self.train_y.to(device),
                       test_x=self.test_x.to(device), test_y=self.test_y.to(device))

    def subset(self, train: int | None, test: int | None, seed: int) -> Dataset:
        """A seeded, class-stratified subset of ``train`` and ``test`` examples (None: the whole split).

        Each class keeps its share of the split (largest-remainder rounding), so class balance
        survives subsampling; examples keep their original order. ``mean``/``std`` stay those of the
        full training set, the normalization a model trained on the full set would use. A bad size
        raises ParameterError("train_subset" / "test_subset", ...), named as the configuration names it.
        """
        g = torch.Generator().manual_seed(seed)
        train_idx = _stratified_indices(self.train_y.cpu(), train, "train_subset", "training set", g)
        test_idx = _stratified_indices(self.test_y.cpu(), test, "test_subset", "test set", g)
        out = self
        if train_idx is not None:
            idx = train_idx.to(self.train_x.device)
            out = replace(out, train_x=self.train_x[idx], train_y=self.train_y[idx])
        if test_idx is not None:
            idx = test_idx.to(self.test_x.device)
            out = replace(out, test_x=self.test_x[idx], test_y=self.test_y[idx])
        return out

    def describe(self) -> str:
        """One line for logs."""
        stats = (f", mean {_fmt(self.mean)}, std {_fmt(self.std)}" if self.mean else "")
        return (f"{self.name}: {self.kind} {self.input_shape} {str(self.train_x.dtype).removeprefix('torch.')}, "
                f"{self.num_classes} classes, train {len(self.train_y)}, test {len(self.test_y)}, "
                f"augment {self.augment}{stats}, on {self.train_x.device}")


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def _stratified_indices(y: torch.Tensor, size: int | None, name: str, split: str,
                        g: torch.Generator) -> torch.Tensor | None:
    """Sorted indices of a class-stratified random sample of ``size`` labels; None for all of them."""
    total = len(y)
    if size is None:
        return None
    if not is_int(size) or not 1 <= size <= total:
        raise ParameterError(name, size, f"an integer in 1..{total} (the {split}'s size) or None (all)")
    classes, counts = torch.unique(y, return_counts=True)
    # Largest-remainder (Hamilton) apportionment of `size` over the classes; ties broken at random.
    quota = size * counts // total
    remainder = size * counts % total
    order = sorted(range(len(classes)), key=lambda c: (-int(remainder[c]), float(torch.rand(1, generator=g))))
    for c in order[: size - int(quota.sum())]:
        quota[c] += 1
    chosen = []
    for c, k in zip(classes, quota.tolist(), strict=True):
        members = torch.nonzero(y == c).flatten()
        chosen.append(members[torch.randperm(len(members), generator=g)[:k]])
    return torch.cat(chosen).sort().values



def image_dataset(name: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                  num_classes: int, augment: Augment) -> Dataset:
    """Wrap uint8 (N, C, H, W) images and integer labels as a Dataset, with the training set's statistics."""
    mean, std = channel_stats(train[0])
    return Dataset(name, _tensor(train[0]), _tensor(train[1]).long(), _tensor(test[0]), _tensor(test[1]).long(),
                   num_classes, mean, std, augment)


def _tensor(a: np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def channel_stats(x: np.ndarray, chunk: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and population std of uint8 images in [0, 1] units, from 256-bin histograms."""
    hist = np.zeros((x.shape[1], 256), dtype=np.int64)
    for i in range(0, x.shape[0], chunk):  # chunks bound the int64 copy bincount makes
        for c in range(x.shape[1]):
            hist[c] += np.bincount(x[i:i + chunk, c].ravel(), minlength=256)
    v = np.arange(256) / 255.0
    total = hist.sum(axis=1)
    mean = hist @ v / total
    var = (hist * (v[None, :] - mean[:, None]) ** 2).sum(axis=1) / total
    return tuple(float(m) for m in mean), tuple(float(s) for s in np.sqrt(var))



def check_labels(y: np.ndarray, num_classes: int, where: str) -> None:
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise SamatError(f"{where} has labels outside 0..{num_classes - 1}: the file is corrupt, replace it")


@dataclass(frozen=True)
class LoadRequest:
    """What a loader gets: the resolved data folder and the caller's options."""

    name: str
    data_dir: Path | None  # None: fetch it by name (a dataset on the Hugging Face hub)
    download: bool = False
    verify_md5: bool = False
    gaussian: Any = None  # a GaussianSpec for the Gaussian model (empirical.data.gaussian)
