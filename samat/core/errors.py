"""Errors a user can act on: each names the parameter, the value and the valid range, in one line."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping


class SamatError(Exception):
    """Base class for errors that the CLI reports as one line (no traceback), with ``exit_code``."""

    exit_code = 2


class ParameterError(SamatError, ValueError):
    """A parameter is outside its valid range."""

    def __init__(self, name: str, value: object, valid: str) -> None:
        self.name, self.value, self.valid = name, value, valid
        super().__init__(f"{name}={_show(value)} is invalid: {name} must be {valid}")


def checked_table(table: object, name: str, fields: tuple[str, ...]) -> dict:
    """A configuration's table (``name``: its key) as a dict, once it is a mapping whose keys are all ``fields``;
    else a ParameterError naming the table, or the first unknown key, with the keys it may have."""
    valid = f"a table with keys among {', '.join(fields)}"
    if not isinstance(table, Mapping):
        raise ParameterError(name, table, valid)
    unknown = sorted(str(k) for k in table if k not in fields)
    if unknown:
        raise ParameterError(name, unknown[0], valid)
    return dict(table)


def _show(value: object) -> str:
    try:
        import numpy as np

        arr = np.asarray(value)
        if arr.ndim and arr.size > 1:
            return f"[{', '.join(str(v) for v in arr.ravel()[:4])}{', ...' if arr.size > 4 else ''}]"
        if arr.ndim:
            value = arr.ravel()[0]
    except Exception:  # noqa: BLE001 - formatting must never raise
        pass
    return str(value)


class Interrupted(SamatError):
    """The user interrupted the work (Ctrl-C); what was saved is kept. Exit code 130, as shells expect."""

    exit_code = 130


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # no space left on the device; the user's disk quota used up


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` says the disk (or the user's quota) is full."""
    return isinstance(err, OSError) and err.errno in FULL_ERRNOS


class DiskFull(SamatError):
    """No space left where samat writes: one line that says "disk full", names the path, what was kept and what to
    do. Raised before the work where a check can tell (:func:`samat.core.results.check_free_space`), and by every write
    that finds the disk full (a result file's previous version is then intact: writes are atomic)."""

    def __init__(self, path: str | os.PathLike, *, kept: str = "nothing was replaced",
                 then: str = "run the command again", detail: str = "") -> None:
        self.path = path
        what = detail or f"cannot write {os.fspath(path)}"
        super().__init__(f"disk full: {what}; {kept}: free some space and {then}")
