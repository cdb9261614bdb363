"""The embedded transformers engine (smollm2-135m, 1 thread): real generation and batching.

All tests share the session-scoped ``local_engine`` fixture, so the model loads once.
Outputs are kept short to stay within the test-time budget.
"""

from __future__ import annotations

import asyncio

import pytest

from wattserve.engines.base import complete
from wattserve.engines.sequence import Sequence
from wattserve.types import Message, Request

pytestmark = pytest.mark.slow


def _chat(text: str, i: str = "r", **kw) -> Request:
    return Request(id=i, messages=(Message("user", text),), **kw)


async def test_answers_a_chat_question(local_engine):
    c = await complete(local_engine, _chat("What is the capital of France?", max_tokens=12))
    assert c.ok, c.error
    assert "Paris" in c.text
    assert c.finish_reason == "stop" and c.token_source == "engine"
    assert c.input_tokens == len(local_engine.prompt_ids(_chat("What is the capital of France?")))
    assert 2 <= c.output_tokens < 12


async def test_ignore_eos_gives_exact_lengths_and_one_token_per_chunk(local_engine):
    chunks = []
    req = Request(id="e", prompt="The", max_tokens=9, ignore_eos=True, endpoint="completions")
    c = await complete(local_engine, req, on_chunk=chunks.append)
    assert c.output_tokens == 9 and c.finish_reason == "length"
    assert sum(ch.tokens for ch in chunks) == 9 and all(ch.tokens <= 1 for ch in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 9
    assert chunks[-1].usage.input_tokens == 1 and chunks[-1].usage.source == "engine"


async def test_stop_string_cuts_the_output(local_engine):
    def req(**kw) -> Request:
        return Request(
            id="s",
            prompt="Monday, Tuesday, Wednesday,",
            max_tokens=10,
            endpoint="completions",
            **kw,
        )

    base = await complete(local_engine, req(ignore_eos=True))
    words = base.text.split()
    assert len(words) >= 3
    stop = words[2]
    cut = await complete(local_engine, req(stop=(stop,)))
    assert cut.finish_reason == "stop"
    assert cut.text == base.text[: base.text.index(stop)] and stop not in cut.text


async def test_seeded_sampling_is_reproducible(local_engine):
    def req(seed: int) -> Request:
        return Request(
            id=f"s{seed}",
            prompt="Once upon a time",
            max_tokens=8,
            temperature=1.0,
            seed=seed,
            ignore_eos=True,
            endpoint="completions",
        )

    a1, a2, b = await asyncio.gather(*(complete(local_engine, req(s)) for s in (1, 1, 2)))
    assert a1.text == a2.text
    assert a1.text != b.text


async def test_continuous_batching_joins_and_leaves_mid_flight(local_engine):
    """A short request sent while a long one runs joins its batch and finishes first;
    a greedy answer is the same alone and batched."""
    long_req = Request(
        id="long", prompt="The history of", max_tokens=16, ignore_eos=True, endpoint="completions"
    )
    short_req = Request(
        id="short", prompt="Hi", max_tokens=5, ignore_eos=True, endpoint="completions"
    )
    alone = await complete(local_engine, short_req)
    steps0 = local_engine.steps

    started = asyncio.Event()
    seen = 0

    def on_chunk(_chunk) -> None:
        nonlocal seen
        seen += 1
        if seen == 3:
            started.set()

    long_task = asyncio.create_task(complete(local_engine, long_req, on_chunk=on_chunk))
    await asyncio.wait_for(started.wait(), 60)
    short = await complete(local_engine, short_req)
    long = await long_task
    assert long.ok and short.ok and long.output_tokens == 16
    assert short.end_s < long.end_s  # it left the batch while the long one kept going
    assert short.first_token_s > long.first_token_s
    assert short.text == alone.text
    # 16 + 5 tokens took fewer decode steps than serving them one after another
    assert local_engine.steps - steps0 < 16 + 5 - 2
    assert local_engine.max_rows_seen >= 2


async def test_consumer_that_stops_early_frees_its_row(local_engine):
    req = Request(id="x", prompt="Hello", max_tokens=200, ignore_eos=True, endpoint="completions")
    n = 0
    async for chunk in local_engine.stream(req):
        n += chunk.tokens
        if n >= 3:
            break
    c = await complete(
        local_engine,
        Request(id="y", prompt="Hi", max_tokens=3, ignore_eos=True, endpoint="completions"),
    )
    assert c.ok and c.output_tokens == 3


def test_make_prompt_has_exact_token_counts(local_engine):
    for n in (1, 7, 64, 200):
        text = local_engine.make_prompt(n, seed=n)
        assert local_engine.count_tokens(text) == n
    assert local_engine.make_prompt(32, seed=5) == local_engine.make_prompt(32, seed=5)
    assert local_engine.make_prompt(32, seed=5) != local_engine.make_prompt(32, seed=6)


def test_incremental_detokenisation_keeps_multibyte_characters(local_engine):
    tok = local_engine.tokenizer
    text = "Grüße aus 日本 🎉 — naïve café"
    ids = tok.encode(text, add_special_tokens=False)
    out: list[str] = []
    seq = Sequence(
        "d",
        [1],
        max_tokens=len(ids),
        temperature=0,
        top_p=1,
        seed=None,
        stop=(),
        ignore_eos=True,
        eos_ids=frozenset(),
        deliver=out.append,
    )
    for t in ids:
        e = seq.accept(t, tok)
        assert "\ufffd" not in e.text
        out.append(e.text)
    assert "".join(out) == text and e.finish_reason == "length"
