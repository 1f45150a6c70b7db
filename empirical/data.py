"""Datasets as whole tensors, and device-side batching with augmentation.

Every dataset is loaded once into memory as uint8 images (N, C, H, W) or float32 vectors (N, D) and
moved to the training device whole; batches are cut, converted to float and augmented there, a batch
at a time, with no DataLoader workers (as KellerJordan/cifar10-airbench does). All randomness of a
pass (shuffle order, crop offsets, flips) comes from one ``torch.Generator``, so the same generator
state gives the same batches and a run can be resumed exactly.

Sources, all read from their official formats (torchvision is never imported):

- ``cifar10`` / ``cifar100``: the python archives of https://www.cs.toronto.edu/~kriz/cifar.html,
  as ``.tar.gz`` (read without extracting) or extracted; ``download=True`` fetches and checks the MD5.
- ``fashion_mnist``: the four idx files, by default from the Debian package ``dataset-fashion-mnist``.
- ``tinyimagenet``: the ``tiny-imagenet-200/`` folder, JPEGs decoded once and cached as ``.npz``.
- ``gaussian``: the papers' D(p, η, n) (:class:`theory.model.GaussianModel`) as a dataset.

Usage::

    ds = load_dataset("fashion_mnist").subset(train=10_000, test=None, seed=0).to("cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    for xb, yb in BatchStream(ds.train_x, ds.train_y, 256, shuffle=True, augment=ds.augment, generator=g):
        ...
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import tarfile
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from empirical.config import AUGMENT_MODES, GaussianSpec, is_int
from empirical.runs import atomic_write_bytes
from theory.errors import ParameterError, SamatError
from theory.model import GaussianModel

__all__ = [
    "AUGMENT_MODES",
    "BatchStream",
    "CIFAR_SPECS",
    "DATASETS",
    "Dataset",
    "FASHION_MNIST_DIR",
    "GaussianSpec",
    "LoadRequest",
    "Source",
    "as_inputs",
    "augment_batch",
    "load_dataset",
    "to_float_images",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
CROP_PADDING = 4  # pixels of reflect padding for the random crop (CIFAR convention)


# --------------------------------------------------------------------------------------------------
# The dataset container


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
    augment: str  # default training augmentation, one of AUGMENT_MODES

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.ndim not in (2, 4) or y.ndim != 1 or x.shape[0] != y.shape[0] or y.dtype != torch.int64:
                raise ValueError(f"{self.name} {split}: x {tuple(x.shape)} and y {tuple(y.shape)} {y.dtype} "
                                 "must be (N, C, H, W) or (N, D) and int64 (N,)")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(f"{self.name}: train and test inputs differ in shape")
        if self.augment not in AUGMENT_MODES:
            raise ParameterError("augment", self.augment, f"one of {', '.join(AUGMENT_MODES)}")

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


# --------------------------------------------------------------------------------------------------
# Batching and augmentation on the data's own device


def to_float_images(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1] (x / 255)."""
    if x_uint8.dtype != torch.uint8:
        raise TypeError(f"to_float_images expects uint8 images, got {x_uint8.dtype}")
    return x_uint8.to(torch.float32).div_(255)


def as_inputs(x: torch.Tensor) -> torch.Tensor:
    """Stored examples to model inputs: uint8 images become float32 in [0, 1], other inputs float32."""
    return to_float_images(x) if x.dtype == torch.uint8 else x.to(torch.float32)


def _check_augment(x: torch.Tensor, mode: str, generator: torch.Generator | None) -> None:
    """What ``augment_batch`` needs of its arguments (checked once per stream by BatchStream)."""
    if mode not in AUGMENT_MODES:
        raise ParameterError("augment", mode, f"one of {', '.join(AUGMENT_MODES)}")
    if mode == "none":
        return
    if x.ndim != 4:
        raise ParameterError("augment", mode, f"'none' for inputs of shape {tuple(x.shape[1:])} (not images)")
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"the generator is on {generator.device} but the data on {x.device}: "
                         "create it with torch.Generator(device=x.device)")


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator | None) -> torch.Tensor:
    """Augment a float batch (N, C, H, W) in [0, 1], all samples at once on x's device.

    "crop_flip": random crop of the 4-pixel reflect-padded image plus horizontal flip with
    probability 1/2 (the standard CIFAR augmentation); "crop": the crop only; "none": identity.
    Draws, in order, the crop offsets (2, N) and the flip coins (N,) from ``generator``.
    """
    _check_augment(x, mode, generator)
    return _augment(x, mode, generator)


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
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool,
                 augment: str = "none", generator: torch.Generator | None = None, drop_last: bool = False) -> None:
        if not is_int(batch_size) or batch_size < 1:
            raise ParameterError("batch_size", batch_size, "an integer >= 1")
        _check_augment(x, augment, generator)  # once here, not per batch: every batch is on x's device
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle, self.augment, self.generator, self.drop_last = shuffle, augment, generator, drop_last

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, device = self.x.shape[0], self.x.device
        order = (torch.randperm(n, generator=self.generator, device=device) if self.shuffle
                 else torch.arange(n, device=device))
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield _augment(as_inputs(self.x[idx]), self.augment, self.generator), self.y[idx].to(torch.int64)


# --------------------------------------------------------------------------------------------------
# Loading: a registry of named sources


@dataclass(frozen=True)
class LoadRequest:
    """What a loader gets: the resolved data folder and the caller's options."""

    name: str
    data_dir: Path
    download: bool = False
    verify_md5: bool = False
    gaussian: GaussianSpec = GaussianSpec()


@dataclass(frozen=True)
class Source:
    """A registry entry: the loader and where its data lives when no data_dir is given."""

    loader: Callable[[LoadRequest], Dataset]
    default_dir: Path | None = None  # None: ./data/<name>


def load_dataset(name: str, data_dir: str | Path | None = None, *, download: bool = False,
                 gaussian: GaussianSpec | None = None, verify_md5: bool = False) -> Dataset:
    """Load the named dataset (one of :data:`DATASETS`) into CPU tensors.

    ``data_dir=None`` means Fashion-MNIST's Debian folder for ``fashion_mnist`` and ``./data/<name>``
    otherwise. ``download`` fetches a missing CIFAR archive; ``verify_md5`` also checks the MD5 of an
    archive already present. ``gaussian`` parametrizes the ``gaussian`` dataset (ignored by the others).
    Missing or corrupt data raises :class:`SamatError` with a one-line fix.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ParameterError("dataset", name, f"one of {', '.join(DATASETS)}")
    source = DATASETS[key]
    folder = Path(data_dir) if data_dir is not None else (source.default_dir or Path("data") / key)
    request = LoadRequest(key, folder, download=download, verify_md5=verify_md5,
                          gaussian=gaussian if gaussian is not None else GaussianSpec())
    return source.loader(request)


def _image_dataset(name: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                   num_classes: int, augment: str) -> Dataset:
    """Wrap uint8 (N, C, H, W) images and integer labels as a Dataset, with the training set's statistics."""
    mean, std = _channel_stats(train[0])
    return Dataset(name, _tensor(train[0]), _tensor(train[1]).long(), _tensor(test[0]), _tensor(test[1]).long(),
                   num_classes, mean, std, augment)


def _tensor(a: np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def _channel_stats(x: np.ndarray, chunk: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
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


def _check_labels(y: np.ndarray, num_classes: int, where: str) -> None:
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise SamatError(f"{where} has labels outside 0..{num_classes - 1}: the file is corrupt, replace it")


# ---- CIFAR-10 / CIFAR-100 ------------------------------------------------------------------------


@dataclass(frozen=True)
class CifarSpec:
    """One CIFAR python archive: its files and the key of the labels in each pickle."""

    title: str
    archive: str
    md5: str  # published at https://www.cs.toronto.edu/~kriz/cifar.html
    folder: str  # the folder the archive extracts to
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    num_classes: int

    @property
    def url(self) -> str:
        return f"https://www.cs.toronto.edu/~kriz/{self.archive}"


CIFAR_SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec("CIFAR-10", "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                         "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                         b"labels", 10),
    "cifar100": CifarSpec("CIFAR-100", "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                          "cifar-100-python", ("train",), ("test",), b"fine_labels", 100),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts of numpy arrays and lists) and refuses any other object,
    so a tampered archive cannot run code."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")} | {
        (f"numpy.{core}.{module}", fn) for core in ("core", "_core")
        for module, fn in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(f: IO[bytes], where: str, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArrayUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[spec.label_key], dtype=np.int64)
        images = data.reshape(-1, 3, 32, 32)  # rows are 1024 R, then G, then B values, row-major
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError,
            OSError, zlib.error) as e:
        raise SamatError(f"{where} is not a valid {spec.title} batch ({type(e).__name__}: {e}): "
                         "delete it and download the archive again") from None
    if len(images) != len(labels):
        raise SamatError(f"{where} has {len(images)} images but {len(labels)} labels: replace it")
    _check_labels(labels, spec.num_classes, where)
    return images, labels


def _cifar_from_folder(folder: Path, spec: CifarSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    batches = {}
    for file in spec.train_files + spec.test_files:
        path = folder / file
        if not path.is_file():
            raise SamatError(f"{spec.title} folder {folder} lacks {file}: extract {spec.archive} again")
        with path.open("rb") as f:
            batches[file] = _read_cifar_batch(f, str(path), spec)
    return batches


def _cifar_from_archive(archive: Path, spec: CifarSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    wanted = {f"{spec.folder}/{file}": file for file in spec.train_files + spec.test_files}
    batches = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:  # one sequential pass: gzip streams cannot seek back cheaply
                file = wanted.get(member.name.removeprefix("./"))
                if file is not None and member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    batches[file] = _read_cifar_batch(f, f"{archive}:{member.name}", spec)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise SamatError(f"{archive} is not a readable {spec.archive} ({type(e).__name__}: {e}): "
                         "delete it and download it again") from None
    missing = [m for m, file in wanted.items() if file not in batches]
    if missing:
        raise SamatError(f"{archive} lacks {', '.join(missing)}: it is not the official {spec.archive}, replace it")
    return batches


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` with a progress bar."""
    with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=None) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))


def _download(spec: CifarSpec, data_dir: Path) -> Path:
    """Fetch the archive into data_dir and check its published MD5 (a mismatch deletes it)."""
    dest = data_dir / spec.archive
    part = dest.with_name(dest.name + ".part")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        _fetch(spec.url, part)
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        raise SamatError(f"could not download {spec.url} into {data_dir} ({e}): "
                         f"download it elsewhere and put {spec.archive} in {data_dir}") from None
    actual = _md5(part)
    if actual != spec.md5:
        part.unlink(missing_ok=True)
        raise SamatError(f"downloaded {spec.archive} has MD5 {actual}, not the published {spec.md5}: "
                         "deleted it; try --download again")
    part.replace(dest)
    return dest


def _load_cifar(request: LoadRequest) -> Dataset:
    spec, data_dir = CIFAR_SPECS[request.name], request.data_dir
    # The extracted folder, inside data_dir or data_dir itself; else the archive; else download it.
    folder = data_dir if (data_dir / spec.train_files[0]).is_file() else data_dir / spec.folder
    archive = data_dir / spec.archive
    if folder.is_dir():
        batches = _cifar_from_folder(folder, spec)
    else:
        if archive.is_file():
            if request.verify_md5 and (actual := _md5(archive)) != spec.md5:
                raise SamatError(f"{archive} has MD5 {actual}, not the published {spec.md5}: "
                                 "delete it and download it again")
        elif request.download:
            archive = _download(spec, data_dir)
        else:
            raise SamatError(f"{spec.title} not found in {data_dir}: put {spec.archive} "
                             f"(or its extracted {spec.folder}/) there, or pass --download")
        batches = _cifar_from_archive(archive, spec)

    def join(files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        return (np.concatenate([batches[f][0] for f in files]), np.concatenate([batches[f][1] for f in files]))

    return _image_dataset(request.name, join(spec.train_files), join(spec.test_files), spec.num_classes,
                          "crop_flip")


# ---- Fashion-MNIST -------------------------------------------------------------------------------

FASHION_MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}
# idx format (http://yann.lecun.com/exdb/mnist/): magic = 0, 0, type code, number of dims; then each
# dim as a big-endian uint32; then the data, big-endian, row-major.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_idx(path: Path) -> np.ndarray:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic: the .gz name is not trusted either way
            raw = gzip.decompress(raw)
        if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_TYPES:
            raise ValueError(f"bad magic number {raw[:4].hex()}")
        ndim = raw[3]
        shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
        dtype = np.dtype(_IDX_TYPES[raw[2]])
        offset = 4 + 4 * ndim
        if len(raw) - offset != math.prod(shape) * dtype.itemsize:
            raise ValueError(f"header says {shape} of {dtype} but {len(raw) - offset} data bytes follow")
        return np.frombuffer(raw, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as e:
        raise SamatError(f"{path} is not a valid idx file ({e}): replace it with the official one") from None


def _load_fashion_mnist(request: LoadRequest) -> Dataset:
    data_dir = request.data_dir
    paths: dict[str, Path] = {}
    for key, stem in FASHION_MNIST_FILES.items():
        found = [p for p in (data_dir / f"{stem}.gz", data_dir / stem) if p.is_file()]
        if found:
            paths[key] = found[0]
    if len(paths) < len(FASHION_MNIST_FILES):
        missing = [f"{stem}.gz" for key, stem in FASHION_MNIST_FILES.items() if key not in paths]
        raise SamatError(f"Fashion-MNIST not found in {data_dir} (missing {', '.join(missing)}): put the four "
                         f"idx files there, or `apt-get install dataset-fashion-mnist` for {FASHION_MNIST_DIR}")
    arrays = {key: _read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or x.dtype != np.uint8 or y.ndim != 1 or len(x) != len(y):
            raise SamatError(f"Fashion-MNIST {split} files in {data_dir} hold images {x.shape} {x.dtype} and "
                             f"labels {y.shape}: expected uint8 (N, 28, 28) and (N,); replace them")
        _check_labels(y, 10, str(paths[f"{split}_y"]))
    return _image_dataset("fashion_mnist", (arrays["train_x"][:, None], arrays["train_y"]),
                          (arrays["test_x"][:, None], arrays["test_y"]), 10, "none")


# ---- TinyImageNet --------------------------------------------------------------------------------

TINYIMAGENET_FOLDER = "tiny-imagenet-200"
TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
_CACHE_VERSION = 1


def _tinyimagenet_files(root: Path) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Class ids (sorted, as ImageFolder orders them) and (path, label) lists of train and val images."""
    wnids = sorted({line.strip() for line in (root / "wnids.txt").read_text().splitlines() if line.strip()})
    label = {wnid: i for i, wnid in enumerate(wnids)}
    train = [(path, i) for wnid, i in label.items()
             for path in sorted((root / "train" / wnid / "images").glob("*.JPEG"))]
    val = []
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise SamatError(f"{annotations} is missing: unzip tiny-imagenet-200.zip again")
    for line in annotations.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label:
            if line.strip():
                raise SamatError(f"{annotations}: unexpected line {line!r}: replace the file")
            continue
        val.append((root / "val" / "images" / fields[0], label[fields[1]]))
    if not train or not val:
        raise SamatError(f"TinyImageNet in {root} has {len(train)} training and {len(val)} validation images: "
                         "unzip tiny-imagenet-200.zip again")
    return wnids, train, val


def _decode_jpeg(path: Path) -> np.ndarray:
    from PIL import Image  # Pillow, a dependency of matplotlib

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise SamatError(f"cannot decode {path} ({e}): replace it") from None
    if rgb.shape != (64, 64, 3):
        raise SamatError(f"{path} is {rgb.shape[1]}x{rgb.shape[0]}, not 64x64: replace it with the official image")
    return rgb.transpose(2, 0, 1)


def _decode_all(items: list[tuple[Path, int]], desc: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.empty((len(items), 3, 64, 64), dtype=np.uint8)
    y = np.array([label for _, label in items], dtype=np.int64)
    # Pillow releases the GIL while decoding, so threads decode in parallel.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        images = pool.map(_decode_jpeg, [path for path, _ in items])
        for i, img in enumerate(tqdm(images, total=len(items), desc=desc, unit="img", disable=None)):
            x[i] = img
    return x, y


def _tree_mtime(root: Path) -> float:
    """Latest change under root: a folder's mtime moves when a file in it is added, removed or renamed."""
    latest = max((root / "wnids.txt").stat().st_mtime, (root / "val" / "val_annotations.txt").stat().st_mtime)
    for folder, _, _ in os.walk(root):
        latest = max(latest, os.stat(folder).st_mtime)
    return latest


def _read_cache(cache: Path, wnids: list[str]) -> dict[str, np.ndarray] | None:
    try:
        with np.load(cache, allow_pickle=False) as z:
            if int(z["version"]) != _CACHE_VERSION or z["wnids"].tolist() != wnids:
                return None
            return {key: z[key] for key in ("train_x", "train_y", "test_x", "test_y")}
    except (OSError, KeyError, ValueError, EOFError) as e:
        warnings.warn(f"ignoring unreadable cache {cache} ({e}); decoding the JPEGs again", stacklevel=3)
        return None


def _write_cache(cache: Path, arrays: dict[str, np.ndarray], wnids: list[str]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object, so numpy does not append another .npz
            np.savez(f, version=np.array(_CACHE_VERSION), wnids=np.array(wnids), **arrays)

    atomic_write_bytes(cache, write)


def _load_tinyimagenet(request: LoadRequest) -> Dataset:
    data_dir = request.data_dir
    root = data_dir if (data_dir / "wnids.txt").is_file() else data_dir / TINYIMAGENET_FOLDER
    if not (root / "wnids.txt").is_file():
        how = " (no automatic download for TinyImageNet)" if request.download else ""
        raise SamatError(f"TinyImageNet not found in {data_dir}: unzip tiny-imagenet-200.zip ({TINYIMAGENET_URL}) "
                         f"there, so that {data_dir / TINYIMAGENET_FOLDER / 'wnids.txt'} exists{how}")
    wnids, train, val = _tinyimagenet_files(root)
    cache = root.parent / f"{root.name}.npz"  # next to the folder, so writing it leaves the folder's mtime alone
    arrays = None
    if cache.is_file() and cache.stat().st_mtime > _tree_mtime(root):
        arrays = _read_cache(cache, wnids)
    if arrays is None:
        train_x, train_y = _decode_all(train, "TinyImageNet train")
        test_x, test_y = _decode_all(val, "TinyImageNet val")
        arrays = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
        try:
            _write_cache(cache, arrays, wnids)
        except OSError as e:  # a read-only data folder: decode again next time
            warnings.warn(f"could not cache the decoded TinyImageNet at {cache} ({e})", stacklevel=2)
    return _image_dataset("tinyimagenet", (arrays["train_x"], arrays["train_y"]),
                          (arrays["test_x"], arrays["test_y"]), len(wnids), "crop_flip")


# ---- The Gaussian model D(p, η, n) ---------------------------------------------------------------


def _load_gaussian(request: LoadRequest) -> Dataset:
    spec = request.gaussian
    model = GaussianModel(spec.p, spec.eta, spec.n)

    def draw(size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = model.sample(size, seed)
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy((y > 0).astype(np.int64))  # y=+1 -> 1

    train_x, train_y = draw(spec.train_size, spec.seed)
    test_x, test_y = draw(spec.test_size, spec.seed + 1)
    return Dataset("gaussian", train_x, train_y, test_x, test_y, 2, (), (), "none")


DATASETS: dict[str, Source] = {
    "cifar10": Source(_load_cifar),
    "cifar100": Source(_load_cifar),
    "fashion_mnist": Source(_load_fashion_mnist, FASHION_MNIST_DIR),
    "tinyimagenet": Source(_load_tinyimagenet),
    "gaussian": Source(_load_gaussian),
}
