"""The simulator: its three engines agree exactly, the synthetic setting is the paper's, and
at cost ratio 100 the combined cache + multiplexer is well ahead of either lever alone."""

from __future__ import annotations

import numpy as np
import pytest

from wattserve.sim import (
    Selector,
    ZhuConfig,
    parse_selector,
    run_zhu,
    simulate_lanes,
    simulate_sequential,
    summarise,
)
from wattserve.sim.kernel import compiled
from wattserve.sim.selectors import chosen_models, expected_costs, request_costs
from wattserve.sim.trace import power_popularity, zhu_scenario

ENGINES = ["numpy"] + (["numba"] if compiled() is not None else [])


def _lanes(sel, seeds=3, n=1500, alpha=0.5, ratio=100.0):
    qs, cs, kf, kc = [], [], [], []
    for s in range(seeds):
        sc = zhu_scenario(s, alpha, ratio, 20, n)
        qs.append(sc.queries)
        cs.append(request_costs(sc, sel))
        kf.append(sc.popularity)
        kc.append(expected_costs(sc, sel))
    return np.stack(qs), np.stack(cs), np.stack(kf), np.stack(kc)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("policy", ["lru", "lfu", "gdsf", "lec"])
@pytest.mark.parametrize("offline", [False, True])
def test_vectorised_engines_equal_a_replay_through_response_cache(engine, policy, offline):
    Q, C, KF, KC = _lanes(Selector("mux", accuracy=0.8))
    fast = simulate_lanes(
        policy, Q, C, 8, 20, KF if offline else None, KC if offline else None, engine=engine
    )
    slow = [
        simulate_sequential(
            policy, Q[i], C[i], 8, KF[i] if offline else None, KC[i] if offline else None
        )[0]
        for i in range(len(Q))
    ]
    assert np.allclose(fast, slow, rtol=1e-12, atol=0)
    assert (fast < C.sum(axis=1)).all()  # the cache saved something


def test_engines_accept_mixed_lanes_and_shared_sources():
    Q, C, KF, KC = _lanes(Selector("model", 0), seeds=2)
    pols = ["lru", "lfu", "gdsf", "lec"] * 2
    src = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    off = np.array([True, False] * 4)
    res = {
        e: simulate_lanes(pols, Q, C, 8, 20, KF, KC, offline=off, source=src, engine=e)
        for e in ENGINES
    }
    for e in ENGINES:
        assert np.array_equal(res[e], res["numpy"])
    single = simulate_lanes(
        "gdsf", Q[1:2], C[1:2], 8, 20, KF[1:2], KC[1:2], offline=True, engine="numpy"
    )
    assert res["numpy"][6] == single[0]


def test_synthetic_trace_follows_the_power_law_and_cost_model():
    sc = zhu_scenario(1, 0.5, 100.0, 20, 200_000)
    p = power_popularity(20, 0.5)
    assert p.sum() == pytest.approx(1.0) and p[0] == pytest.approx((1 / 20) ** 0.5)
    emp = np.bincount(sc.queries, minlength=20) / len(sc.queries)
    assert np.abs(emp - p).max() < 0.005
    assert set(np.unique(sc.base_cost)) <= {1.0, 101.0}
    assert sc.noisy_cost.min() >= 0.1
    dear = sc.base_cost[sc.queries] == 101.0  # noise is unclipped there: mean 0, sd 1
    diff = (sc.noisy_cost - sc.base_cost[sc.queries])[dear]
    assert diff.mean() == pytest.approx(0.0, abs=0.02) and diff.std() == pytest.approx(
        1.0, abs=0.02
    )


def test_selector_accuracy_and_expected_costs():
    sc = zhu_scenario(2, 0.8, 100.0, 20, 50_000)
    right = np.argmin(sc.base_cost, axis=1)[sc.queries]
    m = chosen_models(sc, Selector("mux", accuracy=0.8))
    assert np.mean(m == right) == pytest.approx(0.8, abs=0.01)
    assert (chosen_models(sc, Selector("mux", accuracy=1.0)) == right).all()
    e = expected_costs(sc, Selector("mux", accuracy=0.8))
    lo, hi = sc.base_cost.min(axis=1), sc.base_cost.max(axis=1)
    assert np.allclose(e, 0.8 * lo + 0.2 * hi)
    assert (
        parse_selector("model2") == Selector("model", 1)
        and parse_selector("mux@0.8").accuracy == 0.8
    )


def test_combined_cache_and_multiplexer_beat_each_lever_at_ratio_100():
    cfg = ZhuConfig(alphas=(0.8,), ratios=(100.0,), accuracies=(1.0,), seeds=4, n_requests=3000)
    rows = run_zhu(cfg)
    assert len(rows) == 2 * 5 * 3  # variants x policies x selectors
    for s in summarise(rows, cfg.accuracies):
        assert s["best_policy"] in ("lec", "lec-lcb") and s["best_selector"] == "mux@1"
        assert s["lec_mux_vs_cache_alone"] > 3.0
        assert s["lec_mux_vs_mux_alone"] > 3.0
        assert s["improvement"] > 10.0
