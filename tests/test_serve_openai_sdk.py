"""The official openai SDK, unchanged except base_url, through the gateway."""

from __future__ import annotations

import openai
import pytest

from test_serve_support import FULL8, config, gateway, mock_replicas


@pytest.fixture(scope="module")
def gw():
    with mock_replicas(2) as reps:
        with gateway(config([r.url for r in reps])) as srv:
            yield srv


@pytest.fixture(scope="module")
def client(gw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=10)


def test_chat_non_streaming(client):
    r = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=8, temperature=0.7
    )
    assert r.choices[0].message.content == FULL8
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == 1 and r.usage.completion_tokens == 8
    extra = r.usage.model_extra
    assert extra["cache_hit"] is False
    assert extra["energy_j"] is not None and extra["energy_j"] >= 0
    assert extra["energy_source"] == "modeled"


def test_chat_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "s"}],
        stream=True,
        stream_options={"include_usage": True},
        temperature=0.7,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == FULL8
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == 8
    assert last.usage.model_extra["cache_hit"] is False


def test_completions_both_ways(client):
    r = client.completions.create(model="tiny", prompt="once upon", max_tokens=8, temperature=0.5)
    assert r.choices[0].text == FULL8
    s = client.completions.create(
        model="tiny", prompt="once upon", max_tokens=8, stream=True, temperature=0.5
    )
    assert "".join(c.choices[0].text for c in s if c.choices) == FULL8


def test_repeat_is_served_from_cache_in_both_shapes(client):
    msgs = [{"role": "user", "content": "cache me"}]
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=msgs, temperature=0
    )
    first = raw.parse()
    assert raw.headers["x-wattserve-cache"] == "miss"
    assert raw.headers["x-wattserve-replica"].startswith("tiny/url-")
    assert first.usage.model_extra["cache_hit"] is False
    again = client.chat.completions.with_raw_response.create(
        model="tiny", messages=msgs, temperature=0
    )
    assert again.headers["x-wattserve-cache"] == "hit"
    hit = again.parse()
    assert hit.usage.model_extra["cache_hit"] is True and hit.usage.model_extra["energy_j"] == 0
    assert hit.choices[0].message.content == first.choices[0].message.content
    # the cached answer re-streams for a streaming client
    s = client.chat.completions.create(
        model="tiny",
        messages=msgs,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(s)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == first.choices[0].message.content
    )
    assert chunks[-1].usage.model_extra["cache_hit"] is True


def test_models_and_errors_through_sdk(client):
    assert [m.id for m in client.models.list()] == ["tiny"]
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "x"}], temperature=7
        )


def test_demo_workload_through_the_sdk(gw):
    from wattserve.serve.demo import run_workload, workload

    items = workload(16, seed=0)
    distinct = {(i["prompt"], i["chat"]) for i in items}
    r = run_workload(gw.url + "/v1", "tiny", n=16, concurrency=1, max_tokens=8, seed=0)
    assert r.ok == 16 and not r.errors
    assert r.hits >= 16 - len(distinct) > 0  # every repeat of an earlier request is a cache hit
    assert r.per_model == {"tiny": 16}
    assert r.per_replica["cache"] == r.hits
    assert r.stats["cache"]["hits"] >= r.hits and r.energy_source == "modeled"


def test_example_configs_are_valid():
    from pathlib import Path

    from wattserve.serve.config import load_config

    examples = sorted((Path(__file__).resolve().parents[1] / "examples").glob("serve*.yaml"))
    assert len(examples) >= 3
    for path in examples:
        cfg = load_config(path)
        assert cfg.models and all(m.replicas for m in cfg.models)
