"""A fast heuristic plan: cheapest target per query, then minimum-share, capacity and quality
repairs."""

from __future__ import annotations

import numpy as np

from wattserve.plan.problem import InfeasibleError, Problem


def _fill_min_shares(p: Problem, cost: np.ndarray, assign: np.ndarray) -> None:
    """Move the queries that cost least extra onto targets below their minimum count, taking
    them only from targets above their own minimum."""
    rows = np.arange(p.n)
    count = np.bincount(assign, minlength=p.T)
    for t in np.flatnonzero(count < p.min_count):
        extra = cost[:, t] - cost[rows, assign]
        for i in np.argsort(extra, kind="stable"):
            if count[t] >= p.min_count[t]:
                break
            src = assign[i]
            if src == t or not np.isfinite(extra[i]) or count[src] <= p.min_count[src]:
                continue
            assign[i] = t
            count[src] -= 1
            count[t] += 1
        if count[t] < p.min_count[t]:
            raise InfeasibleError(f"greedy: target {p.target_names[t]} stays below its min share")


def solve_greedy(p: Problem) -> np.ndarray:
    """Cheapest allowed target for each query; fill minimum shares by least extra cost; move
    the cheapest-per-second queries off overloaded targets; then upgrade queries by least extra
    cost per unit of quality until the mean-quality target holds. Moves never take a target
    below its minimum share. Raises InfeasibleError when the repairs run out of moves."""
    n, T = p.n, p.T
    rows = np.arange(n)
    if np.any(~p.allowed.any(axis=1)):
        raise InfeasibleError("some queries have no target that meets their deadline")
    cost = np.where(p.allowed, p.cost, np.inf)
    assign = np.argmin(cost, axis=1)
    if p.has_min_share:
        _fill_min_shares(p, cost, assign)
    count = np.bincount(assign, minlength=T)
    load = np.bincount(assign, weights=p.runtime_s[rows, assign], minlength=T)
    cap = p.capacity_s

    for t in np.flatnonzero(load > cap):  # capacity repair
        on_t = np.flatnonzero(assign == t)
        alt_cost = cost[on_t].copy()
        alt_cost[:, t] = np.inf
        best_alt = np.argmin(alt_cost, axis=1)
        extra = alt_cost[np.arange(len(on_t)), best_alt] - cost[on_t, t]
        ratio = extra / np.maximum(p.runtime_s[on_t, t], 1e-12)
        for k in np.argsort(ratio, kind="stable"):
            if load[t] <= cap[t] or count[t] <= p.min_count[t]:
                break
            i = on_t[k]
            room = cap - load - p.runtime_s[i]
            choices = np.flatnonzero(np.isfinite(alt_cost[k]) & (room >= 0))
            if choices.size == 0:
                continue
            t2 = choices[np.argmin(alt_cost[k, choices])]
            load[t] -= p.runtime_s[i, t]
            load[t2] += p.runtime_s[i, t2]
            count[t] -= 1
            count[t2] += 1
            assign[i] = t2
        if load[t] > cap[t] * (1 + 1e-9):
            raise InfeasibleError(f"greedy: target {p.target_names[t]} stays over its capacity")

    if p.quality_target is not None:  # quality repair
        need = p.quality_target * n - p.quality[rows, assign].sum()
        for _ in range(4):
            if need <= 1e-9:
                break
            dq = p.quality - p.quality[rows, assign][:, None]
            dc = cost - cost[rows, assign][:, None]
            fits = (load[None, :] + p.runtime_s <= cap[None, :]) & (dq > 0) & np.isfinite(cost)
            ratio = np.where(fits, np.maximum(dc, 0) / np.where(dq > 0, dq, 1), np.inf)
            best = np.argmin(ratio, axis=1)
            cand = np.flatnonzero(np.isfinite(ratio[rows, best]))
            cand = cand[np.argsort(ratio[cand, best[cand]], kind="stable")]
            for i in cand:
                if need <= 1e-9:
                    break
                t_old, t_new = assign[i], best[i]
                if load[t_new] + p.runtime_s[i, t_new] > cap[t_new]:
                    continue
                if count[t_old] <= p.min_count[t_old]:
                    continue
                load[t_old] -= p.runtime_s[i, t_old]
                load[t_new] += p.runtime_s[i, t_new]
                count[t_old] -= 1
                count[t_new] += 1
                need -= p.quality[i, t_new] - p.quality[i, t_old]
                assign[i] = t_new
        if need > 1e-9:
            raise InfeasibleError("greedy: could not reach the quality target")
    return assign
