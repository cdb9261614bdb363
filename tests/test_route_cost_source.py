"""The router's cost source is explicit: training costs by default, fitted joules or fixed
numbers only when the config says so, and the startup log names the source.

The case that misled: a router trained with ``weak=1, strong=10`` whose costs were silently
replaced by fitted joules in which the strong model draws fewer joules per answer sent
every request to the strong model."""

from __future__ import annotations

import json
import logging

import pytest

from routing_support import easy_prompt, energy_fit, hard_prompt, train_router
from wattserve.errors import ConfigError
from wattserve.route.costs import describe_router, router_with_costs, source_costs
from wattserve.serve.config import config_from_dict
from wattserve.serve.service import build_router
from wattserve.types import Request

# the strong model is the cheaper one in joules on this device
FITS = {"weak": energy_fit("weak", 2.0, 0.01), "strong": energy_fit("strong", 0.5, 0.001)}


def _config(router_file, **router):
    return config_from_dict(
        {
            "models": [
                {"name": "weak", "replicas": [{"kind": "mock"}]},
                {"name": "strong", "replicas": [{"kind": "mock"}]},
            ],
            "router": {"enabled": True, "file": str(router_file), **router},
        }
    )


def _picks(router):
    texts = [easy_prompt(i) for i in range(5)] + [hard_prompt(i) for i in range(5)]
    return [router.route(Request(id=t, prompt=t, max_tokens=16)).model for t in texts]


@pytest.fixture(scope="module")
def router_file(tmp_path_factory):
    return train_router(tmp_path_factory.mktemp("route"))


def test_default_is_training_costs_and_the_log_says_so(router_file, caplog):
    cfg = _config(router_file)
    assert cfg.router.cost_source == "training"
    with caplog.at_level(logging.INFO, logger="wattserve.serve"):
        router = build_router(cfg, FITS)  # fits are configured, but not what routing ranks by
    assert router.cost_source == "training"
    assert router.describe_costs() == {
        "source": "training",
        "costs": {"weak": 1.0, "strong": 10.0},
    }
    line = next(r.getMessage() for r in caplog.records if "costs from" in r.getMessage())
    assert "costs from training: weak=1, strong=10" in line
    assert _picks(router) == ["weak"] * 5 + ["strong"] * 5


def test_fits_source_is_named_and_changes_the_decisions(router_file, caplog):
    """The misleading case, now explicit: with fitted joules every prompt goes to 'strong'."""
    for spelling in ({"cost_source": "fits"}, {"use_fits": True}):
        cfg = _config(router_file, **spelling)
        assert cfg.router.cost_source == "fits"
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="wattserve.serve"):
            router = build_router(cfg, FITS)
        assert router.cost_source == "fits"
        assert "costs from fits: weak: fit energy_j @ cpu" in caplog.text
        assert _picks(router) == ["strong"] * 10
    assert _config(router_file, use_fits=False).router.cost_source == "training"


def test_fixed_costs_come_from_the_config(router_file):
    cfg = _config(router_file, costs={"weak": 3.0, "strong": 4.0})
    assert cfg.router.cost_source == "fixed"  # costs imply it
    router = build_router(cfg, FITS)
    assert router.describe_costs() == {"source": "fixed", "costs": {"weak": 3.0, "strong": 4.0}}
    assert "costs from fixed: weak=3, strong=4" in describe_router(router)


@pytest.mark.parametrize(
    ("router", "message"),
    [
        ({"cost_source": "fixed"}, "cost_source: fixed needs 'costs'"),
        ({"cost_source": "training", "costs": {"weak": 1.0}}, "'costs' is for cost_source"),
        ({"cost_source": "training", "use_fits": True}, "contradicts"),
        ({"costs": {"weak": -1.0, "strong": 1.0}}, "non-negative"),
    ],
)
def test_contradictory_router_sections_are_refused(router_file, router, message):
    with pytest.raises(ConfigError, match=message):
        _config(router_file, **router)


def test_fits_must_cover_every_routed_model(router_file):
    with pytest.raises(ConfigError, match="none for strong"):
        build_router(_config(router_file, cost_source="fits"), {"weak": FITS["weak"]})
    with pytest.raises(ConfigError, match="missing strong"):
        router_with_costs(router_file, "fixed", fixed={"weak": 1.0})
    with pytest.raises(ConfigError, match="unknown router cost source"):
        source_costs("magic", ("weak", "strong"))


def test_expected_cost_charges_fitted_joules_of_the_routed_model(router_file):
    router = router_with_costs(router_file)  # ranks by training costs

    def joules(model, n_in, n_out):
        fit = FITS[model]
        return fit.coefficients[0] + fit.coefficients[2] * n_out

    easy, hard = Request(id="e", prompt=easy_prompt(1)), Request(id="h", prompt=hard_prompt(1))
    assert router.expected_cost(easy, 10, 100, joules=joules) == pytest.approx(2.0 + 1.0)
    assert router.expected_cost(hard, 10, 100, joules=joules) == pytest.approx(0.5 + 0.1)
    # without joules: the router's own cost of the model it picks
    assert router.expected_cost(easy, 10, 100) == 1.0
    assert router.expected_cost(hard) == 10.0


@pytest.mark.parametrize(("source", "easy_goes_to"), [("training", "weak"), ("fits", "strong")])
async def test_stats_name_the_source_the_gateway_routes_by(
    router_file, tmp_path, source, easy_goes_to
):
    from wattserve.fit import save_fits
    from wattserve.serve.service import Service

    fits_file = save_fits(list(FITS.values()), tmp_path / "fits.json")
    cfg = config_from_dict(
        {
            "models": [
                {"name": m, "fit": str(fits_file), "replicas": [{"kind": "mock"}]}
                for m in ("weak", "strong")
            ],
            "router": {"enabled": True, "file": str(router_file), "cost_source": source},
            "energy": {"meter": "null"},
        }
    )
    svc = Service(cfg)
    await svc.start()
    try:
        stats = svc.stats()["router"]
        assert stats["cost_source"] == source and stats["models"] == ["weak", "strong"]
        body = json.dumps({"model": "auto", "prompt": easy_prompt(2), "max_tokens": 4})
        reply = await svc.gateway.handle("completions", body.encode())
        assert reply.status == 200
        assert dict(reply.headers)["x-wattserve-model"] == easy_goes_to
    finally:
        await svc.stop()


def test_route_decide_names_the_cost_source(router_file, capsys):
    from wattserve.cli import main

    try:
        main(["route", "decide", "--router", str(router_file), "--prompt", hard_prompt(1)])
    except SystemExit as exc:
        assert not exc.code
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "strong" and out["cost_source"] == "training"
    assert out["costs"] == {"weak": 1.0, "strong": 10.0}
