"""Check Theorems 1-5 (and their W_R restatements) against the numerical optima: every claim's check, run in turn.

Each claim gets a verdict computed from numbers: a closed form "holds" where it matches the
numerical optimum within the solver's own bracket (plus the closed form's rounding), and an
asymptotic claim holds where the coefficient extrapolated from the numerics, with its
uncertainty, matches. Nothing here knows in advance which claims hold. Where one fails, the
report gives the discrepancy, where it occurs, and the statement derived in
:mod:`samat.theory.symbolic`, which is then checked against the numerics in the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from samat.theory.claims.common import (
    ClaimReport,
    Grid,
)
from samat.theory.claims.optima import check_t1, check_t2
from samat.theory.claims.theorem3 import check_t3, check_t3_per_sample
from samat.theory.claims.theorem4 import check_t4, check_t4_per_sample
from samat.theory.claims.theorem5 import check_t5, check_t5_per_sample

CHECKS: tuple[Callable[[Grid], ClaimReport], ...] = (
    check_t1, check_t2, check_t3, check_t3_per_sample, check_t4, check_t4_per_sample, check_t5, check_t5_per_sample,
)


def run(grid: Grid | None = None, progress: Callable[[str], None] | None = None) -> list[ClaimReport]:
    grid = grid or Grid()
    reports = []
    for check in CHECKS:
        t0 = time.perf_counter()
        rep = check(grid)
        rep.seconds = time.perf_counter() - t0
        reports.append(rep)
        if progress:
            progress(f"{rep.key}: {rep.verdict} ({rep.seconds:.1f} s)")
    return reports
