"""Solvers, constraints, objectives, baselines and infeasibility explanations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from wattserve.fit.forms import FORMS
from wattserve.plan import (
    InfeasibleError,
    Problem,
    Target,
    baselines,
    build_problem,
    compare,
    solve,
)
from wattserve.plan.lagrange import solve_lagrange
from wattserve.plan.milp import solve_lp
from wattserve.types import ModelFit


def fit(q, c, model="m", device="d"):
    return ModelFit(
        model,
        device,
        q,
        "physical",
        FORMS["physical"].params,
        tuple(c),
        n_rows=100,
        input_range=(1, 10_000),
        output_range=(1, 10_000),
    )


def target(name, e, r, quality, **kw):
    return Target(name, name, "dev", fit("energy_j", e), fit("runtime_s", r), quality, **kw)


TARGETS = [  # small/cheap/weak, medium, big/expensive/strong
    target("small", (1, 0.01, 0.2, 0), (0.05, 1e-4, 0.01, 0), 0.40, slots=4),
    target("medium", (2, 0.03, 0.5, 0), (0.05, 2e-4, 0.02, 0), 0.60, slots=4),
    target("big", (5, 0.1, 1.5, 0), (0.1, 5e-4, 0.04, 0), 0.80, slots=2),
]


def capped(**caps):
    return [dataclasses.replace(t, capacity_s=caps.get(t.name)) for t in TARGETS]


def workload(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(np.log(8), np.log(2048), n)).round(), np.exp(
        rng.uniform(np.log(8), np.log(1024), n)
    ).round()


def assignment(p, s):
    return np.array([p.target_names.index(s.assignment[q]) for q in p.query_ids])


def test_min_energy_meets_quality_and_beats_feasible_baselines():
    i, o = workload(400)
    p = build_problem(i, o, TARGETS, quality_target=0.55)
    s = solve(p, "milp")
    assert s.mean_quality >= 0.55 - 1e-9 and s.solver == "milp"
    rows = compare(p, {"plan": assignment(p, s), **baselines(p)})
    meeting = [r for r in rows[1:] if r["meets_quality"]]
    assert meeting and all(r["energy_j"] > 1.01 * s.energy_j for r in meeting)
    # the energy per query on the cheapest target is a lower bound
    assert s.energy_j >= p.energy_j.min(axis=1).sum()


def test_solvers_agree_and_lagrange_bound_matches_lp():
    i, o = workload(1500, seed=1)
    p0 = build_problem(i, o, TARGETS)
    # the cheap target can take 60 % of its full load, the strong one 30 % of its own
    caps = capped(small=0.6 * p0.runtime_s[:, 0].sum(), big=0.3 * p0.runtime_s[:, 2].sum())
    p = build_problem(i, o, caps, quality_target=0.5)
    _, lp_value = solve_lp(p)
    a, gap, bound = solve_lagrange(p)
    assert bound <= lp_value * (1 + 1e-9)
    assert bound == pytest.approx(lp_value, rel=1e-4)
    assert gap < 1e-3 and p.evaluate(a)["feasible"]
    values = {}
    for solver in ("lp-round", "lagrange", "greedy"):
        s = solve(p, solver)
        assert p.evaluate(assignment(p, s))["feasible"], solver
        values[solver] = s.energy_j
        assert s.energy_j >= lp_value * (1 - 1e-9)
    assert values["lagrange"] <= lp_value * 1.001 and values["lp-round"] <= lp_value * 1.001
    assert values["greedy"] >= min(values["lagrange"], values["lp-round"]) * (1 - 1e-9)


def test_deadlines_restrict_targets():
    i, o = np.array([100.0, 100.0, 100.0]), np.array([500.0, 500.0, 10.0])
    p0 = build_problem(i, o, TARGETS)
    dl = np.array(
        [p0.runtime_s[0, 1] * 1.01, np.inf, np.inf]
    )  # query 0 cannot wait for the slow ones
    fast = int(np.argmin(p0.runtime_s[0]))
    p = build_problem(i, o, TARGETS, deadline_s=dl)
    assert not p.allowed[0, 2] and p.allowed[0, 1]
    s = solve(p, "milp")
    assert s.assignment["0"] in ("small", "medium") and fast in (0, 1)


def test_idle_power_charged_per_slot_second():
    i, o = np.array([100.0]), np.array([100.0])
    base = build_problem(i, o, TARGETS)
    idle = [
        target("small", (1, 0.01, 0.2, 0), (0.05, 1e-4, 0.01, 0), 0.4, slots=4, idle_power_w=80.0)
    ]
    p = build_problem(i, o, idle)
    assert p.energy_j[0, 0] == pytest.approx(base.energy_j[0, 0] + 80.0 * base.runtime_s[0, 0] / 4)


def test_weighted_objective_extremes():
    i, o = workload(50, seed=2)
    p = build_problem(i, o, TARGETS)
    s1 = solve(p.with_objective("weighted", 1.0, quality_target=None), "milp")
    s0 = solve(p.with_objective("weighted", 0.0, quality_target=None), "milp")
    assert set(s1.assignment.values()) == {"small"}  # energy only
    assert set(s0.assignment.values()) == {"big"}  # quality only
    assert "weighted(zeta=1.0)" in s1.objective


def test_infeasible_quality_names_best_achievable():
    i, o = workload(20)
    p = build_problem(i, o, TARGETS, quality_target=0.9)
    with pytest.raises(
        InfeasibleError, match=r"quality: target 0.9 is above the best achievable mean quality 0.8"
    ):
        solve(p, "lagrange")


def test_infeasible_quality_within_capacity():
    i, o = workload(200)
    p0 = build_problem(i, o, TARGETS)
    # room for about half the queries on 'big': best mean quality about 0.5*0.8 + 0.5*0.6 = 0.7
    p = build_problem(i, o, capped(big=0.5 * p0.runtime_s[:, 2].sum()), quality_target=0.79)
    with pytest.raises(
        InfeasibleError,
        match=(
            r"cannot be met within the capacity; "
            r"the best achievable mean quality within it is 0\.\d+"
        ),
    ):
        solve(p, "milp")


def test_infeasible_capacity_and_deadline_messages():
    i, o = workload(100)
    p = build_problem(i, o, TARGETS, makespan_s=1.0)
    with pytest.raises(InfeasibleError, match="cannot meet their deadline or the makespan limit"):
        solve(p)
    p0 = build_problem(i, o, TARGETS)
    tight = 0.2 * p0.runtime_s.min(axis=1).sum() / 10
    cap_only = Problem(
        p0.query_ids,
        p0.target_names,
        p0.energy_j,
        p0.runtime_s,
        p0.quality,
        p0.allowed,
        np.full(3, tight),
        p0.slots,
    )
    with pytest.raises(InfeasibleError, match="capacity: even on their fastest targets"):
        solve(cap_only, "greedy")


def test_unknown_solver_is_a_config_error():
    i, o = workload(5)
    with pytest.raises(Exception, match="unknown solver"):
        solve(build_problem(i, o, TARGETS), "simplex")


def test_identical_queries_are_merged_exactly():
    i = np.full(300, 512.0)
    o = np.full(300, 256.0)
    p0 = build_problem(i, o, TARGETS)
    p = build_problem(
        i, o, capped(small=100.5 * p0.runtime_s[0, 0]), quality_target=0.5
    )  # 'small' takes 100
    s = solve(p, "milp")
    loads = np.bincount(assignment(p, s), minlength=3)
    assert loads[0] <= 100 and s.mean_quality >= 0.5 - 1e-9
    # optimum by hand: 'small' only has room for 100; the rest on 'medium'
    # (quality 0.6 keeps the mean >= 0.5)
    assert list(loads) == [100, 200, 0]
    assert s.optimality_gap is not None and s.optimality_gap < 1e-6


def test_lagrange_handles_uncoupled_all_tied_problems():
    i, o = workload(3000, seed=3)
    p = build_problem(i, o, TARGETS).with_objective("weighted", 0.0, quality_target=None)
    s = solve(p, "lagrange")  # every query ties on quality alone: no residual MILP needed
    assert set(s.assignment.values()) == {"big"} and s.optimality_gap == pytest.approx(
        0.0, abs=1e-12
    )
