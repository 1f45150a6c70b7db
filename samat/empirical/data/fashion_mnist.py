"""Fashion-MNIST from its four official idx files, by default from the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), or from the folder that the environment variable
``SAMAT_FASHION_MNIST`` names (read when samat is imported: on a machine without the package, e.g. the GPU
machine, which gets the files in a folder of its own, everything that looks in the default place looks there:
training, the demo, and the tests that need the real data)."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from samat.core.errors import SamatError
from samat.empirical.data.dataset import Dataset, LoadRequest, check_labels, image_dataset
from samat.empirical.vocabulary import Augment

DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FOLDER_VARIABLE = "SAMAT_FASHION_MNIST"  # another folder of the four files, in place of the Debian one
FASHION_MNIST_DIR = Path(os.environ.get(FOLDER_VARIABLE) or DEBIAN_FOLDER)

FASHION_MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}
# idx format (http://yann.lecun.com/exdb/mnist/): magic = 0, 0, type code, number of dims; then each
# dim as a big-endian uint32; then the data, big-endian, row-major.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
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


def fashion_mnist_files(data_dir: Path) -> dict[str, Path]:
    """The idx files in ``data_dir``, gzipped or not, by their key in :data:`FASHION_MNIST_FILES` (those it holds)."""
    paths: dict[str, Path] = {}
    for key, stem in FASHION_MNIST_FILES.items():
        found = [p for p in (data_dir / f"{stem}.gz", data_dir / stem) if p.is_file()]
        if found:
            paths[key] = found[0]
    return paths


def missing_fashion_mnist(data_dir: Path) -> list[str]:
    """The idx files ``data_dir`` lacks (by their .gz names), without reading any: what to check before the work
    that loads them later."""
    paths = fashion_mnist_files(data_dir)
    return [f"{stem}.gz" for key, stem in FASHION_MNIST_FILES.items() if key not in paths]


def load_fashion_mnist(request: LoadRequest) -> Dataset:
    data_dir = request.data_dir
    paths = fashion_mnist_files(data_dir)
    if missing := missing_fashion_mnist(data_dir):
        raise SamatError(f"Fashion-MNIST not found in {data_dir} (missing {', '.join(missing)}): put the four "
                         f"idx files there, or `apt-get install dataset-fashion-mnist` for {FASHION_MNIST_DIR}")
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or x.dtype != np.uint8 or y.ndim != 1 or len(x) != len(y):
            raise SamatError(f"Fashion-MNIST {split} files in {data_dir} hold images {x.shape} {x.dtype} and "
                             f"labels {y.shape}: expected uint8 (N, 28, 28) and (N,); replace them")
        check_labels(y, 10, str(paths[f"{split}_y"]))
    return image_dataset("fashion_mnist", (arrays["train_x"][:, None], arrays["train_y"]),
                         (arrays["test_x"][:, None], arrays["test_y"]), 10, Augment.NONE)


