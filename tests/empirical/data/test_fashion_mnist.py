"""Fashion-MNIST (samat.empirical.data.fashion_mnist): the idx format, its checks, the Debian folder and the
environment's other folder."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from samat.core.errors import SamatError
from samat.empirical import data as D
from samat.empirical.data import load_dataset
from tests.empirical.data.helpers import assert_round_trip, idx_bytes, write_fashion
from tests.helpers import REPO

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
