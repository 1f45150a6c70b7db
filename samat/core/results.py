"""The one way a result is written: atomically, as JSON of numbers, with one provenance record.

Every JSON result of samat (a run's config.json and final.json, eval.json, an experiment's table.json, the
Gaussian study's measurements, summary and verdicts, the theory's verification.json and figure data) is a
JSON object written by :func:`write_json`, which adds the key ``"provenance"``:

    {"created": "2026-11-30T12:00:00+00:00", "samat": "0.1.0", "git": {"commit": "...", "dirty": false},
     "python": "3.11.7", "platform": "...", "host": "...", "packages": {"numpy": "2.4.6", ...},
     "inputs": {...what the result was computed from: a configuration, a grid, the weights' hash...}}

``packages`` lists the versions of the numerical packages the process has imported (torch only where it was
used). Files are replaced atomically (a temporary file in the same folder, flushed to disk, then renamed),
so a reader never sees half a file and an interrupted write leaves the old file intact.

A full disk is one line, :class:`samat.core.errors.DiskFull`, naming the file: checked before the work where a command
knows what it will write (:func:`check_writable_folder` asks for :data:`ROOM` free, :func:`check_free_space` for
more), and raised by every write that finds no space left, with the previous version of the file intact.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from samat.core import VERSION
from samat.core.errors import DiskFull, SamatError, is_disk_full
from samat.core.machine import human_bytes

REPO = Path(__file__).resolve().parents[2]  # samat/core/results.py -> the checkout
PACKAGES = ("numpy", "scipy", "sympy", "mpmath", "matplotlib", "torch", "torchattacks")
ROOM = 1 << 20  # bytes free that a command asks for before its work: its result files (JSON, Markdown, a figure's
# PNG and PDF are each under 0.4 MB) written beside their previous versions


def temporary_path(path: Path) -> Path:
    """Where :func:`atomic_write_bytes` writes ``path`` before renaming it: ``.NAME.tmp`` beside it (a process
    killed in between leaves it behind; it is never a current result)."""
    return path.with_name(f".{path.name}.tmp")


def atomic_write_bytes(path: Path, write: Callable[[Path], Any]) -> None:
    """Write via a temporary file in the same folder, flushed to disk, then renamed over ``path``.

    ``write(tmp)`` writes the temporary file; if anything fails, the temporary file is removed, ``path`` keeps
    its old content, and the error is raised: a full disk as :class:`DiskFull` naming ``path``.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        write(tmp)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if is_disk_full(err):
            raise DiskFull(path, kept=f"the previous {path.name} is intact" if path.exists()
                           else "nothing was replaced") from None
        raise


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Bytes that users may still write on the filesystem of ``folder`` (or of its nearest existing parent, when
    it does not exist yet); None when the system does not say."""
    folder = Path(folder).absolute()
    for place in (folder, *folder.parents):
        if place.exists():
            try:
                return shutil.disk_usage(place).free
            except OSError:
                return None
    return None


def check_free_space(folder: str | os.PathLike, need: int = ROOM, *, what: str = "the results") -> None:
    """Before the work: :class:`DiskFull` when the filesystem of ``folder`` has less than ``need`` bytes free
    (``what`` says what needs them)."""
    free = free_bytes(folder)
    if free is not None and free < need:
        raise DiskFull(folder, kept="nothing was started",
                       detail=f"{human_bytes(free)} free in {folder}, {human_bytes(need)} needed for {what}")


def check_writable_folder(folder: str | os.PathLike, name: str, need: int = ROOM) -> Path:
    """Make ``folder`` if needed and check that a file can be written in it, and that ``need`` bytes are free
    there: before the work, not after. A folder that is a file, or cannot be made or written, is a one-line
    SamatError naming ``name`` (the option); a full disk is :class:`DiskFull`."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SamatError(f"{name} {folder} is a file, not a folder: choose another {name}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".samat-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        if is_disk_full(err):
            raise DiskFull(folder, kept="nothing was started", detail=f"cannot write in {name} {folder}") from None
        where = f" ({err.filename})" if err.filename and Path(err.filename) != folder else ""
        raise SamatError(f"cannot write in {name} {folder}: {err.strerror or type(err).__name__}{where}; "
                         f"choose another {name}") from None
    check_free_space(folder, need)
    return folder


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda p: p.write_text(text))


def git_state() -> dict[str, Any]:
    """The commit of the source tree this code runs from, and whether it had uncommitted changes; nulls when the
    code is not running from a git checkout of samat (an installed wheel)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != REPO:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def provenance(inputs: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Where a result came from: code version, machine, package versions, and ``inputs`` (what it was computed
    from). ``extra`` adds fields such as the device a run used."""
    packages = {name: getattr(sys.modules[name], "__version__", None) for name in PACKAGES if name in sys.modules}
    record = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "samat": VERSION,
        "git": git_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "packages": {k: str(v) for k, v in packages.items() if v is not None},
    }
    record |= extra
    if inputs is not None:
        record["inputs"] = dict(inputs)
    return record


def json_safe(obj: Any) -> Any:
    """Plain JSON: numbers stay numbers, non-finite floats become null (JSON has no inf), tuples become lists,
    numpy scalars and arrays become Python numbers and lists."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return json_safe(obj.tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to a JSON result")


def dumps(payload: Mapping[str, Any], indent: int | None = 1) -> str:
    return json.dumps(json_safe(payload), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, payload: Mapping[str, Any], *, inputs: Mapping[str, Any] | None = None,
               provenance_record: Mapping[str, Any] | None = None, indent: int | None = 1) -> Path:
    """Write ``payload`` (a mapping) to ``path`` atomically, with ``"provenance"`` added: a fresh record from
    ``inputs``, or ``provenance_record`` when the caller has one already."""
    if "provenance" in payload:
        raise ValueError("a result's payload must not carry its own 'provenance' key")
    record = dict(provenance_record) if provenance_record is not None else provenance(inputs)
    path = Path(path)
    atomic_write_text(path, dumps({"provenance": record, **payload}, indent))
    return path


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def publish(paths: list[Path], folder: Path) -> None:
    """Copy ``paths`` into ``folder`` (made if needed) under their own names, each replaced atomically, so that a
    published file is always a whole old or a whole new one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        atomic_write_bytes(folder / Path(path).name, lambda tmp, path=path: shutil.copyfile(path, tmp))
