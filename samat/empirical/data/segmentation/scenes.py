"""Fashion-MNIST scenes: the embedded segmentation default, built from real Fashion-MNIST items.

Each scene is a 64x64 grey canvas holding 1 to 4 Fashion-MNIST items (28x28) at random places; an item's
pixels brighter than :data:`ITEM_THRESHOLD` are drawn over what lies below (later items occlude earlier ones)
and labelled with its class + 1; everything else is background (class 0). Training scenes use the training
items, test scenes the test items. The scenes are a fixed dataset: built from fixed seeds (0 for the training
split, 1 for the test split), the same on every machine, whatever the run's seed.
"""

from __future__ import annotations

import numpy as np
import torch

from samat.empirical.data.dataset import LoadRequest, channel_stats
from samat.empirical.data.fashion_mnist import load_fashion_mnist
from samat.empirical.data.segmentation.dataset import SegmentationDataset
from samat.empirical.vocabulary import Augment

SCENE_SIZE = 64  # canvas height and width
SCENES = {"train": 10_000, "test": 2_000}  # scenes per split
ITEMS_PER_SCENE = (1, 4)  # fewest and most items in a scene
ITEM_THRESHOLD = 25  # an item covers the pixels brighter than this (of 255); fainter ones stay transparent
SCENE_SEEDS = {"train": 0, "test": 1}
SCENE_SCALE = (0.75, 1.25)  # the default training augmentation's scale range
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
SCENE_CLASSES = ("background", *FASHION_CLASSES)


def make_scenes(items: np.ndarray, labels: np.ndarray, count: int, seed: int,
                size: int = SCENE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``count`` scenes (uint8 (N, 1, size, size)) and their masks (uint8 (N, size, size)) from items (M, 28, 28)
    with labels (M,), deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    item_size = items.shape[-1]
    x = np.zeros((count, size, size), dtype=np.uint8)
    y = np.zeros((count, size, size), dtype=np.uint8)
    n_items = rng.integers(ITEMS_PER_SCENE[0], ITEMS_PER_SCENE[1] + 1, count)
    chosen = rng.integers(0, len(items), (count, ITEMS_PER_SCENE[1]))
    corners = rng.integers(0, size - item_size + 1, (count, ITEMS_PER_SCENE[1], 2))
    # Each item is a scatter into the flattened canvases: the k-th item of every scene that has one, at once.
    offsets = (np.arange(item_size)[:, None] * size + np.arange(item_size)).ravel()  # (28 * 28,) within a canvas
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    for k in range(ITEMS_PER_SCENE[1]):
        scenes = np.flatnonzero(n_items > k)
        item = items[chosen[scenes, k]].reshape(len(scenes), -1)
        label = labels[chosen[scenes, k]].astype(np.uint8) + 1
        start = scenes * size * size + corners[scenes, k, 0] * size + corners[scenes, k, 1]
        covered = item > ITEM_THRESHOLD
        where = (start[:, None] + offsets)[covered]
        flat_x[where] = item[covered]
        flat_y[where] = np.broadcast_to(label[:, None], covered.shape)[covered]
    x = x[:, None]
    return x, y


def load_fashion_scenes(request: LoadRequest) -> SegmentationDataset:
    """The scenes from the Fashion-MNIST files in ``request.data_dir`` (its Debian folder by default)."""
    fashion = load_fashion_mnist(request)
    splits = {}
    for split, (items, labels) in (("train", (fashion.train_x, fashion.train_y)),
                                   ("test", (fashion.test_x, fashion.test_y))):
        splits[split] = make_scenes(items[:, 0].numpy(), labels.numpy(), SCENES[split], SCENE_SEEDS[split])
    mean, std = channel_stats(splits["train"][0])
    tensors = {f"{split}_{part}": _tensor(array) for split, pair in splits.items()
               for part, array in zip("xy", pair, strict=True)}
    return SegmentationDataset("fashion_scenes", tensors["train_x"], tensors["train_y"], tensors["test_x"],
                               tensors["test_y"], len(SCENE_CLASSES), mean, std, Augment.SCALE_CROP_FLIP,
                               class_names=SCENE_CLASSES, scale=SCENE_SCALE)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))
