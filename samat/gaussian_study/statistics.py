"""Means, standard errors and Student-t intervals over seeds."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def standard_error(values: list[float]) -> tuple[float, float, int]:
    """Mean, standard error of the mean, and degrees of freedom: what :func:`interval` needs at any level."""
    a = np.asarray(values, dtype=float)
    se = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else float("nan")
    return float(a.mean()), se, len(a) - 1


def interval(stat: tuple[float, float, int], comparisons: int = 1, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t interval for a ``standard_error`` triple, at ``level`` family-wise
    over ``comparisons`` (Bonferroni; 1: the plain interval)."""
    mean, se, dof = stat
    return mean, float(stats.t.ppf(1 - (1 - level) / (2 * comparisons), dof) * se)
