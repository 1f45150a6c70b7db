"""Limits ε -> 0 from the numerics: a quantity fitted as c0 + c1 ε² per parameter point and extrapolated, with its
uncertainty; and T4's coefficient with its log-log order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Extrapolation:
    """y(ε) = c0 + c1 ε² fitted per row (rows: parameter points); c0 is the limit ε -> 0."""

    c0: np.ndarray
    c1: np.ndarray
    tol: np.ndarray  # 5 standard errors of c0 plus the data's numerical error carried through the fit
    scatter: np.ndarray  # residual standard deviation of the fit


def extrapolate(eps: np.ndarray, y: np.ndarray, y_err: np.ndarray) -> Extrapolation:
    x = np.asarray(eps, dtype=float) ** 2
    X = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(X, y.T, rcond=None)
    resid = y - (X @ coef).T
    sigma = np.sqrt((resid**2).sum(axis=1) / max(len(x) - 2, 1))
    cov = np.linalg.inv(X.T @ X)
    intercept_weights = (cov @ X.T)[0]
    tol = 5 * sigma * np.sqrt(cov[0, 0]) + y_err.max(axis=1) * np.abs(intercept_weights).sum()
    return Extrapolation(coef[0], coef[1], tol, sigma)


@dataclass(frozen=True)
class CoefficientFit:
    """Δ(ε)/(w* ε²) -> C0 as ε -> 0, and the log-log slope of Δ(ε), per parameter point."""

    order: np.ndarray
    order_tol: np.ndarray
    c0: np.ndarray
    c0_tol: np.ndarray
    c1: np.ndarray


def fit_coefficient(eps: np.ndarray, ratio: np.ndarray, ratio_err: np.ndarray) -> CoefficientFit:
    ext = extrapolate(eps, ratio, ratio_err)
    slope = np.polyfit(np.log(eps), (np.log(ratio) + 2 * np.log(eps)).T, 1)[0]  # d log Δ / d log ε
    # The slope drifts from 2 by about 2 (C1/C0) ε² over the fitted range; plus noise.
    drift = 2 * np.abs(ext.c1 / ext.c0) * np.max(eps) ** 2
    order_tol = drift + 5 * (ext.scatter + ratio_err.max(axis=1)) / np.abs(ext.c0)
    return CoefficientFit(slope, order_tol, ext.c0, ext.tol, ext.c1)
