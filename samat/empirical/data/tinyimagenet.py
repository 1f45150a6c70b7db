"""TinyImageNet from its ``tiny-imagenet-200/`` folder: the JPEGs are decoded once (in threads) and cached
as ``.npz`` beside the folder; the cache is rebuilt when anything in the folder changes."""

from __future__ import annotations

import os
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from samat.core.errors import DiskFull, SamatError
from samat.core.results import atomic_write_bytes
from samat.empirical.data.dataset import Dataset, LoadRequest, image_dataset
from samat.empirical.vocabulary import Augment

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
        with cache.open("rb") as f, np.load(f, allow_pickle=False) as z:  # closed even when np.load fails
            if int(z["version"]) != _CACHE_VERSION or z["wnids"].tolist() != wnids:
                return None
            return {key: z[key] for key in ("train_x", "train_y", "test_x", "test_y")}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:  # truncated: BadZipFile
        warnings.warn(f"ignoring unreadable cache {cache} ({e}); decoding the JPEGs again", stacklevel=3)
        return None


def _write_cache(cache: Path, arrays: dict[str, np.ndarray], wnids: list[str]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object, so numpy does not append another .npz
            np.savez(f, version=np.array(_CACHE_VERSION), wnids=np.array(wnids), **arrays)

    atomic_write_bytes(cache, write)


def load_tinyimagenet(request: LoadRequest) -> Dataset:
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
        except (OSError, DiskFull) as e:  # a read-only data folder, a full disk: decode again next time
            warnings.warn(f"could not cache the decoded TinyImageNet at {cache} ({e})", stacklevel=2)
    return image_dataset("tinyimagenet", (arrays["train_x"], arrays["train_y"]),
                         (arrays["test_x"], arrays["test_y"]), len(wnids), Augment.CROP_FLIP)

