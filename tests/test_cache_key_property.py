"""Cache keys as properties: two bodies share a key exactly when they are equal after the
documented normalisations (``wattserve.cache.keys``), and, through the real gateway, chat
requests differing only in a message's ``name``, ``tool_calls`` or ``tool_call_id`` never get
each other's answer."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_serve_support import config, gateway
from wattserve.cache.keys import make_key
from wattserve.types import Request

REQ = Request(id="p", endpoint="chat", max_tokens=256)  # the body path reads only these two
TOP_FIELDS = [
    "messages",
    "prompt",
    "tools",
    "tool_choice",
    "response_format",
    "logit_bias",
    "n",
    "seed",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "logprobs",
    "top_logprobs",
    "parallel_tool_calls",
    "stream_options",
    "ignore_eos",
    "functions",
    "some_unknown_field",
]
MESSAGE_FIELDS = ["role", "content", "name", "tool_calls", "tool_call_id", "refusal", "x_extra"]
IGNORED = {"model", "stream", "user", "metadata", "store", "service_tier"}
USAGE_OPTIONS = {"include_usage", "continuous_usage_stats"}


def key(body: dict[str, Any]) -> str:
    return make_key("tenant", "group", REQ, body)


# ---------------------------------------------------------------- the specification
def same(a: Any, b: Any) -> bool:
    """JSON equality by value: 1 == 1.0, but a bool is not a number and a string is not either."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return False


def normalised(body: dict[str, Any]) -> dict[str, Any]:
    """The documented normalisations, written out independently of the implementation."""
    out: dict[str, Any] = {}
    for k, v in body.items():
        if v is None or k in IGNORED:
            continue
        if k == "stop":
            v = [v] if isinstance(v, str) else v
            if isinstance(v, list) and not v:
                continue
        if k == "stream_options" and isinstance(v, dict):
            v = {o: x for o, x in v.items() if o not in USAGE_OPTIONS}
            if not v:
                continue
        if k == "messages" and isinstance(v, list):
            v = [
                {f: x for f, x in m.items() if x is not None} if isinstance(m, dict) else m
                for m in v
            ]
        out[k] = v
    return out


# ---------------------------------------------------------------- strategies
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def near(draw: st.DrawFn, v: Any) -> Any:
    """A value close to ``v``: the edges of the normalisations (1 vs 1.0 vs true vs "1")."""
    options: list[Any] = [v, None, [v], str(v)]
    if isinstance(v, bool):
        options.append(int(v))
    elif isinstance(v, int) and float(v) == v:
        options += [float(v), v + 1, bool(v)]
    elif isinstance(v, float):
        options += [int(v) if v.is_integer() else math.nextafter(v, math.inf)]
    elif isinstance(v, list) and v:
        options += [v[0], v[::-1], v[:-1]]
    elif isinstance(v, dict) and v:
        first = next(iter(v))
        options += [{k: x for k, x in v.items() if k != first}, {**v, first: None}]
    elif isinstance(v, float):
        options.append(repr(v))
    if isinstance(v, list) and len(v) > 1:
        options.append(v[::-1])
    return draw(st.sampled_from(options) | st.sampled_from(options) | values)


messages = st.lists(
    st.dictionaries(st.sampled_from(MESSAGE_FIELDS), values, max_size=4).map(
        lambda m: {"role": "user", "content": "hi", **m}
    ),
    min_size=1,
    max_size=3,
)
numbers = st.integers(-3, 3) | st.floats(-3, 3)
# a field's plausible values first (they meet the normalisations' edges), then anything
FIELD_VALUES: dict[str, Any] = {
    "messages": messages,
    "stop": st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=3) | values,
    "prompt": st.text(max_size=6) | st.lists(st.text(max_size=3), max_size=2) | values,
    "stream_options": st.dictionaries(
        st.sampled_from([*USAGE_OPTIONS, "other"]), st.booleans(), max_size=2
    )
    | values,
    **dict.fromkeys(
        ("temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty", "n"),
        numbers | values,
    ),
}


def field_values(field: str) -> Any:
    return FIELD_VALUES.get(field, values)


bodies = st.fixed_dictionaries(
    {"model": st.just("m"), "messages": messages},
    optional={f: field_values(f) for f in TOP_FIELDS if f != "messages"},
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- properties
@SETTINGS
@given(base=bodies, field=st.sampled_from(TOP_FIELDS), data=st.data())
def test_a_top_level_field_shares_a_key_only_when_equal_after_normalisation(base, field, data):
    v1 = data.draw(field_values(field), label="v1")
    v2 = data.draw(near(v1), label="v2")
    a, b = {**base, field: v1}, {**base, field: v2}
    assert (key(a) == key(b)) is same(normalised(a), normalised(b))


@SETTINGS
@given(base=bodies, field=st.sampled_from(MESSAGE_FIELDS), data=st.data())
def test_a_message_field_shares_a_key_only_when_equal_after_normalisation(base, field, data):
    i = data.draw(st.integers(0, len(base["messages"]) - 1), label="message")
    v1 = data.draw(values, label="v1")
    v2 = data.draw(near(v1), label="v2")
    a = {**base, "messages": [dict(m) for m in base["messages"]]}
    b = {**base, "messages": [dict(m) for m in base["messages"]]}
    a["messages"][i][field] = v1
    b["messages"][i][field] = v2
    assert (key(a) == key(b)) is same(normalised(a), normalised(b))


@st.composite
def reordered(draw: st.DrawFn, v: Any) -> Any:
    """``v`` with every object's keys shuffled and every number in another spelling."""
    if isinstance(v, dict):
        order = draw(st.permutations(list(v)))
        return {k: draw(reordered(v[k])) for k in order}
    if isinstance(v, list):
        return [draw(reordered(x)) for x in v]
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and float(v) == v and draw(st.booleans()):
        return float(v)
    if isinstance(v, float) and v.is_integer() and draw(st.booleans()):
        return int(v)
    return v


@st.composite
def equivalent(draw: st.DrawFn, body: dict[str, Any]) -> dict[str, Any]:
    """A body the documentation says answers like ``body``."""
    twin = draw(reordered(body))
    twin["messages"] = [
        {**m, "name": None}
        if isinstance(m, dict) and "name" not in m and draw(st.booleans())
        else m
        for m in twin["messages"]
    ]
    stop = twin.get("stop")
    if isinstance(stop, str) and draw(st.booleans()):
        twin["stop"] = [stop]
    elif isinstance(stop, list) and len(stop) == 1 and isinstance(stop[0], str):
        twin["stop"] = draw(st.sampled_from([stop[0], stop]))
    elif stop is None:
        twin["stop"] = draw(st.sampled_from([None, []]))
    for k in ("seed", "tools", "response_format"):
        if k not in twin and draw(st.booleans()):
            twin[k] = None
    twin.update(
        draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "stream": st.booleans(),
                    "user": st.text(max_size=5),
                    "metadata": st.dictionaries(st.text(max_size=3), st.text(max_size=3)),
                    "store": st.booleans(),
                    "service_tier": st.sampled_from(["auto", "default", "flex"]),
                },
            )
        )
    )
    if "stream_options" not in twin and draw(st.booleans()):
        twin["stream_options"] = {"include_usage": draw(st.booleans())}
    twin["model"] = draw(st.sampled_from(["m", "m-replica-7"]))  # the group passed stands for it
    return twin


@SETTINGS
@given(base=bodies, data=st.data())
def test_bodies_equal_after_normalisation_always_share_a_key(base, data):
    twin = data.draw(equivalent(base))
    assert same(normalised(base), normalised(twin))  # the strategy keeps to the specification
    assert key(base) == key(twin)


@SETTINGS
@given(a=bodies, b=bodies)
def test_independent_bodies_share_a_key_only_when_equal(a, b):
    assert (key(a) == key(b)) is same(normalised(a), normalised(b))


@SETTINGS
@given(
    stop=st.lists(st.text(max_size=3), min_size=1, max_size=4),
    data=st.data(),
)
def test_stop_strings_keep_their_order_and_a_lone_string_is_its_list(stop, data):
    other = data.draw(st.permutations(stop))
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert (key({**base, "stop": stop}) == key({**base, "stop": other})) is (stop == other)
    if len(stop) == 1:
        assert key({**base, "stop": stop}) == key({**base, "stop": stop[0]})


def test_the_keys_scope_tenant_model_group_endpoint_and_resolved_max_tokens():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    k = make_key("t", "g", REQ, body)
    assert k != make_key("u", "g", REQ, body)
    assert k != make_key("t", "h", REQ, body)
    assert k != make_key("t", "g", Request(id="p", endpoint="completions", max_tokens=256), body)
    assert k != make_key("t", "g", Request(id="p", endpoint="chat", max_tokens=257), body)


# ---------------------------------------------------------------- through the gateway
@contextlib.contextmanager
def echo_replica() -> Iterator[str]:
    """An OpenAI-compatible replica whose answer is the request's last message, verbatim."""
    import asyncio

    from aiohttp import web

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "echo", "object": "model"}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        text = orjson.dumps(body["messages"][-1], option=orjson.OPT_SORT_KEYS).decode()
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        if not body.get("stream"):
            msg = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": msg, "finish_reason": "stop"}
            return web.json_response(
                {
                    "id": "e",
                    "object": "chat.completion",
                    "model": "echo",
                    "choices": [choice],
                    "usage": usage,
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for choices, extra in (
            ([{"index": 0, "delta": {"content": text}, "finish_reason": None}], {}),
            ([{"index": 0, "delta": {}, "finish_reason": "stop"}], {}),
            ([], {"usage": usage}),
        ):
            event = {"id": "e", "object": "chat.completion.chunk", "choices": choices, **extra}
            await resp.write(b"data: " + orjson.dumps(event) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


@pytest.fixture(scope="module")
def echo_gateway() -> Iterator[Any]:
    with echo_replica() as url, gateway(config([url])) as gw:
        yield gw


CALL = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
CASES = {
    "name": (
        [{"role": "user", "content": "who am I?", "name": "alice"}],
        [{"role": "user", "content": "who am I?", "name": "bob"}],
    ),
    "tool_calls": (
        [
            {"role": "user", "content": "add"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
        ],
        [
            {"role": "user", "content": "add"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{**CALL, "function": {"name": "add", "arguments": '{"a": 2}'}}],
            },
        ],
    ),
    "tool_call_id": (
        [
            {"role": "user", "content": "add"},
            {"role": "tool", "content": "3", "tool_call_id": "call_1"},
        ],
        [
            {"role": "user", "content": "add"},
            {"role": "tool", "content": "3", "tool_call_id": "call_2"},
        ],
    ),
}


def _ask(gw: Any, msgs: list[dict[str, Any]], stream: bool) -> tuple[str, str]:
    body = {"model": "tiny", "messages": msgs, "temperature": 0, "stream": stream}
    r = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=10)
    assert r.status_code == 200, r.text
    if not stream:
        return r.headers["x-wattserve-cache"], r.json()["choices"][0]["message"]["content"]
    text = ""
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            for c in orjson.loads(line[6:])["choices"]:
                text += c["delta"].get("content") or ""
    return r.headers["x-wattserve-cache"], text


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("field", list(CASES))
def test_messages_differing_only_in_name_or_tool_fields_get_their_own_answer(
    echo_gateway, field, stream
):
    first, second = CASES[field]
    tag = {"role": "system", "content": f"{field}-{stream}"}  # each case its own cache entries
    first, second = [tag, *first], [tag, *second]
    assert _ask(echo_gateway, first, stream) == (
        "miss",
        orjson.dumps(first[-1], option=orjson.OPT_SORT_KEYS).decode(),
    )
    assert _ask(echo_gateway, first, stream)[0] == "hit"  # the shape is cached at all
    cache, text = _ask(echo_gateway, second, stream)
    assert cache == "miss"
    assert orjson.loads(text) == second[-1]  # its own answer, not the first request's
    assert _ask(echo_gateway, second, stream) == ("hit", text)
