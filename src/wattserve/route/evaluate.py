"""Cost-quality evaluation of a router on held-out labelled prompts, with RouteLLM's metrics.

Definitions follow RouteLLM's evaluation code (repository lm-sys/RouteLLM,
``routellm/evals/evaluate.py``: ``pct_call_metric``, ``auc_metric``, ``apgr_metric``;
``routellm/evals/benchmarks.py``: ``MMLU.evaluate``, ``get_optimal_accuracy``):

- **Thresholds** rank prompts by one score per prompt (RouteLLM's "strong win rate"): a
  prompt goes to the strong model when its score is at least the threshold. The sweep
  spans 0% to 100% strong calls: every distinct score is a threshold (RouteLLM's
  ``num_results`` quantile thresholds with ``num_results=k``), the lowest score sends
  every prompt to the strong model and a threshold above the highest sends none. For a
  two-model router the score is the predicted quality gain ``q_strong - q_weak`` (the
  ``gain`` rule; negative gains included, so the curve reaches 100%) or the weak model's
  predicted failure ``-q_weak`` (the ``threshold`` rule).
- **x** is the share of calls to the strong model; **y** the mean quality label of the
  routed answers (accuracy for correct/incorrect labels; a graded score per model, such as
  MT-Bench judge scores normalised to [0, 1], works the same way).
- **CPT(p)** (call-performance threshold): the strong-call share at which the curve first
  reaches ``y_weak + p (y_strong - y_weak)``, by linear interpolation between the realised
  points. RouteLLM computes ``np.interp(target, accuracy, strong_share)``, which assumes a
  rising curve; the first crossing equals it there and stays defined where the curve dips.
- **AUC** is the trapezoid rule over the realised points; **APGR** is
  ``(AUC - AUC_weak) / (AUC_strong - AUC_weak)`` with the constant weak and strong lines
  integrated over the same x range (0 to 1), i.e. the mean share of the gap recovered.
- **Oracle** (``get_optimal_accuracy``): with a budget of ``x`` strong calls, give them to
  the prompts where the strong model's label beats the weak one's by most.

With more than two models the x axis is the normalised mean cost and the router's own rule
is swept (``wattserve.route.calibrate.sweep``; the ``gain`` rule's thresholds go below 0 so
the dearest model is reached). Random routing is the straight line between the two ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from wattserve.errors import ConfigError

GRID = np.linspace(0.0, 1.0, 201)
CPT_LEVELS = (0.2, 0.5, 0.8, 0.95)


def first_crossing(x: np.ndarray, y: np.ndarray, target: float) -> float | None:
    """The smallest x at which the piecewise-linear curve through (x, y) reaches ``target``.

    ``x`` must be sorted ascending. None when the curve never reaches the target.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    hit = np.flatnonzero(y >= target - 1e-12)
    if hit.size == 0:
        return None
    i = int(hit[0])
    if i == 0:
        return float(x[0])
    x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
    return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))


def cpt(x: np.ndarray, y: np.ndarray, y_weak: float, y_strong: float, p: float) -> float | None:
    """CPT(p): the x (strong-call share) needed to recover a share ``p`` of the quality gap."""
    return first_crossing(x, y, y_weak + p * (y_strong - y_weak))


def apgr(x: np.ndarray, y: np.ndarray, y_weak: float, y_strong: float) -> float:
    """Average performance gap recovered: trapezoid area between the curve and the weak line,
    over the area between the strong and the weak lines (RouteLLM's ``apgr_metric``)."""
    x = np.asarray(x, dtype=float)
    width = float(x[-1] - x[0])
    if y_strong == y_weak or width <= 0:
        return float("nan")
    auc = float(np.trapezoid(np.asarray(y, dtype=float), x))
    return (auc - y_weak * width) / ((y_strong - y_weak) * width)


def ranking_points(
    score: np.ndarray,
    weak: np.ndarray,
    strong: np.ndarray,
    num_results: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Realised (threshold, strong share, mean quality) points of "strong iff score >= t".

    Without ``num_results`` every distinct score is a threshold, plus one above the highest
    (no strong calls): the points run from share 1 down to share 0. With ``num_results=k``
    the thresholds are the k-bin quantile edges of the scores, the last one used with ``>``
    as in RouteLLM. Returned sorted by share (ascending)."""
    score = np.asarray(score, dtype=float)
    weak = np.asarray(weak, dtype=float)
    strong = np.asarray(strong, dtype=float)
    n = len(score)
    if n == 0:
        raise ConfigError("no prompts to evaluate on")
    if num_results is None:
        ts = np.unique(score)
        # strong iff score >= t: the number of strong calls per threshold
        order = np.argsort(-score, kind="stable")
        gain = np.concatenate([[0.0], np.cumsum((strong - weak)[order])])
        counts = n - np.searchsorted(np.sort(score), ts, side="left")
        thresholds = np.concatenate([ts, [np.nextafter(ts[-1], np.inf)]])
        counts = np.concatenate([counts, [0]])
        quality = (weak.sum() + gain[counts]) / n
        share = counts / n
    else:
        if num_results < 1:
            raise ConfigError("num_results must be at least 1")
        thresholds = np.quantile(score, np.linspace(0.0, 1.0, num_results + 1))
        share_l, quality_l = [], []
        for i, t in enumerate(thresholds):
            sel = score > t if i == len(thresholds) - 1 else score >= t
            share_l.append(sel.mean())
            quality_l.append(np.where(sel, strong, weak).mean())
        share, quality = np.array(share_l), np.array(quality_l)
    order = np.argsort(share, kind="stable")
    return thresholds[order], share[order], quality[order]


def oracle_curve(weak: np.ndarray, strong: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Best mean quality with a share ``x`` of strong calls: the largest positive gains first
    (RouteLLM's ``get_optimal_accuracy``; for 0/1 labels ``y_weak + min(x, lift)``)."""
    diff = np.sort(np.asarray(strong, dtype=float) - np.asarray(weak, dtype=float))[::-1]
    diff = np.clip(diff, 0.0, None)
    n = len(diff)
    cum = np.concatenate([[0.0], np.cumsum(diff)])
    return float(np.mean(weak)) + np.interp(np.asarray(x) * n, np.arange(n + 1), cum) / n


def _score(router: Any, q: np.ndarray, weak: int, strong: int) -> np.ndarray:
    if router.objective == "threshold":
        return -q[:, weak]
    return q[:, strong] - q[:, weak]


def _costs(router: Any, texts: Sequence[str]) -> np.ndarray:
    try:
        return np.asarray(router.costs_for(n=len(texts)), dtype=float)
    except ConfigError:  # per-request costs (fits, callables): evaluate them per prompt
        from wattserve.types import Request

        reqs = [Request(id=str(i), prompt=t) for i, t in enumerate(texts)]
        return np.asarray(router.costs_for(reqs), dtype=float)


def _sweep_many(
    router: Any, q: np.ndarray, costs: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N > 2 models: the router's own rule swept; x is the normalised mean cost."""
    from wattserve.route.calibrate import sweep

    c = costs.mean(axis=0)
    lo, hi = float(c.min()), float(c.max())
    span = hi - lo if hi > lo else 1.0
    pts: dict[float, tuple[float, float]] = {}
    for t, _, cost, qual in sweep(router, q, costs, labels):
        x = float(np.clip((cost - lo) / span, 0.0, 1.0))
        if x not in pts or qual > pts[x][1]:
            pts[x] = (t, qual)
    if router.objective == "threshold":  # its rule does not reach the ends by itself
        pts.setdefault(0.0, (np.nan, float(labels[:, int(np.argmin(c))].mean())))
        pts.setdefault(1.0, (np.nan, float(labels[:, int(np.argmax(c))].mean())))
    xs = np.array(sorted(pts))
    return (
        np.array([pts[x][0] for x in xs]),
        xs,
        np.array([pts[x][1] for x in xs]),
    )


def evaluate_router(
    router: Any,
    texts: Sequence[str],
    labels: np.ndarray,
    num_results: int | None = None,
) -> dict[str, Any]:
    """Evaluate ``router`` (its scorer, objective and costs; thresholds swept) on prompts
    with a quality label in [0, 1] per model (``labels[i, m]``, in the data's model order
    or the router's)."""
    labels = np.asarray(labels, dtype=float)
    if labels.ndim != 2 or labels.shape[0] != len(texts):
        raise ConfigError("labels must have one row per prompt")
    if labels.shape[1] != len(router.models):
        labels = labels[:, router._cols]
    texts = list(texts)
    costs = _costs(router, texts)
    q = router.quality(texts)
    c = costs.mean(axis=0)
    weak, strong = int(np.argmin(c)), int(np.argmax(c))
    y_w, y_s = float(labels[:, weak].mean()), float(labels[:, strong].mean())
    gap = y_s - y_w
    two = len(router.models) == 2
    if two:
        thresholds, x, y = ranking_points(
            _score(router, q, weak, strong), labels[:, weak], labels[:, strong], num_results
        )
    else:
        thresholds, x, y = _sweep_many(router, q, costs, labels)

    curve = np.interp(GRID, x, y)
    rand = y_w + GRID * gap
    best = labels.max(axis=1)
    if two:
        y_oracle = oracle_curve(labels[:, weak], labels[:, strong], GRID)
        better = labels[:, strong] > labels[:, weak]
        oracle_cost = float(better.mean())
    else:  # the cheapest model with the best label on each prompt
        rows = np.arange(len(texts))
        pick = np.argmax(labels[:, np.argsort(c)] >= best[:, None] - 1e-12, axis=1)
        pick = np.argsort(c)[pick]
        oracle_cost = float((costs[rows, pick].mean() - c.min()) / (np.ptp(c) or 1.0))
        y_oracle = np.interp(GRID, [0.0, oracle_cost, 1.0], [y_w, best.mean(), best.mean()])
    interior = (GRID > 0) & (GRID < 1)
    result: dict[str, Any] = {
        "n": len(texts),
        "models": list(router.models),
        "weak": router.models[weak],
        "strong": router.models[strong],
        "weak_quality": y_w,
        "strong_quality": y_s,
        "x_axis": "strong_share" if two else "normalised_cost",
        "thresholds": "quantiles" if num_results else "all",
        "n_points": len(x),
        "share_min": float(x[0]),
        "share_max": float(x[-1]),
        "auc": float(np.trapezoid(y, x)),
        "auc_random": float(np.trapezoid(rand, GRID)),
        "auc_oracle": float(np.trapezoid(y_oracle, GRID)),
        "apgr": apgr(x, y, y_w, y_s),
        "above_random_fraction": float(np.mean(curve[interior] > rand[interior] + 1e-12)),
        "oracle_cost": oracle_cost,
        "oracle_quality": float(best.mean()),
        "curve": {
            "x": GRID.tolist(),
            "router": curve.tolist(),
            "random": rand.tolist(),
            "oracle": y_oracle.tolist(),
        },
        "points": {"threshold": thresholds.tolist(), "x": x.tolist(), "quality": y.tolist()},
    }
    for p in CPT_LEVELS:
        key = f"cpt{round(p * 100)}"
        result[key] = cpt(x, y, y_w, y_s, p) if gap > 0 else 0.0
        result[key + "_random"] = p if gap > 0 else 0.0
    target = 0.95 * y_s
    result["cost_to_95pct_strong"] = first_crossing(x, y, target)
    result["cost_to_95pct_strong_random"] = (
        float(np.clip((target - y_w) / gap, 0.0, 1.0)) if gap > 0 else 0.0
    )
    return result
