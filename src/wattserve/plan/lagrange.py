"""Large plans by dual decomposition of the few coupling rows, plus an exact residual repair.

Relaxing the (bounded targets + 1) coupling rows with multipliers y >= 0 splits the problem:
each query independently picks the target with the least reduced cost

    r[i, t] = cost[i, t] + lam[t] * runtime[i, t] - mu * quality[i, t]

and the dual function L(y) = sum_i min_t r[i, t] - lam . capacity + mu * n * q_target is a
lower bound on every feasible plan; its maximum equals the LP-relaxation optimum. We
maximise a softmin-smoothed L with L-BFGS-B at decreasing temperatures (a smooth, exact-
gradient surrogate of the piecewise-linear dual), evaluate the true L for the bound, fix every
query whose best target wins by a clear reduced-cost margin, and solve the few queries with
small margins exactly by MILP against the residual capacities and quality. The reported gap
is against the dual bound, i.e. against the LP bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from wattserve.plan.problem import InfeasibleError, Problem


@dataclass
class _Scaled:
    """Costs ~1 per query; every coupling row rescaled so its right-hand side is n."""

    s_c: float
    base: np.ndarray  # (n, T) cost / s_c, inf where not allowed
    bounded: np.ndarray  # targets with a capacity row
    Rn: np.ndarray  # (n, len(bounded)) runtime / (capacity / n)
    has_q: bool
    Qn: np.ndarray  # (n, T) quality / scale
    q_rhs: float
    want: np.ndarray  # targets with a minimum count
    Kn: np.ndarray  # (len(want),) n / min_count

    @property
    def dim(self) -> int:
        return len(self.bounded) + int(self.has_q) + len(self.want)


def _scaled(p: Problem) -> _Scaled:
    n = p.n
    inf_mask = np.where(p.allowed, 0.0, np.inf)
    cmin = np.min(p.cost + inf_mask, axis=1)
    s_c = float(np.mean(np.abs(cmin))) or 1.0
    bounded = np.flatnonzero(np.isfinite(p.capacity_s))
    qt = p.quality_target
    qs = max(abs(qt or 0.0), float(np.mean(np.abs(p.quality))), 1e-12)
    want = np.flatnonzero(p.min_count > 0)
    return _Scaled(
        s_c=s_c,
        base=p.cost / s_c + inf_mask,
        bounded=bounded,
        Rn=p.runtime_s[:, bounded] / (np.maximum(p.capacity_s[bounded], 1e-300) / n),
        has_q=qt is not None,
        Qn=p.quality / qs,
        q_rhs=(qt or 0.0) / qs,
        want=want,
        Kn=n / p.min_count[want].astype(float),
    )


def _reduced(s: _Scaled, y: np.ndarray) -> np.ndarray:
    r = s.base.copy()
    nb = len(s.bounded)
    if nb:
        r[:, s.bounded] += s.Rn * y[:nb]
    if s.has_q:
        r -= y[nb] * s.Qn
    if len(s.want):
        r[:, s.want] -= s.Kn * y[nb + int(s.has_q) :]
    return r


def _dual_value(r: np.ndarray, y: np.ndarray, s: _Scaled, n: int) -> float:
    nb = len(s.bounded)
    val = float(np.min(r, axis=1).sum()) - n * float(np.sum(y[:nb]))
    if s.has_q:
        val += n * y[nb] * s.q_rhs
    val += n * float(np.sum(y[nb + int(s.has_q) :]))
    return val


def solve_lagrange(
    p: Problem, *, time_limit_s: float = 30.0, residual: int | None = None
) -> tuple[np.ndarray, float, float]:
    """Returns (assign, gap vs the LP bound, lp_bound in objective units)."""
    from scipy.optimize import minimize

    t0 = time.perf_counter()
    n, T = p.n, p.T
    if np.any(~p.allowed.any(axis=1)):
        raise InfeasibleError("some queries have no target that meets their deadline")
    sc = _scaled(p)
    bounded, Rn, has_q, Qn, q_rhs, want = sc.bounded, sc.Rn, sc.has_q, sc.Qn, sc.q_rhs, sc.want
    nb = len(bounded)
    nq = nb + int(has_q)  # the min-count multipliers follow
    dim = sc.dim
    y = np.zeros(dim)
    best_bound, best_y = -np.inf, y.copy()
    # any feasible plan costs at most this: a dual value above it proves infeasibility
    upper = float(np.max(np.where(p.allowed, sc.base, -np.inf), axis=1).sum())

    def true_bound(y: np.ndarray) -> float:
        return _dual_value(_reduced(sc, y), y, sc, n)

    if dim:
        # full-width copies (unbounded targets get a zero column); reduced costs and their
        # row minima in float64 (the line search needs exact values), the softmin weights in float32
        R64 = np.zeros((n, T))
        R64[:, bounded] = Rn
        q_const = has_q and bool(np.all(Qn == Qn[:1]))
        qcol = Qn[0].copy()
        lam = np.zeros(T)
        nu = np.zeros(T)
        buf = np.empty((n, T))
        w = np.empty((n, T), np.float32)
        for tau, iters in ((1e-2, 60), (1e-3, 60)):

            def f(yv: np.ndarray, tau: float = tau) -> tuple[float, np.ndarray]:
                lam[:] = 0
                lam[bounded] = yv[:nb]
                np.multiply(R64, lam, out=buf)
                np.add(buf, sc.base, out=buf)
                if has_q:
                    np.subtract(buf, yv[nb] * (qcol if q_const else Qn), out=buf)
                if len(want):
                    nu[want] = sc.Kn * yv[nq:]
                    np.subtract(buf, nu, out=buf)
                m = buf.min(axis=1)
                np.subtract(buf, m[:, None], out=buf)
                np.multiply(buf, -1.0 / tau, out=w, casting="same_kind")
                np.exp(w, out=w)
                z = w.sum(axis=1, dtype=np.float64)
                np.divide(w, z[:, None].astype(np.float32), out=w)  # softmin weights
                val = (
                    m.sum()
                    - tau * np.log(z).sum()
                    - n * yv[:nb].sum()
                    + (n * yv[nb] * q_rhs if has_q else 0.0)
                    + n * yv[nq:].sum()
                )
                g = np.empty(dim)
                colsum = w.sum(axis=0, dtype=np.float64)
                if nb:
                    g[:nb] = np.einsum("ij,ij->j", w, R64)[bounded] - n
                if has_q:
                    used = colsum @ qcol if q_const else np.einsum("ij,ij->", w, Qn)
                    g[nb] = -used + n * q_rhs
                if len(want):
                    g[nq:] = -sc.Kn * colsum[want] + n
                return -float(val) / n, -g / n

            res = minimize(
                f,
                y,
                jac=True,
                method="L-BFGS-B",
                bounds=[(0, None)] * dim,
                options={"maxiter": iters, "ftol": 1e-10, "gtol": 1e-8},
            )
            y = res.x
            bnd = true_bound(y)
            if bnd > best_bound:
                best_bound, best_y = bnd, y.copy()
            if best_bound > upper + 1e-9 * abs(upper) + 1e-9:
                raise InfeasibleError(
                    "the coupling constraints (capacity, quality, minimum shares) cannot all be met"
                )
            if time.perf_counter() - t0 > time_limit_s / 2:
                break
    else:
        best_bound = true_bound(y)
    r = _reduced(sc, best_y)
    left = max(2.0, time_limit_s - (time.perf_counter() - t0))
    assign = round_from_reduced(
        p, r, residual=residual or min(n, 5 * (dim + 1) + 20), time_limit_s=left
    )
    value = float(p.cost[np.arange(n), assign].sum())
    lp_bound = best_bound * sc.s_c
    gap = float(max(0.0, value - lp_bound) / max(abs(lp_bound), 1e-12))
    return assign, gap, lp_bound


def round_from_reduced(
    p: Problem, r: np.ndarray, *, residual: int, time_limit_s: float = 10.0
) -> np.ndarray:
    """Each query to its least reduced cost; the ``residual`` queries with the smallest margin
    between their best and second-best target are re-solved exactly against what is left."""
    r = np.where(p.allowed, r, np.inf)
    if p.T > 1:
        part = np.partition(r, 1, axis=1)
        margin = part[:, 1] - part[:, 0]
    else:
        margin = np.full(p.n, np.inf)
    assign = np.argmin(r, axis=1)
    if p.quality_target is None and not np.isfinite(p.capacity_s).any() and not p.has_min_share:
        return assign  # nothing couples the queries: each one's cheapest target is optimal
    order = np.argsort(margin, kind="stable")
    # include queries tied with the last one taken (identical queries go in together), up to a cap
    cut = margin[order[min(residual, p.n) - 1]]
    k = int(np.searchsorted(margin[order], cut * (1 + 1e-9) + 1e-12, side="right"))
    k = min(k, max(residual, 2000))
    return solve_residual(p, assign, order[:k], order=order, time_limit_s=time_limit_s)


def solve_residual(
    p: Problem,
    assign: Any,
    residual_idx: Any,
    *,
    order: Any = None,
    time_limit_s: float = 10.0,
) -> np.ndarray:
    """Keep ``assign`` outside ``residual_idx`` and solve those queries exactly (MILP).

    If the residual is infeasible against what the fixed queries leave, it grows (taking the
    next queries in ``order``, or all) until a feasible plan is found or nothing is fixed.
    """
    from wattserve.plan.milp import solve_milp

    assign = np.asarray(assign, dtype=int).copy()
    rows = np.arange(p.n)
    order = np.arange(p.n) if order is None else np.asarray(order)
    residual = np.unique(np.asarray(residual_idx, dtype=int))
    t0 = time.perf_counter()
    while True:
        fixed = np.ones(p.n, bool)
        fixed[residual] = False
        fa = assign[fixed]
        load = np.bincount(fa, weights=p.runtime_s[rows[fixed], fa], minlength=p.T)
        cap = p.capacity_s - load
        need_q = None
        if p.quality_target is not None:
            need_q = p.quality_target * p.n - float(p.quality[rows[fixed], fa].sum())
        need_count = np.maximum(p.min_count - np.bincount(fa, minlength=p.T), 0)
        if residual.size == 0:
            ok_q = need_q is None or need_q <= 1e-9
            if np.all(cap >= -1e-9) and ok_q and not need_count.any():
                return assign
        else:
            try:
                left = max(1.0, time_limit_s - (time.perf_counter() - t0))
                sub, _ = solve_milp(
                    p,
                    rows_idx=residual,
                    cap=cap,
                    need_q=need_q,
                    need_count=need_count,
                    time_limit_s=min(left, max(1.5, residual.size / 500)),
                    mip_rel_gap=1e-3,
                )
                if np.all(sub >= 0):
                    assign[residual] = sub
                    return assign
            except InfeasibleError:
                pass
        if residual.size >= p.n:
            raise InfeasibleError("no assignment meets every constraint")
        grow = max(2 * residual.size, 64)
        extra = order[fixed[order]][: grow - residual.size]
        residual = np.unique(np.concatenate([residual, extra.astype(int)]))
        if extra.size == 0:
            residual = np.arange(p.n)
