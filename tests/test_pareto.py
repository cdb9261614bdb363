"""Frontier and recommendation on hand-built sweep points."""

from __future__ import annotations

import pytest

from wattserve.bench.pareto import dominates, meets_slo, pareto_mask, recommend
from wattserve.errors import ConfigError


def pt(user, device, j, **kw):
    return {
        "tok_s_per_user": user,
        "tok_s_per_device": device,
        "j_per_token": j,
        "completed": 10,
        **kw,
    }


# 0: fast for one user, little device throughput; 1: dominated by 2; 2: balanced;
# 3: most device throughput; 4: like 3 but worse energy (dominated by 3)
POINTS = [pt(40, 40, 0.5), pt(20, 60, 0.4), pt(25, 80, 0.3), pt(10, 120, 0.35), pt(10, 120, 0.5)]


def test_frontier_marks_dominated_points():
    assert pareto_mask(POINTS) == [True, False, True, True, False]
    assert (
        dominates([2, 2], [1, 2])
        and not dominates([2, 1], [1, 2])
        and not dominates([1, 1], [1, 1])
    )


def test_equal_points_both_stay_on_frontier():
    assert pareto_mask([pt(1, 1, 1), pt(1, 1, 1)]) == [True, True]


def test_missing_energy_drops_that_objective():
    pts = [pt(40, 40, None), pt(20, 60, 0.1), pt(10, 30, 0.2)]
    # without J/token, point 2 is dominated by point 0 (both lower); 0 and 1 trade off
    assert pareto_mask(pts) == [True, True, False]
    assert recommend(pts).objectives_used == ("tok_s_per_user", "tok_s_per_device")


def test_recommend_max_throughput_without_slo():
    r = recommend(POINTS)
    assert r.index == 3  # 120 tok/s, and lower J/token than point 4 at the same throughput
    assert r.frontier == (0, 2, 3)


def test_recommend_under_slo_attainment():
    pts = [dict(p) for p in POINTS]
    for p, att in zip(pts, [1.0, 0.95, 0.92, 0.5, 0.4], strict=True):
        p["slo_attainment"] = att
    r = recommend(pts, {"tpot": 50}, min_attainment=0.9)
    assert r.index == 2 and r.feasible == (0, 1, 2)
    assert "tpot<=50 ms" in r.reason
    assert recommend(pts, {"tpot": 50}, min_attainment=0.99).index == 0


def test_slo_from_percentile_columns_when_no_attainment():
    p = pt(10, 10, 1.0, ttft_p90_s=0.15, tpot_p90_s=0.04)
    assert meets_slo(p, {"ttft": 200, "tpot": 50})
    assert not meets_slo(p, {"ttft": 100})
    assert not meets_slo(p, {"e2el": 1000})  # no e2e column: cannot be shown to meet it
    with pytest.raises(ConfigError):
        meets_slo(p, {"itl": 5})


def test_recommend_min_energy_under_floor():
    assert recommend(POINTS, objective="energy").index == 2  # 0.3 J/token
    assert recommend(POINTS, objective="energy", throughput_floor=100).index == 3
    none = recommend(POINTS, objective="energy", throughput_floor=1000)
    assert none.index is None and "1000" in none.reason
    with pytest.raises(ConfigError):
        recommend(POINTS, objective="speed")
