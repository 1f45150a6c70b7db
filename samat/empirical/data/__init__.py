"""Datasets as whole tensors, and device-side batching with augmentation.

Every dataset is loaded once into memory as uint8 images (N, C, H, W) or float32 vectors (N, D) and
moved to the training device whole; batches are cut, converted to float and augmented there, a batch
at a time (:mod:`.batching`). Sources, each read from its official format (torchvision is never imported),
are registered in :data:`DATASETS`, one entry per :class:`~empirical.vocabulary.DatasetName`:

- ``cifar10`` / ``cifar100`` (:mod:`.cifar`), ``fashion_mnist`` (:mod:`.fashion_mnist`),
  ``tinyimagenet`` (:mod:`.tinyimagenet`), and ``gaussian``, the papers' D(p, η, n) (:mod:`.gaussian`);
- segmentation (:mod:`.segmentation`): ``fashion_scenes`` (the embedded default), ``stanford_background``
  and ``voc2012``;
- text (:mod:`.text`): ``rotten_tomatoes`` (D Table 10; from the hub by name, or from a folder) and
  ``generated_reviews`` (generated sentences, the CPU default). Their loaders return the sentences
  (:class:`~.text.TextCorpus`); training tokenizes them with its model's tokenizer.

Usage::

    ds = load_dataset("fashion_mnist").subset(train=10_000, test=None, seed=0).to("cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    for xb, yb in BatchStream(ds.train_x, ds.train_y, 256, shuffle=True, augment=ds.augment, generator=g):
        ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from samat.core.errors import SamatError
from samat.empirical.data.batching import IMAGE_BOX, BatchStream, Box, as_inputs, augment_batch, to_float_images
from samat.empirical.data.cifar import CIFAR_SPECS, load_cifar
from samat.empirical.data.dataset import Dataset, LoadRequest
from samat.empirical.data.fashion_mnist import FASHION_MNIST_DIR, FASHION_MNIST_FILES, load_fashion_mnist
from samat.empirical.data.gaussian import GaussianSpec, load_gaussian
from samat.empirical.data.segmentation import (
    IGNORE_INDEX,
    JointAugment,
    SegmentationDataset,
    load_fashion_scenes,
    load_stanford_background,
    load_voc2012,
)
from samat.empirical.data.text import TextCorpus, TextDataset, load_generated_reviews, load_rotten_tomatoes
from samat.empirical.data.tinyimagenet import load_tinyimagenet
from samat.empirical.vocabulary import DatasetName, Task

__all__ = [
    "CIFAR_SPECS",
    "DATASETS",
    "DataShape",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_FILES",
    "IMAGE_BOX",
    "BatchStream",
    "Box",
    "Dataset",
    "GaussianSpec",
    "IGNORE_INDEX",
    "JointAugment",
    "LoadRequest",
    "SegmentationDataset",
    "Source",
    "TextCorpus",
    "TextDataset",
    "as_inputs",
    "augment_batch",
    "data_shape",
    "input_shape_of",
    "load_dataset",
    "to_float_images",
]


@dataclass(frozen=True)
class DataShape:
    """What a dataset holds, known without loading it: the sizes of its splits, an input's shape, the classes."""

    train: int
    test: int
    input_shape: tuple[int, ...]  # (C, H, W) or (D,)
    num_classes: int


@dataclass(frozen=True)
class Source:
    """A registry entry: the loader, what it loads (None: set by the request, the Gaussian model) and where its
    data lives when no data_dir is given."""

    loader: Callable[[LoadRequest], Dataset | TextCorpus]
    shape: DataShape | None
    default_dir: Path | None = None  # None: ./data/<name>
    hub: bool = False  # without data_dir and without ./data/<name>, the loader fetches it by name (data_dir None)


DATASETS: dict[DatasetName, Source] = {
    DatasetName.CIFAR10: Source(load_cifar, DataShape(50_000, 10_000, (3, 32, 32), 10)),
    DatasetName.CIFAR100: Source(load_cifar, DataShape(50_000, 10_000, (3, 32, 32), 100)),
    DatasetName.FASHION_MNIST: Source(load_fashion_mnist, DataShape(60_000, 10_000, (1, 28, 28), 10),
                                      FASHION_MNIST_DIR),
    DatasetName.TINYIMAGENET: Source(load_tinyimagenet, DataShape(100_000, 10_000, (3, 64, 64), 200)),
    DatasetName.GAUSSIAN: Source(load_gaussian, None),
    # Segmentation: images of their own sizes, or scenes set by the configuration; not planned (shape None).
    DatasetName.FASHION_SCENES: Source(load_fashion_scenes, None, FASHION_MNIST_DIR),
    DatasetName.STANFORD_BACKGROUND: Source(load_stanford_background, None),
    DatasetName.VOC2012: Source(load_voc2012, None),
    # Text: sentences, tokenized by the run's model (empirical.training.setup.load_data); planned by their own path.
    DatasetName.ROTTEN_TOMATOES: Source(load_rotten_tomatoes, None, hub=True),
    DatasetName.GENERATED_REVIEWS: Source(load_generated_reviews, None),
}


def data_shape(name: str, gaussian: GaussianSpec | None = None) -> DataShape:
    """The shape of the named dataset without loading it (the Gaussian model's from ``gaussian``)."""
    key = DatasetName.parse(name, "dataset")
    if key is DatasetName.GAUSSIAN:
        spec = gaussian if gaussian is not None else GaussianSpec()
        return DataShape(spec.train_size, spec.test_size, (spec.n + 1,), 2)
    if DATASETS[key].shape is None:
        raise SamatError(f"the device time of {key.display} runs cannot be planned yet: `samat experiment plan` "
                         "covers the classification grids")
    return DATASETS[key].shape


def input_shape_of(name: str, gaussian: GaussianSpec | None = None) -> tuple[int, ...] | None:
    """One input's shape, known without loading the data: (C, H, W) for the image datasets, (n + 1,) for the Gaussian
    model (``gaussian``'s), () for sentences (text: no pixels, no box); None for images of their own sizes
    (segmentation) and for datasets built in code under another name."""
    try:
        key = DatasetName.parse(name, "dataset")
    except SamatError:
        return None
    if key is DatasetName.GAUSSIAN:
        return ((gaussian if gaussian is not None else GaussianSpec()).n + 1,)
    if key.task is Task.TEXT:
        return ()
    shape = DATASETS[key].shape
    return shape.input_shape if shape is not None else None


def load_dataset(name: str, data_dir: str | Path | None = None, *, download: bool = False,
                 gaussian: GaussianSpec | None = None, verify_md5: bool = False) -> Dataset | TextCorpus:
    """Load the named dataset (a :class:`~empirical.vocabulary.DatasetName`) into CPU tensors.

    ``data_dir=None`` means Fashion-MNIST's Debian folder for ``fashion_mnist`` and ``fashion_scenes``, and
    ``./data/<name>`` otherwise (for ``rotten_tomatoes`` where that folder exists, else the hub by name). A text
    dataset comes as its sentences (:class:`~.text.TextCorpus`). ``download`` fetches a missing CIFAR archive;
    ``verify_md5`` also checks the MD5 of an archive already present. ``gaussian`` parametrizes the ``gaussian``
    dataset (ignored by the others).
    Missing or corrupt data raises :class:`SamatError` with a one-line fix.
    """
    key = DatasetName.parse(name, "dataset")
    source = DATASETS[key]
    folder = Path(data_dir) if data_dir is not None else (source.default_dir or Path("data") / key.value)
    if data_dir is None and source.hub and not folder.exists():
        folder = None  # the loader fetches it by name (the hub, or its cache)
    request = LoadRequest(key.value, folder, download=download, verify_md5=verify_md5,
                          gaussian=gaussian if gaussian is not None else GaussianSpec())
    return source.loader(request)

