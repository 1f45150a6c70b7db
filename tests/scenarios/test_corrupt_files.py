"""Corrupt TinyImageNet files, through the loader in samat/empirical/data: a damaged cache is named in one warning and
rebuilt from the JPEGs; a broken JPEG is a one-line SamatError naming it, and through `samat train` one error line
and exit code 2, never a traceback."""

from __future__ import annotations

import gc
import warnings

import pytest
import torch

from samat.cli.main import main
from samat.core.errors import SamatError
from samat.empirical.data import load_dataset, tinyimagenet
from tests.empirical.data.helpers import write_tinyimagenet

CACHE = "tiny-imagenet-200.npz"


def _damage(data: bytes, how: str) -> bytes:
    """A cache file as a crash, a full disk or a bad sector leaves it."""
    pixels = data.index(b"train_x.npy") + 200  # inside the first image's bytes (the member's header is < 200)
    return {"truncated": data[: len(data) // 2], "no end": data[:-10], "empty": b"", "garbage": b"x" * 500,
            "flipped pixel": data[:pixels] + bytes([data[pixels] ^ 0xFF]) + data[pixels + 1:]}[how]


@pytest.mark.parametrize("how", ["truncated", "no end", "empty", "garbage", "flipped pixel"])
def test_a_damaged_cache_is_named_ignored_and_rebuilt(tmp_path, monkeypatch, how):
    """A truncated cache (a zip without its directory) raised zipfile.BadZipFile, a traceback, at every load
    since: the cache was never rebuilt."""
    write_tinyimagenet(tmp_path, train_per_class=1, val_per_class=1)
    fresh = load_dataset("tinyimagenet", tmp_path)
    cache = tmp_path / CACHE
    cache.write_bytes(_damage(cache.read_bytes(), how))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = load_dataset("tinyimagenet", tmp_path)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and messages[0].startswith(f"ignoring unreadable cache {cache} (")
    assert "\n" not in messages[0] and caught[0].category is UserWarning  # no ResourceWarning of a leaked file
    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(again, key), getattr(fresh, key)), key

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the cache was rebuilt")

    monkeypatch.setattr(tinyimagenet, "_decode_jpeg", no_decoding)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache reads without a warning
        cached = load_dataset("tinyimagenet", tmp_path)
    assert torch.equal(cached.train_x, fresh.train_x) and torch.equal(cached.test_y, fresh.test_y)


def _break(jpeg, how: str) -> None:
    raw = jpeg.read_bytes()
    jpeg.write_bytes({"truncated": raw[: len(raw) // 2], "empty": b"", "not a JPEG": b"\x89PNG\r\n\x1a\n" + bytes(50),
                      "zeroed middle": raw[:300] + bytes(len(raw) - 600) + raw[-300:]}[how])


@pytest.mark.parametrize("how", ["truncated", "empty", "not a JPEG", "zeroed middle"])
def test_a_broken_jpeg_is_one_line_naming_it(tmp_path, how):
    write_tinyimagenet(tmp_path, train_per_class=1, val_per_class=1)
    jpeg = sorted((tmp_path / "tiny-imagenet-200" / "train").glob("*/images/*.JPEG"))[1]
    _break(jpeg, how)
    with pytest.raises(SamatError) as err:
        load_dataset("tinyimagenet", tmp_path)
    message = str(err.value)
    assert message.startswith(f"cannot decode {jpeg} (") and message.endswith("): replace it")
    assert "\n" not in message
    assert not (tmp_path / CACHE).exists()  # nothing half-decoded is cached


def test_a_broken_jpeg_through_samat_train_is_one_error_line_before_the_run_exists(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SAMAT_THREADS", "1")
    threads = torch.get_num_threads()
    write_tinyimagenet(tmp_path / "data", train_per_class=1, val_per_class=1)
    jpeg = tmp_path / "data" / "tiny-imagenet-200" / "val" / "images" / "val_2.JPEG"
    _break(jpeg, "truncated")
    try:
        code = main(["train", "--dataset", "tinyimagenet", "--data-dir", str(tmp_path / "data"), "--model",
                     "small_cnn", "--epochs", "1", "--device", "cpu", "--runs-dir", str(tmp_path / "runs"),
                     "--name", "r", "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"samat train: error: cannot decode {jpeg} (")
    assert [line for line in err.splitlines() if "error" in line] == err.splitlines()[-1:]
    assert not (tmp_path / "runs" / "r").exists()


def test_the_cache_is_read_from_a_file_it_closes(tmp_path):
    """np.load on a path leaks its file when the zip is unreadable (a ResourceWarning at exit)."""
    (tmp_path / CACHE).write_bytes(b"PK\x03\x04" + bytes(40))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tinyimagenet._read_cache(tmp_path / CACHE, ["n0"]) is None
        gc.collect()
    assert [w.category for w in caught] == [UserWarning], [str(w.message) for w in caught]
