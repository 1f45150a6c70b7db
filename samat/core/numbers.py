"""Numbers from user text, parsed once at the edge: "8/255", "0.5", "1e-3"."""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Any

from samat.core.errors import ParameterError

SEED_MAX = 2**63 - 1  # every seed (training, evaluation, experiments) is an integer in [0, SEED_MAX]
SEED_RANGE = "an integer in [0, 2**63 - 1]"


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def parse_number(value: Any, name: str) -> float:
    """A float from a number or a string such as "8/255" or "1.5/255" (each side a decimal number); a bad one is a
    ParameterError naming ``name``."""
    if isinstance(value, bool):
        raise ParameterError(name, value, "a number")
    if isinstance(value, int | float):
        return float(value)
    try:
        text = str(value).strip()
        if "/" not in text:
            return float(text)
        numerator, denominator = text.split("/")
        fraction = Fraction(numerator.strip()) / Fraction(denominator.strip())
        try:
            return float(fraction)
        except OverflowError:  # beyond float's range: infinite, for the callers' "must be finite"
            return math.inf if fraction > 0 else -math.inf
    except (ValueError, ZeroDivisionError):
        raise ParameterError(name, value, "a number (fractions such as 8/255 or 1.5/255 are fine)") from None


def is_seed(value: Any) -> bool:
    """An integer seed in [0, SEED_MAX] (what torch's and numpy's generators all accept)."""
    return is_int(value) and 0 <= value <= SEED_MAX


def repeated_seed(seeds: tuple[int, ...] | list[int]) -> str | None:
    """Why a list of seeds is not a set of runs ("seed 0 appears 2 times: ..."), or None when each appears once.
    A seed given twice is one run (one folder) that a grid would count as several, its mean ± std taken over copies
    of one number; counting it once would quietly give fewer seeds than asked for, so the repeat is refused."""
    seeds = list(seeds)
    twice = next((s for i, s in enumerate(seeds) if s in seeds[:i]), None)
    if twice is None:
        return None
    return f"seed {twice} appears {seeds.count(twice)} times: the same run, which would count as several"
