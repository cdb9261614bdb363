"""Replay a trace file through every {policy} x {selector} x {variant} combination."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from wattserve.sim.batched import simulate_lanes
from wattserve.sim.selectors import Selector, expected_costs, request_costs
from wattserve.sim.sequential import simulate_sequential
from wattserve.sim.trace import Scenario

DENSE_LIMIT = 512  # distinct queries up to which the vectorised engine is used


def replay_table(
    scen: Scenario,
    selectors: Sequence[Selector],
    policies: Sequence[str],
    variants: Sequence[str],
    capacity: int,
    progress: Callable[[float], None] | None = None,
) -> list[dict[str, Any]]:
    """Total cost per combination, rows in the same schema as ``run_zhu``."""
    rows = []
    Q = scen.n_queries
    calls = len(variants) * len(selectors) * (1 if Q <= DENSE_LIMIT else len(policies))
    if progress is not None:
        outer = progress
        progress = lambda f: outer(f / calls)  # noqa: E731
    for variant in variants:
        offline = variant == "offline"
        for sel in selectors:
            costs = request_costs(scen, sel)
            kc = expected_costs(scen, sel) if offline else None
            kf = scen.popularity if offline else None
            if Q <= DENSE_LIMIT:
                B = len(policies)
                out = simulate_lanes(
                    list(policies),
                    scen.queries[None, :],
                    costs[None, :],
                    capacity,
                    Q,
                    known_frequency=None if kf is None else kf[None, :],
                    known_cost=None if kc is None else kc[None, :],
                    progress=progress,
                    source=np.zeros(B, dtype=np.int64),
                )
                totals = out.tolist()
            else:
                totals = [
                    simulate_sequential(
                        p, scen.queries, costs, capacity, kf, kc, progress=progress
                    )[0]
                    for p in policies
                ]
            for policy, total in zip(policies, totals, strict=True):
                rows.append(
                    {
                        "alpha": None,
                        "ratio": None,
                        "variant": variant,
                        "policy": policy,
                        "selector": sel.label,
                        "mean_cost": float(total),
                        "sem_cost": 0.0,
                        "seeds": 1,
                    }
                )
    return rows
