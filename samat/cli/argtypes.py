"""Command-line plumbing shared by every subcommand: one-line errors and typed arguments."""

from __future__ import annotations

import argparse
import math
import sys

from samat.core.errors import ParameterError
from samat.core.numbers import SEED_MAX, SEED_RANGE, parse_number, repeated_seed

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump) and exit with code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def number(text: str) -> float:
    """A float, also written as a fraction such as ``8/255`` (parsed once, here, at the edge, by the parser the
    configuration files use: :func:`samat.core.numbers.parse_number`)."""
    try:
        return parse_number(text, "value")
    except ParameterError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None


def ranged(name: str, valid: str, ok, kind=number):
    """An argparse type that checks ``ok(value)`` and names the parameter and its range on failure; infinite
    values (inf, 1e309) are refused as such."""

    def parse(text: str):
        try:
            value = kind(text)
        except (argparse.ArgumentTypeError, ValueError):
            infinite = _is_infinite(text)
            raise argparse.ArgumentTypeError(f"{name}={text} is invalid: {name} must be finite ({valid})" if infinite
                                             else f"{name}='{text}' is invalid: {name} must be {valid}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{name}={text} is invalid: {name} must be finite ({valid})")
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{name}={text} is invalid: {name} must be {valid}")
        return value

    parse.__name__ = name  # argparse shows this name in its messages
    return parse


def _is_infinite(text: str) -> bool:
    try:
        return not math.isfinite(number(text))
    except argparse.ArgumentTypeError:
        return False


def integer(text: str) -> int:
    """An integer, also written as 1e3; infinity and fractions are refused."""
    value = number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer (it must be finite)")
    if "e" not in text.lower() and "/" not in text and "." not in text:
        try:
            return int(text.strip())  # exact, however large (a float would round 99999999999999999999999)
        except ValueError:
            pass
    if value != int(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer")
    return int(value)


arg_positive_int = ranged("value", "an integer >= 1", lambda v: v >= 1, kind=integer)
arg_seed = ranged("seed", SEED_RANGE, lambda v: 0 <= v <= SEED_MAX, kind=integer)


def seeds(text: str) -> tuple[int, ...]:
    """A comma-separated list of seeds, e.g. "0,1,2"."""
    problem = argparse.ArgumentTypeError(f"seeds='{text}' is invalid: seeds must be integers in [0, 2**63 - 1], "
                                         "e.g. 0,1,2")
    try:
        values = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise problem from None
    if not values or min(values) < 0 or max(values) > SEED_MAX:
        raise problem
    if (why := repeated_seed(values)) is not None:
        raise argparse.ArgumentTypeError(f"seeds='{text}' is invalid: seeds must be distinct ({why})")
    return values


def overrides(items: list[str]) -> dict:
    """``--set key=value`` options as a dict of configuration fields."""
    from samat.empirical.training.config import parse_override  # imports torch: only when a command needs it

    return dict(parse_override(item) for item in items)
