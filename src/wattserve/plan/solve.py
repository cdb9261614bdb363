"""Pick a solver, time it, and turn infeasibility into an explanation."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from wattserve.errors import ConfigError
from wattserve.plan.problem import InfeasibleError, Problem
from wattserve.types import Schedule

SOLVERS = ("auto", "milp", "lp-round", "lagrange", "greedy")
MILP_MAX_VARS = 4_000  # auto: exact MILP up to this many (query, target) pairs


def solve(p: Problem, solver: str = "auto", *, time_limit_s: float = 60.0) -> Schedule:
    """Solve ``p`` with ``solver``; ``auto`` takes the exact MILP on small problems and under a
    GPU budget (instance counts are integer decisions only the MILP models), else ``lagrange``."""
    if solver not in SOLVERS:
        raise ConfigError(f"unknown solver {solver!r}; use one of: {', '.join(SOLVERS)}")
    if solver == "auto":
        solver = "milp" if p.n * p.T <= MILP_MAX_VARS or p.budgets else "lagrange"
    if p.budgets and solver != "milp":
        raise ConfigError(
            f"solver {solver} does not model GPU budgets (instances per target); "
            "use --solver milp or auto"
        )
    t0 = time.perf_counter()
    try:
        assign, gap = _run(p, solver, time_limit_s)
    except InfeasibleError:
        raise InfeasibleError(explain(p)) from None
    return p.schedule(assign, solver, gap, time.perf_counter() - t0)


def _run(p: Problem, solver: str, time_limit_s: float) -> tuple[np.ndarray, float | None]:
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


def _feasible_value(
    p: Problem, cost: np.ndarray, quality_target: float | None
) -> np.ndarray | None:
    """Optimal assignment for ``cost`` under p's other constraints (and ``quality_target``);
    None if infeasible."""
    q = replace(p, quality_target=quality_target, cost=cost)
    small = p.n * p.T <= MILP_MAX_VARS or bool(p.budgets)
    try:
        assign, _ = _run(q, "milp" if small else "lagrange", 30.0)
    except InfeasibleError:
        return None
    return assign


def explain(p: Problem) -> str:
    """Which constraint cannot be met, and the best achievable value."""
    reasons = _deadlines(p) or _shares_and_gpus(p)
    if reasons:
        return "infeasible: " + "; ".join(reasons)
    rows = np.arange(p.n)
    fastest_t = np.argmin(p.runtime_s, axis=1)
    need = np.bincount(fastest_t, weights=p.runtime_s[rows, fastest_t], minlength=p.T)
    bounded = np.isfinite(p.capacity_s)
    free = replace(p, min_count=np.zeros(p.T, int))  # capacity alone, without minimum shares
    if not p.budgets and bounded.all() and need.sum() > p.capacity_s.sum():
        reasons.append(
            f"capacity: even on their fastest targets the queries need {need.sum():.4g} "
            f"device-seconds, the targets offer {p.capacity_s.sum():.4g} "
            "(raise --makespan-s or slots)"
        )
    elif bounded.any() and _feasible_value(free, p.runtime_s.copy(), None) is None:
        per = ", ".join(
            f"{n}: {c:.4g} s" for n, c in zip(p.target_names, p.capacity_s, strict=True)
        )
        where = " per instance under the GPU budget" if p.budgets else ""
        reasons.append(
            f"capacity: the queries do not fit the targets' device-seconds{where} ({per})"
        )
    elif p.has_min_share and _feasible_value(p, p.runtime_s.copy(), None) is None:
        reasons.append("min share: the minimum shares cannot all be met within the capacity")
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
                within = (
                    "the capacity"
                    if not (p.budgets or p.has_min_share)
                    else ("the capacity, GPU budget and minimum shares")
                )
                reasons.append(
                    f"quality: target {p.quality_target:.4g} cannot be met within {within}; "
                    f"the best achievable mean quality within it is {best_cap:.4g}"
                )
    if not reasons:
        reasons.append("no assignment meets every constraint together")
    return "infeasible: " + "; ".join(reasons)


def _deadlines(p: Problem) -> list[str]:
    no_target = np.flatnonzero(~p.allowed.any(axis=1))
    if not no_target.size:
        return []
    fastest = p.runtime_s[no_target].min(axis=1)
    ex = ", ".join(
        f"{p.query_ids[i]} (fastest {fastest[k]:.3g} s)" for k, i in enumerate(no_target[:5])
    )
    more = " ..." if no_target.size > 5 else ""
    return [
        f"{no_target.size} queries cannot meet their deadline or the makespan limit on any "
        f"target: {ex}{more}"
    ]


def _shares_and_gpus(p: Problem) -> list[str]:
    """Minimum shares that cannot add up, or need more GPUs than a budget has."""
    out = []
    total = int(p.min_count.sum())
    if total > p.n:
        out.append(f"min share: the targets' minimum shares need {total} queries, there are {p.n}")
    servable = p.allowed.sum(axis=0)
    for t in np.flatnonzero(p.min_count > servable):
        out.append(
            f"min share: {p.target_names[t]} needs {p.min_count[t]} queries, only "
            f"{servable[t]} meet their deadline there"
        )
    for b in p.budgets:
        forced = np.flatnonzero(b.mask & (p.min_count > 0))
        gpus = int(p.gpus[forced].sum())
        if gpus > b.gpus:
            names = ", ".join(p.target_names[t] for t in forced)
            out.append(
                f"GPU budget {b.name}: the targets with a min share ({names}) need at least "
                f"{gpus} GPUs, the budget is {b.gpus}"
            )
    return out
