"""Gateways sharing one real redis-server (``cache: {store: redis, url: ...}``): an answer
cached through one gateway is a hit through another, each with its own ``ResponseCache`` and
its own replicas; a restarted gateway loads the shared entries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from redis_support import redis_server
from test_serve_support import FULL8, config, gateway, mock_replicas
from wattserve.errors import ConfigError, EngineUnavailable

PREFIX = "gw-test:"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


def _cfg(url: str, redis_url: str) -> Any:
    return config([url], cache={"store": "redis", "url": redis_url, "prefix": PREFIX})


def _stored(redis_url: str, n: int) -> list[str]:
    """The shared keys once at least ``n`` are in Redis (a gateway writes behind its answers)."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        deadline = time.monotonic() + 5
        while True:
            keys = list(client.scan_iter(match=PREFIX + "*"))
            if len(keys) >= n or time.monotonic() > deadline:
                return keys
            time.sleep(0.02)
    finally:
        client.close()


def _chat(gw: Any, content: str, **extra: Any) -> httpx.Response:
    body = {"model": "tiny", "messages": [{"role": "user", "content": content}], "temperature": 0}
    r = httpx.post(gw.url + "/v1/chat/completions", json={**body, **extra}, timeout=10)
    assert r.status_code == 200, r.text
    return r


def test_two_gateways_over_one_redis_see_each_others_entries(redis_url):
    with (
        mock_replicas(1, process=False) as reps_a,
        mock_replicas(1, process=False) as reps_b,
        gateway(_cfg(reps_a[0].url, redis_url)) as a,
        gateway(_cfg(reps_b[0].url, redis_url)) as b,
    ):
        assert a.service.cache is not b.service.cache
        first = _chat(a, "shared question")
        assert first.headers["x-wattserve-cache"] == "miss"
        assert len(_stored(redis_url, 1)) == 1

        hit = _chat(b, "shared question")
        assert hit.headers["x-wattserve-cache"] == "hit"
        assert hit.json()["choices"][0]["message"]["content"] == FULL8
        assert reps_b[0].requests_seen == 0  # b answered from the entry a computed

        # the other way round, streaming, and a different question is nobody's hit
        streamed = _chat(b, "asked through b", stream=True)
        assert streamed.headers["x-wattserve-cache"] == "miss" and reps_b[0].requests_seen == 1
        assert len(_stored(redis_url, 2)) == 2
        back = _chat(a, "asked through b", stream=True)
        assert back.headers["x-wattserve-cache"] == "hit" and back.text.count(" tok") == 8
        assert _chat(a, "only a asked this").headers["x-wattserve-cache"] == "miss"
        assert reps_a[0].requests_seen == 2

    # a gateway started later loads what the others stored
    with (
        mock_replicas(1, process=False) as reps_c,
        gateway(_cfg(reps_c[0].url, redis_url)) as c,
    ):
        assert c.service.cache.stats()["entries"] == 3
        assert _chat(c, "only a asked this").headers["x-wattserve-cache"] == "hit"
        assert reps_c[0].requests_seen == 0


def test_the_redis_store_is_checked_when_the_gateway_starts(free_port):
    with pytest.raises(ConfigError, match="store: redis needs .url."):
        config(["http://127.0.0.1:1/v1"], cache={"store": "redis"})
    with pytest.raises(ConfigError, match="cache"):
        config(["http://127.0.0.1:1/v1"], cache={"store": "redis", "url": "http://x"})
    cfg = config(
        ["http://127.0.0.1:1/v1"],
        cache={"store": "redis", "url": f"redis://127.0.0.1:{free_port}/0"},
    )
    with pytest.raises(EngineUnavailable, match="cannot reach Redis"), gateway(cfg):
        pass
