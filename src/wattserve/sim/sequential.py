"""Sequential replay of a trace through the real ``ResponseCache`` (any number of queries).

Online variants estimate each query's frequency by counting (the cache's own counts) and
its recompute cost with the policy object's own estimate (``Policy.estimate``: the mean
of the costs observed on its misses, or the lower confidence bound for ``lec-lcb``);
offline variants are given the true frequencies and expected costs. With ``model_costs``
the learned selector picks the model on each miss (lowest lower-confidence-bound cost,
``estimate_cost`` as in the lane engines) and the entry's cost is the policy's estimate for
the cheapest-looking model (models not yet tried count at the floor under the LCB).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from wattserve.cache import Policy, ResponseCache, make_policy
from wattserve.cache.policies import LCB_COST, MEAN_COST, estimate_cost
from wattserve.sim.batched import lane_policy


def simulate_sequential(
    policy: str | Policy,
    queries: np.ndarray,
    costs: np.ndarray | None,
    capacity: int,
    known_frequency: np.ndarray | None = None,
    known_cost: np.ndarray | None = None,
    progress: Callable[[float], None] | None = None,  # told each fraction of the work done
    model_costs: np.ndarray | None = None,  # (T, M): the learned selector picks a column
    selector_scale: float = 1.0,
    selector_floor: float = 1.0,
    n_queries: int | None = None,  # the lec-lcb scale when the policy is given by name
) -> tuple[float, np.ndarray]:
    """(total cost, miss mask) of serving ``queries`` (T,) with recompute costs ``costs`` (T,)
    (or, with ``model_costs``, through the learned selector)."""
    nq = n_queries if n_queries is not None else int(queries.max()) + 1
    if known_frequency is not None:
        kf = known_frequency.tolist()
        name = policy if isinstance(policy, str) else policy.name
        kwargs = {"frequency": kf.__getitem__} if name != "lru" else {}
        if name == "lec-lcb":
            kwargs["lcb_scale"] = float(nq)
        pol = make_policy(name, **kwargs) if isinstance(policy, str) else policy
        kc = known_cost.tolist() if known_cost is not None else None
    else:
        pol = lane_policy(policy, nq)
        kc = None
    cache = ResponseCache(pol, capacity_entries=capacity, history_limit=1 << 62)
    get, put, estimate = cache.get, cache.put, pol.estimate
    q_list = queries.tolist()
    T = len(q_list)
    learned = model_costs is not None
    M = model_costs.shape[1] if model_costs is not None else 1
    rows = model_costs.tolist() if model_costs is not None else None
    c_list = costs.tolist() if costs is not None else [0.0] * T
    missed = np.zeros(T, dtype=bool)
    csum: dict[int, list[float]] = {}
    ncost: dict[int, list[int]] = {}
    total = 0.0
    step = max(1, T // 100)
    for t, q in enumerate(q_list):
        if get(q) is None:
            missed[t] = True
            s = csum.setdefault(q, [0.0] * M)
            n = ncost.setdefault(q, [0] * M)
            m = 0
            if rows is not None:
                best = np.inf
                for j in range(M):
                    e = estimate_cost(LCB_COST, s[j], n[j], selector_scale, selector_floor)
                    if e < best:
                        best, m = e, j
                r = rows[t][m]
            else:
                r = c_list[t]
            total += r
            s[m] += r
            n[m] += 1
            if kc is not None:
                c = kc[q]
            elif not learned:
                c = estimate(s[0], n[0])
            else:
                seen = [j for j in range(M) if pol.cost_kind != MEAN_COST or n[j] > 0]
                c = min(estimate(s[j], n[j]) for j in seen)
            put(q, True, c, 1)
        if progress is not None and (t + 1) % step == 0:
            progress(step / T)
    return total, missed
