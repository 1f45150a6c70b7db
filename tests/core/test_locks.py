"""One writer at a time (samat.core.locks): the lock beside the folder, its holder named in the refusal, released
however its holder ends, reentrant within a process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from samat.core.locks import FolderLock, LockHeld, holder_of, lock_path
from tests.helpers import REPO

HOLD = textwrap.dedent("""
    import sys
    from samat.core.locks import FolderLock
    lock = FolderLock(sys.argv[1], "a test holder")
    lock.acquire()
    print("held", flush=True)
    sys.stdin.read()  # until the test closes stdin, or kills this process
    lock.release()
""")


@pytest.fixture
def holder(tmp_path):
    """A second process holding the lock of tmp_path/run until it is closed or killed."""
    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    yield folder, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def test_the_lock_file_sits_beside_the_folder_hidden(tmp_path):
    assert lock_path(tmp_path / "runs" / "a") == tmp_path / "runs" / ".a.lock"
    with FolderLock(tmp_path / "runs" / "a", "training"):
        assert (tmp_path / "runs" / ".a.lock").is_file() and not (tmp_path / "runs" / "a").exists()


def test_a_second_writer_is_refused_naming_the_holder(holder):
    folder, proc = holder
    with pytest.raises(LockHeld) as info:
        FolderLock(folder, "another", hint="wait for it").acquire()
    message = str(info.value)
    assert "\n" not in message and message.endswith("; wait for it")
    assert f"a test holder (pid {proc.pid}, on {socket.gethostname()}" in message
    assert holder_of(folder).pid == proc.pid


@pytest.mark.parametrize("end", ["release", "SIGKILL"])
def test_the_lock_is_free_once_its_holder_ends_however_it_ends(holder, end):
    folder, proc = holder
    if end == "release":
        proc.stdin.close()
    else:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with FolderLock(folder, "the next writer"):
        recorded = json.loads(lock_path(folder).read_text())
        assert recorded["purpose"] == "the next writer" and recorded["pid"] == os.getpid()
    assert lock_path(folder).read_text() == ""  # the holder's name goes with the lock
    assert holder_of(folder) is None


def test_a_waiting_writer_is_told_once_and_gets_the_lock_when_the_holder_leaves(holder):
    folder, proc = holder
    told = []

    def on_wait(who):
        told.append(who.pid)
        proc.stdin.close()  # the holder leaves while we wait

    with FolderLock(folder, "a patient writer", wait=lambda who: True, on_wait=on_wait):
        assert json.loads(lock_path(folder).read_text())["purpose"] == "a patient writer"
    assert told == [proc.pid]


def test_the_lock_is_reentrant_within_a_process_and_held_until_the_outermost_release(tmp_path):
    folder: Path = tmp_path / "run"
    outer = FolderLock(folder, "the runner")
    outer.acquire()
    with FolderLock(folder, "training inside it"):
        assert json.loads(lock_path(folder).read_text())["purpose"] == "the runner"
    probe = subprocess.run([sys.executable, "-c", "import sys; from samat.core.locks import FolderLock; "
                            "FolderLock(sys.argv[1], 'probe').acquire()", str(folder)], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "is in use by the runner" in probe.stderr  # still held after the inner one
    outer.release()
    assert holder_of(folder) is None
