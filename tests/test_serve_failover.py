"""One of two replicas is killed during a bounded load (500 requests at
concurrency 32). Every request completes or gets a clean error within its timeout; none
hangs; the dead replica shows as unhealthy in /ready and /metrics."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import httpx

from test_serve_support import FULL8, config, gateway, kill, mock_replicas

N, CONCURRENCY, TOTAL_S = 500, 32, 10.0
FULL = FULL8


async def _one(session: aiohttp.ClientSession, url: str, i: int) -> str:
    stream = i % 2 == 0
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": f"q{i}"}],
        "stream": stream,
        "temperature": 1.0,
    }
    async with session.post(url + "/v1/chat/completions", json=body) as r:
        if r.status != 200:
            err = await r.json()  # a clean error is OpenAI-style JSON
            assert r.status >= 500 and "message" in err["error"], err
            return "error"
        if not stream:
            data = await r.json()
            assert data["choices"][0]["message"]["content"] == FULL
            return "ok"
        text, error = [], None
        async for line in r.content:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if "error" in ev:
                error = ev["error"]["message"]
                continue
            text += [c["delta"].get("content") or "" for c in ev["choices"]]
        if error is not None:
            assert "mid-stream" in error
            return "error"
        assert "".join(text) == FULL
        return "ok"


async def _load(url: str, kill) -> list[str]:
    sem = asyncio.Semaphore(CONCURRENCY)
    done = 0
    results: list[str] = []

    async def run(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal done
        async with sem:
            try:
                results.append(await asyncio.wait_for(_one(session, url, i), TOTAL_S + 5))
            except TimeoutError:
                results.append("hang")
            done += 1
            if done == 150:
                kill()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        await asyncio.gather(*(run(i, session) for i in range(N)))
    return results


def test_kill_one_of_two_replicas_under_load():
    with mock_replicas(2, token_delay_ms=20) as reps:
        cfg = config([r.url for r in reps], cache={"enabled": False})
        with gateway(cfg) as gw:
            t0 = time.monotonic()
            results = asyncio.run(_load(gw.url, lambda: kill(reps[0])))
            elapsed = time.monotonic() - t0
            print(
                f"\nfailover: {results.count('ok')} ok, {results.count('error')} clean errors, "
                f"{results.count('hang')} hung, {elapsed:.1f} s"
            )
            assert len(results) == N
            assert results.count("hang") == 0
            assert set(results) <= {"ok", "error"}
            # only requests in flight on the dead replica may fail (at most the concurrency)
            assert results.count("error") <= CONCURRENCY
            assert results.count("ok") >= N - CONCURRENCY
            assert elapsed < 60
            ready = httpx.get(gw.url + "/ready").json()
            dead = {r["name"]: r for r in ready["replicas"]}["tiny/url-0"]
            assert dead["healthy"] is False and dead["failures"] >= 1
            assert ready["models"] == {"tiny": True}  # the other replica still serves
            metrics = httpx.get(gw.url + "/metrics").text
            assert 'wattserve_replica_healthy{model="tiny",replica="tiny/url-0"} 0.0' in metrics
            assert 'wattserve_replica_healthy{model="tiny",replica="tiny/url-1"} 1.0' in metrics
            kill(reps[1])  # with no replica left: clean 503/502, and /ready says not ready
            time.sleep(1.2)
            r = httpx.post(
                gw.url + "/v1/chat/completions",
                json={"model": "tiny", "messages": [{"role": "user", "content": "x"}]},
                timeout=TOTAL_S,
            )
            assert r.status_code in (502, 503) and "error" in r.json()
            assert httpx.get(gw.url + "/ready").status_code == 503
