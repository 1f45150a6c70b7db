"""Dataset loaders on tiny archives written in the official formats, and device-side batching.

The real CIFAR and TinyImageNet archives cannot be fetched here, so each test writes a few images in
exactly the official layout (file names, pickle keys, idx headers, folder tree) and loads them back.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samat.core.errors import ParameterError, SamatError
from samat.empirical import data as D
from samat.empirical.data import (
    BatchStream,
    Dataset,
    GaussianSpec,
    augment_batch,
    batching,
    cifar,
    download,
    load_dataset,
    tinyimagenet,
    to_float_images,
)
from tests.helpers import REPO

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


# --------------------------------------------------------------------------------------------------
# CIFAR


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_folder_and_archive_round_trip_exactly(tmp_path, kind):
    expected = write_cifar(tmp_path / "extracted", kind)
    folder = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
    tar_gz(tmp_path / "extracted", folder, tmp_path / "archive" / D.CIFAR_SPECS[kind].archive)

    from_folder = load_dataset(kind, tmp_path / "extracted")
    from_archive = load_dataset(kind, tmp_path / "archive")
    from_inner = load_dataset(kind, tmp_path / "extracted" / folder)  # data_dir = the extracted folder itself
    for ds in (from_folder, from_archive, from_inner):
        assert_round_trip(ds, expected)
        assert ds.name == kind and ds.kind == "image" and ds.input_shape == (3, 32, 32)
        assert ds.num_classes == (10 if kind == "cifar10" else 100) and ds.augment == "crop_flip"
        assert ds.mean == from_folder.mean and ds.std == from_folder.std
    # Channel statistics in [0, 1] units, exactly those of the training images.
    x = expected["train_x"] / 255.0
    np.testing.assert_allclose(from_folder.mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(from_folder.std, x.std(axis=(0, 2, 3)), rtol=1e-12)


def test_cifar_pixel_layout_is_channel_planes(tmp_path):
    """Row i of the pickle holds 1024 R, then 1024 G, then 1024 B values, each plane row-major."""
    write_cifar(tmp_path, "cifar10")
    batch = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes(), encoding="bytes")
    ds = load_dataset("cifar10", tmp_path)
    row = batch[b"data"][0]
    assert ds.train_x[0, 1, 2, 3] == row[1024 + 2 * 32 + 3]
    assert ds.train_x[0, 2, 31, 0] == row[2048 + 31 * 32]


def test_missing_data_names_the_folder_in_one_line(tmp_path):
    for name, what in [("cifar10", "cifar-10-python.tar.gz"), ("cifar100", "cifar-100-python.tar.gz"),
                       ("fashion_mnist", "train-images-idx3-ubyte.gz"), ("tinyimagenet", "tiny-imagenet-200")]:
        folder = tmp_path / name
        with pytest.raises(SamatError) as info:
            load_dataset(name, folder)
        message = str(info.value)
        assert str(folder) in message and what in message and "\n" not in message


def test_default_data_dir_is_data_slash_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SamatError, match=r"not found in data/cifar10: .*--download"):
        load_dataset("cifar10")
    write_cifar(tmp_path / "data" / "cifar10", "cifar10")
    assert len(load_dataset("cifar10").train_y) == 40


def test_unknown_dataset_name_is_a_parameter_error():
    with pytest.raises(ParameterError) as info:
        load_dataset("imagenet")
    assert info.value.name == "dataset" and "cifar10" in info.value.valid and "gaussian" in info.value.valid


def test_corrupt_cifar_files_give_one_line_errors(tmp_path):
    write_cifar(tmp_path / "a", "cifar10")
    (tmp_path / "a" / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(SamatError, match="data_batch_3 is not a valid CIFAR-10 batch"):
        load_dataset("cifar10", tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "cifar-100-python.tar.gz").write_bytes(b"\x1f\x8b truncated")
    with pytest.raises(SamatError, match="is not a readable cifar-100-python.tar.gz"):
        load_dataset("cifar100", tmp_path / "b")


def test_cifar_unpickler_refuses_arbitrary_objects(tmp_path):
    """A pickle that would call os.system is refused before anything runs."""
    write_cifar(tmp_path, "cifar10")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(SamatError, match="unexpected object"):
        load_dataset("cifar10", tmp_path)


def _fake_fetch(source: Path):
    calls = []

    def fetch(url: str, dest: Path) -> None:
        calls.append(url)
        shutil.copyfile(source, dest)

    return fetch, calls


def test_download_checks_the_published_md5(tmp_path, monkeypatch):
    write_cifar(tmp_path / "src", "cifar10")
    archive = tar_gz(tmp_path / "src", "cifar-10-batches-py", tmp_path / "src" / "cifar-10-python.tar.gz")
    fetch, calls = _fake_fetch(archive)
    monkeypatch.setattr(download, "fetch", fetch)

    # Our tiny archive is not the published one: rejected, and nothing is left behind.
    target = tmp_path / "data"
    with pytest.raises(SamatError, match="not the published c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", target, download=True)
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert list(target.iterdir()) == []

    # With the checksum it does have, the download is kept and loaded.
    actual = hashlib.md5(archive.read_bytes()).hexdigest()
    checked = cifar.CifarSpec(**{**D.CIFAR_SPECS["cifar10"].__dict__, "md5": actual})
    monkeypatch.setitem(D.CIFAR_SPECS, "cifar10", checked)
    ds = load_dataset("cifar10", target, download=True)
    assert (target / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()
    assert len(ds.train_y) == 40 and len(calls) == 2
    load_dataset("cifar10", target, download=True)  # present: no second download
    assert len(calls) == 2


def test_md5_of_a_present_archive_is_checked_only_on_request(tmp_path):
    write_cifar(tmp_path / "src", "cifar100")
    tar_gz(tmp_path / "src", "cifar-100-python", tmp_path / "data" / "cifar-100-python.tar.gz")
    assert len(load_dataset("cifar100", tmp_path / "data").train_y) == 40
    with pytest.raises(SamatError, match="not the published eb9058c3a382ffc7106e4002c42a8d85"):
        load_dataset("cifar100", tmp_path / "data", verify_md5=True)
    assert (tmp_path / "data" / "cifar-100-python.tar.gz").exists()  # the user's own file is not deleted


def test_failed_download_is_one_line_naming_where_to_put_the_archive(tmp_path, monkeypatch):
    def offline(url: str, dest: Path) -> None:
        dest.write_bytes(b"partial")
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(download, "fetch", offline)
    with pytest.raises(SamatError, match=r"could not download .* put cifar-10-python.tar.gz in") as info:
        load_dataset("cifar10", tmp_path, download=True)
    assert "\n" not in str(info.value) and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# Fashion-MNIST


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_idx_round_trip(tmp_path, gz):
    expected = write_fashion(tmp_path, gz)
    ds = load_dataset("fashion_mnist", tmp_path)
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10 and ds.augment == "none"
    assert_round_trip(ds, {k: v[:, None] if k.endswith("_x") else v for k, v in expected.items()})


def test_fashion_mnist_bad_header_is_rejected(tmp_path):
    write_fashion(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    path.write_bytes(gzip.compress(bytes(raw[:-5])))  # truncated data
    with pytest.raises(SamatError, match="t10k-images-idx3-ubyte.gz is not a valid idx file .*data bytes"):
        load_dataset("fashion_mnist", tmp_path)
    raw[2] = 0x07  # unknown type code
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(SamatError, match="bad magic number"):
        load_dataset("fashion_mnist", tmp_path)


def test_fashion_mnist_labels_and_images_must_agree(tmp_path):
    write_fashion(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(29, dtype=np.uint8)))
    with pytest.raises(SamatError, match="Fashion-MNIST train files"):
        load_dataset("fashion_mnist", tmp_path)


@pytest.mark.skipif(not (D.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_from_the_debian_folder():
    ds = load_dataset("fashion_mnist")  # how fast: bench/data_load.py (no timed unit tests)
    assert ds.train_x.shape == (60_000, 1, 28, 28) and ds.test_x.shape == (10_000, 1, 28, 28)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    # The official split is balanced: 6000 and 1000 images per class.
    assert torch.bincount(ds.train_y).tolist() == [6000] * 10
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    # The widely quoted normalization constants (0.2860, 0.3530).
    assert ds.mean == pytest.approx((0.2860,), abs=5e-5) and ds.std == pytest.approx((0.3530,), abs=5e-5)
    assert D.data_shape("fashion_mnist") == D.DataShape(60_000, 10_000, ds.input_shape, ds.num_classes)


# --------------------------------------------------------------------------------------------------
# TinyImageNet


def test_tinyimagenet_decodes_caches_and_refreshes(tmp_path, monkeypatch):
    expected = write_tinyimagenet(tmp_path)
    ds = load_dataset("tinyimagenet", tmp_path)
    assert ds.train_x.shape == (9, 3, 64, 64) and ds.test_x.shape == (6, 3, 64, 64)
    assert ds.train_x.dtype == torch.uint8 and ds.num_classes == 3 and ds.augment == "crop_flip"
    np.testing.assert_array_equal(ds.train_y.numpy(), expected["train_y"])
    np.testing.assert_array_equal(ds.test_y.numpy(), expected["test_y"])
    # JPEG is lossy: smooth images at quality 95 come back within a few grey levels.
    for key in ("train_x", "test_x"):
        diff = np.abs(getattr(ds, key).numpy().astype(int) - expected[key].astype(int))
        assert diff.mean() < 2 and diff.max() < 16

    cache = tmp_path / "tiny-imagenet-200.npz"
    assert cache.is_file()

    def no_decoding(path):
        raise AssertionError("decoded although the cache is fresh")

    monkeypatch.setattr(tinyimagenet, "_decode_jpeg", no_decoding)
    cached = load_dataset("tinyimagenet", tmp_path)
    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(cached, key), getattr(ds, key))

    # A folder changed after the cache was written (a new image) makes the loader decode again.
    images = tmp_path / "tiny-imagenet-200" / "train" / sorted(TINY_WNIDS)[0] / "images"
    shutil.copyfile(next(images.glob("*.JPEG")), images / "extra.JPEG")
    later = cache.stat().st_mtime + 10
    os.utime(images, (later, later))
    with pytest.raises(AssertionError, match="decoded although"):
        load_dataset("tinyimagenet", tmp_path)
    monkeypatch.undo()
    assert len(load_dataset("tinyimagenet", tmp_path).train_y) == 10


def test_tinyimagenet_loads_when_the_cache_cannot_be_written(tmp_path, monkeypatch):
    write_tinyimagenet(tmp_path, train_per_class=1, val_per_class=1)

    def read_only(*args):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(tinyimagenet, "_write_cache", read_only)
    with pytest.warns(UserWarning, match="could not cache"):
        ds = load_dataset("tinyimagenet", tmp_path / "tiny-imagenet-200")  # data_dir = the folder itself
    assert len(ds.train_y) == 3 and not (tmp_path / "tiny-imagenet-200.npz").exists()


def test_tinyimagenet_cache_write_that_fails_midway_leaves_no_file(tmp_path, monkeypatch):
    write_tinyimagenet(tmp_path, train_per_class=1, val_per_class=1)

    def disk_full(f, **arrays):
        f.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.warns(UserWarning, match=r"could not cache .* \(disk full: cannot write .*tiny-imagenet-200.npz"):
        ds = load_dataset("tinyimagenet", tmp_path)
    assert len(ds.train_y) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-imagenet-200"]  # no cache, no temporary file


def test_tinyimagenet_rejects_images_of_the_wrong_size(tmp_path):
    from PIL import Image

    write_tinyimagenet(tmp_path, train_per_class=1, val_per_class=1)
    bad = tmp_path / "tiny-imagenet-200" / "val" / "images" / "val_1.JPEG"
    Image.new("RGB", (32, 32)).save(bad)
    with pytest.raises(SamatError, match="val_1.JPEG is 32x32, not 64x64"):
        load_dataset("tinyimagenet", tmp_path)


# --------------------------------------------------------------------------------------------------
# The Gaussian model as a dataset


def test_gaussian_dataset_matches_the_model():
    spec = GaussianSpec(p=0.7, eta=0.3, n=4, train_size=20_000, test_size=5_000, seed=3)
    ds = load_dataset("gaussian", gaussian=spec)
    assert ds.kind == "vector" and ds.input_shape == (5,) and ds.num_classes == 2 and ds.augment == "none"
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64 and ds.mean == ds.std == ()
    assert len(ds.train_y) == 20_000 and len(ds.test_y) == 5_000
    assert not torch.equal(ds.train_x[:5_000], ds.test_x)  # the test set has its own seed

    for x, y in ((ds.train_x, ds.train_y), (ds.test_x, ds.test_y)):
        x, y = x.double(), y
        sign = 2.0 * y.double() - 1  # class 1 means y = +1
        # The robust feature equals y with probability p.
        agree = (x[:, 0] == sign).double().mean().item()
        assert abs(agree - spec.p) <= Z * np.sqrt(spec.p * (1 - spec.p) / len(y))
        # Non-robust features: class-conditional mean ±η, unit variance.
        for cls, target in ((1, spec.eta), (0, -spec.eta)):
            rows = x[y == cls, 1:]
            assert torch.all((rows.mean(0) - target).abs() <= Z / np.sqrt(len(rows)))
        # Balanced classes.
        assert abs(y.double().mean().item() - 0.5) <= Z * 0.5 / np.sqrt(len(y))

    # The same samples as theory.model.GaussianModel.sample with the spec's seeds.
    from samat.theory.model import GaussianModel

    x, y = GaussianModel(0.7, 0.3, 4).sample(5_000, 4)
    np.testing.assert_array_equal(ds.test_x.numpy(), x.astype(np.float32))
    np.testing.assert_array_equal(ds.test_y.numpy(), (y > 0).astype(np.int64))


def test_gaussian_spec_is_validated():
    with pytest.raises(ParameterError, match="p=0.4"):
        GaussianSpec(p=0.4)
    with pytest.raises(ParameterError, match="train_size=0"):
        GaussianSpec(train_size=0)
    with pytest.raises(ParameterError, match="n=2.5"):
        GaussianSpec(n=2.5)
    # Integral floats, as a JSON or TOML config gives them, are accepted as integers.
    spec = GaussianSpec(n=3.0, train_size=50.0, test_size=20.0, seed=1.0)
    assert (spec.n, spec.train_size, spec.seed) == (3, 50, 1) and isinstance(spec.n, int)
    assert load_dataset("gaussian", gaussian=spec).input_shape == (4,)


# --------------------------------------------------------------------------------------------------
# Subsets, devices, description


def labelled(counts_train: list[int], counts_test: list[int]) -> Dataset:
    def split(counts):
        y = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
        y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
        x = torch.arange(len(y), dtype=torch.float32)[:, None].repeat(1, 3)  # x[i] identifies example i
        return x, y

    (tx, ty), (vx, vy) = split(counts_train), split(counts_test)
    return Dataset("toy", tx, ty, vx, vy, len(counts_train), (), (), "none")


def test_subset_is_stratified_seeded_and_consistent():
    ds = labelled([500, 300, 200], [50, 30, 20])
    sub = ds.subset(train=100, test=10, seed=0)
    assert torch.bincount(sub.train_y).tolist() == [50, 30, 20]
    assert torch.bincount(sub.test_y).tolist() == [5, 3, 2]
    # Each kept example keeps its own label, without repeats.
    idx = sub.train_x[:, 0].long()
    assert torch.equal(ds.train_y[idx], sub.train_y) and len(set(idx.tolist())) == 100
    # Seeded: same seed same subset, another seed another one.
    assert torch.equal(ds.subset(100, 10, seed=0).train_x, sub.train_x)
    assert not torch.equal(ds.subset(100, 10, seed=1).train_x, sub.train_x)
    # None keeps a split whole; a size that does not divide evenly still sums exactly.
    whole = ds.subset(train=None, test=7, seed=0)
    assert whole.train_x is ds.train_x and len(whole.test_y) == 7
    counts = torch.bincount(ds.subset(train=11, test=None, seed=5).train_y, minlength=3)
    assert counts.sum() == 11 and torch.all((counts - 11 * torch.tensor([0.5, 0.3, 0.2])).abs() < 1)


@pytest.mark.parametrize("train", [0, -1, 1001, 2.5, True])
def test_bad_subset_sizes_are_parameter_errors(train):
    with pytest.raises(ParameterError, match=r"train_subset=.* or None \(all\)"):
        labelled([500, 300, 200], [50, 30, 20]).subset(train=train, test=None, seed=0)


def uint8_images(n_train: int = 6, n_test: int = 2) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n_train + n_test, 3, 4, 4), dtype=torch.uint8, generator=g)
    y = torch.arange(n_train + n_test) % 2
    return Dataset("toy", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 2, (0.5,) * 3, (0.3,) * 3, "crop")


def test_to_moves_every_tensor_and_keeps_dtypes():
    """Moved to another device (the meta device here, which every machine has), images stay uint8."""
    ds = uint8_images()
    moved = ds.to("meta")
    for key in ("train_x", "train_y", "test_x", "test_y"):
        a, b = getattr(ds, key), getattr(moved, key)
        assert b.device.type == "meta" and a.device.type == "cpu" and b.dtype == a.dtype and b.shape == a.shape
    assert moved.train_x.dtype == torch.uint8 and moved.train_y.dtype == torch.int64
    assert (moved.mean, moved.std, moved.augment) == (ds.mean, ds.std, ds.augment) and "on meta" in moved.describe()


def test_describe_is_one_line():
    line = labelled([5, 5], [2, 2]).describe()
    assert "\n" not in line and "toy" in line and "train 10" in line and "test 4" in line


# --------------------------------------------------------------------------------------------------
# Augmentation


def images(n: int = 16, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_as_inputs_gives_float32_model_inputs():
    x = torch.tensor([[[[0, 51, 255]]]], dtype=torch.uint8)
    assert torch.equal(D.as_inputs(x), torch.tensor([[[[0.0, 0.2, 1.0]]]]))
    v = torch.randn(4, 3, dtype=torch.float64)
    assert D.as_inputs(v).dtype == torch.float32 and torch.equal(D.as_inputs(v), v.float())
    f = torch.rand(2, 3)
    assert D.as_inputs(f) is f  # float32 passes through without a copy


def test_to_float_images_divides_by_255():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    out = to_float_images(x)
    assert out.dtype == torch.float32 and out.min() == 0 and out.max() == 1
    assert torch.equal(out * 255, x.float())


@pytest.mark.parametrize("mode", ["none", "crop", "crop_flip"])
def test_augment_keeps_shape_and_range(mode):
    x = images()
    out = augment_batch(x, mode, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1
    if mode == "none":
        assert out is x


@pytest.mark.parametrize("mode", ["crop", "crop_flip"])
def test_each_output_is_a_window_of_the_reflect_padded_image(mode):
    """Every output equals some 32x32 window of the 4-pixel reflect-padded input (flipped or not for
    crop_flip), and across the batch several offsets and both flip states occur."""
    x = images(n=64)
    out = augment_batch(x, mode, torch.Generator().manual_seed(0))
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    seen_offsets, seen_flips = set(), set()
    for i in range(len(x)):
        windows = {(dy, dx): padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)}
        matches = [(dy, dx, flip) for (dy, dx), w in windows.items() for flip in (False, True)
                   if torch.equal(out[i], w.flip(2) if flip else w)]
        assert matches, f"output {i} is no window of the padded image"
        seen_offsets.update((dy, dx) for dy, dx, _ in matches)
        seen_flips.update(flip for *_, flip in matches)
    assert len(seen_offsets) > 20
    assert seen_flips == ({False, True} if mode == "crop_flip" else {False})


def test_reflect_padding_not_zero_padding():
    """A constant-1 image stays all ones under any crop: reflect padding invents no zeros."""
    out = augment_batch(torch.ones(32, 3, 32, 32), "crop_flip", torch.Generator().manual_seed(0))
    assert torch.all(out == 1)


def test_flip_really_flips():
    """Crop offsets equal to the padding leave the image in place, so the output is x or x mirrored."""
    x = images(n=200, h=8, w=8)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, "crop_flip", g)
    g.manual_seed(0)
    offsets = torch.randint(0, 9, (2, 200), generator=g)  # the draws augment_batch makes first
    flips = torch.rand(200, generator=g) < 0.5
    centred = (offsets == 4).all(0)
    assert centred.sum() >= 1
    for i in torch.nonzero(centred).flatten().tolist():
        assert torch.equal(out[i], x[i].flip(2) if flips[i] else x[i])
    # Half the coins come up flip.
    assert abs(flips.double().mean().item() - 0.5) <= Z * 0.5 / np.sqrt(200)


def test_augment_is_reproducible_from_the_generator():
    x = images()
    a = augment_batch(x, "crop_flip", torch.Generator().manual_seed(7))
    b = augment_batch(x, "crop_flip", torch.Generator().manual_seed(7))
    c = augment_batch(x, "crop_flip", torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unknown_augment_mode_is_a_parameter_error():
    with pytest.raises(ParameterError, match="augment=rotate"):
        augment_batch(images(), "rotate", None)
    with pytest.raises(ParameterError, match="augment=crop"):
        BatchStream(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), 2, shuffle=False, augment="crop")


# --------------------------------------------------------------------------------------------------
# BatchStream


def stream_data(n: int = 103) -> tuple[torch.Tensor, torch.Tensor]:
    x = (torch.arange(n) % 256).to(torch.uint8)[:, None, None, None].expand(n, 1, 8, 8).contiguous()
    return x, torch.arange(n)


def test_shuffled_epoch_covers_every_example_once():
    x, y = stream_data()
    stream = BatchStream(x, y, 10, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(stream) == 11
    seen = []
    for xb, yb in stream:
        assert xb.dtype == torch.float32 and yb.dtype == torch.int64 and xb.shape[1:] == (1, 8, 8)
        assert torch.equal(xb[:, 0, 0, 0] * 255, (yb % 256).float())  # images travel with their labels
        seen += yb.tolist()
    assert sorted(seen) == list(range(103)) and seen != list(range(103))
    assert [len(b) for _, b in stream][-1] == 3


def test_drop_last_and_order_without_shuffle():
    x, y = stream_data()
    stream = BatchStream(x, y, 10, shuffle=False, drop_last=True)
    batches = [yb for _, yb in stream]
    assert len(stream) == len(batches) == 10 and all(len(b) == 10 for b in batches)
    assert torch.equal(torch.cat(batches), torch.arange(100))
    assert len(BatchStream(x, y, 200, shuffle=True, drop_last=True)) == 0


def test_same_generator_state_gives_the_same_batches():
    x, y = stream_data()
    x = x.expand(-1, 3, -1, -1).contiguous()
    g = torch.Generator().manual_seed(0)
    first = list(BatchStream(x, y, 16, shuffle=True, augment="crop_flip", generator=g))
    state = g.get_state()  # resuming from a saved state reproduces the next epoch exactly
    second = list(BatchStream(x, y, 16, shuffle=True, augment="crop_flip", generator=g))
    g.set_state(state)
    again = list(BatchStream(x, y, 16, shuffle=True, augment="crop_flip", generator=g))
    fresh = list(BatchStream(x, y, 16, shuffle=True, augment="crop_flip", generator=torch.Generator().manual_seed(0)))
    for (a, ay), (b, by) in zip(second, again, strict=True):
        assert torch.equal(a, b) and torch.equal(ay, by)
    for (a, ay), (b, by) in zip(first, fresh, strict=True):
        assert torch.equal(a, b) and torch.equal(ay, by)
    assert not torch.equal(torch.cat([b for _, b in first]), torch.cat([b for _, b in second]))
    other = list(BatchStream(x, y, 16, shuffle=True, augment="crop_flip", generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(torch.cat([b for _, b in first]), torch.cat([b for _, b in other]))


def test_vectors_pass_through_as_float32():
    x = torch.randn(10, 5, dtype=torch.float64)
    batches = list(BatchStream(x, torch.zeros(10, dtype=torch.long), 4, shuffle=False))
    assert [b.shape for b, _ in batches] == [(4, 5), (4, 5), (2, 5)]
    assert batches[0][0].dtype == torch.float32 and torch.allclose(batches[0][0].double(), x[:4])


def test_stream_checks_its_arguments_once_not_per_batch(monkeypatch):
    x, y = stream_data()
    calls = []
    check = batching._check_augment
    monkeypatch.setattr(batching, "_check_augment", lambda *args: calls.append(args[1]) or check(*args))
    stream = BatchStream(x, y, 10, shuffle=True, augment="crop_flip", generator=torch.Generator().manual_seed(0))
    assert len(list(stream)) == 11 and calls == ["crop_flip"]


def test_every_dataset_name_has_a_loader_and_the_gaussian_table_its_fields():
    from samat.empirical.data.gaussian import GAUSSIAN_FIELDS
    from samat.empirical.vocabulary import DatasetName, Task

    assert list(D.DATASETS) == list(DatasetName)
    assert GAUSSIAN_FIELDS == ("p", "eta", "n", "train_size", "test_size", "seed")
    # every classification dataset's shape is known without loading it (the planner's input); the Gaussian one
    # from its table; segmentation datasets are refused in one line (the planner does not cover them)
    classification = [name for name in DatasetName if name.task is Task.CLASSIFICATION]
    assert all(D.data_shape(name) is not None for name in classification)
    for name in set(DatasetName) - set(classification):
        with pytest.raises(SamatError, match="cannot be planned"):
            D.data_shape(name)
    spec = D.GaussianSpec(n=4, train_size=300, test_size=200)
    ds = load_dataset("gaussian", gaussian=spec)
    assert D.data_shape("gaussian", spec) == D.DataShape(len(ds.train_y), len(ds.test_y), ds.input_shape,
                                                         ds.num_classes)


@pytest.mark.parametrize("batch_size", [0, -3])
def test_bad_batch_size_is_a_parameter_error(batch_size):
    with pytest.raises(ParameterError, match="batch_size"):
        BatchStream(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), batch_size, shuffle=False)


@pytest.mark.gpu
def test_batches_stay_on_the_gpu():
    ds = uint8_images().to("cuda")
    assert ds.train_x.is_cuda and ds.test_y.is_cuda and ds.train_x.dtype == torch.uint8
    with pytest.raises(ValueError, match="generator is on cpu"):  # checked once, when the stream is made
        BatchStream(ds.train_x, ds.train_y, 2, shuffle=False, augment="crop", generator=torch.Generator())
    x, y = stream_data()
    g = torch.Generator(device="cuda").manual_seed(0)
    x3 = x.expand(-1, 3, -1, -1).contiguous().cuda()
    for xb, yb in BatchStream(x3, y.cuda(), 16, shuffle=True, augment="crop_flip", generator=g):
        assert xb.is_cuda and yb.is_cuda and xb.dtype == torch.float32


def test_the_environment_names_another_fashion_mnist_folder(tmp_path):
    """SAMAT_FASHION_MNIST (what the GPU suite sets for its tests) is where the default place is, for the loader
    and for everything that looks there."""
    write_fashion(tmp_path, gz=True)
    code = ("from samat.empirical.data import FASHION_MNIST_DIR, load_dataset; d = load_dataset('fashion_mnist'); "
            "print(FASHION_MNIST_DIR, len(d.train_y), len(d.test_y))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env=os.environ | {"SAMAT_FASHION_MNIST": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    folder, n_train, n_test = done.stdout.split()
    assert folder == str(tmp_path) and (int(n_train), int(n_test)) > (0, 0)
