"""A replica that ends a stream with ``[DONE]`` before any finish_reason has cut its answer
short (llama-cpp-python's server does so when another request arrives, unless started with
``--interrupt_requests False``). The gateway never passes that off as a whole answer: before
the first byte it tries another replica (502 when none is left), mid-stream it ends the
client's stream with a ``stream_broken`` error event; the cut answer is never cached, and the
replica is not ejected for it."""

from __future__ import annotations

import json

import aiohttp

from scripted_replica import ScriptedReplica
from test_serve_health import ready, running, state_of
from test_serve_support import config

STREAM = {
    "model": "tiny",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 4,
    "temperature": 0,
    "stream": True,
}


def _cfg(reps: list[ScriptedReplica]):
    return config(
        [r.url for r in reps],
        health={"interval_s": 0.2, "timeout_s": 0.3, "retry_after_s": 0.3},
        timeouts={"connect_s": 1.0, "first_token_s": 2.0, "total_s": 10.0},
    )


async def _stream(
    s: aiohttp.ClientSession, url: str, prompt: str = "hi"
) -> tuple[int, str, list[dict]]:
    """Status, the cache header and the decoded data events of one streamed request."""
    body = {**STREAM, "messages": [{"role": "user", "content": prompt}]}
    async with s.post(url + "/v1/chat/completions", json=body) as r:
        raw = (await r.read()).decode()
        events = [
            json.loads(line[6:])
            for line in raw.split("\n")
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
        return r.status, r.headers.get("x-wattserve-cache", ""), events


def _text(events: list[dict]) -> str:
    return "".join(c["delta"].get("content") or "" for e in events for c in e.get("choices", []))


async def test_cut_before_the_first_byte_is_retried_on_another_replica_and_never_cached():
    async with ScriptedReplica("cut_first") as cut, ScriptedReplica("ok") as ok:
        async with running(_cfg([cut, ok])) as gw:
            async with aiohttp.ClientSession() as s:
                got = [await _stream(s, gw.url, f"q{i}") for i in range(4)]
                again = [await _stream(s, gw.url, f"q{i}") for i in range(4)]
                code, doc = await ready(s, gw.url)
            assert cut.posts >= 1 and ok.posts == 4  # each miss ended on the whole answer
            for (status, cache, events), hit in zip(got, again, strict=True):
                assert status == 200 and cache == "miss" and _text(events) == "hello there"
                assert hit[1] == "hit" and _text(hit[2]) == "hello there"
            assert state_of(doc, "tiny/url-0")["ejections"] == 0 and code == 200


async def test_cut_with_no_other_replica_is_a_502_and_nothing_is_cached():
    async with ScriptedReplica("cut_first") as only:
        async with running(_cfg([only])) as gw:
            async with aiohttp.ClientSession() as s:
                statuses = [(await _stream(s, gw.url))[0] for _ in range(3)]
                only.post = "ok"
                status, cache, events = await _stream(s, gw.url)
                code, doc = await ready(s, gw.url)
            assert statuses == [502] * 3 and only.posts == 4
            assert status == 200 and cache == "miss" and _text(events) == "hello there"
            assert doc["replicas"][0]["ejections"] == 0 and doc["status"] == "ok"


async def test_cut_mid_stream_ends_with_stream_broken_and_is_not_cached():
    async with ScriptedReplica("cut_mid") as only:
        async with running(_cfg([only])) as gw:
            async with aiohttp.ClientSession() as s:
                first = await _stream(s, gw.url)
                second = await _stream(s, gw.url)
                code, doc = await ready(s, gw.url)
    for status, cache, events in (first, second):
        assert status == 200 and cache == "miss"  # the cut answer was not cached
        assert _text(events) == "hello"  # what the replica sent, then the error event
        assert events[-1]["error"]["code"] == "stream_broken"
        assert "finish_reason" in events[-1]["error"]["message"]
    assert only.posts == 2 and doc["replicas"][0]["ejections"] == 0 and code == 200
