"""Sequential replay of a trace through the real ``ResponseCache`` (any number of queries).

Online variants estimate each query's frequency by counting (the cache's own counts) and
its recompute cost by the mean cost observed on its misses; offline variants are given
the true frequencies and expected costs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from wattserve.cache import ResponseCache, make_policy


def simulate_sequential(
    policy: str,
    queries: np.ndarray,
    costs: np.ndarray,
    capacity: int,
    known_frequency: np.ndarray | None = None,
    known_cost: np.ndarray | None = None,
    progress: Callable[[float], None] | None = None,  # told each fraction of the work done
) -> tuple[float, np.ndarray]:
    """(total cost, miss mask) of serving ``queries`` (T,) with recompute costs ``costs`` (T,)."""
    if known_frequency is not None:
        kf = known_frequency.tolist()
        kwargs = {"frequency": kf.__getitem__} if policy != "lru" else {}
        pol = make_policy(policy, **kwargs)
        kc = known_cost.tolist() if known_cost is not None else None
    else:
        pol = make_policy(policy)
        kc = None
    cache = ResponseCache(pol, capacity_entries=capacity, history_limit=1 << 62)
    get, put = cache.get, cache.put
    q_list = queries.tolist()
    c_list = costs.tolist()
    missed = np.zeros(len(q_list), dtype=bool)
    csum: dict[int, float] = {}
    ncost: dict[int, int] = {}
    total = 0.0
    step = max(1, len(q_list) // 100)
    for t, (q, r) in enumerate(zip(q_list, c_list, strict=True)):
        if get(q) is None:
            missed[t] = True
            total += r
            if kc is not None:
                c = kc[q]
            else:
                s = csum.get(q, 0.0) + r
                n = ncost.get(q, 0) + 1
                csum[q], ncost[q] = s, n
                c = s / n
            put(q, True, c, 1)
        if progress is not None and (t + 1) % step == 0:
            progress(step / len(q_list))
    return total, missed
