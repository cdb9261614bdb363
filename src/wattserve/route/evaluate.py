"""Cost-quality evaluation of a router on held-out labelled prompts (RouteLLM's metrics).

The x axis is the normalised cost ``(mean cost - cost of the cheapest model) / (cost of the
most expensive - cost of the cheapest)``; with two models it is the share of calls to the
strong model. Reported beside the router's curve: the random-routing line (a coin with
that share), the per-query oracle (the cheapest model that answers each prompt well),
the area under each curve, APGR (average performance gap recovered), CPT(p) (the cost
needed to recover a share p of the weak-to-strong quality gap) and the cost needed to
reach 95% of the strongest model's quality.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wattserve.route.calibrate import sweep

GRID = np.linspace(0.0, 1.0, 201)


def _curve(points: list[tuple[float, float]]) -> np.ndarray:
    """Upper hull-free interpolation of (x, y) points on GRID (best y at duplicated x)."""
    pts: dict[float, float] = {}
    for x, y in points:
        x = float(np.clip(x, 0.0, 1.0))
        pts[x] = max(pts.get(x, -np.inf), y)
    xs = np.array(sorted(pts))
    ys = np.array([pts[x] for x in xs])
    return np.interp(GRID, xs, ys)


def _first_x(points: list[tuple[float, float]], target: float) -> float | None:
    ok = [x for x, y in points if y >= target - 1e-12]
    return float(min(ok)) if ok else None


def evaluate_router(router: Any, texts: list[str], labels: np.ndarray) -> dict[str, Any]:
    """Evaluate ``router`` (its scorer and costs; thresholds swept) on labelled prompts."""
    labels = np.asarray(labels, dtype=float)[:, router._cols]
    costs = router.costs_for(n=len(texts))
    q = router.quality(texts)
    c = costs[0]
    weak, strong = int(np.argmin(c)), int(np.argmax(c))
    lo, hi = float(c[weak]), float(c[strong])
    span = hi - lo if hi > lo else 1.0
    y_w, y_s = float(labels[:, weak].mean()), float(labels[:, strong].mean())
    gap = y_s - y_w

    points = [((cost - lo) / span, qual) for _, _, cost, qual in sweep(router, q, costs, labels)]
    points += [(0.0, y_w), (1.0, y_s)]
    y = _curve(points)
    rand = y_w + GRID * gap

    # per-query oracle: the cheapest model that answers well (else the cheapest)
    good = labels >= 0.5
    order = np.argsort(c)
    oracle_pick = np.full(len(texts), weak)
    for j in order[::-1]:
        oracle_pick = np.where(good[:, j], j, oracle_pick)
    rows = np.arange(len(texts))
    oracle_cost = float((costs[rows, oracle_pick].mean() - lo) / span)
    oracle_quality = float(good.any(axis=1).mean())
    if len(c) == 2:  # budgeted oracle: fix the prompts only the strong model gets right
        lift = float((~good[:, weak] & good[:, strong]).mean())
        y_oracle = y_w + np.minimum(GRID, lift)
    else:
        y_oracle = np.interp(
            GRID, [0.0, oracle_cost, 1.0], [y_w, oracle_quality, max(oracle_quality, y_s)]
        )

    interior = (GRID > 0) & (GRID < 1)
    result: dict[str, Any] = {
        "n": len(texts),
        "models": list(router.models),
        "weak": router.models[weak],
        "strong": router.models[strong],
        "weak_quality": y_w,
        "strong_quality": y_s,
        "auc": float(np.trapezoid(y, GRID)),
        "auc_random": float(np.trapezoid(rand, GRID)),
        "auc_oracle": float(np.trapezoid(y_oracle, GRID)),
        "apgr": float(np.trapezoid((y - y_w) / gap, GRID)) if gap > 0 else float("nan"),
        "above_random_fraction": float(np.mean(y[interior] > rand[interior] + 1e-12)),
        "oracle_cost": oracle_cost,
        "oracle_quality": oracle_quality,
        "curve": {
            "x": GRID.tolist(),
            "router": y.tolist(),
            "random": rand.tolist(),
            "oracle": y_oracle.tolist(),
        },
    }
    for p in (0.5, 0.8, 0.95):
        key = f"cpt{int(p * 100)}"
        result[key] = _first_x(points, y_w + p * gap) if gap > 0 else 0.0
        result[key + "_random"] = p if gap > 0 else 0.0
    target = 0.95 * y_s
    result["cost_to_95pct_strong"] = _first_x(points, target)
    result["cost_to_95pct_strong_random"] = (
        float(np.clip((target - y_w) / gap, 0.0, 1.0)) if gap > 0 else 0.0
    )
    return result
