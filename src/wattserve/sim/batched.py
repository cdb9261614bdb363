"""A vectorised cache simulator for small query universes: many independent runs
("lanes": seeds, settings, selectors, policies) advance one request per step in numpy.

It follows ``ResponseCache``'s rules exactly (priorities computed at each access, the
lowest (priority, last access) evicted, newcomers that rank lowest refused, GDSF's
inflation), so its totals equal a sequential replay through ``ResponseCache`` (a test
checks this); it exists because the paper's table needs ~10^8 request steps. Lanes may
mix policies and offline/online variants, so one pass serves a whole table.
State per lane is dense over the ``Q`` distinct queries, so use it for small ``Q``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from wattserve.errors import ConfigError

CODES = {"lru": 0, "lfu": 1, "gdsf": 2, "lec": 3}


def simulate_lanes(
    policy: str | Sequence[str],
    queries: np.ndarray,  # (B, T) int
    costs: np.ndarray,  # (B, T) cost of recomputing request t (paid on a miss)
    capacity: int,
    n_queries: int,
    known_frequency: np.ndarray | None = None,  # (B, Q): for offline lanes
    known_cost: np.ndarray | None = None,  # (B, Q): for offline lanes
    offline: bool | np.ndarray | None = None,  # per lane; default: known_frequency given
    progress: Callable[[float], None] | None = None,  # told each fraction of the work done
    source: np.ndarray | None = None,  # (B,) lane -> row of queries/costs/known_* (shared rows)
    engine: str = "auto",
) -> np.ndarray:
    """Total cost per lane (B,) of serving the traces through a cache of ``capacity``.

    With ``source``, lane ``i`` replays row ``source[i]`` of ``queries``/``costs`` (and of the
    known arrays), so many policies can share one copy of the traces. ``engine``: ``numba``
    (compiled, one loop per lane), ``numpy`` (vectorised over lanes) or ``auto`` (numba
    when installed).
    """
    T = queries.shape[1]
    if source is None:
        source = np.arange(queries.shape[0])
    source = np.asarray(source, dtype=np.int64)
    B = source.shape[0]
    Q = n_queries
    names = [policy] * B if isinstance(policy, str) else list(policy)
    if len(names) != B:
        raise ConfigError("one policy per lane expected")
    try:
        code = np.array([CODES[n.lower()] for n in names])
    except KeyError as exc:
        raise ConfigError(f"unknown policy {exc.args[0]!r}") from None
    if offline is None:
        offline = known_frequency is not None
    off = np.broadcast_to(np.asarray(offline, dtype=bool), (B,)).copy()
    if off.any() and (known_frequency is None or known_cost is None):
        raise ConfigError("offline lanes need known frequencies and costs")
    if engine not in ("auto", "numba", "numpy"):
        raise ConfigError("engine must be auto, numba or numpy")
    if engine != "numpy":
        from wattserve.sim.kernel import compiled

        run = compiled()
        if run is None and engine == "numba":
            raise ConfigError("the numba engine needs the 'numba' package")
        if run is not None:
            kf0 = known_frequency if known_frequency is not None else np.zeros((1, Q))
            kc0 = known_cost if known_cost is not None else np.zeros((1, Q))
            args = (
                np.ascontiguousarray(queries, dtype=np.int64),
                np.ascontiguousarray(costs, dtype=np.float64),
                np.ascontiguousarray(kf0, dtype=np.float64),
                np.ascontiguousarray(kc0, dtype=np.float64),
            )
            code64 = code.astype(np.int64)
            totals = np.empty(B)
            chunk = max(1, -(-B // 50))  # report progress about 50 times
            for lo in range(0, B, chunk):
                hi = min(B, lo + chunk)
                totals[lo:hi] = run(
                    code64[lo:hi], off[lo:hi], *args, source[lo:hi], int(capacity), int(Q)
                )
                if progress is not None:
                    progress((hi - lo) / B)
            return totals
    kf = known_frequency[source] if known_frequency is not None else np.zeros((B, Q))
    kc = known_cost[source] if known_cost is not None else np.zeros((B, Q))
    q_cols = np.ascontiguousarray(queries.T.astype(np.int64))
    c_cols = np.ascontiguousarray(costs.T)
    is_lru, is_lfu, is_gdsf = code == 0, code == 1, code == 2
    refuses = ~is_gdsf
    rows = np.arange(B)
    inf = np.inf
    inc = np.zeros((B, Q), dtype=bool)
    pr = np.full((B, Q), inf)  # priority of cached entries, +inf elsewhere
    last = np.zeros((B, Q), dtype=np.int64)
    cnt = np.zeros((B, Q), dtype=np.int64)  # requests seen per query (online frequency)
    csum = np.zeros((B, Q))  # observed recompute cost sum (online cost estimate)
    ncost = np.zeros((B, Q), dtype=np.int64)
    ncached = np.zeros(B, dtype=np.int64)
    L = np.zeros(B)
    total = np.zeros(B)
    big = np.iinfo(np.int64).max

    def priority(q: np.ndarray, t: int, f: np.ndarray, c: np.ndarray) -> np.ndarray:
        fc = f * c
        p = np.where(is_gdsf, L + fc / 1, fc)
        p = np.where(is_lfu, f, p)
        return np.where(is_lru, float(t), p)

    step = max(1, T // 100)
    for t in range(T):
        q = q_cols[t][source]
        hit = inc[rows, q]
        miss = ~hit
        cnt[rows, q] += 1
        c_t = np.where(miss, c_cols[t][source], 0.0)
        total += c_t
        csum[rows, q] += c_t
        ncost[rows, q] += miss
        f = np.where(off, kf[rows, q], cnt[rows, q])
        c = np.where(off, kc[rows, q], csum[rows, q] / np.maximum(ncost[rows, q], 1))
        p = priority(q, t, f, c)
        h = rows[hit]
        pr[h, q[hit]] = p[hit]
        last[h, q[hit]] = t
        full = miss & (ncached >= capacity)
        admit = miss
        if full.any():
            f_rows = rows[full]
            sub = pr[f_rows]
            m = sub.min(axis=1)
            v = np.argmin(np.where(sub == m[:, None], last[f_rows], big), axis=1)
            ok = ~refuses[f_rows] | (p[f_rows] >= m)  # a newcomer ranking lowest is refused
            admit = miss.copy()
            admit[f_rows[~ok]] = False
            f_rows, v, m = f_rows[ok], v[ok], m[ok]
            inc[f_rows, v] = False
            pr[f_rows, v] = inf
            ncached[f_rows] -= 1
            g = is_gdsf[f_rows]
            if g.any():
                gr = f_rows[g]
                L[gr] = np.maximum(L[gr], m[g])
                p = priority(q, t, f, c)
        a = rows[admit]
        qa = q[admit]
        inc[a, qa] = True
        pr[a, qa] = p[admit]
        last[a, qa] = t
        ncached[a] += 1
        if progress is not None and (t + 1) % step == 0:
            progress(step / T)
    if progress is not None and T % step:
        progress((T % step) / T)
    return total
