"""CIFAR-10 and CIFAR-100 from the python archives of https://www.cs.toronto.edu/~kriz/cifar.html, as
``.tar.gz`` (read without extracting) or extracted; ``download=True`` fetches and checks the MD5."""

from __future__ import annotations

import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from samat.core.errors import SamatError
from samat.empirical.data import download as fetching
from samat.empirical.data.dataset import Dataset, LoadRequest, check_labels, image_dataset
from samat.empirical.vocabulary import Augment


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
    check_labels(labels, spec.num_classes, where)
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


def load_cifar(request: LoadRequest) -> Dataset:
    spec, data_dir = CIFAR_SPECS[request.name], request.data_dir
    # The extracted folder, inside data_dir or data_dir itself; else the archive; else download it.
    folder = data_dir if (data_dir / spec.train_files[0]).is_file() else data_dir / spec.folder
    archive = data_dir / spec.archive
    if folder.is_dir():
        batches = _cifar_from_folder(folder, spec)
    else:
        if archive.is_file():
            if request.verify_md5 and (actual := fetching.md5(archive)) != spec.md5:
                raise SamatError(f"{archive} has MD5 {actual}, not the published {spec.md5}: "
                                 "delete it and download it again")
        elif request.download:
            archive = fetching.download(spec.url, spec.archive, spec.md5, data_dir)
        else:
            raise SamatError(f"{spec.title} not found in {data_dir}: download {spec.url} and put it "
                             f"(or its extracted {spec.folder}/) there")
        batches = _cifar_from_archive(archive, spec)

    def join(files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        return (np.concatenate([batches[f][0] for f in files]), np.concatenate([batches[f][1] for f in files]))

    return image_dataset(request.name, join(spec.train_files), join(spec.test_files), spec.num_classes,
                         Augment.CROP_FLIP)
