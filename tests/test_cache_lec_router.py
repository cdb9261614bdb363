"""LEC with a selector: the cost stored with an entry is the router's expected cost of
answering its request again (the fitted joules of the model the router would choose), so
the eviction order follows the router; and the gateway stores exactly that cost."""

from __future__ import annotations

import json

import pytest

from routing_support import easy_prompt, energy_fit, hard_prompt, train_router
from wattserve.cache import ResponseCache
from wattserve.route.costs import RecomputeCost, RoutedCost, fitted_joules, router_with_costs
from wattserve.types import Request

# the weak model draws a tenth of the strong one's joules per token
FITS = {"weak": energy_fit("weak", 0.1, 0.01), "strong": energy_fit("strong", 1.0, 0.1)}
EASY = Request(id="easy", prompt=easy_prompt(3), max_tokens=64)
HARD = Request(id="hard", prompt=hard_prompt(3), max_tokens=64)
TOKENS = {"easy": (20, 60), "hard": (20, 40)}  # the easy answer is the longer one


@pytest.fixture(scope="module")
def router_file(tmp_path_factory):
    return train_router(tmp_path_factory.mktemp("lec"))


def _order(policy, cost, sizes=None):
    """Eviction order of two entries with equal frequencies, stored with ``cost(request)``."""
    cache = ResponseCache(policy, capacity_entries=10)
    for req in (EASY, HARD):
        cache.put(req.id, req.id, cost=cost(req), size=(sizes or {}).get(req.id, 1))
        assert cache.get(req.id) == req.id  # one hit each: the same frequency
    assert {e.key: e.frequency for e in cache.entries()} == {"easy": 2, "hard": 2}
    return cache.eviction_order()


def test_lec_eviction_order_follows_the_routed_cost(router_file):
    joules = fitted_joules(FITS)
    cost = RoutedCost(joules)
    trained = router_with_costs(router_file)  # weak=1, strong=10: easy -> weak, hard -> strong
    everything_strong = router_with_costs(router_file, "fixed", fixed={"weak": 10, "strong": 1})
    assert [trained.pick(r) for r in (EASY, HARD)] == ["weak", "strong"]
    assert [everything_strong.pick(r) for r in (EASY, HARD)] == ["strong", "strong"]

    def routed(router):
        return lambda req: cost(router, req, *TOKENS[req.id])

    # the same requests, frequencies and token counts; only the router differs
    assert routed(trained)(EASY) == pytest.approx(0.1 + 0.01 * 60)  # weak's joules
    assert routed(trained)(HARD) == pytest.approx(1.0 + 0.1 * 40)
    assert routed(everything_strong)(EASY) == pytest.approx(1.0 + 0.1 * 60)
    assert _order("lec", routed(trained)) == ["easy", "hard"]  # the cheap recompute goes first
    assert _order("lec", routed(everything_strong)) == ["hard", "easy"]
    # GDSF ranks by the same cost over size: a large easy entry goes first either way
    sizes = {"easy": 100, "hard": 10}
    assert _order("gdsf", routed(trained), sizes) == ["easy", "hard"]
    assert _order("gdsf", routed(everything_strong), sizes) == ["easy", "hard"]
    # and the router method gives the same figure the cost object does
    assert trained.expected_cost(EASY, *TOKENS["easy"], joules=joules) == routed(trained)(EASY)


def test_recompute_cost_by_model_field(router_file):
    router = router_with_costs(router_file)
    recompute = RecomputeCost(fitted_joules(FITS), router)

    def asked(req, model):
        return Request(id=req.id, prompt=req.prompt, max_tokens=req.max_tokens, model=model)

    # routed: the router's pick, whichever model answered this time
    assert recompute(asked(HARD, "auto"), "weak", 20, 40) == pytest.approx(5.0)
    assert recompute(asked(EASY, "router-tfidf"), "strong", 20, 60) == pytest.approx(0.7)
    # at threshold 0 any predicted quality gain is worth its cost: the easy prompt goes strong
    assert router.with_threshold(0.0).pick(EASY) == "strong"
    assert recompute(asked(EASY, "router-tfidf-0.0"), "weak", 20, 60) == pytest.approx(7.0)
    # a named model: its own joules; a model without a fit: None (the metered fallback)
    assert recompute(asked(HARD, "weak"), "weak", 20, 40) == pytest.approx(0.5)
    assert RecomputeCost(fitted_joules({}), router)(asked(HARD, "weak"), "weak", 20, 40) is None
    assert recompute(asked(EASY, "router-other-0.5"), "weak", 20, 60) == pytest.approx(0.7)


async def test_the_gateway_stores_the_routers_expected_cost(router_file, tmp_path):
    """Two mock replicas of two models, the trained router, an LEC cache: each entry's cost
    is the router's expected cost for its request; its metered joules sit beside it."""
    from wattserve.fit import save_fits
    from wattserve.serve.config import config_from_dict
    from wattserve.serve.service import Service

    fits_file = save_fits(list(FITS.values()), tmp_path / "fits.json")
    replicas = {"weak": 6, "strong": 9}  # answer lengths of the mock servers
    cfg = config_from_dict(
        {
            "models": [
                {"name": m, "fit": str(fits_file), "replicas": [{"kind": "mock", "mock_tokens": n}]}
                for m, n in replicas.items()
            ],
            "router": {"enabled": True, "file": str(router_file)},
            "cache": {"policy": "lec", "capacity_entries": 8},
            "energy": {"meter": "modeled"},
        }
    )
    joules = fitted_joules(FITS)
    svc = Service(cfg)
    await svc.start()
    try:
        assert svc.stats()["router"]["cost_source"] == "training"
        asked = [
            ("auto", EASY.prompt, "weak"),
            ("router-tfidf", HARD.prompt, "strong"),
            ("weak", hard_prompt(7), "weak"),  # a named model: its own fitted joules
        ]
        for group, prompt, answered_by in asked:
            before = {e.key for e in svc.cache.entries()}
            body = {"model": group, "prompt": prompt, "max_tokens": 32, "temperature": 0}
            reply = await svc.gateway.handle("completions", json.dumps(body).encode())
            assert reply.status == 200, reply.body
            assert dict(reply.headers)["x-wattserve-model"] == answered_by
            (entry,) = [e for e in svc.cache.entries() if e.key not in before]
            n_in, n_out = entry.value["input_tokens"], entry.value["output_tokens"]
            assert n_out == replicas[answered_by] and n_in > 0
            req = Request(id="x", model=group, prompt=prompt, max_tokens=32)
            if group == "weak":
                expected = joules("weak", n_in, n_out)
            else:
                expected = svc.router.expected_cost(req, n_in, n_out, joules=joules)
            assert entry.cost == pytest.approx(expected)
            assert entry.value["expected_j"] == entry.cost
            assert entry.value["energy_j"] is not None  # metered, recorded beside it
        # LEC ranks the three by frequency x routed cost: the strong answer is kept longest
        order = [e.value["model"] for e in svc.cache.entries()]
        assert order[-1] == "strong"
    finally:
        await svc.stop()
