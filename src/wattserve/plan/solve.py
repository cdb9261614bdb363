"""Pick a solver, time it, and turn infeasibility into an explanation."""

from __future__ import annotations

import time

import numpy as np

from wattserve.errors import ConfigError
from wattserve.plan.problem import InfeasibleError, Problem
from wattserve.types import Schedule

SOLVERS = ("auto", "milp", "lp-round", "lagrange", "greedy")
MILP_MAX_VARS = 4_000  # auto: exact MILP up to this many (query, target) pairs


def solve(p: Problem, solver: str = "auto", *, time_limit_s: float = 60.0) -> Schedule:
    if solver not in SOLVERS:
        raise ConfigError(f"unknown solver {solver!r}; use one of: {', '.join(SOLVERS)}")
    if solver == "auto":
        solver = "milp" if p.n * p.T <= MILP_MAX_VARS else "lagrange"
    t0 = time.perf_counter()
    try:
        assign, gap = _run(p, solver, time_limit_s)
    except InfeasibleError:
        raise InfeasibleError(explain(p)) from None
    return p.schedule(assign, solver, gap, time.perf_counter() - t0)


def _run(p: Problem, solver: str, time_limit_s: float):
    if solver == "milp":
        from wattserve.plan.milp import solve_milp

        return solve_milp(p, time_limit_s=time_limit_s)
    if solver == "lp-round":
        from wattserve.plan.milp import solve_lp_round

        return solve_lp_round(p, time_limit_s=time_limit_s)
    if solver == "lagrange":
        from wattserve.plan.lagrange import solve_lagrange

        assign, gap, _ = solve_lagrange(p, time_limit_s=time_limit_s)
        return assign, gap
    from wattserve.plan.greedy import solve_greedy

    return solve_greedy(p), None


def _feasible_value(p: Problem, cost: np.ndarray, quality_target):
    """Optimal value of ``cost`` under p's capacity/deadlines (and ``quality_target``); None if infeasible."""
    q = Problem(
        p.query_ids,
        p.target_names,
        p.energy_j,
        p.runtime_s,
        p.quality,
        p.allowed,
        p.capacity_s,
        p.slots,
        quality_target,
        p.objective,
        p.zeta,
        cost=cost,
    )
    try:
        assign, _ = _run(q, "milp" if p.n * p.T <= MILP_MAX_VARS else "lagrange", 30.0)
    except InfeasibleError:
        return None
    return assign


def explain(p: Problem) -> str:
    """Which constraint cannot be met, and the best achievable value."""
    reasons = []
    no_target = np.flatnonzero(~p.allowed.any(axis=1))
    if no_target.size:
        fastest = p.runtime_s[no_target].min(axis=1)
        ex = ", ".join(
            f"{p.query_ids[i]} (fastest {fastest[k]:.3g} s)" for k, i in enumerate(no_target[:5])
        )
        reasons.append(
            f"{no_target.size} queries cannot meet their deadline or the makespan limit on any target: {ex}"
            + (" ..." if no_target.size > 5 else "")
        )
        return "infeasible: " + "; ".join(reasons)
    rows = np.arange(p.n)
    fastest_t = np.argmin(p.runtime_s, axis=1)
    need = np.bincount(fastest_t, weights=p.runtime_s[rows, fastest_t], minlength=p.T)
    bounded = np.isfinite(p.capacity_s)
    if bounded.all() and need.sum() > p.capacity_s.sum():
        reasons.append(
            f"capacity: even on their fastest targets the queries need {need.sum():.4g} device-seconds, "
            f"the targets offer {p.capacity_s.sum():.4g} (raise --makespan-s or slots)"
        )
    elif bounded.any() and _feasible_value(p, p.runtime_s.copy(), None) is None:
        reasons.append(
            "capacity: the queries do not fit the targets' device-seconds "
            f"({', '.join(f'{n}: {c:.4g} s' for n, c in zip(p.target_names, p.capacity_s))})"
        )
    if p.quality_target is not None:
        best_q = float(np.max(np.where(p.allowed, p.quality, -np.inf), axis=1).mean())
        if best_q < p.quality_target:
            reasons.append(
                f"quality: target {p.quality_target:.4g} is above the best achievable mean quality "
                f"{best_q:.4g} (every query on its best allowed target)"
            )
        elif not reasons:
            assign = _feasible_value(p, -p.quality, None)
            if assign is not None:
                best_cap = float(p.quality[rows, assign].mean())
                reasons.append(
                    f"quality: target {p.quality_target:.4g} cannot be met within the capacity; "
                    f"the best achievable mean quality within it is {best_cap:.4g}"
                )
    if not reasons:
        reasons.append("no assignment meets every constraint together")
    return "infeasible: " + "; ".join(reasons)
