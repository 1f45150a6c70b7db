"""The papers' data model D(p, η, n) and its linear classifier.

Workshop paper §4.1 eq. (7) / duality paper §4.1 eq. (6):

    y ~ U{-1, +1};   x1 = +y w.p. p, -y w.p. 1-p   (the robust feature);
    x2, ..., x_{n+1} ~ i.i.d. N(η y, 1)             (the non-robust features).

The classifier is sign(w·x) with w2 = ... = w_{n+1} = 1 (both papers normalize so), so the
only free parameter is w1, and the robust feature weight is W_R = w1 / (w2 + ... + w_{n+1})
(duality paper eq. 7).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samat.core.errors import ParameterError

P_RANGE = "in (0.5, 1)"
ETA_RANGE = "> 0"
N_RANGE = "an integer >= 1"
EPS_RANGE = ">= 0"


def check_parameters(*, p=None, eta=None, n=None, eps=None, **named_eps) -> None:
    """Raise :class:`ParameterError` for the first parameter outside its range (arrays allowed).

    Extra keyword arguments are further budgets (ε-like, must be finite and >= 0), named as the
    caller's user knows them (``eps_sam=...``).
    """
    if p is not None:
        _check("p", p, lambda a: (a > 0.5) & (a < 1), P_RANGE)
    if eta is not None:
        _check("eta", eta, lambda a: a > 0, ETA_RANGE)
    if n is not None:
        _check("n", n, lambda a: (a >= 1) & (a == np.floor(a)), N_RANGE)
    for name, value in ({"eps": eps} | named_eps).items():
        if value is not None:
            _check(name, value, lambda a: a >= 0, EPS_RANGE)


def _check(name: str, value, ok, valid: str) -> None:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(name, value, f"a number {valid}") from None
    good = np.isfinite(arr) & ok(np.where(np.isfinite(arr), arr, 0.0))
    if not np.all(good):
        raise ParameterError(name, arr[~good].ravel()[0] if arr.ndim else arr, valid)


@dataclass(frozen=True)
class GaussianModel:
    """D(p, η, n): one robust ±1 feature correct w.p. p, and n non-robust N(ηy, 1) features."""

    p: float
    eta: float
    n: int

    def __post_init__(self) -> None:
        check_parameters(p=self.p, eta=self.eta, n=self.n)

    def sample(self, size: int, seed: int | np.random.Generator | None = 0) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``size`` i.i.d. pairs: ``x`` of shape (size, n+1) and labels ``y`` in {-1, +1}."""
        if not isinstance(size, int | np.integer) or size < 1:
            raise ParameterError("size", size, "an integer >= 1")
        rng = np.random.default_rng(seed)
        y = rng.choice(np.array([-1.0, 1.0]), size=size)
        robust_correct = rng.random(size) < self.p
        x = np.empty((size, self.n + 1))
        x[:, 0] = np.where(robust_correct, y, -y)
        x[:, 1:] = self.eta * y[:, None] + rng.standard_normal((size, self.n))
        return x, y

    def weights(self, w1: float) -> np.ndarray:
        """The papers' weight vector (w1, 1, ..., 1)."""
        return np.concatenate([[w1], np.ones(self.n)])


def robust_feature_weight(w1, n):
    """W_R = w1 / (w2 + ... + w_{n+1}) with w2 = ... = w_{n+1} = 1 (duality paper eq. 7)."""
    return w1 / n


def sample_accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of the sample that sign(w·x) classifies correctly."""
    return float(np.mean(np.sign(x @ w) == y))
