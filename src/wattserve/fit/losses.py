"""Losses for fitting forms that are linear in their coefficients: ``yhat = X @ c``.

* ``squared``        sum (y - yhat)^2: the published fits; dominated by the largest requests.
* ``relative``       sum ((y - yhat) / y)^2: a short request's error counts like a long one's.
* ``log``            sum (log y - log yhat)^2: error in log space, solved by Gauss-Newton
                     steps (each a weighted least-squares solve of the linearised problem).
* ``huber-relative`` Huber loss on the relative residual, solved by iteratively reweighted
                     least squares; the threshold is 1.345 robust standard deviations (MAD)
                     of the relative residuals, so a few outlying rows do not pull the fit.

Every solve scales the weighted design's columns to unit norm first (features span 1 .. 1e12)
and uses NNLS when the form's coefficients must be non-negative. The iterative losses start
from the ``relative`` solution and run a fixed number of steps (no convergence loop to bound).
"""

from __future__ import annotations

import numpy as np

LOSSES: tuple[str, ...] = ("squared", "relative", "log", "huber-relative")
ITERATIONS = 25
HUBER_K = 1.345


def weighted_solve(X: np.ndarray, y: np.ndarray, w: np.ndarray, nonnegative: bool) -> np.ndarray:
    """Coefficients minimising sum (w * (y - X @ c))^2 (with c >= 0 when ``nonnegative``)."""
    Xw = X * w[:, None]
    yw = y * w
    scale = np.linalg.norm(Xw, axis=0)
    scale[scale == 0] = 1.0
    Xs = Xw / scale
    if nonnegative:
        from scipy.optimize import nnls

        coef_s, _ = nnls(Xs, yw, maxiter=50 * Xs.shape[1])
    else:
        coef_s, *_ = np.linalg.lstsq(Xs, yw, rcond=None)
    return np.asarray(coef_s / scale, dtype=np.float64)


def _floor(y: np.ndarray) -> float:
    return 1e-6 * float(np.min(y))


def _log(X: np.ndarray, y: np.ndarray, nonnegative: bool) -> np.ndarray:
    # log yhat ~ log yhat0 + (yhat - yhat0) / yhat0: each step is the weighted least-squares
    # problem sum ((t - X c) / yhat0)^2 with target t = yhat0 * (1 + log y - log yhat0).
    coef = weighted_solve(X, y, 1.0 / y, nonnegative)
    floor = _floor(y)
    for _ in range(ITERATIONS):
        yhat = np.maximum(X @ coef, floor)
        target = yhat * (1.0 + np.log(y) - np.log(yhat))
        coef = weighted_solve(X, target, 1.0 / yhat, nonnegative)
    return coef


def _huber_relative(X: np.ndarray, y: np.ndarray, nonnegative: bool) -> np.ndarray:
    coef = weighted_solve(X, y, 1.0 / y, nonnegative)
    for _ in range(ITERATIONS):
        r = (y - X @ coef) / y
        mad = float(np.median(np.abs(r - np.median(r))))
        delta = HUBER_K * max(1.4826 * mad, 1e-12)
        a = np.abs(r)
        huber_w = np.where(a <= delta, 1.0, delta / np.maximum(a, 1e-300))
        coef = weighted_solve(X, y, np.sqrt(huber_w) / y, nonnegative)
    return coef


def solve(X: np.ndarray, y: np.ndarray, loss: str, nonnegative: bool) -> np.ndarray:
    """Coefficients of ``yhat = X @ c`` under ``loss`` (one of ``LOSSES``); ``y`` must be > 0
    for every loss but ``squared``."""
    if loss == "squared":
        return weighted_solve(X, y, np.ones_like(y), nonnegative)
    if loss == "relative":
        return weighted_solve(X, y, 1.0 / y, nonnegative)
    if loss == "log":
        return _log(X, y, nonnegative)
    if loss == "huber-relative":
        return _huber_relative(X, y, nonnegative)
    raise ValueError(f"unknown loss {loss!r}; use one of {', '.join(LOSSES)}")
