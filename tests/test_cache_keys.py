"""Canonical keys: equal requests hit, any output-changing parameter misses, tenants isolated."""

from __future__ import annotations

import dataclasses

import pytest

from wattserve.cache import ResponseCache, is_cacheable, make_key
from wattserve.types import Message, Request

BASE = Request(
    id="r1",
    model="small",
    messages=(Message("system", "be brief"), Message("user", "What is 2+2?")),
    max_tokens=32,
    temperature=0.0,
    stop=("\n", "END"),
    extra={"presence_penalty": 0.0, "logit_bias": {"5": 1}},
)


def test_equal_requests_share_a_key_whatever_their_bookkeeping():
    twin = dataclasses.replace(
        BASE,
        id="other",
        arrival_s=5.0,
        stream=False,
        deadline_s=1.0,
        input_tokens=12,
        model="small-replica-2",
        temperature=0,
        extra={"logit_bias": {"5": 1}, "presence_penalty": 0},
    )
    assert make_key("t", "g", BASE) == make_key("t", "g", twin)


@pytest.mark.parametrize(
    "change",
    [
        {"messages": (Message("system", "be brief"), Message("user", "What is 2+3?"))},
        {"messages": (Message("user", "be brief"), Message("user", "What is 2+2?"))},
        {"messages": None, "prompt": "be brief\nWhat is 2+2?"},
        {"max_tokens": 33},
        {"temperature": 0.7},
        {"top_p": 0.9},
        {"seed": 1},
        {"stop": ("\n",)},
        {"stop": ("END", "\n")},  # engines may check stop strings in order
        {"ignore_eos": True},
        {"endpoint": "completions"},
        {"extra": {"presence_penalty": 0.5, "logit_bias": {"5": 1}}},
        {"extra": {"presence_penalty": 0.0, "logit_bias": {"5": 2}}},
        {"extra": {"presence_penalty": 0.0, "logit_bias": {"5": 1}, "n": 2}},
    ],
)
def test_any_output_changing_parameter_changes_the_key(change):
    assert make_key("t", "g", BASE) != make_key("t", "g", dataclasses.replace(BASE, **change))


def test_tenants_and_model_groups_never_share_entries():
    cache = ResponseCache("lru", capacity_entries=10)
    cache.put(make_key("alice", "g", BASE), "alice's answer")
    assert cache.get(make_key("bob", "g", BASE)) is None
    assert cache.get(make_key("alice", "other-group", BASE)) is None
    assert cache.get(make_key("alice", "g", BASE)) == "alice's answer"
    # a tenant name cannot be crafted to collide with another tenant + group
    assert make_key("a", "bg", BASE) != make_key("ab", "g", BASE)


def test_only_deterministic_requests_are_cacheable_by_default():
    assert is_cacheable(BASE)
    hot = dataclasses.replace(BASE, temperature=0.8)
    assert not is_cacheable(hot)
    assert not is_cacheable(hot, cache_sampled=True)  # sampled without a seed: never
    assert is_cacheable(dataclasses.replace(hot, seed=3), cache_sampled=True)


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        "ünïcödé 漢字 🎉",
        'ctl \x00\x01\x1f\x7f \b\t\n\f\r " \\ / \u2028\u2029',
        "\ud800 lone surrogate",
    ],
)
@pytest.mark.parametrize(
    "extra",
    [{}, {"n": [1, 2.0, None, True], "logit_bias": {"50256": -100, "a": 1.5}}, {"big": 2**70}],
)
def test_keys_are_stable_whichever_serialiser_writes_them(text, extra):
    from wattserve.cache import keys

    request = Request(
        id="1", messages=(Message("user", text),), top_p=0.9, stop=("b", "a"), extra=extra
    )
    key = keys.make_key("tenant", "group", request)
    assert len(key) == 64 and key == keys.make_key("tenant", "group", request)
    assert key != keys.make_key("tenant", "group", dataclasses.replace(request, top_p=0.8))


@pytest.mark.parametrize(
    "a,b",
    [
        (float("nan"), None),  # orjson would write NaN as null
        (float("inf"), None),
        (float("inf"), float("-inf")),
        (float("inf"), "Infinity"),
        (2**70, float(2**70) + 2**20),
        (0.5, "0.5"),
        (True, 1),
        ("\ud800", "\ufffd"),
    ],
)
def test_values_the_fast_serialiser_refuses_still_get_distinct_keys(a, b):
    ka = make_key("t", "g", dataclasses.replace(BASE, extra={"x": a}))
    kb = make_key("t", "g", dataclasses.replace(BASE, extra={"x": b}))
    assert ka != kb


def test_numbers_compare_by_value():
    assert make_key("t", "g", dataclasses.replace(BASE, extra={"x": 2**70})) == make_key(
        "t", "g", dataclasses.replace(BASE, extra={"x": float(2**70)})
    )
    assert make_key("t", "g", dataclasses.replace(BASE, extra={"x": [1, -0.0]})) == make_key(
        "t", "g", dataclasses.replace(BASE, extra={"x": [1.0, 0]})
    )


@pytest.mark.parametrize(
    "extra,cacheable",
    [
        ({}, True),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, False),
        ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none"}, True),
        ({"tools": []}, True),
        ({"functions": [{"name": "f"}]}, False),
        ({"logprobs": True, "top_logprobs": 2}, False),
        ({"logprobs": False}, True),
        ({"logprobs": 0}, False),  # completions: 0 still returns the chosen token's logprob
        ({"modalities": ["text", "audio"]}, False),
        ({"response_format": {"type": "json_object"}}, True),
    ],
)
def test_answers_the_cache_cannot_hold_are_not_cacheable(extra, cacheable):
    assert is_cacheable(dataclasses.replace(BASE, extra=extra)) is cacheable


def test_body_keys_resolve_the_gateways_max_tokens_default():
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0}
    # the Request a gateway with a default of 256 (a) or 512 (b) parses from ``body``
    a = Request(id="1", model="m", messages=(Message("user", "x"),), max_tokens=256)
    b = dataclasses.replace(a, max_tokens=512)
    assert make_key("t", "m", a, body) != make_key("t", "m", b, body)
    # a body key never equals a Request key of the same request
    assert make_key("t", "m", a, body) != make_key("t", "m", a)
