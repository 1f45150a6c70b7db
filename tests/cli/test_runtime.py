"""How a samat process shares a machine (samat.cli.runtime): SAMAT_THREADS's lower end, and the note on OpenMP's
active wait policy, which is given only where it matters (more than one thread) and whatever its case. The
threads' upper bound and the warning above the core count are tested in test_output.py."""

from __future__ import annotations

import pytest
import torch

from samat.cli import runtime
from samat.core.errors import ParameterError

ACTIVE_NOTE = ("note: OMP_WAIT_POLICY=ACTIVE makes torch's threads spin; on a machine that others share an epoch "
               "can take several times longer (docs/BENCHMARKS.md)")


@pytest.fixture
def two_cores(monkeypatch):
    """A process that may use two cores; torch's thread count is given back afterwards."""
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_one_thread_is_the_least_samat_threads_takes(monkeypatch, two_cores):
    monkeypatch.setenv("SAMAT_THREADS", "1")
    assert runtime.chosen_threads() == 1
    monkeypatch.setenv("SAMAT_THREADS", "0")
    with pytest.raises(ParameterError, match=r"^SAMAT_THREADS=0 is invalid: SAMAT_THREADS must be an integer in "
                                             r"\[1, 8\]"):
        runtime.chosen_threads()


@pytest.mark.parametrize("policy, threads, noted", [
    ("ACTIVE", "2", True), ("active", "2", True),  # OpenMP reads the policy in any case
    ("ACTIVE", "1", False),  # one thread waits for nobody
    ("PASSIVE", "2", False), (None, "2", False),
])
def test_an_active_wait_policy_is_noted_where_threads_wait_for_each_other(monkeypatch, two_cores, policy, threads,
                                                                            noted):
    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    monkeypatch.setenv("SAMAT_THREADS", threads)
    said: list[str] = []
    assert runtime.use_cpu_threads(said.append) == int(threads)
    assert said == ([ACTIVE_NOTE] if noted else [])
