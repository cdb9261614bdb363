"""/stats says which saving is which: ``cache.saved_cost`` (the entry costs the cache ranks
by, in ``saved_cost_unit`` from ``cost_source``) beside ``energy.saved_j`` (the joules the
hit answers were charged)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from test_serve_support import gateway
from wattserve.serve.config import config_from_dict
from wattserve.serve.service import cache_cost_source

CHAT = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 4,
    "temperature": 0,
}


def _config(**model: Any) -> Any:
    return config_from_dict(
        {
            "models": [{"name": "m", "replicas": [{"kind": "mock", "mock_tokens": 4}], **model}],
            "energy": {"meter": "modeled", "interval_s": 0.1},
            "auth": {"keys_env": None},
            "grace_s": 2.0,
        }
    )


def _stats_after_a_hit(cfg: Any) -> dict[str, Any]:
    with gateway(cfg) as gw:
        first = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10)
        again = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10)
        assert [first.headers["x-wattserve-cache"], again.headers["x-wattserve-cache"]] == [
            "miss",
            "hit",
        ]
        usage = first.json()["usage"]
        stats = httpx.get(gw.url + "/stats", timeout=10).json()
    stats["first_usage"] = usage
    return stats


def test_fitted_cache_cost_is_labelled_and_differs_from_the_charged_joules():
    stats = _stats_after_a_hit(_config(energy_per_token_j=5.0))
    cache, energy, usage = stats["cache"], stats["energy"], stats["first_usage"]
    assert cache["saved_cost_unit"] == "J" and cache["cost_source"] == "fitted"
    tokens = usage["prompt_tokens"] + usage["completion_tokens"]
    assert cache["saved_cost"] == pytest.approx(5.0 * tokens)  # the estimate, not the meter
    assert energy["saved_j"] == pytest.approx(usage["energy_j"])  # what the answer was charged
    assert energy["saved_j"] != pytest.approx(cache["saved_cost"])
    assert energy["source"] == "modeled"


def test_metered_cache_cost_is_the_charged_joules():
    stats = _stats_after_a_hit(_config())
    cache, energy = stats["cache"], stats["energy"]
    assert cache["saved_cost_unit"] == "J" and cache["cost_source"] == "metered"
    if energy["saved_j"] > 0:  # a zero charge falls back to a placeholder cost
        assert cache["saved_cost"] == pytest.approx(energy["saved_j"])


def test_a_mixed_gateway_says_so():
    cfg = config_from_dict(
        {
            "models": [
                {"name": "a", "replicas": [{"kind": "mock"}], "energy_per_token_j": 0.1},
                {"name": "b", "replicas": [{"kind": "mock"}]},
                {"name": "c", "replicas": [{"kind": "mock"}]},
            ]
        }
    )
    assert cache_cost_source(cfg, {}) == "fitted+metered"
    assert cache_cost_source(cfg, {"b": object(), "c": object()}) == "fitted"
