"""How a samat process runs on a machine that others share: OpenMP's passive wait policy, and torch's CPU threads.

torch's OpenMP threads spin while they wait for each other (the default "active" policy). When another process
keeps a core busy, each parallel region then waits for the thread that lost its core while its partner burns the
other core spinning: an epoch of the CPU default took 66-202 s with 2 threads instead of 8-39 s with 1
(bench/threads.py, figures and machine state in docs/BENCHMARKS.md). With the passive policy the waiting thread
yields its core, and 2 threads took 8-28 s on the same busy machine: as fast as one thread or faster (the
scheduler shares a busy CPU per thread). So samat sets OMP_WAIT_POLICY=PASSIVE before torch loads, and keeps
torch's thread count (one per core); SAMAT_THREADS=N chooses another (OMP_NUM_THREADS too, as torch reads it).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from core.errors import ParameterError


def prepare_process() -> None:
    """Before torch is imported: OpenMP threads wait passively (they yield their core instead of spinning)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def chosen_threads() -> int | None:
    """SAMAT_THREADS, if set (a one-line error when it is not a positive integer); None: torch's default."""
    text = os.environ.get("SAMAT_THREADS", "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ParameterError("SAMAT_THREADS", text, "an integer >= 1 (CPU threads for torch)")
    return int(text)


def use_cpu_threads(log: Callable[[str], None]) -> int:
    """Set torch's CPU threads to SAMAT_THREADS where it is set; return the number in use. Says nothing unless
    the wait policy was left active by the caller's environment, which collapses on a busy machine."""
    import torch  # the commands that train or attack call this; samat theory never does

    threads = chosen_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "ACTIVE" and torch.get_num_threads() > 1:
        log("note: OMP_WAIT_POLICY=ACTIVE makes torch's threads spin; on a machine that others share an epoch "
            "can take several times longer (docs/BENCHMARKS.md)")
    return torch.get_num_threads()
