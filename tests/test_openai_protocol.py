"""The OpenAI protocol package: schema validation, encoders round-tripped through the
decoders, the bounded SSE reader, the client over an in-memory transport, and the gateway
turning upstream garbage into a retry and a 502 (never a 500)."""

from __future__ import annotations

import time
import tracemalloc

import orjson
import pytest

from wattserve.openai import answers, schema
from wattserve.openai.answers import APIError
from wattserve.openai.client import Client, StatusError
from wattserve.openai.schema import AnswerError, decode_answer
from wattserve.openai.sse import SSEError, SSEReader, decode
from wattserve.openai.transport import MockResponse, MockTransport

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _req(body: dict, endpoint: str = "chat"):
    return schema.to_request(endpoint, schema.parse_body(orjson.dumps(body)), "r1", "t", 16, 100)


# ------------------------------------------------------------------ schema
def test_a_valid_body_becomes_a_request_with_defaults_and_extra_fields():
    r = _req({**CHAT, "temperature": 0, "stop": "\n", "tools": [], "stream": True})
    assert r.messages[0].content == "hi" and r.max_tokens == 16 and r.temperature == 0.0
    assert r.stop == ("\n",) and r.stream and r.extra == {"tools": []}
    parts = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}],
    }
    assert _req(parts).messages[0].content == "a"
    p = _req({"model": "m", "prompt": ["one"], "max_completion_tokens": 7}, "completions")
    assert p.prompt == "one" and p.max_tokens == 7 and p.endpoint == "completions"


@pytest.mark.parametrize(
    "body,param",
    [
        ({"messages": [{"role": "user", "content": "x"}]}, None),
        ({"model": "", "messages": [{"role": "user"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({**CHAT, "temperature": 9}, "temperature"),
        ({**CHAT, "max_tokens": -3}, "max_tokens"),
        ({**CHAT, "max_tokens": 101}, "max_tokens"),
        ({**CHAT, "n": 3}, "n"),
        ({**CHAT, "stream": "yes"}, "stream"),
        ({**CHAT, "seed": True}, "seed"),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image"}]}]}, None),
        ({"model": "m", "messages": [{"content": "no role"}]}, None),
    ],
)
def test_invalid_bodies_are_400_with_the_field_named(body, param):
    with pytest.raises(APIError) as err:
        _req(body)
    assert err.value.status == 400 and err.value.message
    if param:
        assert err.value.param == param


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"x"'])
def test_a_body_that_is_no_json_object_is_invalid_json(raw):
    with pytest.raises(APIError) as err:
        schema.parse_body(raw)
    assert err.value.status == 400 and err.value.code == "invalid_json"


def test_deeply_nested_json_is_a_400_and_ordinary_nesting_is_not():
    deep = b'{"model":"m","prompt":"x","x":' + b"[" * 300 + b"]" * 300 + b"}"
    with pytest.raises(APIError) as err:
        schema.parse_body(deep)
    assert err.value.status == 400 and err.value.code == "too_deep"
    tool = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}}}
    ok = schema.parse_body(orjson.dumps({**CHAT, "tools": [{"function": {"parameters": tool}}]}))
    assert ok["tools"]


def test_the_openapi_schemas_name_both_bodies_and_their_constraints():
    s = schema.openapi_schemas()
    chat = s["ChatCompletionRequest"]
    assert set(chat["required"]) == {"model", "messages"}
    assert chat["properties"]["messages"]["minItems"] == 1
    assert chat["properties"]["messages"]["items"]["$ref"] == "#/components/schemas/ChatMessage"
    assert "prompt" in s["CompletionRequest"]["required"]


# ------------------------------------------------------------------ encoders <-> decoders
def test_stream_encoders_round_trip_through_the_reader_and_decoder():
    usage = answers.usage_dict(3, 2)
    stream = (
        answers.chunk_event("chat", "r", "m", "he", first=True)
        + answers.chunk_event("chat", "r", "m", "llo")
        + answers.chunk_event("chat", "r", "m", None, "stop")
        + answers.usage_event("chat", "r", "m", usage)
        + answers.DONE
    )
    reader, chunks, done = SSEReader(), [], False
    for i in range(0, len(stream), 7):  # split at every 7th byte: events cross reads
        got, d = decode(reader.feed(stream[i : i + 7]))
        chunks += got
        done = done or d
    assert (
        done and "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello"
    )
    assert chunks[2].choices[0].finish_reason == "stop"
    assert chunks[3].usage.prompt_tokens == 3 and chunks[3].usage.completion_tokens == 2
    err, _ = decode(APIError(502, "broke", type="upstream_error").sse())
    assert err[0].error["message"] == "broke"


def test_whole_answers_round_trip_through_decode_answer():
    for ep in ("chat", "completions"):
        raw = answers.full_body(ep, "r", "m", "text", "length", answers.usage_dict(4, 5))
        data, ans = decode_answer(raw)
        assert ans.text == "text" and ans.finish_reason == "length" and ans.tokens == (4, 5)
        assert data["usage"]["total_tokens"] == 9
    for garbage in (b"<html>", b"[1,2,3]", b'{"choices": []}', b'{"choices": "x"}'):
        with pytest.raises(AnswerError):
            decode_answer(garbage)
    assert orjson.loads(APIError(400, "no", param="p").body())["error"]["param"] == "p"


# ------------------------------------------------------------------ bounded SSE reader
def test_a_300_mb_event_without_a_blank_line_fails_fast_with_bounded_memory():
    piece = b"data: " + b"x" * (64 * 1024 - 6)
    filler = b"x" * (64 * 1024)
    reader = SSEReader()
    tracemalloc.start()
    t0 = time.perf_counter()
    fed = 0
    with pytest.raises(SSEError, match="grew past"):
        reader.feed(piece)
        fed += len(piece)
        while fed < 300 * 1024 * 1024:  # 300 MB if nothing stopped it
            reader.feed(filler)
            fed += len(filler)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert fed <= 2 * reader.max_event_bytes  # rejected at the limit, not at 300 MB
    assert peak < 8 * reader.max_event_bytes and elapsed < 1.0


def test_the_reader_is_linear_in_many_small_reads_of_one_large_event():
    reader = SSEReader(max_event_bytes=64 * 1024 * 1024)
    t0 = time.perf_counter()
    for _ in range(20_000):  # 20 MB in 1 KB reads; re-joining per read would copy ~200 GB
        assert reader.feed(b"y" * 1024) == b""
    assert reader.feed(b"\n\n").endswith(b"y\n\n")
    assert time.perf_counter() - t0 < 2.0


def test_a_blank_line_split_across_reads_and_crlf_still_ends_an_event():
    reader = SSEReader()
    assert reader.feed(b"data: 1\n") == b""
    assert reader.feed(b"\ndata: 2\r") == b"data: 1\n\n"
    assert reader.feed(b"\n\r\n") == b"data: 2\n\n"


# ------------------------------------------------------------------ client over MockTransport
async def test_the_client_streams_chunks_and_answers_over_a_mock_transport():
    stream = [
        answers.chunk_event("completions", "r", "m", "a"),
        answers.chunk_event("completions", "r", "m", "b", "stop") + answers.DONE,
    ]

    def handler(method: str, path: str, body: bytes) -> MockResponse:
        if path == "/models":
            return MockResponse(200, b'{"data": [{"id": "m"}]}')
        if orjson.loads(body).get("stream"):
            return MockResponse(200, stream)
        return MockResponse(404, b'{"error": {"message": "no such thing"}}')

    mock = MockTransport(handler)
    client = Client("http://replica", transport=mock)
    assert await client.get_json("/models") == {"data": [{"id": "m"}]}
    resp = await client.request("POST", "/completions", b'{"stream": true}')
    batches = [b async for b in client.chunks(resp)]
    assert [c.choices[0].text for _, cs, _ in batches for c in cs] == ["a", "b"]
    assert batches[-1][2] and resp.released  # [DONE]: the connection goes back to the pool
    with pytest.raises(StatusError, match="HTTP 404"):
        await client.request("POST", "/completions", b"{}")
    assert [p for _, p, _ in mock.requests] == ["/models", "/completions", "/completions"]


# ------------------------------------------------------------------ the gateway on garbage
def _gateway(*handlers):
    from wattserve.serve.pipeline import Gateway
    from wattserve.serve.pool import ReplicaPool, RoundRobin
    from wattserve.serve.replica import HttpReplica

    mocks = [MockTransport(h) for h in handlers]
    reps = [
        HttpReplica(f"m/{i}", "m", f"http://replica-{i}", transport=t) for i, t in enumerate(mocks)
    ]
    return Gateway(ReplicaPool(reps, RoundRobin())), mocks


GOOD = answers.full_body("chat", "r", "m", "fine", "stop", answers.usage_dict(1, 1))
GOOD_STREAM = (  # a whole streamed answer ends with its finish_reason, then [DONE]
    answers.chunk_event("chat", "r", "m", "fine")
    + answers.chunk_event("chat", "r", "m", None, "stop")
    + answers.DONE
)
GARBAGE = {
    "not JSON": (b"<html>oops</html>", False),
    "wrong shape": (b"[1,2,3]", False),
    "object without choices": (b'{"id": "x"}', False),
    "garbage first event": (b"data: {not json\n\n", True),
    "list first event": (b"data: [1,2,3]\n\n", True),
    "no event at all": (b"HTTP is not SSE", True),
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
async def test_upstream_garbage_is_retried_then_a_502(case):
    raw, stream = GARBAGE[case]
    gw, mocks = _gateway(*(lambda m, p, b: MockResponse(200, raw) for _ in range(2)))
    body = orjson.dumps({**CHAT, "stream": stream})
    reply = await gw.handle("chat", body)
    assert reply.status == 502 and reply.stream is None
    assert orjson.loads(reply.body)["error"]["code"] == "upstream_failed"
    assert [len(m.requests) for m in mocks] == [1, 1]  # one try on each replica
    assert gw.in_flight == 0 and all(r.outstanding == 0 for r in gw.pool.replicas)


@pytest.mark.parametrize("stream", [False, True])
async def test_garbage_from_one_replica_is_answered_by_the_other(stream):
    good = GOOD_STREAM if stream else GOOD
    gw, mocks = _gateway(
        lambda m, p, b: MockResponse(200, b"[1,2,3]"), lambda m, p, b: MockResponse(200, good)
    )
    for _ in range(2):  # round robin: the garbage replica is tried first once
        reply = await gw.handle("chat", orjson.dumps({**CHAT, "stream": stream}))
        assert reply.status == 200
        assert b"fine" in (reply.body or b"".join([c async for c in reply.stream]))


async def test_an_endless_upstream_event_is_a_clean_502_not_buffered():
    def endless(m: str, p: str, b: bytes) -> MockResponse:
        return MockResponse(200, (b"data: " + b"z" * 65536 for _ in range(10_000)))

    gw, mocks = _gateway(endless, endless)
    t0 = time.perf_counter()
    reply = await gw.handle("chat", orjson.dumps({**CHAT, "stream": True}))
    assert reply.status == 502 and time.perf_counter() - t0 < 2.0


async def test_deep_json_to_an_http_replica_is_a_400_not_a_500():
    gw, mocks = _gateway(lambda m, p, b: MockResponse(200, GOOD))
    deep = orjson.dumps(CHAT)[:-1] + b',"x":' + b"[" * 300 + b"]" * 300 + b"}"
    reply = await gw.handle("chat", deep)
    assert reply.status == 400 and b"too_deep" in reply.body and not mocks[0].requests
