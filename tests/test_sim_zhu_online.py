"""Zhu et al.'s online algorithm: one policy definition drives the compiled kernel, the numpy
lanes and a replay through ``ResponseCache`` (identical totals, the LCB policy and the learned
selector included); the LCB estimate, the cascade's failure penalty and the popularity models
are the paper's; the online algorithm is far ahead of LFU + the large model."""

from __future__ import annotations

import numpy as np
import pytest

from wattserve.cache import make_policy
from wattserve.cache.policies import LCB_COST, estimate_cost
from wattserve.errors import ConfigError
from wattserve.sim import Selector, ZhuConfig, run_zhu, simulate_lanes, simulate_sequential
from wattserve.sim.kernel import compiled
from wattserve.sim.selectors import expected_costs, parse_selector, request_costs
from wattserve.sim.trace import zhu_scenario
from wattserve.sim.zhu import summarise_learned

ENGINES = ["numpy"] + (["numba"] if compiled() is not None else [])
POLICIES = ["lru", "lfu", "gdsf", "lec", "lec-lcb"]


def _scenarios(n=1200, seeds=3):
    return [zhu_scenario(s, 0.8, 100.0, 20, n) for s in range(seeds)]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("learned", [False, True])
def test_kernel_numpy_and_response_cache_give_identical_totals(engine, policy, learned):
    sc = _scenarios()
    Q = np.stack([s.queries for s in sc])
    C = np.stack([request_costs(s, Selector("mux", accuracy=0.8)) for s in sc])
    MC = np.stack([s.noisy_cost for s in sc])
    kw = {"model_costs": MC, "model_source": np.arange(3)} if learned else {}
    fast = simulate_lanes(policy, Q, C, 8, 20, engine=engine, selector_scale=20.0, **kw)
    slow = [
        simulate_sequential(
            policy,
            Q[i],
            C[i],
            8,
            model_costs=MC[i] if learned else None,
            selector_scale=20.0,
            n_queries=20,
        )[0]
        for i in range(3)
    ]
    assert np.array_equal(fast, np.array(slow))
    paid = MC.min(axis=2).sum(axis=1) if learned else C.sum(axis=1)
    assert (fast < paid).all()  # the cache saved something


def test_lcb_estimate_is_the_papers_formula():
    assert estimate_cost(LCB_COST, 0.0, 0, 20.0, 1.0) == 1.0  # nothing seen: the floor
    assert estimate_cost(LCB_COST, 303.0, 3, 20.0, 1.0) == pytest.approx(101 - np.sqrt(20 / 3))
    assert estimate_cost(LCB_COST, 3.3, 3, 20.0, 1.0) == 1.0  # a cheap model: clamped at 1
    pol = make_policy("lec-lcb", lcb_scale=20)
    assert pol.estimate(202.0, 2) == pytest.approx(101 - np.sqrt(10))
    assert make_policy("lec").estimate(202.0, 2) == 101.0
    assert pol.spec.code == make_policy("lec").spec.code and pol.spec.cost_kind == LCB_COST


def test_cascade_pays_the_failure_penalty():
    sc = zhu_scenario(0, 0.8, 100.0, 20, 500)
    assert np.array_equal(request_costs(sc, Selector("cascade")), sc.noisy_cost[:, 1])
    wrong = np.zeros(500, dtype=bool)
    wrong[::2] = True
    sc2 = type(sc)(sc.queries, sc.base_cost, sc.noisy_cost, sc.selector_u, sc.popularity, ~wrong)
    c = request_costs(sc2, Selector("cascade"))
    s, lg = sc.noisy_cost[:, 1], sc.noisy_cost[:, 0]
    assert np.allclose(c[wrong], s[wrong] + 2 * lg[wrong]) and np.allclose(c[~wrong], s[~wrong])
    e = expected_costs(sc2, Selector("cascade"))
    assert (e >= sc.base_cost[:, 1]).all()
    assert parse_selector("learned").learned and parse_selector("oracle") == Selector("mux")
    with pytest.raises(ConfigError):
        request_costs(sc, Selector("learned"))


def test_popularity_models():
    p = zhu_scenario(1, 0.8, 100.0, 20, 100_000)
    emp = np.bincount(p.queries, minlength=20) / 100_000
    assert np.abs(emp - p.popularity).max() < 0.01 and p.popularity[0] > p.popularity[-1]
    nb = zhu_scenario(1, 0.8, 100.0, 400, 200_000, popularity="notebook", small_share=0.9)
    emp = np.bincount(nb.queries, minlength=400) / 200_000
    assert np.abs(emp - nb.popularity).max() < 0.005
    assert np.mean(nb.base_cost[:, 1] == 1.0) == pytest.approx(0.9, abs=0.05)
    assert np.mean(nb.base_cost[:, 0] == 1.0) == pytest.approx(0.5, abs=0.08)
    with pytest.raises(ConfigError):
        zhu_scenario(1, 0.8, 100.0, popularity="zipf")


def test_online_algorithm_beats_lfu_large_and_the_mean_cost_lec():
    cfg = ZhuConfig(
        alphas=(0.8,),
        ratios=(100.0,),
        variants=("online",),
        seeds=8,
        selectors=("learned", "mux@1"),
    )
    (row,) = summarise_learned(run_zhu(cfg))
    assert row["lec-lcb+learned_improvement"] > 20.0
    assert row["lec-lcb+mux@1_improvement"] >= row["lec-lcb+learned_improvement"]
    assert row["lec-lcb+learned"] < row["lec+learned"]  # the LCB is what makes it work
