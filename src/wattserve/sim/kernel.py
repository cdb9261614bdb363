"""The compiled (numba) form of the lane simulator: one tight loop per lane.

Same rules, same floating-point operations as ``batched._simulate_numpy`` and as a replay
through ``ResponseCache``; ~100x faster than the numpy form. The priority and the cost
estimate are not restated here: the kernel compiles ``wattserve.cache.policies.score`` and
``estimate_cost``, the functions the policy objects call. numba is imported (and the kernel
compiled, then cached on disk) only when a simulation first runs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from wattserve.cache.policies import GDSF_CODE, LCB_COST, MEAN_COST, estimate_cost, score


@lru_cache(maxsize=1)
def compiled() -> Any:
    """The jitted kernel, or None when numba is not installed."""
    try:
        import numba
    except ImportError:
        return None

    prio = numba.njit(cache=True, nogil=True)(score)
    est = numba.njit(cache=True, nogil=True)(estimate_cost)

    @numba.njit(cache=True, nogil=True)
    def run(
        code,
        kind,
        pscale,
        pfloor,
        refuse,
        off,
        msrc,
        sscale,
        sfloor,
        q_rows,
        c_rows,
        m_rows,
        kf,
        kc,
        source,
        capacity,
        n_queries,
    ):  # pragma: no cover - jitted
        n_lanes = source.shape[0]
        T = q_rows.shape[1]
        M = m_rows.shape[2]
        totals = np.zeros(n_lanes)
        big = np.iinfo(np.int64).max
        for i in range(n_lanes):
            src = source[i]
            pol = code[i]
            ck = kind[i]
            offline = off[i]
            ms = msrc[i]  # >= 0: a learned selector over row ms of m_rows
            inc = np.zeros(n_queries, dtype=np.bool_)
            pr = np.full(n_queries, np.inf)
            last = np.zeros(n_queries, dtype=np.int64)
            cnt = np.zeros(n_queries, dtype=np.int64)
            csum = np.zeros((n_queries, M))
            ncost = np.zeros((n_queries, M), dtype=np.int64)
            ncached = 0
            L = 0.0
            total = 0.0
            for t in range(T):
                q = q_rows[src, t]
                hit = inc[q]
                cnt[q] += 1
                if not hit:
                    if ms >= 0:  # the learned selector: lowest LCB, ties to the first model
                        m = 0
                        best = np.inf
                        for j in range(M):
                            e = est(LCB_COST, csum[q, j], ncost[q, j], sscale[i], sfloor[i])
                            if e < best:
                                best = e
                                m = j
                        r = m_rows[ms, t, m]
                    else:
                        m = 0
                        r = c_rows[src, t]
                    total += r
                    csum[q, m] += r
                    ncost[q, m] += 1
                if offline:
                    f = kf[src, q]
                    c = kc[src, q]
                else:
                    f = float(cnt[q])
                    c = np.inf
                    for j in range(M if ms >= 0 else 1):
                        if ck == MEAN_COST and ncost[q, j] == 0:
                            continue  # an unseen model has no mean
                        e = est(ck, csum[q, j], ncost[q, j], pscale[i], pfloor[i])
                        if e < c:
                            c = e
                p = prio(pol, float(t), f, c, 1.0, L)
                if hit:
                    pr[q] = p
                    last[q] = t
                    continue
                if ncached >= capacity:
                    mn = np.inf
                    v = -1
                    lv = big
                    for j in range(n_queries):
                        if inc[j] and (pr[j] < mn or (pr[j] == mn and last[j] < lv)):
                            mn = pr[j]
                            v = j
                            lv = last[j]
                    if refuse[i] and p < mn:
                        continue  # the newcomer ranks lowest: refused
                    inc[v] = False
                    pr[v] = np.inf
                    ncached -= 1
                    if pol == GDSF_CODE:
                        if mn > L:
                            L = mn
                        p = prio(pol, float(t), f, c, 1.0, L)
                inc[q] = True
                pr[q] = p
                last[q] = t
                ncached += 1
            totals[i] = total
        return totals

    return run
