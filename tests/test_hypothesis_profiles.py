"""The hypothesis profiles of tests/conftest.py: the thorough one multiplies the examples of every property test,
including those that set their own max_examples."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLES_FACTOR, scale_examples
from tests.helpers import REPO

COUNT_FILE = "SAMAT_TEST_COUNT_FILE"  # where test_counted_examples appends a line per example, when set


@pytest.mark.skipif(not os.environ.get(COUNT_FILE), reason="a probe, not a test: it counts its examples for "
                    "test_thorough_profile_runs_more_examples_of_a_test_with_its_own_max_examples, which runs it")
@given(st.integers(0, 10**9))
@settings(max_examples=3)
def test_counted_examples(k):
    """Three examples of its own, each written to COUNT_FILE; the test below runs it and checks the count (in the
    suite it is skipped: alone it would assert nothing)."""
    with open(os.environ[COUNT_FILE], "a") as f:
        f.write(f"{k}\n")


def test_scale_examples_multiplies_a_tests_own_max_examples():
    calls = []

    @given(st.integers(0, 10**9))
    @settings(max_examples=4, derandomize=True)
    def prop(k):
        calls.append(k)

    scale_examples(prop, 5)
    prop()
    assert len(calls) == 20


def test_thorough_profile_runs_more_examples_of_a_test_with_its_own_max_examples(tmp_path):
    """Under pytest, as a researcher runs it: 3 examples by default, 3 x EXAMPLES_FACTOR under thorough."""
    counts = {}
    for profile in ("default", "thorough"):
        count = tmp_path / f"{profile}.txt"
        env = os.environ | {"SAMAT_HYPOTHESIS_PROFILE": profile, COUNT_FILE: str(count)}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:xdist",
                               "-p", "no:cacheprovider", f"{__file__}::test_counted_examples"],
                              capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        counts[profile] = len(count.read_text().split())
    assert counts == {"default": 3, "thorough": 3 * EXAMPLES_FACTOR["thorough"]}
