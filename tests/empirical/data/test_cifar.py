"""CIFAR-10/100 (samat.empirical.data.cifar) from tiny archives in the official format, and the download with its
published MD5."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from samat.core.errors import ParameterError, SamatError
from samat.empirical import data as D
from samat.empirical.data import (
    cifar,
    download,
    load_dataset,
)
from tests.empirical.data.helpers import assert_round_trip, tar_gz, write_cifar

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
    with pytest.raises(SamatError, match=r"not found in data/cifar10: download https://www.cs.toronto.edu/~kriz/"
                                         r"cifar-10-python.tar.gz and put it \(or its extracted cifar-10-batches-py/\) "
                                         "there$"):
        load_dataset("cifar10")  # (no command has the --download it advised)
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
