"""One writer at a time (samat.core.locks): the lock beside the folder, its holder named in the refusal, released
however its holder ends, reentrant within a process; a holder that has not said who it is yet, a status probe, a
filesystem without locks and a lock file that cannot be opened."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from samat.core import locks
from samat.core.errors import SamatError
from samat.core.locks import FolderLock, Holder, LockHeld, cluster_job, holder_of, lock_path
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
    assert "\n" not in message and message.startswith(f"{folder} is in use by a test holder (pid {proc.pid}")
    assert message.endswith("; wait for it") and info.value.folder == folder
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
    asked, told = [], []

    def on_wait(who):
        told.append(who.pid)
        proc.stdin.close()  # the holder leaves while we wait

    with FolderLock(folder, "a patient writer", wait=lambda who: asked.append(who.pid) or True, on_wait=on_wait):
        assert json.loads(lock_path(folder).read_text())["purpose"] == "a patient writer"
    assert asked == told == [proc.pid]  # whether to wait is decided on who holds it


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


def test_the_holder_records_who_it_is_where_and_since_when(tmp_path, monkeypatch):
    """The lock file says what holds it, its pid, host, cluster job and start (UTC, to the second); the holder read
    back, and the way a refusal describes it, carry each of them."""
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "12")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    folder = tmp_path / "run"
    with FolderLock(folder, "training"):
        recorded = json.loads(lock_path(folder).read_text())
        held = holder_of(folder)
    assert set(recorded) == {"purpose", "pid", "host", "since", "job"}
    since = datetime.fromisoformat(recorded["since"])
    assert since.tzinfo == UTC and since.microsecond == 0 and abs((datetime.now(UTC) - since).total_seconds()) < 600
    assert held == Holder("training", os.getpid(), socket.gethostname(), recorded["since"], "12_3")
    assert recorded["since"].endswith("+00:00")
    assert held.describe() == (f"training (pid {os.getpid()}, on {socket.gethostname()}, job 12_3, "
                               f"since {recorded['since']})")
    assert Holder("a status probe").describe() == "a status probe"


@pytest.mark.parametrize("env, job", [
    ({"SLURM_ARRAY_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "3", "SLURM_JOB_ID": "15"}, "12_3"),  # an array's task
    ({"SLURM_ARRAY_JOB_ID": "12", "SLURM_JOB_ID": "15"}, "15"),  # not an array task: the job
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_JOB_ID": "15"}, "15"),
    ({"SLURM_JOB_ID": "15", "SUBMITIT_LOCAL_JOB_ID": "7"}, "15"),
    ({"SUBMITIT_LOCAL_JOB_ID": "7"}, "7"),  # submitit's local executor
    ({}, None),
])
def test_the_cluster_job_is_the_array_task_else_the_job(monkeypatch, env, job):
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID", "SUBMITIT_LOCAL_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cluster_job() == job


SILENT = textwrap.dedent("""
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH if sys.argv[2] == "probe" else fcntl.LOCK_EX)  # and writes nothing
    print("held", flush=True)
    sys.stdin.read()
""")


@pytest.fixture
def silent(tmp_path):
    """Start a process that locks tmp_path/run's lock file without saying who it is: ``silent(kind)`` with kind
    "probe" (a shared lock, as holder_of takes one) or "holder"; returns the process."""
    procs = []

    def start(kind: str) -> subprocess.Popen:
        lock_path(tmp_path / "run").parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", SILENT, str(lock_path(tmp_path / "run")), kind],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline() == "held\n"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_a_holder_that_has_not_said_who_it_is_is_another_process(tmp_path, silent):
    """After waiting PROBE_RETRY_SECONDS for it to say who it is, the claim is refused naming "another process",
    and status sees the lock held by one."""
    silent("holder")
    folder = tmp_path / "run"
    assert holder_of(folder) == Holder("another process")
    with pytest.raises(LockHeld, match=rf"^{folder} is in use by another process; wait for it to finish$"):
        FolderLock(folder, "a second writer").acquire()


def test_a_claim_waits_out_a_status_probe(tmp_path, silent, monkeypatch):
    """A status probe (holder_of's shared lock, held for an instant) does not refuse a claim: the claim retries
    while the lock's holder has not said who it is, and gets the lock when the probe ends. The probe ends at the
    claim's first pause, so that the test does not depend on the machine's speed."""
    probe = silent("probe")
    pauses = []

    def sleep(seconds):
        pauses.append(seconds)
        if probe.poll() is None:
            probe.stdin.close()
            probe.wait(timeout=30)
        time.sleep(seconds)

    monkeypatch.setattr(locks, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleep))
    with FolderLock(tmp_path / "run", "a claim"):
        assert holder_of(tmp_path / "run").purpose == "a claim"
    assert len(pauses) == 1 and 0 < pauses[0] < locks.PROBE_RETRY_SECONDS


def test_holder_of_in_the_holding_process_asks_no_lock(tmp_path, monkeypatch):
    """The holder's own process reads its record without probing: where flock is emulated by per-process POSIX
    locks (NFS), a probe's shared lock would replace the holder's exclusive one and its unlock release it."""
    folder = tmp_path / "run"
    with FolderLock(folder, "the runner"):
        calls = []
        monkeypatch.setattr(locks.fcntl, "flock", lambda *args: calls.append(args))
        assert holder_of(folder).purpose == "the runner" and calls == []
        monkeypatch.undo()


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL])
def test_a_filesystem_without_locks_is_one_line(tmp_path, monkeypatch, code):
    monkeypatch.setattr(locks.fcntl, "flock", lambda fd, op: (_ for _ in ()).throw(OSError(code, os.strerror(code))))
    folder = tmp_path / "run"
    with pytest.raises(SamatError) as raised:
        FolderLock(folder, "training").acquire()
    assert str(raised.value) == (f"cannot lock {folder}: the filesystem of {lock_path(folder)} does not support file "
                                 "locks (flock); put the results on one that does")


def test_another_error_of_the_lock_stays_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(locks.fcntl, "flock", lambda fd, op: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError) as raised:
        FolderLock(tmp_path / "run", "training").acquire()
    assert raised.value.errno == errno.EIO and not isinstance(raised.value, SamatError)


@pytest.mark.parametrize("error, said", [(PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
                                         (OSError("no reason given"), "OSError")])
@pytest.mark.parametrize("step", ["open", "mkdir"])
def test_a_lock_file_that_cannot_be_made_is_one_line_with_the_reason(tmp_path, monkeypatch, error, said, step):
    folder = tmp_path / "runs" / "run"
    if step == "open":
        real_open = os.open
        monkeypatch.setattr(os, "open", lambda path, *a, **kw: (_ for _ in ()).throw(error)
                            if str(path).endswith(".lock") else real_open(path, *a, **kw))
        expected = f"cannot lock {folder}: cannot open {lock_path(folder)} ({said})"
    else:
        monkeypatch.setattr(Path, "mkdir", lambda self, *a, **kw: (_ for _ in ()).throw(error))
        expected = f"cannot lock {folder}: cannot create {folder.parent} ({said})"
    with pytest.raises(SamatError) as raised:
        FolderLock(folder, "training").acquire()
    assert str(raised.value) == expected


def test_the_lock_file_is_made_with_its_folders_and_is_not_writable_by_others(tmp_path):
    folder = tmp_path / "a" / "b" / "run"
    mask = os.umask(0)  # what the file's own mode allows, whatever the user's umask takes away
    try:
        with FolderLock(folder, "training"):
            mode = stat.S_IMODE(lock_path(folder).stat().st_mode)
    finally:
        os.umask(mask)
    assert lock_path(folder) == tmp_path / "a" / "b" / ".run.lock" and mode == 0o644


def _descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


RELEASE_WITHOUT_STDIN = textwrap.dedent("""
    import os, sys
    from samat.core.locks import FolderLock, holder_of
    lock = FolderLock(sys.argv[1], "a batch job")
    lock.acquire()
    os.close(0)  # a job started with its standard input closed
    lock.release()
    print("free" if holder_of(sys.argv[1]) is None else "held", flush=True)
""")


def test_release_closes_its_own_descriptor_only_and_twice_is_once(tmp_path):
    """A long-lived process (a runner claiming run after run) keeps no descriptor of a released lock; releasing
    uses nothing but its own descriptor (it works in a process without standard input); a second release, or one
    before any acquire, does nothing."""
    folder = tmp_path / "run"
    before = _descriptors()
    lock = FolderLock(folder, "the runner")
    lock.release()
    lock.acquire()
    assert len(_descriptors() - before) == 1
    lock.release()
    lock.release()
    assert _descriptors() == before and holder_of(folder) is None
    done = subprocess.run([sys.executable, "-c", RELEASE_WITHOUT_STDIN, str(folder)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "free\n", done.stderr


@pytest.mark.parametrize("text", [b"", b"not json", b"[1]", b'{"pid": 3}', b'{"purpose": 5}', b"\xff\xfe"])
def test_a_lock_file_that_does_not_name_a_holder_reads_as_none(tmp_path, text):
    path = tmp_path / ".run.lock"
    path.write_bytes(text)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert Holder.read(fd) is None
    finally:
        os.close(fd)
