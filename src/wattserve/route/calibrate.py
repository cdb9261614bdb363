"""Threshold calibration, separate from training (as in RouteLLM).

- ``threshold_for_share``: the threshold at which a given share of requests goes to the
  most expensive model (on unlabelled calibration prompts; with per-request costs, the
  share of requests sent to the model dearest for them). For the ``gain`` rule the
  thresholds span every break point, negative ones included, so shares up to 100% exist.
- ``threshold_for_quality``: the cheapest threshold whose realised mean quality on
  labelled calibration prompts reaches a target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from wattserve.errors import ConfigError


def _candidates(router, q: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Every threshold at which some decision flips (plus the ends)."""
    if router.objective == "gain":
        lo = costs.min(axis=1, keepdims=True)
        span = costs.max(axis=1, keepdims=True) - lo
        norm = (costs - lo) / np.where(span > 0, span, 1.0)
        breaks = []
        M = q.shape[1]
        for i in range(M):
            for j in range(M):
                dn = norm[:, j] - norm[:, i]
                ok = dn > 0
                breaks.append((q[ok, j] - q[ok, i]) / dn[ok])
        # unclipped: thresholds below 0 send prompts with a negative predicted gain to the
        # pricier model, so the sweep reaches every prompt on the dearest model
        v = np.unique(np.round(np.concatenate(breaks), 12))
        if not v.size:
            return np.array([0.0, 1.0 + 1e-9])
        return np.concatenate([[min(0.0, float(v.min()) - 1e-9)], v, [float(v.max()) + 1e-9]])
    v = np.unique(np.round(q.ravel(), 12))
    return np.concatenate([[0.0], v, [np.nextafter(v.max(), 2.0) if v.size else 1.0, 1.0 + 1e-9]])


def sweep(router, q: np.ndarray, costs: np.ndarray, labels: np.ndarray | None = None):
    """For each candidate threshold: (threshold, share per model, mean cost, mean quality)."""
    if router.objective == "lambda":
        raise ConfigError("calibrate a 'threshold' or 'gain' router (lambda is set directly)")
    out = []
    rows = np.arange(q.shape[0])
    for t in _candidates(router, q, costs):
        pick = router.choose(q, costs, threshold=float(t))
        share = np.bincount(pick, minlength=q.shape[1]) / q.shape[0]
        cost = float(costs[rows, pick].mean())
        qual = float(labels[rows, pick].mean()) if labels is not None else float("nan")
        out.append((float(t), share, cost, qual))
    return out


def _cost_matrix(router, texts: Sequence[str], requests: Sequence[Any] | None) -> np.ndarray:
    """Costs per prompt: constant ones, else per-request ones at ``requests`` (which carry
    each prompt's token counts; without them, the prompts at the default ``max_tokens``)."""
    if requests is not None:
        return np.asarray(router.costs_for(requests), dtype=float)
    try:
        return np.asarray(router.costs_for(n=len(texts)), dtype=float)
    except ConfigError:
        from wattserve.types import Request

        reqs = [Request(id=str(i), prompt=t) for i, t in enumerate(texts)]
        return np.asarray(router.costs_for(reqs), dtype=float)


def threshold_for_share(
    router, texts: Sequence[str], target_share: float, requests: Sequence[Any] | None = None
) -> float:
    """Threshold sending about ``target_share`` of requests to the most expensive model
    (with per-request costs: to the model that is dearest for that request)."""
    if not 0.0 <= target_share <= 1.0:
        raise ConfigError("target share must be in [0, 1]")
    q = router.quality(texts)
    costs = _cost_matrix(router, texts, requests)
    top = np.argmax(costs, axis=1)
    best_t, best_gap = 0.5, np.inf
    for t in _candidates(router, q, costs):
        share = float(np.mean(router.choose(q, costs, threshold=float(t)) == top))
        gap = abs(share - target_share)
        if gap < best_gap - 1e-12:
            best_t, best_gap = float(t), gap
    return best_t


def threshold_for_quality(
    router,
    texts: Sequence[str],
    labels: np.ndarray,
    target_quality: float,
    requests: Sequence[Any] | None = None,
) -> float:
    """Cheapest threshold whose realised mean quality on labelled prompts >= target
    (``requests``: as for ``threshold_for_share``)."""
    q = router.quality(texts)
    costs = _cost_matrix(router, texts, requests)
    labels = np.asarray(labels, dtype=float)[:, router._cols]
    feasible = [
        (c, t)
        for t, _, c, qual in sweep(router, q, costs, labels)
        if qual >= target_quality - 1e-12
    ]
    if not feasible:
        raise ConfigError(
            f"no threshold reaches mean quality {target_quality:.3f} on the calibration set"
        )
    return min(feasible)[1]
