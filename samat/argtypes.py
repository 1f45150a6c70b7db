"""Command-line plumbing shared by every subcommand: one-line errors and typed arguments."""

from __future__ import annotations

import argparse
import sys

from empirical.config import parse_number  # torch-free: samat theory never imports torch
from theory.errors import ParameterError

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump) and exit with code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def number(text: str) -> float:
    """A float, also written as a fraction such as ``8/255`` (parsed once, here, at the edge, by the parser the
    configuration files use: :func:`empirical.config.parse_number`, which imports no torch)."""
    try:
        return parse_number(text, "value")
    except ParameterError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None


def ranged(name: str, valid: str, ok, kind=number):
    """An argparse type that checks ``ok(value)`` and names the parameter and its range on failure."""

    def parse(text: str):
        try:
            value = kind(text)
        except (argparse.ArgumentTypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{name}='{text}' is invalid: {name} must be {valid}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{name}={text} is invalid: {name} must be {valid}")
        return value

    parse.__name__ = name  # argparse shows this name in its messages
    return parse


def integer(text: str) -> int:
    value = number(text)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer")
    return int(value)
