"""Array arithmetic in two precisions behind one interface.

Every formula in :mod:`samat.theory.objectives` is written once against a :class:`Backend`. The
``float64`` backend is numpy/scipy and fully vectorized; the ``mpmath`` backend runs the very
same code on numpy object arrays of ``mpmath.mpf`` numbers, for the places where small ε makes
double-precision differences cancel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
import scipy.special as sc

Array = Any  # np.ndarray of float64, or of mpmath.mpf objects


@dataclass(frozen=True)
class Backend:
    """Elementary functions and the unit roundoff of one number type."""

    name: str
    dps: int | None = None  # decimal digits (mpmath only)

    @property
    def is_mp(self) -> bool:
        return self.name == "mpmath"

    @property
    def unit_roundoff(self):
        """Half the gap between 1 and the next number (an mpf for mpmath, never underflowing)."""
        return float(np.finfo(np.float64).eps) / 2 if not self.is_mp else mpmath.mpf(10) ** (-(self.dps or 50))

    @property
    def mantissa_bits(self) -> int:
        return 53 if not self.is_mp else int((self.dps or 50) * np.log2(10)) + 1

    def asarray(self, x: Any) -> Array:
        if not self.is_mp:
            return np.asarray(x, dtype=np.float64)
        arr = np.asarray(x, dtype=object)
        with np.errstate(invalid="ignore"):
            return _to_mpf(arr) if arr.size else arr

    def ndtr(self, x: Array) -> Array:
        """Φ(x), accurate relative to itself in the lower tail."""
        return sc.ndtr(x) if not self.is_mp else _mp_ndtr(x)

    def log_ndtr(self, x: Array) -> Array:
        """log Φ(x), accurate far into the lower tail."""
        return sc.log_ndtr(x) if not self.is_mp else _mp_log_ndtr(x)

    def logaddexp(self, a: Array, b: Array) -> Array:
        return np.logaddexp(a, b) if not self.is_mp else _mp_logaddexp(a, b)

    def exp(self, x: Array) -> Array:
        return np.exp(x) if not self.is_mp else _mp_exp(x)

    def log(self, x: Array) -> Array:
        return np.log(x) if not self.is_mp else _mp_log(x)

    def sqrt(self, x: Array) -> Array:
        return np.sqrt(x) if not self.is_mp else _mp_sqrt(x)

    def to_float(self, x: Array) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) if not self.is_mp else np.vectorize(float, otypes=[float])(x)

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """Working precision for the mpmath backend; a no-op for float64."""
        if self.is_mp:
            with mpmath.workdps(self.dps or 50):
                yield
        else:
            with np.errstate(over="ignore", under="ignore"):
                yield


FLOAT64 = Backend("float64")


def mp_backend(dps: int = 50) -> Backend:
    return Backend("mpmath", dps=dps)


_to_mpf = np.frompyfunc(mpmath.mpf, 1, 1)
_mp_ndtr = np.frompyfunc(mpmath.ncdf, 1, 1)
_mp_log_ndtr = np.frompyfunc(lambda x: mpmath.log(mpmath.ncdf(x)), 1, 1)
_mp_exp = np.frompyfunc(mpmath.exp, 1, 1)
_mp_log = np.frompyfunc(mpmath.log, 1, 1)
_mp_sqrt = np.frompyfunc(mpmath.sqrt, 1, 1)


def _logaddexp_scalar(a: Any, b: Any) -> Any:
    hi, lo = (a, b) if a >= b else (b, a)
    return hi + mpmath.log1p(mpmath.exp(lo - hi))


_mp_logaddexp = np.frompyfunc(_logaddexp_scalar, 2, 1)
