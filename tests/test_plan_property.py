"""The exact MILP equals the brute-force optimum on small instances (hypothesis)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattserve.plan import InfeasibleError, Problem, solve


def problem(n, T, data, quality_target, cap_frac, deadline_frac):
    rng = np.random.default_rng(data)
    E = rng.uniform(1, 100, (n, T)).round(1)
    R = rng.uniform(0.5, 10, (n, T)).round(2)
    Q = np.tile(rng.uniform(0.2, 0.9, T).round(2), (n, 1))
    if data % 2:  # per-query quality on odd seeds
        Q = rng.uniform(0.2, 0.9, (n, T)).round(2)
    allowed = rng.uniform(size=(n, T)) > deadline_frac
    allowed[np.arange(n), rng.integers(0, T, n)] = True
    cap = np.where(rng.uniform(size=T) < 0.7, R.sum(axis=0) * cap_frac, np.inf)
    return Problem(
        [f"q{i}" for i in range(n)],
        [f"t{t}" for t in range(T)],
        E,
        R,
        Q,
        allowed,
        cap,
        np.ones(T),
        quality_target,
    )


def brute_force(p: Problem):
    best = None
    for combo in itertools.product(range(p.T), repeat=p.n):
        a = np.array(combo)
        ev = p.evaluate(a, tol=1e-9)
        if ev["feasible"] and (best is None or ev["energy_j"] < best - 1e-9):
            best = ev["energy_j"]
    return best


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 6),
    T=st.integers(1, 3),
    data=st.integers(0, 10_000),
    quality_target=st.one_of(st.none(), st.floats(0.2, 0.8)),
    cap_frac=st.floats(0.15, 1.2),
    deadline_frac=st.floats(0.0, 0.5),
)
def test_milp_equals_brute_force(n, T, data, quality_target, cap_frac, deadline_frac):
    p = problem(n, T, data, quality_target, cap_frac, deadline_frac)
    best = brute_force(p)
    if best is None:
        with pytest.raises(InfeasibleError, match="infeasible"):
            solve(p, "milp")
        return
    s = solve(p, "milp")
    assert s.energy_j == pytest.approx(best, rel=1e-9, abs=1e-9)
    assert p.evaluate(np.array([p.target_names.index(s.assignment[q]) for q in p.query_ids]))[
        "feasible"
    ]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 6),
    T=st.integers(2, 3),
    data=st.integers(0, 10_000),
    cap_frac=st.floats(0.3, 1.2),
)
def test_rounding_solvers_are_feasible_and_never_below_optimum(n, T, data, cap_frac):
    p = problem(n, T, data, 0.4, cap_frac, 0.2)
    best = brute_force(p)
    for solver in ("lp-round", "lagrange"):
        if best is None:
            with pytest.raises(InfeasibleError):
                solve(p, solver)
            continue
        s = solve(p, solver)
        a = np.array([p.target_names.index(s.assignment[q]) for q in p.query_ids])
        assert p.evaluate(a)["feasible"]
        assert s.energy_j >= best - 1e-9
