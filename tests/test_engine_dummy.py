"""Dummy weights (``--load-format dummy``): bundled configs, the word tokenizer, the engine on
CPU with continuous batching, the replica command line; the CUDA path where a GPU exists."""

from __future__ import annotations

import asyncio
import os

import pytest

from wattserve.engines.dummy import (
    DUMMY_MODELS,
    MEASURED_MODELS,
    WordTokenizer,
    config_dict,
    parameter_count,
)
from wattserve.errors import ConfigError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# published sizes: SmolLM2-135M 134.5M, Gemma-3-270M 268M, Qwen2.5-0.5B 0.49B, Llama-3.2-1B 1.24B
SMOL = {"hidden_size": 576, "num_hidden_layers": 30, "num_key_value_heads": 3}
GEMMA = {"hidden_size": 640, "num_hidden_layers": 18, "head_dim": 256}
QWEN = {"hidden_size": 896, "num_hidden_layers": 24, "num_key_value_heads": 2}
LLAMA = {"hidden_size": 2048, "num_hidden_layers": 16, "rope_theta": 500000.0}
PUBLISHED = {
    "smollm2-135m": (134.5e6, SMOL),
    "gemma3-270m": (268.1e6, GEMMA),
    "qwen2.5-0.5b": (494.0e6, QWEN),
    "llama3.2-1b": (1235.8e6, LLAMA),
}


@pytest.mark.parametrize("name", MEASURED_MODELS)
def test_bundled_config_matches_published_size(name: str) -> None:
    want, fields = PUBLISHED[name]
    cfg = config_dict(name)
    for k, v in fields.items():
        assert cfg[k] == v, k
    n = parameter_count(name)
    assert abs(n - want) / want < 0.005, (name, n)


def test_unknown_dummy_model_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="smollm2-135m"):
        config_dict("gpt-17")
    from wattserve.engines.factory import create_engine

    with pytest.raises(ConfigError, match="bundled config"):
        create_engine("nope", load_format="dummy")
    assert set(MEASURED_MODELS) <= set(DUMMY_MODELS)


def test_word_tokenizer_round_trips_and_covers_the_vocabulary() -> None:
    tok = WordTokenizer(1000)
    assert tok.encode("alpha beta  gamma", add_special_tokens=False).__len__() == 3
    ids = [5, 999, 3, 42]
    assert tok.encode(tok.decode(ids), add_special_tokens=False) == ids
    assert tok.encode("x")[0] == tok.bos_token_id
    assert tok.decode([2, 7], skip_special_tokens=True) == " t7"
    assert all(3 <= i < 1000 for i in tok.encode("any words at all here", False))


def test_bad_device_and_load_format_are_config_errors() -> None:
    from wattserve.engines.local import LocalEngine, check_device

    assert check_device("CUDA:1") == "cuda:1"
    for bad in ("gpu", "cuda:x", "tpu:0"):
        with pytest.raises(ConfigError, match="device"):
            LocalEngine("tiny-llama", device=bad)
    with pytest.raises(ConfigError, match="load format"):
        LocalEngine("tiny-llama", load_format="random")
    with pytest.raises(ConfigError, match="memory fraction"):
        LocalEngine("tiny-llama", load_format="dummy", memory_fraction=1.5)


async def _run(engine, jobs: list[tuple[int, int]]) -> list[tuple[int, str | None, int]]:
    from wattserve.types import Request

    async def one(i: int, n_in: int, n_out: int) -> tuple[int, str | None, int]:
        toks, fin, usage = 0, None, None
        req = Request(
            id=f"r{i}",
            model="m",
            prompt=engine.make_prompt(n_in, seed=i),
            max_tokens=n_out,
            ignore_eos=True,
        )
        async for ch in engine.stream(req):
            toks += ch.tokens
            fin = ch.finish_reason or fin
            usage = ch.usage or usage
        assert usage is not None and usage.output_tokens == toks
        return toks, fin, usage.input_tokens

    return await asyncio.wait_for(
        asyncio.gather(*(one(i, a, b) for i, (a, b) in enumerate(jobs))), 60
    )


def _check_batched(engine, jobs: list[tuple[int, int]]) -> None:
    got = asyncio.run(_run(engine, jobs))
    assert [g[0] for g in got] == [b for _, b in jobs]
    assert all(g[1] == "length" for g in got)
    assert [g[2] for g in got] == [a + 1 for a, _ in jobs]  # the word prompt plus BOS
    assert engine.max_rows_seen >= 2  # requests shared decode steps
    assert engine.steps < sum(b for _, b in jobs)


def test_dummy_engine_on_cpu_batches_and_gives_the_requested_tokens() -> None:
    from wattserve.engines.local import LocalEngine

    engine = LocalEngine("tiny-llama", load_format="dummy", max_batch=4, dtype="float32")
    try:
        engine.load()
        facts = engine.facts()
        assert facts["weights"] == "dummy weights" and facts["device"] == "cpu"
        _check_batched(engine, [(5, 7), (12, 3), (3, 20), (9, 11), (1, 5), (70, 9)])
    finally:
        engine.close()


def test_replica_command_carries_device_format_and_memory_share() -> None:
    from wattserve.sweep.replicas import ReplicaSet, plan_replicas

    plan = plan_replicas(4, 8, pin=False, memory_utilization=0.8)
    rs = ReplicaSet("smollm2-135m", plan, "local", device="cuda:0", load_format="dummy")
    cmd = rs.command_for(0, 9000)
    assert cmd[cmd.index("--device") + 1] == "cuda:0"
    assert cmd[cmd.index("--load-format") + 1] == "dummy"
    assert float(cmd[cmd.index("--memory-fraction") + 1]) == pytest.approx(0.2)
    cpu = ReplicaSet("tiny-llama", plan_replicas(1, 1, pin=False), "local").command_for(0, 9)
    assert "--device" not in cpu and "--memory-fraction" not in cpu


@pytest.mark.gpu
def test_dummy_engine_on_cuda_keeps_the_batch_on_the_gpu() -> None:
    import torch

    from wattserve.engines.batch import DecodeBatch
    from wattserve.engines.local import LocalEngine

    engine = LocalEngine("smollm2-135m", load_format="dummy", device="cuda", max_batch=8)
    try:
        engine.load()
        assert engine.resolved_dtype == "bfloat16" and engine.attention == "sdpa"
        assert next(engine.model.parameters()).device.type == "cuda"
        _check_batched(engine, [(16, 9), (40, 4), (8, 30), (100, 12)])
        batch = DecodeBatch(engine.model)
        assert batch.device.type == "cuda" and batch.mask.device.type == "cuda"
    finally:
        engine.close()
    torch.cuda.empty_cache()


@pytest.mark.gpu
def test_nvml_meter_measures_gpu_work() -> None:
    import torch

    from wattserve.energy.nvml import NvmlMeter

    with NvmlMeter(devices=[0]) as meter:
        info = meter.info()
        assert info["driver"] and info["gpus"][0]["name"] and info["gpus"][0]["power_limit_w"]
        before = meter.read()
        x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        t_end = before.t_s + 2.0
        while meter.read().t_s < t_end:
            x = (x @ x).clamp_(-1, 1)
        torch.cuda.synchronize()
        after = meter.read()
    assert after.joules["gpu0"] - before.joules["gpu0"] > 10.0  # 2 s of matmuls: tens of joules
