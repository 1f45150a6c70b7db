"""One writer at a time: an exclusive lock on a folder of results (a run folder, say).

The lock is ``fcntl.flock`` on a small file *beside* the folder (``runs/.NAME.lock`` for ``runs/NAME``), so that
it exists before the folder does and survives the folder being replaced (``--overwrite``). The holder writes
who it is into that file (what it does, pid, host, since when), and a second writer's one-line error names it.

The operating system releases the lock when its holder ends, however it ends (SIGKILL, a crash, a node going
down on NFSv4), so a dead holder never leaves a stale lock: there is nothing to detect or break by hand. The
pid and host in the file are for people, and are cleared on release. Locking works across machines on
filesystems whose flock is shared between clients (NFSv4, and Lustre or BeeGFS mounted with ``flock``); a
filesystem without locks is a one-line error, never a silent pass. A full disk, where the holder cannot write who
it is, is one too (:class:`samat.core.errors.DiskFull`): the lock is not taken, and nothing has started.

Locks are reentrant within a process: code that already holds a folder's lock (an experiment runner that
claimed a run) may call code that takes it again (training, evaluation).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from samat.core.errors import DiskFull, SamatError, is_disk_full

PROBE_RETRY_SECONDS = 0.5  # how long a claim waits out a holder that has not said who it is (a status probe)


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its holder wrote it."""

    purpose: str
    pid: int | None = None
    host: str | None = None
    since: str | None = None
    job: str | None = None  # a cluster job id, when the holder runs in one

    @classmethod
    def read(cls, fd: int) -> Holder | None:
        """The holder recorded in an open lock file, None if it says nothing (yet)."""
        try:
            text = os.pread(fd, 4096, 0).decode()
            info = json.loads(text) if text.strip() else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(info, dict) or not isinstance(info.get("purpose"), str):
            return None
        return cls(info["purpose"], info.get("pid"), info.get("host"), info.get("since"), info.get("job"))

    def describe(self) -> str:
        parts = (("pid", self.pid), ("on", self.host), ("job", self.job), ("since", self.since))
        where = ", ".join(f"{word} {value}" for word, value in parts if value)
        return f"{self.purpose} ({where})" if where else self.purpose


class LockHeld(SamatError):
    """Another process holds the lock."""

    def __init__(self, folder: Path, holder: Holder | None, hint: str) -> None:
        self.folder, self.holder = folder, holder
        who = holder.describe() if holder else "another process"
        super().__init__(f"{folder} is in use by {who}; {hint}")


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of ``folder``: beside it, hidden."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


def cluster_job() -> str | None:
    """The cluster job this process runs in (Slurm, or submitit's local executor), if any."""
    for array, task in (("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"),):
        if os.environ.get(array) and os.environ.get(task):
            return f"{os.environ[array]}_{os.environ[task]}"
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")


_HELD: dict[Path, list] = {}  # lock file -> [fd, depth]: the locks this process holds


class FolderLock:
    """An exclusive lock on ``folder`` (a context manager). See the module's docstring.

    ``acquire`` raises :class:`LockHeld` naming the holder, unless ``wait(holder)`` says to wait for it;
    ``on_wait(holder)`` is then told once before the wait.
    """

    def __init__(self, folder: str | os.PathLike, purpose: str, *, hint: str = "wait for it to finish",
                 wait: Callable[[Holder | None], bool] = lambda holder: False,
                 on_wait: Callable[[Holder | None], None] = lambda holder: None) -> None:
        self.folder, self.purpose, self.hint, self.wait, self.on_wait = Path(folder), purpose, hint, wait, on_wait
        self.path = lock_path(self.folder)
        self._key: Path | None = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        key = self._open_key()
        if key in _HELD:  # this process holds it already
            _HELD[key][1] += 1
            self._key = key
            return
        fd = self._open()
        try:
            holder = self._lock(fd)
            if holder is not False:
                if not self.wait(holder):
                    raise LockHeld(self.folder, holder, self.hint)
                self.on_wait(holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._record(fd)
        except BaseException:
            os.close(fd)
            raise
        _HELD[key] = [fd, 1]
        self._key = key

    def release(self) -> None:
        if self._key is None:
            return
        entry = _HELD[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[self._key]
            try:
                os.ftruncate(entry[0], 0)  # the holder's name goes with the lock
            finally:
                fcntl.flock(entry[0], fcntl.LOCK_UN)
                os.close(entry[0])
        self._key = None

    # --- the parts -------------------------------------------------------------------------------------------
    def _open_key(self) -> Path:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            if is_disk_full(err):
                raise DiskFull(self.path.parent, kept="nothing was started",
                               detail=f"cannot lock {self.folder}: cannot create {self.path.parent}") from None
            raise SamatError(f"cannot lock {self.folder}: cannot create {self.path.parent} "
                             f"({err.strerror or type(err).__name__})") from None
        return self.path.parent.resolve() / self.path.name

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if is_disk_full(err):
                raise DiskFull(self.path, kept="nothing was started",
                               detail=f"cannot lock {self.folder}: cannot create {self.path}") from None
            raise SamatError(f"cannot lock {self.folder}: cannot open {self.path} "
                             f"({err.strerror or type(err).__name__})") from None

    def _lock(self, fd: int) -> Holder | None | bool:
        """Try the lock without waiting; False when taken, else the holder (None if it has not said who it is
        within PROBE_RETRY_SECONDS: a status probe, or a holder that has just taken it)."""
        deadline = time.monotonic() + PROBE_RETRY_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return False
            except BlockingIOError:
                holder = Holder.read(fd)
                if holder is not None or time.monotonic() > deadline:
                    return holder
                time.sleep(0.02)
            except OSError as err:
                if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise SamatError(f"cannot lock {self.folder}: the filesystem of {self.path} does not support "
                                     "file locks (flock); put the results on one that does") from None
                raise

    def _record(self, fd: int) -> None:
        info = {"purpose": self.purpose, "pid": os.getpid(), "host": socket.gethostname(),
                "since": datetime.now(UTC).isoformat(timespec="seconds"), "job": cluster_job()}
        data = json.dumps(info).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError as err:
            if is_disk_full(err):
                raise DiskFull(self.path, kept="nothing was started",
                               detail=f"cannot lock {self.folder}: cannot write who holds it into {self.path}") \
                    from None
            raise


def holder_of(folder: str | os.PathLike) -> Holder | None:
    """Who holds ``folder``'s lock right now (None: nobody). Probes with a shared lock, released at once; a
    claim that meets the probe waits it out (PROBE_RETRY_SECONDS)."""
    path = lock_path(folder)
    key = path.parent.resolve() / path.name if path.parent.exists() else None
    if key is not None and key in _HELD:
        return Holder.read(_HELD[key][0])
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return Holder.read(fd) or Holder("another process")
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
