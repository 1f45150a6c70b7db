"""A full disk in the shared lower layers: the lock, the atomic write and the check before the work each say "disk
full" as core.errors.DiskFull, naming the path, and lose nothing (the previous file stays, no temporary is left).
The disk is simulated (os.pwrite, os.open, os.fsync or the writer raising ENOSPC, shutil.disk_usage reporting
4 kB free); one test fills a real tmpfs where this machine lets the tests mount one."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from samat.core.errors import DiskFull, SamatError
from samat.core.locks import FolderLock, holder_of
from samat.core.results import (
    ROOM,
    atomic_write_bytes,
    check_free_space,
    check_writable_folder,
    temporary_path,
    write_json,
)
from tests.helpers import NO_SPACE, fail_fsync_of, report_free


def test_a_lock_that_cannot_record_its_holder_is_disk_full_and_not_taken(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: (_ for _ in ()).throw(NO_SPACE))
    with pytest.raises(DiskFull, match=rf"^disk full: cannot lock {tmp_path / 'run'}: cannot write who holds it "
                                       rf"into {tmp_path / '.run.lock'}; nothing was started: free some space") \
            as raised:
        FolderLock(tmp_path / "run", "samat train").acquire()
    assert raised.value.path == tmp_path / ".run.lock"
    monkeypatch.undo()
    assert holder_of(tmp_path / "run") is None  # released with the error
    with FolderLock(tmp_path / "run", "samat train"):
        assert holder_of(tmp_path / "run").purpose == "samat train"


@pytest.mark.parametrize("step", ["the lock file", "its folder"])
def test_a_lock_file_that_cannot_be_created_is_disk_full(tmp_path, monkeypatch, step):
    if step == "the lock file":
        real_open = os.open
        monkeypatch.setattr(os, "open", lambda path, *a, **kw: (_ for _ in ()).throw(NO_SPACE)
                            if str(path).endswith(".lock") else real_open(path, *a, **kw))
        where = tmp_path / ".run.lock"
    else:
        monkeypatch.setattr(Path, "mkdir", lambda self, *a, **kw: (_ for _ in ()).throw(NO_SPACE))
        where = tmp_path / "runs"
    with pytest.raises(DiskFull, match=rf"^disk full: cannot lock .*: cannot create {where}; nothing was started") \
            as raised:
        FolderLock((tmp_path / "runs" / "run") if step == "its folder" else tmp_path / "run", "samat eval").acquire()
    assert raised.value.path == where  # the path that could not be written, for a caller that reports it


@pytest.mark.parametrize("where", ["written", "flushed"])
@pytest.mark.parametrize("errno_", [errno.ENOSPC, errno.EDQUOT])
def test_a_result_that_finds_the_disk_full_leaves_the_previous_one_intact(tmp_path, monkeypatch, where, errno_):
    path = write_json(tmp_path / "eval.json", {"accuracy": 0.5})
    before = path.read_bytes()
    full = OSError(errno_, os.strerror(errno_))
    if where == "flushed":
        fail_fsync_of(monkeypatch, "eval.json", full)
        write = lambda: write_json(path, {"accuracy": 0.75})  # noqa: E731
    else:
        def write():  # half a file, then no space
            atomic_write_bytes(path, lambda tmp: (tmp.write_bytes(b'{"accur'), (_ for _ in ()).throw(full)))
    with pytest.raises(DiskFull, match=rf"^disk full: cannot write {path}; the previous eval.json is intact: free "
                                       "some space and run the command again$"):
        write()
    assert path.read_bytes() == before and not temporary_path(path).exists()


def test_a_first_result_that_finds_the_disk_full_leaves_nothing_and_other_errors_stay_theirs(tmp_path, monkeypatch):
    fail_fsync_of(monkeypatch, "verification.json")
    with pytest.raises(DiskFull, match="verification.json; nothing was replaced"):
        write_json(tmp_path / "verification.json", {"claims": []})
    assert list(tmp_path.iterdir()) == []
    fail_fsync_of(monkeypatch, "eval.json", OSError(errno.EIO, "Input/output error"))  # not a full disk: as it was
    with pytest.raises(OSError) as raised:
        write_json(tmp_path / "eval.json", {})
    assert raised.value.errno == errno.EIO and not isinstance(raised.value, SamatError)
    assert list(tmp_path.iterdir()) == []


def test_the_check_before_the_work_asks_for_room(tmp_path, monkeypatch):
    report_free(monkeypatch, 4096)
    with pytest.raises(DiskFull, match=rf"^disk full: 4.1 kB free in {tmp_path}, 1.05 MB needed for the results; "
                                       "nothing was started: free some space and run the command again$"):
        check_writable_folder(tmp_path, "--out")
    with pytest.raises(DiskFull, match=r"4.1 kB free in .*/not/yet, 5 kB needed for the checkpoints"):
        check_free_space(tmp_path / "not" / "yet", 5000, what="the checkpoints")  # asks the nearest folder there is
    report_free(monkeypatch, ROOM)
    assert check_writable_folder(tmp_path / "out", "--out") == tmp_path / "out"


def test_a_folder_that_cannot_be_made_on_a_full_disk_is_disk_full(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "mkdir", lambda self, *a, **kw: (_ for _ in ()).throw(NO_SPACE))
    with pytest.raises(DiskFull, match=rf"^disk full: cannot write in --runs-dir {tmp_path / 'runs'}; nothing was "
                                       "started"):
        check_writable_folder(tmp_path / "runs", "--runs-dir")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 kB tmpfs (mounting needs root, and a system that allows it: skipped otherwise)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {(made.stderr or made.stdout).strip() or made.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(mount: Path, leave: int) -> None:
    """Fill the filesystem of ``mount`` until ``leave`` bytes are free (to a page)."""
    with (mount / "filler").open("ab") as f:
        f.write(b"\0" * max(0, shutil.disk_usage(mount).free - leave))


def test_a_real_full_disk(small_tmpfs):
    good = write_json(small_tmpfs / "summary.json", {"value": 1})
    before = good.read_bytes()
    fill(small_tmpfs, 8192)
    with pytest.raises(DiskFull, match=rf"^disk full: cannot write {good}; the previous summary.json is intact"):
        write_json(good, {"values": list(range(10_000))})  # about 60 kB
    assert good.read_bytes() == before and not temporary_path(good).exists()
    with pytest.raises(DiskFull, match=r"^disk full: [\d.]+ kB free in .*, 1.05 MB needed"):
        check_writable_folder(small_tmpfs / "out", "--out")
    fill(small_tmpfs, 0)
    with pytest.raises(DiskFull, match="^disk full: cannot lock"):
        FolderLock(small_tmpfs / "run", "samat train").acquire()
    assert json.loads(good.read_text())["value"] == 1
