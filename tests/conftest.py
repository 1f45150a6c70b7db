"""Shared pytest setup: markers for long and GPU tests, and hypothesis profiles."""

from __future__ import annotations

import os

# Before torch loads: its OpenMP threads wait passively, as under the samat command (samat/runtime.py); spinning
# threads make the suite several times slower on a machine that other jobs share (docs/BENCHMARKS.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Property tests replay a fixed, derandomized set of examples by default, so that a red suite always means a
# reproducible failure, on every machine and in CI. SAMAT_HYPOTHESIS_PROFILE=explore draws new examples each
# run; =thorough draws many more (minutes).
settings.register_profile("default", deadline=None, max_examples=30, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", parent=settings.get_profile("default"), derandomize=False)
settings.register_profile("thorough", parent=settings.get_profile("explore"), max_examples=500)
settings.load_profile(os.environ.get("SAMAT_HYPOTHESIS_PROFILE") or "default")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow (minutes each)")
    parser.addoption("--run-gpu", action="store_true", help="also run tests marked gpu (needs CUDA)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skips = {
        "slow": (config.getoption("--run-slow"), "slow test: run with --run-slow"),
        "gpu": (config.getoption("--run-gpu"), "needs a CUDA GPU: run with --run-gpu on a GPU machine"),
    }
    for item in items:
        for marker, (enabled, reason) in skips.items():
            if marker in item.keywords and not enabled:
                item.add_marker(pytest.mark.skip(reason=reason))
