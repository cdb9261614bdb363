"""Health that knows busy from dead: the gateway in front of scripted replicas
(``scripted_replica.ScriptedReplica``) that answer 500 or 400 to everything, hang on POST while
``/v1/models`` answers, answer probes late while busy, or see the gateway close a request
whose client went away. Plus the breaker on its own, with a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import time
import typing
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from scripted_replica import ScriptedReplica
from test_serve_support import config
from wattserve.serve.config import ServeConfig
from wattserve.serve.replica import Breaker, BreakerPolicy

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


@dataclass
class Running:
    url: str
    port: int
    service: Any  # wattserve.serve.service.Service
    pool: Any  # wattserve.serve.pool.ReplicaPool


@contextlib.asynccontextmanager
async def running(cfg: Any) -> AsyncIterator[Running]:
    """The gateway in its thread; started off this loop, which serves the scripted replicas."""
    from wattserve.serve.app import BackgroundServer, create_app

    app = create_app(cfg)
    srv = BackgroundServer(app, grace_s=cfg.grace_s)
    await asyncio.to_thread(srv.start)
    try:
        yield Running(srv.url, srv.port, app.service, app.service.pool)
    finally:
        await asyncio.to_thread(srv.stop)


def cfg_for(
    reps: list[ScriptedReplica],
    first_token_s: float = 0.5,
    server: str | None = None,
    **health: Any,
) -> Any:
    h = {"interval_s": 0.2, "timeout_s": 0.3, "retry_after_s": 0.3, "trial_timeout_s": 0.3}
    h.update(health)
    return config(
        [r.url for r in reps],
        cache={"enabled": False},
        health=h,
        timeouts={"connect_s": 1.0, "first_token_s": first_token_s, "total_s": 10.0},
        **({"server": server} if server else {}),
    )


SERVERS = typing.get_args(ServeConfig.model_fields["server"].annotation)  # each HTTP server


async def post(s: aiohttp.ClientSession, url: str, body: dict | None = None) -> int:
    async with s.post(url + "/v1/chat/completions", json=body or CHAT) as r:
        await r.read()
        return r.status


async def ready(s: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with s.get(url + "/ready") as r:
        return r.status, await r.json()


def state_of(doc: dict, name: str) -> dict:
    return {r["name"]: r for r in doc["replicas"]}[name]


# ---------------------------------------------------------------------- the breaker alone
def test_breaker_opens_half_opens_backs_off_and_closes():
    t = [0.0]
    b = Breaker(BreakerPolicy(failures=3, cool_down_s=1.0, max_cool_down_s=4.0), lambda: t[0])
    assert not b.failure("timeout") and not b.failure("status") and b.allows
    b.success()  # a success resets the streak
    assert not b.failure("status") and not b.failure("status")
    assert b.failure("status") and not b.allows and b.describe() == "open"
    assert not b.trial_due()  # cool-down not over
    t[0] = 1.0
    assert b.trial_due() and b.describe() == "half_open" and not b.allows
    b.trial_failed()
    assert b.retry_at == pytest.approx(3.0)  # cool-down doubled
    t[0] = 3.0
    assert b.trial_due()
    b.trial_failed()
    t[0] = 7.0
    assert b.trial_due()
    b.trial_failed()
    assert b.retry_at == pytest.approx(11.0)  # capped at max_cool_down_s
    t[0] = 11.0
    assert b.trial_due()
    b.trial_passed()
    assert b.allows and b.closes == 1 and b.opens == 1
    assert b.failure("refused")  # nothing listening: out at once
    assert b.retry_at - t[0] == pytest.approx(4.0)  # out again right after a put-back: longer


def test_breaker_degraded_and_probe_only_failures():
    b = Breaker(BreakerPolicy(failures=2))
    b.failure("timeout", may_open=False)
    assert not b.failure("timeout", may_open=False) and b.allows and b.describe() == "degraded"
    b.success()
    assert b.describe() == "closed"
    b.failure("timeout", probe=True)
    b.alive()  # a passing probe forgives what only probes counted
    assert b.consecutive == 0
    b.failure("timeout")
    b.alive()  # but never a failed request
    assert b.consecutive == 1


def test_breaker_failure_rate_opens():
    b = Breaker(BreakerPolicy(failures=100, window=10, failure_rate=0.5))
    opened = False
    for i in range(10):
        if i % 2 == 0:
            b.success()
        else:
            opened = b.failure("status") or opened
    assert opened and not b.allows


# ---------------------------------------------------------------------- through the gateway
async def test_a_replica_answering_500_to_everything_is_ejected_within_3_requests():
    async with ScriptedReplica("500") as bad, ScriptedReplica("ok") as good:
        async with running(cfg_for([bad, good], interval_s=5.0, retry_after_s=30.0)) as gw:
            async with aiohttp.ClientSession() as s:
                statuses = [await post(s, gw.url) for _ in range(12)]
                code, doc = await ready(s, gw.url)
            assert statuses == [200] * 12  # each 500 was retried on the good replica
            assert bad.posts <= 3, bad.posts
            assert state_of(doc, "tiny/url-0")["state"] == "open"
            assert code == 200 and doc["status"] == "ok"
    async with ScriptedReplica("500") as only:  # the only replica of its model
        async with running(cfg_for([only], interval_s=5.0, retry_after_s=30.0)) as gw:
            async with aiohttp.ClientSession() as s:
                statuses = [await post(s, gw.url) for _ in range(3)]
                code, doc = await ready(s, gw.url)
                after = await post(s, gw.url)
            assert statuses == [502] * 3 and after == 503 and only.posts == 3
            assert code == 503 and doc["status"] == "unavailable" and doc["models"]["tiny"] is False


async def test_a_replica_hanging_on_post_is_ejected_and_does_not_flap():
    async with ScriptedReplica("hang") as hang, ScriptedReplica("ok") as good:
        cfg = cfg_for([hang, good], retry_after_s=0.3, max_retry_after_s=10.0)
        async with running(cfg) as gw:
            rep = gw.pool.replicas[0]
            slow, statuses = 0, []
            async with aiohttp.ClientSession() as s:
                end = time.monotonic() + 5.0  # a bounded window: sequential requests
                for _ in range(200):
                    if time.monotonic() > end:
                        break
                    t0 = time.monotonic()
                    statuses.append(await post(s, gw.url))
                    slow += time.monotonic() - t0 > 0.4  # waited first_token_s on the hang
                    await asyncio.sleep(0.02)
                code, doc = await ready(s, gw.url)
            print(
                f"\nhanging replica: {len(statuses)} requests, {slow} slow, user posts "
                f"{hang.posts}, trials {hang.trials}, ejections {rep.breaker.opens}, "
                f"put back {rep.breaker.closes}"
            )
            assert set(statuses) == {200} and len(statuses) >= 20
            assert hang.posts <= 3 and slow <= 3  # the /v1/models probes pass all along
            assert rep.breaker.opens == 1 and rep.breaker.closes == 0  # out, and stays out
            assert 1 <= hang.trials <= 5  # trials back off: 0.3, 0.6, 1.2, 2.4 s
            assert state_of(doc, "tiny/url-0")["state"] in ("open", "half_open")
            hang.post = "ok"  # it recovers: the next trial puts it back
            for _ in range(100):
                if rep.healthy:
                    break
                await asyncio.sleep(0.1)
            assert rep.healthy and rep.breaker.closes == 1


async def test_4xx_answers_never_eject():
    async with ScriptedReplica("400") as rep400:
        async with running(cfg_for([rep400], interval_s=5.0)) as gw:
            async with aiohttp.ClientSession() as s:
                statuses = [await post(s, gw.url) for _ in range(8)]
                code, doc = await ready(s, gw.url)
            assert statuses == [400] * 8 and rep400.posts == 8  # passed on, not retried
            assert code == 200 and doc["status"] == "ok"
            assert state_of(doc, "tiny/url-0")["ejections"] == 0


async def test_the_same_500_from_every_replica_is_the_requests_fault():
    """llama.cpp answers 500 to list-style message content: the request's doing."""
    listy = {
        "model": "tiny",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    async with ScriptedReplica("500_on_list") as a, ScriptedReplica("500_on_list") as b:
        async with running(cfg_for([a, b], interval_s=5.0)) as gw:
            async with aiohttp.ClientSession() as s:
                bad = [await post(s, gw.url, listy) for _ in range(6)]
                good = await post(s, gw.url)
                code, doc = await ready(s, gw.url)
            assert bad == [502] * 6 and a.posts + b.posts == 13  # each tried on both
            assert good == 200 and code == 200 and doc["status"] == "ok"
            assert [r["ejections"] for r in doc["replicas"]] == [0, 0]


async def test_a_busy_replica_whose_probes_time_out_is_not_ejected():
    """Probes would wait behind the request in flight (llama.cpp's lock), past the probe
    timeout: a replica with requests in flight is not probed at all."""
    async with (
        ScriptedReplica("ok", delay_s=0.8, models_wait_busy=True) as a,
        ScriptedReplica("ok", delay_s=0.8, models_wait_busy=True) as b,
    ):
        cfg = cfg_for([a, b], first_token_s=5.0, interval_s=0.1, timeout_s=0.2)
        async with running(cfg) as gw:
            sem = asyncio.Semaphore(4)

            async def one(s: aiohttp.ClientSession) -> int:
                async with sem:
                    return await post(s, gw.url)

            async with aiohttp.ClientSession() as s:
                before = a.models_calls + b.models_calls
                statuses = await asyncio.gather(*(one(s) for _ in range(12)))
                during = a.models_calls + b.models_calls - before
                code, doc = await ready(s, gw.url)
            assert list(statuses) == [200] * 12
            # no probe while requests were in flight (12 requests of 0.8 s, 4 at a time, on
            # two replicas: busy for about 2.4 s, a probe due every 0.1 s; at most one each in
            # the moment between a replica's last answer and the end)
            assert during <= 2, during
            assert [r["ejections"] for r in doc["replicas"]] == [0, 0]
            assert code == 200 and doc["status"] == "ok"


async def test_the_last_replica_is_kept_degraded_under_timeouts():
    async with ScriptedReplica("hang") as only:
        async with running(cfg_for([only])) as gw:
            async with aiohttp.ClientSession() as s:
                statuses = [await post(s, gw.url) for _ in range(5)]
                code, doc = await ready(s, gw.url)
                async with s.get(gw.url + "/metrics") as r:
                    metrics = await r.text()
                assert statuses == [502] * 5 and only.posts == 5  # tried every time
                assert code == 200 and doc["status"] == "degraded" and doc["degraded"] == ["tiny"]
                assert state_of(doc, "tiny/url-0")["state"] == "degraded"
                line = 'wattserve_replica_state{model="tiny",replica="tiny/url-0",state="degraded"}'
                assert f"{line} 1.0" in metrics
                only.post = "ok"
                assert await post(s, gw.url) == 200
                code, doc = await ready(s, gw.url)
                assert code == 200 and doc["status"] == "ok"


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_that_goes_away_cancels_the_upstream_request(server: str, stream: bool):
    async with ScriptedReplica("stall_stream" if stream else "hang") as rep:
        cfg = cfg_for([rep], first_token_s=30.0, server=server, interval_s=5.0)
        async with running(cfg) as gw:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            body = b'{"model":"tiny","messages":[{"role":"user","content":"hi"}],"stream":%s}' % (
                b"true" if stream else b"false"
            )
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: "
                b"application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            if stream:  # the first event reaches the client
                got = await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)
                assert b"200" in got.split(b"\r\n")[0]
            else:
                await asyncio.sleep(0.3)
            assert rep.posts == 1 and rep.peer_closed == 0
            writer.close()
            for _ in range(50):
                if rep.peer_closed:
                    break
                await asyncio.sleep(0.05)
            assert rep.peer_closed == 1  # the gateway closed its upstream request
            gateway = gw.service.gateway
            for _ in range(50):
                if gateway.in_flight == 0:
                    break
                await asyncio.sleep(0.05)
            assert gateway.in_flight == 0 and gw.pool.replicas[0].outstanding == 0
