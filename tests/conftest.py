"""Shared pytest setup: markers for long and GPU tests, and hypothesis profiles."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

# Before torch loads: its OpenMP threads wait passively, as under the samat command (samat/cli/runtime.py); spinning
# threads make the suite several times slower on a machine that other jobs share (docs/BENCHMARKS.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Under pytest-xdist (`pytest -n 2`) each worker is one process per core: one torch thread each, not one per core
# in every worker (torch reads OMP_NUM_THREADS when it loads; the subprocesses the tests start inherit it).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# The text task's libraries read their folders when they load: TextAttack's cache, flair's, NLTK's data. Every test
# process (and the commands it starts) gets folders of its own, which the text tests fill with stand-ins
# (tests/empirical/text/conftest.py), so that no test reads or writes the user's caches; and no test asks a hub.
TEXT_RESOURCES = Path(tempfile.mkdtemp(prefix="samat-test-text-"))
for _variable, _folder in (("TA_CACHE_DIR", "textattack"), ("FLAIR_CACHE_ROOT", "flair"), ("NLTK_DATA", "nltk_data")):
    os.environ[_variable] = str(TEXT_RESOURCES / _folder)
os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402

pytest_plugins = ["tests.text"]  # the text tests' fixtures (stand-ins, the tiny model, a trained run)
from hypothesis import HealthCheck, settings  # noqa: E402

# Property tests replay a fixed, derandomized set of examples by default, so that a red suite always means a
# reproducible failure, on every machine and in CI. SAMAT_HYPOTHESIS_PROFILE=explore draws new examples each
# run; =thorough draws EXAMPLES_FACTOR times as many as the default, for every property test, including those
# that set their own max_examples (minutes).
settings.register_profile("default", deadline=None, max_examples=30, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", parent=settings.get_profile("default"), derandomize=False)
settings.register_profile("thorough", parent=settings.get_profile("explore"))
EXAMPLES_FACTOR = {"default": 1, "explore": 1, "thorough": 20}
PROFILE = os.environ.get("SAMAT_HYPOTHESIS_PROFILE") or "default"
if PROFILE not in EXAMPLES_FACTOR:
    raise pytest.UsageError(f"SAMAT_HYPOTHESIS_PROFILE={PROFILE} is invalid: it must be one of "
                            f"{', '.join(EXAMPLES_FACTOR)}")
settings.load_profile(PROFILE)


def scale_examples(test, factor: int) -> None:
    """Run the property test ``test`` (a function under @given) on ``factor`` times its max_examples, whether
    the profile or its own @settings set them. Hypothesis reads a test's settings from this attribute when it runs
    (hypothesis.core: wrapped_test._hypothesis_internal_use_settings); if a later version moves it, this fails
    loudly rather than leaving the thorough profile a no-op again."""
    key = "_hypothesis_internal_use_settings"
    own = getattr(test, key, None)
    if not isinstance(own, settings):
        raise RuntimeError(f"cannot scale the examples of {test!r}: hypothesis no longer keeps a test's settings "
                           f"in {key}; update tests/conftest.py.scale_examples")
    setattr(test, key, settings(own, max_examples=own.max_examples * factor))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow (minutes each)")
    parser.addoption("--run-gpu", action="store_true", help="also run tests marked gpu (needs CUDA)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skips = {
        "slow": (config.getoption("--run-slow"), "slow test: run with --run-slow"),
        "gpu": (config.getoption("--run-gpu"), "needs a CUDA GPU: run with --run-gpu on a GPU machine"),
    }
    scaled = set()
    for item in items:
        test = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))  # a method's function
        if EXAMPLES_FACTOR[PROFILE] != 1 and getattr(test, "is_hypothesis_test", False) and id(test) not in scaled:
            scaled.add(id(test))  # once per function, however many parametrized items share it
            scale_examples(test, EXAMPLES_FACTOR[PROFILE])
        for marker, (enabled, reason) in skips.items():
            if marker in item.keywords and not enabled:
                item.add_marker(pytest.mark.skip(reason=reason))


def _order_seed(config: pytest.Config) -> int | None:
    """pytest-randomly's seed for this run's order, or None when it is off (``-p no:randomly``)."""
    return getattr(config.option, "randomly_seed", None) if config.pluginmanager.has_plugin("randomly") else None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Print the order's seed under -q too (pytest-randomly prints it only in the header, which -q hides)."""
    seed, reporter = _order_seed(session.config), session.config.pluginmanager.get_plugin("terminalreporter")
    if seed is not None and reporter is not None and session.config.get_verbosity() < 0:
        reporter.write_line(f"Using --randomly-seed={seed}")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """After a failure, how to replay the order it ran in."""
    seed = _order_seed(config)
    if seed is not None and exitstatus == pytest.ExitCode.TESTS_FAILED:
        terminalreporter.write_line(f"tests ran in a random order: replay it with --randomly-seed={seed}")


def torch_seed_for(config: pytest.Config, nodeid: str) -> int:
    """The seed of torch's global RNG for the test ``nodeid``: its own, whatever ran before it in this process
    (as pytest-randomly does for random and numpy), and new with each order seed."""
    return ((_order_seed(config) or 0) + zlib.crc32(nodeid.encode())) % 2**63


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before its fixtures: torch's global RNG (weight initialization, unseeded torch.rand) restarts from the
    test's own seed, so that what a test draws does not depend on the tests that ran before it. Only once torch
    is loaded: the theory tests never load it."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(torch_seed_for(item.config, item.nodeid))


# SAMAT_CURRENT_TEST=FILE: the test running now, written when it starts and emptied when it ends, so that whoever
# has to stop a long pytest (bench/gpu_suite.py at its time limit) can say which test it stopped in.
CURRENT_TEST = os.environ.get("SAMAT_CURRENT_TEST")


def pytest_runtest_logstart(nodeid: str, location) -> None:
    if CURRENT_TEST:
        Path(CURRENT_TEST).write_text(f"{nodeid}\t{time.time():.1f}\n")


def pytest_runtest_logfinish(nodeid: str, location) -> None:
    if CURRENT_TEST:
        Path(CURRENT_TEST).write_text("")
def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(TEXT_RESOURCES, ignore_errors=True)
