"""How a samat process runs on a machine that others share: OpenMP's passive wait policy, and torch's CPU threads.

torch's OpenMP threads spin while they wait for each other (the default "active" policy). When another process
keeps a core busy, each parallel region then waits for the thread that lost its core while its partner burns the
other core spinning: an epoch of the CPU default took 66-202 s with 2 threads instead of 8-39 s with 1
(bench/threads.py, figures and machine state in docs/BENCHMARKS.md). With the passive policy the waiting thread
yields its core, and 2 threads took 8-28 s on the same busy machine: as fast as one thread or faster (the
scheduler shares a busy CPU per thread). So samat sets OMP_WAIT_POLICY=PASSIVE before torch loads, and keeps
torch's thread count (one per core); SAMAT_THREADS=N chooses another (OMP_NUM_THREADS too, as torch reads it).

SAMAT_THREADS is bounded by the cores this process may use (its CPU affinity: a Slurm task's share of a node):
more threads than cores only take turns on them, so it warns above the core count, and refuses more than
MAX_THREADS_PER_CORE per core, where the threads are all overhead (on a 2-core machine 1000 threads ran 80 times
slower than 2, 5000 crashed OpenMP and 100000 ran out of memory).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from samat.core.errors import ParameterError
from samat.core.machine import usable_cores

MAX_THREADS_PER_CORE = 4  # SAMAT_THREADS above this many per core is refused


def prepare_process() -> None:
    """Before torch is imported: OpenMP threads wait passively (they yield their core instead of spinning)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def chosen_threads() -> int | None:
    """SAMAT_THREADS, if set: an integer in [1, MAX_THREADS_PER_CORE x the usable cores], else a one-line error;
    None: torch's default."""
    text = os.environ.get("SAMAT_THREADS", "").strip()
    if not text:
        return None
    limit = MAX_THREADS_PER_CORE * usable_cores()
    if not text.isdigit() or not 1 <= int(text) <= limit:
        raise ParameterError("SAMAT_THREADS", text, f"an integer in [1, {limit}] (CPU threads for torch: at most "
                             f"{MAX_THREADS_PER_CORE} per core, and this process may use {usable_cores()})")
    return int(text)


def use_cpu_threads(log: Callable[[str], None]) -> int:
    """Set torch's CPU threads to SAMAT_THREADS where it is set; return the number in use. Says nothing unless
    SAMAT_THREADS asks for more threads than there are cores, or the wait policy was left active by the caller's
    environment, which collapses on a busy machine."""
    threads = chosen_threads()  # before torch loads: a bad value is refused at once
    import torch  # the commands that train or attack call this; samat theory never does

    if threads is not None:
        cores = usable_cores()
        if threads > cores:
            log(f"warning: SAMAT_THREADS={threads} is more than the {cores} cores this process may use: the threads "
                f"take turns on them, which gains nothing and can be much slower")
        torch.set_num_threads(threads)
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "ACTIVE" and torch.get_num_threads() > 1:
        log("note: OMP_WAIT_POLICY=ACTIVE makes torch's threads spin; on a machine that others share an epoch "
            "can take several times longer (docs/BENCHMARKS.md)")
    return torch.get_num_threads()
