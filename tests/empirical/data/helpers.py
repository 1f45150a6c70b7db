"""Tiny datasets for the loader tests, written in exactly the official formats (file names, pickle keys, idx
headers, folder tree): the real CIFAR and TinyImageNet archives cannot be fetched here."""

from __future__ import annotations

import gzip
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import torch

from samat.empirical import data as D
from samat.empirical.data import Dataset

Z = 5.0  # standard errors for Monte Carlo comparisons: a false alarm has probability ~6e-7


# --------------------------------------------------------------------------------------------------
# Writers of the official formats


def _rng_images(rng: np.random.Generator, n: int, c: int = 3, h: int = 32, w: int = 32) -> np.ndarray:
    return rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def write_cifar(folder: Path, kind: str, seed: int = 0, per_batch: int = 8) -> dict[str, np.ndarray]:
    """Write the extracted CIFAR-10 (5 train batches + test_batch + batches.meta) or CIFAR-100
    (train, test, meta) folder; return the images (N, 3, 32, 32) and labels that went in."""
    rng = np.random.default_rng(seed)
    if kind == "cifar10":
        folder = folder / "cifar-10-batches-py"
        train_files, test_files, key, k = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels", 10
        meta = ("batches.meta", {b"label_names": [f"class{i}".encode() for i in range(10)]})
    else:
        folder = folder / "cifar-100-python"
        train_files, test_files, key, k = ["train"], ["test"], b"fine_labels", 100
        meta = ("meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                         b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    folder.mkdir(parents=True)
    out: dict[str, list[np.ndarray]] = {"train_x": [], "train_y": [], "test_x": [], "test_y": []}
    for split, files in (("train", train_files), ("test", test_files)):
        for file in files:
            n = per_batch if kind == "cifar10" else 5 * per_batch
            x = _rng_images(rng, n)
            y = rng.integers(0, k, size=n)
            # The official layout: (N, 3072) uint8 rows of 1024 R, 1024 G, 1024 B values; labels a list.
            batch = {b"batch_label": file.encode(), key: [int(v) for v in y], b"data": x.reshape(n, 3072),
                     b"filenames": [f"img{i}.png".encode() for i in range(n)]}
            if kind == "cifar100":
                batch[b"coarse_labels"] = [int(v) // 5 for v in y]
            (folder / file).write_bytes(pickle.dumps(batch, protocol=2))
            out[f"{split}_x"].append(x)
            out[f"{split}_y"].append(y)
    (folder / meta[0]).write_bytes(pickle.dumps(meta[1], protocol=2))
    return {key: np.concatenate(v) for key, v in out.items()}


def tar_gz(src_parent: Path, folder: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src_parent / folder, arcname=folder)
    return dest


def idx_bytes(a: np.ndarray) -> bytes:
    """An idx file: magic (0, 0, 0x08 = uint8, ndim), big-endian uint32 dims, then the bytes."""
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()


def write_fashion(folder: Path, gz: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {"train_x": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), "train_y": rng.integers(0, 10, 30),
              "test_x": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), "test_y": rng.integers(0, 10, 12)}
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in D.FASHION_MNIST_FILES.items():
        raw = idx_bytes(arrays[key])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


TINY_WNIDS = ["n03444034", "n01443537", "n02094433"]  # deliberately unsorted, as in the real wnids.txt


def smooth_image(rng: np.random.Generator) -> np.ndarray:
    """A 64x64 RGB image with little high-frequency content, so JPEG changes it only slightly."""
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    base = rng.uniform(40, 200, size=3)
    slope = rng.uniform(-30, 30, size=(2, 3))
    img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)  # (64, 64, 3)


def write_tinyimagenet(parent: Path, train_per_class: int = 3, val_per_class: int = 2) -> dict[str, np.ndarray]:
    """tiny-imagenet-200/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images + val_annotations.txt.
    Returns the source pixels (N, 3, 64, 64) and labels in the loader's order (sorted wnids)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = parent / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    label = {w: i for i, w in enumerate(sorted(TINY_WNIDS))}
    train_x, train_y, val_rows, val_items = [], [], [], []
    for wnid in sorted(TINY_WNIDS):
        (root / "train" / wnid / "images").mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(train_per_class):
            img = smooth_image(rng)
            Image.fromarray(img).save(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", quality=95)
            train_x.append(img.transpose(2, 0, 1))
            train_y.append(label[wnid])
    for j in range(val_per_class * len(TINY_WNIDS)):
        wnid = TINY_WNIDS[j % len(TINY_WNIDS)]
        img = smooth_image(rng)
        if j == 0:  # one greyscale JPEG, as in the real data: convert("RGB") must make it 3 channels
            img = np.repeat(img[..., :1], 3, axis=2)
            Image.fromarray(img[..., 0]).save(root / "val" / "images" / f"val_{j}.JPEG", quality=95)
        else:
            Image.fromarray(img).save(root / "val" / "images" / f"val_{j}.JPEG", quality=95)
        val_rows.append(f"val_{j}.JPEG\t{wnid}\t0\t0\t63\t63")
        val_items.append((img.transpose(2, 0, 1), label[wnid]))
    (root / "val" / "val_annotations.txt").write_text("\n".join(val_rows) + "\n")
    return {"train_x": np.stack(train_x), "train_y": np.array(train_y),
            "test_x": np.stack([x for x, _ in val_items]), "test_y": np.array([y for _, y in val_items])}


def assert_round_trip(ds: Dataset, expected: dict[str, np.ndarray]) -> None:
    for key, value in expected.items():
        tensor = getattr(ds, key)
        assert tensor.dtype == (torch.uint8 if key.endswith("_x") else torch.int64)
        np.testing.assert_array_equal(tensor.numpy(), value)


def uint8_images(n_train: int = 6, n_test: int = 2) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n_train + n_test, 3, 4, 4), dtype=torch.uint8, generator=g)
    y = torch.arange(n_train + n_test) % 2
    return Dataset("toy", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 2, (0.5,) * 3, (0.3,) * 3, "crop")


def stream_data(n: int = 103) -> tuple[torch.Tensor, torch.Tensor]:
    x = (torch.arange(n) % 256).to(torch.uint8)[:, None, None, None].expand(n, 1, 8, 8).contiguous()
    return x, torch.arange(n)
