"""Numbers from user text, parsed once at the edge: "8/255", "0.5", "1e-3"."""

from __future__ import annotations

import numbers
from fractions import Fraction
from typing import Any

from core.errors import ParameterError


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def parse_number(value: Any, name: str) -> float:
    """A float from a number or a string such as "8/255"; a bad one is a ParameterError naming ``name``."""
    if isinstance(value, bool):
        raise ParameterError(name, value, "a number")
    if isinstance(value, int | float):
        return float(value)
    try:
        text = str(value).strip()
        return float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise ParameterError(name, value, "a number (fractions such as 8/255 are fine)") from None
