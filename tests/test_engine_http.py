"""OpenAIHTTPEngine against the mock server: streaming, usage, errors, failure knobs, speed."""

from __future__ import annotations

import asyncio
import time

import pytest

from wattserve.engines.base import complete
from wattserve.engines.mock_server import MockConfig, MockServer
from wattserve.engines.openai_http import OpenAIHTTPEngine
from wattserve.errors import EngineUnavailable
from wattserve.types import Message, Request


def _chat(i: int = 0, **kw) -> Request:
    return Request(id=f"r{i}", messages=(Message("user", "hello there world"),), **kw)


async def test_streams_chat_and_completions_with_usage(mock_server):
    eng = OpenAIHTTPEngine(mock_server)
    try:
        assert await eng.check() == ["mock"]
        c = await complete(eng, _chat(max_tokens=5))
        assert c.ok, c.error
        assert c.text == " tok" * 5 and c.output_tokens == 5 and c.input_tokens == 3
        assert c.token_source == "usage" and c.finish_reason == "length"
        assert (
            len(c.chunk_t) == 5
            and list(c.chunk_t) == sorted(c.chunk_t)
            and c.first_token_s >= c.sent_s
        )
        p = await complete(
            eng, Request(id="p", prompt="a b", max_tokens=100, endpoint="completions")
        )
        assert p.ok and p.output_tokens == 16 and p.finish_reason == "stop" and p.input_tokens == 2
    finally:
        await eng.aclose()


async def test_non_streaming_mode(mock_server):
    eng = OpenAIHTTPEngine(mock_server, stream=False)
    try:
        for endpoint in ("chat", "completions"):
            c = await complete(
                eng, Request(id="n", prompt="x y z", max_tokens=4, endpoint=endpoint)
            )
            assert c.ok and c.text == " tok" * 4 and c.output_tokens == 4 and len(c.chunk_t) == 1
    finally:
        await eng.aclose()


def test_payload_asks_for_usage_and_passes_options():
    eng = OpenAIHTTPEngine("http://127.0.0.1:1", model="srv-model")
    url, body = eng.payload(
        _chat(max_tokens=7, seed=3, stop=("\n",), ignore_eos=True, temperature=0.5), True
    )
    assert url == "http://127.0.0.1:1/v1/chat/completions"
    assert body["stream_options"] == {"include_usage": True} and body["model"] == "srv-model"
    assert (
        body["max_tokens"] == 7
        and body["seed"] == 3
        and body["stop"] == ["\n"]
        and body["ignore_eos"] is True
    )
    url, body = eng.payload(
        Request(id="c", prompt="hi", endpoint="completions", stream=False), False
    )
    assert (
        url.endswith("/v1/completions") and body["prompt"] == "hi" and "stream_options" not in body
    )


async def test_unreachable_server_is_a_clear_error(free_port):
    eng = OpenAIHTTPEngine(f"http://127.0.0.1:{free_port}/v1", connect_timeout_s=2)
    try:
        with pytest.raises(EngineUnavailable, match=f"cannot reach http://127.0.0.1:{free_port}"):
            await eng.check()
        c = await complete(eng, _chat(max_tokens=2))
        assert not c.ok and "cannot reach" in c.error
    finally:
        await eng.aclose()


async def test_http_error_and_fail_after():
    with MockServer(fail_after=1) as srv:
        eng = OpenAIHTTPEngine(srv.url)
        try:
            assert (await complete(eng, _chat(max_tokens=2))).ok
            c = await complete(eng, _chat(max_tokens=2))
            assert not c.ok and "HTTP 500" in c.error and "mock failure" in c.error
            srv.config.fail_after = None  # the knob is live: the replica recovers
            assert (await complete(eng, _chat(max_tokens=2))).ok
            assert srv.requests_seen == 3
        finally:
            await eng.aclose()


async def test_stream_cut_mid_way_is_an_error():
    with MockServer(die_mid_stream=3, token_delay_ms=1) as srv:
        eng = OpenAIHTTPEngine(srv.url)
        try:
            c = await complete(eng, _chat(max_tokens=10))
            assert not c.ok and c.text == " tok" * 3
            assert "lost mid-response" in c.error or "ended before completion" in c.error
        finally:
            await eng.aclose()


async def test_token_delays_are_visible_in_timestamps():
    with MockServer(MockConfig(output_len=5, ttft_ms=60, token_delay_ms=20)) as srv:
        eng = OpenAIHTTPEngine(srv.url)
        try:
            c = await complete(eng, _chat(max_tokens=5))
            assert c.ttft_s >= 0.055 and all(gap >= 0.015 for gap in c.itl_s) and len(c.itl_s) == 4
        finally:
            await eng.aclose()


async def test_many_concurrent_requests_share_keep_alive_connections():
    with MockServer(process=True, output_len=8) as srv:
        eng = OpenAIHTTPEngine(srv.url)
        try:
            n, sem = 400, asyncio.Semaphore(64)

            async def one(i: int):
                async with sem:
                    return await complete(eng, _chat(i, max_tokens=8))

            t0 = time.perf_counter()
            done = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), 60)
            rate = n / (time.perf_counter() - t0)
            assert all(c.ok and c.output_tokens == 8 for c in done)
            assert rate > 50, f"only {rate:.0f} requests/s"  # ~1000/s on an idle 2-core machine
            # keep-alive connections were reused: about one per request in flight (64), a few
            # more while a connection waits for its stream's last bytes, not one per request
            assert 0 < eng.client.transport.idle <= 80
        finally:
            await eng.aclose()
