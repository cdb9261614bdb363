"""Exact planning: the assignment as a MILP (or its LP relaxation) solved by HiGHS via scipy."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from wattserve.plan.problem import InfeasibleError, Problem


def _model(
    p: Problem,
    rows_idx: Any = None,
    cap: np.ndarray | None = None,
    need_q: float | None = None,
    counts: Any = None,
    need_count: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any], np.ndarray, int]:
    """Sparse constraint data over allowed (query, target) pairs of the selected rows.

    With ``counts``, each selected row stands for ``counts[k]`` identical queries and its
    variables count how many of them go to each target (0..counts[k]). Under GPU budgets one
    integer instance count per budgeted target follows the assignment variables; the last
    return value is how many there are.
    """
    import scipy.sparse as sp
    from scipy.optimize import LinearConstraint

    rows_idx = np.arange(p.n) if rows_idx is None else np.asarray(rows_idx)
    counts = np.ones(len(rows_idx)) if counts is None else np.asarray(counts, float)
    cap = p.capacity_s if cap is None else cap
    need_count = p.min_count if need_count is None else need_count
    qi, tj = np.nonzero(p.allowed[rows_idx])
    gi = rows_idx[qi]
    nv = len(qi)
    m = len(rows_idx)
    inst = np.flatnonzero(p.budgeted)
    nm = len(inst)
    width = nv + nm
    ipos = np.full(p.T, -1)
    ipos[inst] = nv + np.arange(nm)

    def mat(data: Any, r: Any, c: Any, nrows: int) -> Any:
        return sp.csr_matrix((data, (r, c)), shape=(nrows, width))

    cons = [LinearConstraint(mat(np.ones(nv), qi, np.arange(nv), m), counts, counts)]
    bounded = np.flatnonzero(np.isfinite(cap))
    if len(bounded):
        pos = np.full(p.T, -1)
        pos[bounded] = np.arange(len(bounded))
        sel = pos[tj] >= 0
        data = [p.runtime_s[gi[sel], tj[sel]]]
        r = [pos[tj[sel]]]
        c = [np.flatnonzero(sel)]
        scaled = bounded[ipos[bounded] >= 0]  # capacity = instances x per-instance capacity
        data.append(-cap[scaled])
        r.append(pos[scaled])
        c.append(ipos[scaled])
        rhs = np.where(ipos[bounded] >= 0, 0.0, cap[bounded])
        A = mat(np.concatenate(data), np.concatenate(r), np.concatenate(c), len(bounded))
        cons.append(LinearConstraint(A, -np.inf, rhs))
    if need_q is not None:
        cons.append(
            LinearConstraint(mat(p.quality[gi, tj], np.zeros(nv), np.arange(nv), 1), need_q)
        )
    want = np.flatnonzero(np.asarray(need_count) > 0)
    if len(want):
        pos = np.full(p.T, -1)
        pos[want] = np.arange(len(want))
        sel = pos[tj] >= 0
        A = mat(np.ones(int(sel.sum())), pos[tj[sel]], np.flatnonzero(sel), len(want))
        cons.append(LinearConstraint(A, np.asarray(need_count, float)[want], np.inf))
    if nm:
        total = float(counts.sum())  # a target with no instance serves nothing
        sel = ipos[tj] >= 0
        k = np.arange(nm)
        link_pos = np.full(p.T, -1)
        link_pos[inst] = k
        A = mat(
            np.concatenate([np.ones(int(sel.sum())), np.full(nm, -total)]),
            np.concatenate([link_pos[tj[sel]], k]),
            np.concatenate([np.flatnonzero(sel), nv + k]),
            nm,
        )
        cons.append(LinearConstraint(A, -np.inf, 0.0))
        for b in p.budgets:
            ts = np.flatnonzero(b.mask)
            cons.append(
                LinearConstraint(
                    mat(p.gpus[ts].astype(float), np.zeros(len(ts)), ipos[ts], 1), -np.inf, b.gpus
                )
            )
    ub = counts[qi]
    if nm:
        most = np.full(nm, np.inf)
        for b in p.budgets:
            ts = np.flatnonzero(b.mask)
            most[ipos[ts] - nv] = np.minimum(most[ipos[ts] - nv], b.gpus // p.gpus[ts])
        ub = np.concatenate([ub, most])
    c_full = np.concatenate([p.cost[gi, tj], np.zeros(nm)])
    return gi, tj, c_full, cons, ub, nm


def _classes(p: Problem, rows_idx: np.ndarray):
    """Group identical queries (same costs, runtimes, qualities and allowed targets)."""
    key = np.concatenate(
        [p.cost[rows_idx], p.runtime_s[rows_idx], p.quality[rows_idx], p.allowed[rows_idx]], axis=1
    )
    _, first, inverse, counts = np.unique(
        key, axis=0, return_index=True, return_inverse=True, return_counts=True
    )
    return rows_idx[first], inverse.ravel(), counts


def solve_milp(
    p: Problem,
    *,
    time_limit_s: float = 60.0,
    mip_rel_gap: float = 1e-6,
    rows_idx: Any = None,
    cap: np.ndarray | None = None,
    need_q: float | None = None,
    need_count: np.ndarray | None = None,
) -> tuple[np.ndarray, float | None]:
    """Exact integer assignment by HiGHS. Returns (assign, gap) or raises InfeasibleError.

    Identical queries are merged into one integer count variable per target, which keeps
    workloads with many repeated shapes small. ``rows_idx``/``cap``/``need_q``/``need_count``
    restrict the model to a subset of queries with residual capacities, quality and minimum
    counts (used by the rounding solvers).
    """
    from scipy.optimize import Bounds, milp

    rows_idx = np.arange(p.n) if rows_idx is None else np.asarray(rows_idx)
    if need_q is None and p.quality_target is not None and rows_idx.size == p.n:
        need_q = p.quality_target * p.n
    if np.any(~p.allowed[rows_idx].any(axis=1)):
        raise InfeasibleError("some queries have no target that meets their deadline")
    reps, inverse, counts = _classes(p, rows_idx)
    gi, tj, c, cons, ub, _ = _model(p, reps, cap, need_q, counts, need_count)
    res = milp(
        c,
        constraints=cons,
        integrality=np.ones(len(c), dtype=np.int8),
        bounds=Bounds(0, ub),
        options={"time_limit": time_limit_s, "mip_rel_gap": mip_rel_gap, "disp": False},
    )
    if res.x is None:
        raise InfeasibleError(f"no feasible assignment ({res.message.strip()})")
    # hand each class's members out to targets by the solved counts
    x = np.rint(res.x[: len(gi)]).astype(int)
    rep_pos = {int(r): k for k, r in enumerate(reps)}
    per_class: list[list[int]] = [[] for _ in reps]
    for v in np.flatnonzero(x):
        per_class[rep_pos[int(gi[v])]].extend([int(tj[v])] * int(x[v]))
    assign = np.empty(len(rows_idx), dtype=int)
    order = np.argsort(inverse, kind="stable")
    bounds_ = np.concatenate([[0], np.cumsum(counts)])
    for k in range(len(reps)):
        assign[order[bounds_[k] : bounds_[k + 1]]] = per_class[k]
    bound = getattr(res, "mip_dual_bound", None)
    gap = None
    if bound is not None and np.isfinite(bound) and res.fun is not None:
        gap = float(abs(res.fun - bound) / max(abs(bound), 1e-12))
    return assign, gap


def solve_lp(p: Problem) -> tuple[np.ndarray, float]:
    """LP relaxation by HiGHS: returns (reduced costs (n, T) from the optimal duals, LP optimum)."""
    import scipy.sparse as sp
    from scipy.optimize import linprog

    need_q = None if p.quality_target is None else p.quality_target * p.n
    gi, tj, c, cons, _, _ = _model(p, None, None, need_q)
    A_ub: list[Any] = []
    b_ub: list[np.ndarray] = []
    for con in cons[1:]:
        if np.all(np.isfinite(con.ub)):
            A_ub.append(sp.csr_matrix(con.A))
            b_ub.append(np.atleast_1d(con.ub))
        else:  # quality row: q.x >= need_q  ->  -q.x <= -need_q
            A_ub.append(-sp.csr_matrix(con.A))
            b_ub.append(-np.atleast_1d(con.lb))
    A = sp.vstack(A_ub).tocsr() if A_ub else None
    res = linprog(
        c,
        A_ub=A,
        b_ub=np.concatenate(b_ub) if b_ub else None,
        A_eq=cons[0].A,
        b_eq=np.ones(p.n),
        bounds=(0.0, 1.0),
        method="highs",
    )
    if res.status != 0:
        raise InfeasibleError(f"the LP relaxation has no solution ({res.message.strip()})")
    rc = c.copy()
    if A is not None:  # marginals of <= rows are <= 0: r = c - A^T m penalises tight rows
        rc = rc - A.T @ res.ineqlin.marginals
    R = np.full((p.n, p.T), np.inf)
    R[gi, tj] = rc
    return R, float(res.fun or 0.0)


def solve_lp_round(p: Problem, *, time_limit_s: float = 30.0) -> tuple[np.ndarray, float]:
    """LP relaxation with its optimal duals, then round: queries keep their least reduced
    cost target, the few with near-ties (a basic optimum has at most bounded targets + 1
    fractional queries) are solved exactly. Returns (assign, gap vs the LP bound)."""
    from wattserve.plan.lagrange import round_from_reduced

    t0 = time.perf_counter()
    R, lp_value = solve_lp(p)
    k = (
        int(np.isfinite(p.capacity_s).sum())
        + (p.quality_target is not None)
        + int(np.sum(p.min_count > 0))
    )
    assign = round_from_reduced(
        p,
        R,
        residual=min(p.n, 5 * (k + 1) + 20),
        time_limit_s=max(1.0, time_limit_s - (time.perf_counter() - t0)),
    )
    value = float(p.cost[np.arange(p.n), assign].sum())
    return assign, _gap(value, lp_value)


def _gap(value: float, bound: float) -> float:
    return float(max(0.0, value - bound) / max(abs(bound), 1e-12))
