"""Errors a user can act on: each names the parameter, the value and the valid range, in one line."""

from __future__ import annotations


class SamatError(Exception):
    """Base class for errors that the CLI reports as one line (no traceback), with ``exit_code``."""

    exit_code = 2


class ParameterError(SamatError, ValueError):
    """A parameter is outside its valid range."""

    def __init__(self, name: str, value: object, valid: str) -> None:
        self.name, self.value, self.valid = name, value, valid
        super().__init__(f"{name}={_show(value)} is invalid: {name} must be {valid}")


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
