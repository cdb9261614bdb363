"""/metrics token and latency accounting: TPOT and ITL histograms beside TTFT and E2E, and
prompt tokens estimated (and labelled) for a stream whose server sends no usage."""

from __future__ import annotations

import asyncio
import json

from wattserve.engines.base import EngineBase
from wattserve.serve.ledger import estimate_prompt_tokens
from wattserve.serve.pool import LeastOutstanding
from wattserve.types import Chunk, Request, Usage

PROMPT = "word " * 40  # 200 characters


class SilentEngine(EngineBase):
    """Streams 5 tokens 10 ms apart; ``usage``: whether its last chunk counts them."""

    def __init__(self, usage: bool) -> None:
        self.usage = usage

    async def stream(self, request: Request):
        for i in range(5):
            await asyncio.sleep(0.01)
            yield Chunk(text=f"t{i} ", t_s=0.0, tokens=1)
        yield Chunk(
            text="", t_s=0.0, finish_reason="stop", usage=Usage(7, 5) if self.usage else None
        )


def _gateway(engine):
    from wattserve.serve.metrics import GatewayMetrics
    from wattserve.serve.pipeline import Gateway
    from wattserve.serve.pool import ReplicaPool
    from wattserve.serve.replica import EngineReplica

    pool = ReplicaPool([EngineReplica("m/e0", "m", engine, engine_model="m")], LeastOutstanding())
    return Gateway(pool, metrics=GatewayMetrics())


def _series(text: str, name: str) -> float:
    line = next(ln for ln in text.splitlines() if ln.startswith(name))
    return float(line.rsplit(" ", 1)[1])


async def _ask(gw) -> bytes:
    body = {
        "model": "m",
        "prompt": PROMPT,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    reply = await gw.handle("completions", json.dumps(body).encode())
    assert reply.status == 200
    return b"".join([c async for c in reply.stream])


async def test_tpot_and_itl_histograms_and_estimated_prompt_tokens():
    gw = _gateway(SilentEngine(usage=False))
    out = await _ask(gw)
    usage = json.loads(out.split(b"data: ")[-2])["usage"]
    want = estimate_prompt_tokens(Request(id="x", prompt=PROMPT))
    assert want == 50
    assert usage["prompt_tokens"] == want and usage["prompt_tokens_source"] == "estimated"
    text = gw.metrics.render().decode()
    assert _series(text, 'wattserve_tpot_seconds_count{model="m"}') == 1
    assert 0.005 < _series(text, 'wattserve_tpot_seconds_sum{model="m"}') < 0.5
    assert _series(text, 'wattserve_itl_seconds_count{model="m"}') == 4  # 5 tokens, 4 gaps
    assert 0.02 < _series(text, 'wattserve_itl_seconds_sum{model="m"}') < 2.0
    assert _series(text, 'wattserve_tokens_total{kind="prompt",model="m"}') == want
    assert _series(text, 'wattserve_tokens_estimated_total{kind="prompt",model="m"}') == want


async def test_prompt_tokens_the_server_counted_are_not_estimated():
    gw = _gateway(SilentEngine(usage=True))
    out = await _ask(gw)
    usage = json.loads(out.split(b"data: ")[-2])["usage"]
    assert usage["prompt_tokens"] == 7 and "prompt_tokens_source" not in usage
    text = gw.metrics.render().decode()
    assert "wattserve_tokens_estimated_total{" not in text
