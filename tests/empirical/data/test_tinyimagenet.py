"""TinyImageNet (samat.empirical.data.tinyimagenet): decoding, the cache and its failures, image sizes."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from samat.core.errors import SamatError
from samat.empirical.data import (
    load_dataset,
    tinyimagenet,
)
from tests.empirical.data.helpers import TINY_WNIDS, write_tinyimagenet

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
