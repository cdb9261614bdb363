"""Bootstrap confidence intervals over items (percentile method, seeded).

Accuracy, joules per request and joules per correct answer (total joules / correct
answers, a ratio of sums) are resampled together, item by item, so their intervals come
from the same resamples. ``paired_difference`` resamples items shared by two models.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

LEVEL = 0.95


def _interval(samples: np.ndarray) -> list[float]:
    lo, hi = (1 - LEVEL) / 2 * 100, (1 + LEVEL) / 2 * 100
    return [float(np.percentile(samples, lo)), float(np.percentile(samples, hi))]


def item_stats(
    correct: np.ndarray, joules: np.ndarray | None, n_boot: int, seed: int
) -> dict[str, Any]:
    """Accuracy, J/request and J/correct with 95% intervals for one set of items.

    ``joules`` is None (or holds a NaN) when energy was not measured: the energy figures
    are then None. J/correct is infinite when nothing was answered right; a resample with
    no correct answer makes the upper bound infinite.
    """
    c = np.asarray(correct, dtype=float)
    n = len(c)
    out: dict[str, Any] = {"n": n, "correct": int(c.sum())}
    if n == 0:
        return out | {"accuracy": None, "accuracy_ci": None}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    cb = c[idx]
    out["accuracy"] = float(c.mean())
    out["accuracy_ci"] = _interval(cb.mean(axis=1))
    j = None if joules is None else np.asarray(joules, dtype=float)
    if j is None or len(j) != n or np.isnan(j).any():
        return out | {"j_per_request": None, "j_per_request_ci": None} | _no_jpc()
    jb = j[idx].sum(axis=1)
    out["j_per_request"] = float(j.mean())
    out["j_per_request_ci"] = _interval(jb / n)
    out["j_total"] = float(j.sum())
    hits = cb.sum(axis=1)
    out["j_per_correct"] = float(j.sum() / c.sum()) if c.sum() > 0 else math.inf
    if (hits == 0).any():
        finite = jb[hits > 0] / hits[hits > 0]
        lo = float(np.percentile(finite, (1 - LEVEL) / 2 * 100)) if len(finite) else math.inf
        out["j_per_correct_ci"] = [lo, math.inf]
    else:
        out["j_per_correct_ci"] = _interval(jb / hits)
    return out


def _no_jpc() -> dict[str, Any]:
    return {"j_per_correct": None, "j_per_correct_ci": None}


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """Accuracy of ``b`` minus ``a`` on the same items, with its 95% interval."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n = len(a)
    if n == 0 or len(b) != n:
        return {"n": n, "delta": None, "delta_ci": None, "separated": False}
    d = b - a
    rng = np.random.default_rng(seed)
    ci = _interval(d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1))
    return {
        "n": n,
        "delta": float(d.mean()),
        "delta_ci": ci,
        "separated": bool(ci[0] > 0 or ci[1] < 0),
    }
