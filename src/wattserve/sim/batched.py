"""A vectorised cache simulator for small query universes: many independent runs
("lanes": seeds, settings, selectors, policies) advance one request per step in numpy.

It follows ``ResponseCache``'s rules exactly (priorities computed at each access, the
lowest (priority, last access) evicted, newcomers that rank lowest refused, GDSF's
inflation), so its totals equal a sequential replay through ``ResponseCache`` (a test
checks this); it exists because the paper's table needs ~10^8 request steps. Lanes may
mix policies and offline/online variants, so one pass serves a whole table.
State per lane is dense over the ``Q`` distinct queries, so use it for small ``Q``.
Priorities and cost estimates come from ``wattserve.cache.policies`` (``score``,
``estimate_cost``, each lane's ``Policy.spec``), as in the compiled kernel and the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from wattserve.cache.policies import (
    GDSF_CODE,
    LCB_COST,
    MEAN_COST,
    Policy,
    PolicySpec,
    estimate_cost,
    make_policy,
    score,
)
from wattserve.errors import ConfigError

CODES = {"lru": 0, "lfu": 1, "gdsf": 2, "lec": 3, "lec-lcb": 3}


def lane_policy(policy: str | Policy, n_queries: int) -> Policy:
    """The policy object of a lane: a name is built by ``make_policy`` (``lec-lcb`` with
    ``lcb_scale`` = the number of distinct queries, the paper's ``N``)."""
    if isinstance(policy, Policy):
        return policy
    name = str(policy).strip().lower()
    kwargs = {"lcb_scale": float(n_queries)} if name == "lec-lcb" else {}
    return make_policy(name, **kwargs)


def simulate_lanes(
    policy: str | Policy | Sequence[str | Policy],
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
    model_costs: np.ndarray | None = None,  # (R, T, M) per-model costs for learned lanes
    model_source: np.ndarray | None = None,  # (B,) lane -> row of model_costs, -1: fixed costs
    selector_scale: float | np.ndarray = 1.0,  # learned selector's LCB N, per lane or one
    selector_floor: float | np.ndarray = 1.0,  # learned selector's least cost
) -> np.ndarray:
    """Total cost per lane (B,) of serving the traces through a cache of ``capacity``.

    With ``source``, lane ``i`` replays row ``source[i]`` of ``queries``/``costs`` (and of the
    known arrays), so many policies can share one copy of the traces. A lane with
    ``model_source[i] >= 0`` is served by the learned selector instead of ``costs``: on each
    miss it picks the model of lowest lower-confidence-bound cost estimate and pays
    ``model_costs[model_source[i], t, model]``. ``engine``: ``numba`` (compiled, one loop per
    lane), ``numpy`` (vectorised over lanes) or ``auto`` (numba when installed).
    """
    T = queries.shape[1]
    if source is None:
        source = np.arange(queries.shape[0])
    source = np.asarray(source, dtype=np.int64)
    B = source.shape[0]
    Q = n_queries
    items = [policy] * B if isinstance(policy, str | Policy) else list(policy)
    if len(items) != B:
        raise ConfigError("one policy per lane expected")
    specs: list[PolicySpec] = [lane_policy(p, Q).spec for p in items]
    code = np.array([s.code for s in specs], dtype=np.int64)
    kind = np.array([s.cost_kind for s in specs], dtype=np.int64)
    pscale = np.array([s.lcb_scale for s in specs], dtype=np.float64)
    pfloor = np.array([s.lcb_floor for s in specs], dtype=np.float64)
    refuse = np.array([s.refuses for s in specs], dtype=bool)
    if offline is None:
        offline = known_frequency is not None
    off = np.broadcast_to(np.asarray(offline, dtype=bool), (B,)).copy()
    if off.any() and (known_frequency is None or known_cost is None):
        raise ConfigError("offline lanes need known frequencies and costs")
    if model_source is None:
        msrc = np.full(B, -1, dtype=np.int64)
    else:
        msrc = np.asarray(model_source, dtype=np.int64)
        if msrc.shape != (B,):
            raise ConfigError("one model_source per lane expected")
    if (msrc >= 0).any() and model_costs is None:
        raise ConfigError("learned-selector lanes need model_costs")
    mc = model_costs if model_costs is not None else np.zeros((1, T, 1))
    sscale = np.broadcast_to(np.asarray(selector_scale, dtype=np.float64), (B,)).copy()
    sfloor = np.broadcast_to(np.asarray(selector_floor, dtype=np.float64), (B,)).copy()
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
                np.ascontiguousarray(mc, dtype=np.float64),
                np.ascontiguousarray(kf0, dtype=np.float64),
                np.ascontiguousarray(kc0, dtype=np.float64),
            )
            lanes = (code, kind, pscale, pfloor, refuse, off, msrc, sscale, sfloor)
            totals = np.empty(B)
            chunk = max(1, -(-B // 50))  # report progress about 50 times
            for lo in range(0, B, chunk):
                hi = min(B, lo + chunk)
                totals[lo:hi] = run(
                    *[a[lo:hi] for a in lanes], *args, source[lo:hi], int(capacity), int(Q)
                )
                if progress is not None:
                    progress((hi - lo) / B)
            return totals
    return _simulate_numpy(
        code,
        kind,
        pscale,
        pfloor,
        refuse,
        off,
        msrc,
        sscale,
        sfloor,
        queries,
        costs,
        mc,
        known_frequency,
        known_cost,
        source,
        capacity,
        Q,
        progress,
    )


def _simulate_numpy(
    code: np.ndarray,
    kind: np.ndarray,
    pscale: np.ndarray,
    pfloor: np.ndarray,
    refuse: np.ndarray,
    off: np.ndarray,
    msrc: np.ndarray,
    sscale: np.ndarray,
    sfloor: np.ndarray,
    queries: np.ndarray,
    costs: np.ndarray,
    mc: np.ndarray,
    known_frequency: np.ndarray | None,
    known_cost: np.ndarray | None,
    source: np.ndarray,
    capacity: int,
    Q: int,
    progress: Callable[[float], None] | None,
) -> np.ndarray:
    """The lane simulator vectorised over lanes (the kernel's rules, step by step)."""
    B = source.shape[0]
    T = queries.shape[1]
    M = mc.shape[2]
    kf = known_frequency[source] if known_frequency is not None else np.zeros((B, Q))
    kc = known_cost[source] if known_cost is not None else np.zeros((B, Q))
    q_cols = np.ascontiguousarray(queries.T.astype(np.int64))
    c_cols = np.ascontiguousarray(costs.T)
    learned = msrc >= 0
    mrow = np.where(learned, msrc, 0)
    is_gdsf = code == GDSF_CODE
    is_lcb = kind == LCB_COST
    groups = [(k, code == k) for k in np.unique(code)]
    n_models = np.where(learned, M, 1)[:, None]  # fixed lanes use model column 0 only
    rows = np.arange(B)
    inf = np.inf
    inc = np.zeros((B, Q), dtype=bool)
    pr = np.full((B, Q), inf)  # priority of cached entries, +inf elsewhere
    last = np.zeros((B, Q), dtype=np.int64)
    cnt = np.zeros((B, Q), dtype=np.int64)  # requests seen per query (online frequency)
    csum = np.zeros((B, Q, M))  # observed recompute cost sum per model (online estimate)
    ncost = np.zeros((B, Q, M), dtype=np.int64)
    ncached = np.zeros(B, dtype=np.int64)
    L = np.zeros(B)
    total = np.zeros(B)
    big = np.iinfo(np.int64).max
    cols = np.arange(M)[None, :]

    def priority(t: int, f: np.ndarray, c: np.ndarray) -> np.ndarray:
        p = np.empty(B)
        for k, sel in groups:
            p[sel] = score(int(k), float(t), f[sel], c[sel], 1.0, L[sel])
        return p

    step = max(1, T // 100)
    for t in range(T):
        q = q_cols[t][source]
        hit = inc[rows, q]
        miss = ~hit
        cnt[rows, q] += 1
        s_q, n_q = csum[rows, q], ncost[rows, q]  # (B, M)
        lcb = estimate_cost(LCB_COST, s_q, n_q, sscale[:, None], sfloor[:, None])
        m = np.where(learned, np.argmin(lcb, axis=1), 0)
        r = np.where(learned, mc[mrow, t, m], c_cols[t][source])
        c_t = np.where(miss, r, 0.0)
        total += c_t
        csum[rows, q, m] += c_t
        ncost[rows, q, m] += miss
        s_q, n_q = csum[rows, q], ncost[rows, q]
        mean = estimate_cost(MEAN_COST, s_q, n_q, pscale[:, None], pfloor[:, None])
        mean = np.where(n_q == 0, inf, mean)  # an unseen model has no mean
        low = estimate_cost(LCB_COST, s_q, n_q, pscale[:, None], pfloor[:, None])
        e = np.where(is_lcb[:, None], low, mean)
        e = np.where(cols < n_models, e, inf)
        f = np.where(off, kf[rows, q], cnt[rows, q])
        c = np.where(off, kc[rows, q], e.min(axis=1))
        p = priority(t, f, c)
        h = rows[hit]
        pr[h, q[hit]] = p[hit]
        last[h, q[hit]] = t
        full = miss & (ncached >= capacity)
        admit = miss
        if full.any():
            f_rows = rows[full]
            sub = pr[f_rows]
            mn = sub.min(axis=1)
            v = np.argmin(np.where(sub == mn[:, None], last[f_rows], big), axis=1)
            ok = ~refuse[f_rows] | (p[f_rows] >= mn)  # a newcomer ranking lowest is refused
            admit = miss.copy()
            admit[f_rows[~ok]] = False
            f_rows, v, mn = f_rows[ok], v[ok], mn[ok]
            inc[f_rows, v] = False
            pr[f_rows, v] = inf
            ncached[f_rows] -= 1
            g = is_gdsf[f_rows]
            if g.any():
                gr = f_rows[g]
                L[gr] = np.maximum(L[gr], mn[g])
                p = priority(t, f, c)
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
