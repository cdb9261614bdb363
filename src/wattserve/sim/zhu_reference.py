"""A line-by-line port of the synthetic experiment in Zhu et al.'s code
(``inferband/trace.py`` ``generate_requests`` with ``cost_dist="binomial"`` and
``inferband/server.py`` ``Server``, online scenario), to measure ``--preset zhu-synthetic``
against it on the same draws.

What the paper's code does, where it differs from the simulator's lanes:

- its trace draws with numpy's legacy global generator in this order: per-query small then
  large costs (``binomial(1, 0.5) * ratio + 1``), the popularity draws ``power(alpha)``,
  then per request one N(0, 1) for the small and one for the large cost (clipped at 0.1);
- a cache admits a newcomer only when it ranks strictly above the lowest cached entry
  (ties refused; among equal lowest entries the one in the earliest slot is the victim);
- its selector (``"ours"``) starts each query on the small model; with the binomial costs
  ``request.success`` is None, so ``not request.success`` is true and the large model's
  cost is recorded on every miss whichever model answered: after one miss the selector
  knows both costs' means without paying for the large model. It then picks the large
  model when the small model's mean is above the large model's;
- its LEC (``"ours"``) ranks by count x min(mean small cost, mean large cost): the mean,
  not a lower confidence bound;
- ``run_exp.py`` seeds each of its N runs with ``int(time.time())``: runs that start in
  the same second repeat one seed, and each table cell draws its own seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_COST = 0.1


@dataclass(frozen=True)
class PaperTrace:
    queries: np.ndarray  # (T,) int64
    cost_s: np.ndarray  # (T,) the small model's cost per request
    cost_l: np.ndarray  # (T,) the large model's cost per request
    base_s: np.ndarray  # (Q,) the small model's cost per query, noise-free
    base_l: np.ndarray  # (Q,) the large model's


def paper_trace(
    seed: int | np.random.RandomState,
    alpha: float,
    ratio: float,
    n_queries: int = 20,
    n_requests: int = 10_000,
) -> PaperTrace:
    """``generate_requests(cost_dist="binomial", align_type="random")`` draw for draw
    (``np.random.seed(seed)`` then its calls; a ``RandomState`` given is drawn from)."""
    rs = seed if isinstance(seed, np.random.RandomState) else np.random.RandomState(seed)
    base_s = rs.binomial(n=1, p=0.5, size=n_queries) * ratio + 1
    base_l = rs.binomial(n=1, p=0.5, size=n_queries) * ratio + 1
    queries = (rs.power(alpha, n_requests) * n_queries).astype(np.int64)
    # the paper draws small then large, request by request: the same stream as one (T, 2) draw
    noise = rs.normal(0, 1, size=(n_requests, 2))
    cost_s = np.maximum(MIN_COST, base_s[queries] + noise[:, 0])
    cost_l = np.maximum(MIN_COST, base_l[queries] + noise[:, 1])
    return PaperTrace(queries, cost_s, cost_l, base_s.astype(float), base_l.astype(float))


def paper_online_cost(
    trace: PaperTrace, cache_size: int, cache_strategy: str, selector: str
) -> float:
    """Total cost of ``Server(scenario="online")`` over the trace: ``cache_strategy`` is
    ``"LFU"`` or ``"ours"`` (LEC), ``selector`` ``"large"``, ``"cascade"`` (with binomial
    costs: always the small model) or ``"ours"``."""
    if cache_strategy not in ("LFU", "ours") or selector not in ("large", "cascade", "ours"):
        raise ValueError(f"unknown strategy {cache_strategy!r} or selector {selector!r}")
    count: dict[int, int] = {}
    s_sum: dict[int, float] = {}
    s_n: dict[int, int] = {}
    l_sum: dict[int, float] = {}
    l_n: dict[int, int] = {}
    large: dict[int, bool] = {}  # the selector's policy per query (False: small)
    cache: list[int] = []
    total = 0.0

    def weight(q: int) -> float:
        ms = s_sum[q] / s_n[q] if s_n[q] else 0.0
        ml = l_sum[q] / l_n[q] if l_n[q] else 0.0
        if selector == "large":
            return count[q] * ml
        if selector == "cascade" or ml == 0.0:
            return count[q] * ms
        return count[q] * min(ms, ml)

    rows = zip(trace.queries.tolist(), trace.cost_s.tolist(), trace.cost_l.tolist(), strict=True)
    for q, cs, cl in rows:
        count[q] = count.get(q, 0) + 1
        if q in cache:
            continue
        use_large = selector == "large" or (selector == "ours" and large.get(q, False))
        cost = cl if use_large else cs
        total += cost
        if q not in s_n:
            s_sum[q], s_n[q], l_sum[q], l_n[q] = 0.0, 0, 0.0, 0
        if not use_large:
            s_sum[q] += cs
            s_n[q] += 1
        l_sum[q] += cl  # success is None: the large model's cost is recorded on every miss
        l_n[q] += 1
        large[q] = s_n[q] > 0 and s_sum[q] / s_n[q] > l_sum[q] / l_n[q]
        if cache_size <= 0:
            continue
        if len(cache) < cache_size:
            cache.append(q)
            continue
        rank = (lambda x: float(count[x])) if cache_strategy == "LFU" else weight
        slot = min(range(len(cache)), key=lambda i: rank(cache[i]))
        if rank(q) > rank(cache[slot]):
            cache[slot] = q
    return total
