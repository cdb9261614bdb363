"""SimulatedEngine: costs from fixed parameters or ModelFits, determinism, time scaling."""

from __future__ import annotations

import time

import pytest

from wattserve.engines.base import complete
from wattserve.engines.simulated import SimulatedEngine
from wattserve.errors import ConfigError
from wattserve.types import ModelFit, Request


def _req(i: int = 0, max_tokens: int = 10, **kw) -> Request:
    return Request(id=f"r{i}", prompt="one two three four", max_tokens=max_tokens, **kw)


def test_fixed_parameters_cost_and_tokens():
    eng = SimulatedEngine(
        ttft_s=0.1, tpot_s=0.01, joules_per_token=2.0, joules_per_input_token=0.5, time_scale=0
    )
    runtime, energy = eng.cost(_req(max_tokens=11))
    assert runtime == pytest.approx(0.1 + 10 * 0.01)
    assert energy == pytest.approx(4 * 0.5 + 11 * 2.0)  # 4 prompt words estimated as input tokens
    assert eng.cost(Request(id="x", prompt="a", input_tokens=100, max_tokens=1)) == pytest.approx(
        (0.1, 50 + 2.0)
    )


async def test_stream_yields_one_chunk_per_token_with_usage():
    eng = SimulatedEngine(time_scale=0, output_len=4)
    c = await complete(eng, _req(max_tokens=10))
    assert c.ok and c.output_tokens == 4 and c.token_source == "engine"
    assert c.text == " tok" * 4 and len(c.chunk_t) == 4 and c.finish_reason == "stop"
    c2 = await complete(eng, _req(max_tokens=3))
    assert c2.output_tokens == 3 and c2.finish_reason == "length"
    c3 = await complete(
        eng, _req(max_tokens=10, ignore_eos=True)
    )  # ignore_eos -> exactly max_tokens
    assert c3.output_tokens == 10


async def test_time_scale_sleeps_on_schedule():
    eng = SimulatedEngine(ttft_s=0.2, tpot_s=0.05, time_scale=0.5)
    c = await complete(eng, _req(max_tokens=5))
    # ttft 0.1 s and 4 gaps of 0.025 s after scaling
    assert 0.09 <= c.ttft_s <= 0.3
    assert 0.09 + 0.09 <= c.e2e_s <= 0.5
    t0 = time.perf_counter()
    await complete(SimulatedEngine(ttft_s=5, tpot_s=5, time_scale=0), _req(max_tokens=50))
    assert time.perf_counter() - t0 < 0.5


def test_jitter_is_seeded_and_deterministic():
    a = SimulatedEngine(jitter=0.3, seed=7)
    b = SimulatedEngine(jitter=0.3, seed=7)
    c = SimulatedEngine(jitter=0.3, seed=8)
    costs_a = [a.cost(_req(i)) for i in range(5)]
    assert costs_a == [b.cost(_req(i)) for i in range(5)]
    assert costs_a != [c.cost(_req(i)) for i in range(5)]
    assert len({r for r, _ in costs_a}) == 5  # differs per request id


def test_costs_from_model_fits():
    pytest.importorskip("wattserve.fit")
    runtime = ModelFit(
        "m",
        "cpu",
        "runtime_s",
        "linear-interaction",
        ("a0_in", "a1_out", "a2_in_out"),
        (0.001, 0.02, 0.0),
    )
    energy = ModelFit(
        "m",
        "cpu",
        "energy_j",
        "linear-interaction",
        ("a0_in", "a1_out", "a2_in_out"),
        (0.1, 1.0, 0.001),
    )
    eng = SimulatedEngine(runtime_fit=runtime, energy_fit=energy, time_scale=0)
    req = Request(id="f", prompt="x", input_tokens=100, max_tokens=20)
    r, e = eng.cost(req)
    assert r == pytest.approx(0.001 * 100 + 0.02 * 20)
    assert e == pytest.approx(0.1 * 100 + 1.0 * 20 + 0.001 * 100 * 20)
    with pytest.raises(ConfigError):
        SimulatedEngine(runtime_fit=energy)
