"""Fixtures of the command line's tests: ``samat ARGS`` in this process and a finished run (tests/commandline.py)."""

from tests.commandline import finished_run, fresh_run, samat  # noqa: F401 - fixtures, found by name
