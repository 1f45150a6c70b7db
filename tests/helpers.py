"""Helpers shared by the theory and the empirical tests (no torch here: theory tests must not import it)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m samat ARGS`` in a fresh interpreter at the repository root; output captured as text."""
    return subprocess.run([sys.executable, "-m", "samat", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (lock files aside), by its path relative to it: to show that a command rewrote
    nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


NO_SPACE = OSError(errno.ENOSPC, "No space left on device")


def fail_fsync_of(monkeypatch, name: str, err: OSError = NO_SPACE) -> None:
    """os.fsync raises ``err`` for the temporary file of ``name`` (core.results.temporary_path), as a disk that
    fills while the file is flushed."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(f".{name}.tmp"):
            raise err
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def report_free(monkeypatch, free: int) -> None:
    """shutil.disk_usage says ``free`` bytes are left."""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9 - free, free=free))
