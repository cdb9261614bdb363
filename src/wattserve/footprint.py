"""Model memory footprint from a ``config.json``: parameters, weight bytes, KV cache, replicas.

Works offline from a local ``config.json`` (file or model directory), a bundled example
config (``wattserve footprint --list``), a GGUF file (metadata and exact tensor sizes), or an
HF config dict/object. Counting rules, per decoder layer:

* attention, MHA/GQA/MQA: ``q = h*H*d``, ``k = v = h*K*d``, ``o = H*d*h`` (+ biases where the
  architecture has them: Qwen2 q/k/v, GPT-2 / GPT-BigCode everything), Gemma-3 q/k norms;
* attention, MLA (DeepSeek-V2): ``q`` (or ``q_a``/``q_b`` low-rank), ``kv_a = h*(r+d_rope)``,
  ``kv_b = r*H*(d_nope+d_v)``, ``o = H*d_v*h`` and the low-rank norms;
* MLP: gated (3 matrices) for Llama/Qwen/Gemma/DeepSeek, 2 matrices + biases for GPT-2 style;
  MoE layers count every expert (``params``) and the routed ``top-k`` plus shared experts
  (``active_params``).

KV cache per token and layer: ``2*K*d`` elements for MHA/GQA/MQA and ``r + d_rope`` for MLA
(the compressed latent plus the shared RoPE key, as vLLM and SGLang cache it). Sliding-window
layers (Gemma-3) hold at most ``window`` tokens. Quantised weight formats count every parameter
at the format's bits per weight (block scales included for GGUF formats); a GGUF file gives
its exact tensor bytes instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from wattserve.errors import ConfigError
from wattserve.gguf_header import config_from_gguf

GIB = 1024**3

# bits per weight, block scales included where the format stores them with the weights
WEIGHT_BITS: dict[str, float] = {
    "fp32": 32,
    "float32": 32,
    "fp16": 16,
    "float16": 16,
    "bf16": 16,
    "bfloat16": 16,
    "fp8": 8,
    "int8": 8,
    "int4": 4,
    "4bit": 4,
    "nf4": 4,
    "q8_0": 8.5,
    "q4_0": 4.5,
    "q4_1": 5.0,
    "q5_0": 5.5,
    "q5_1": 6.0,
}
KV_BYTES: dict[str, float] = {
    "fp32": 4,
    "float32": 4,
    "fp16": 2,
    "float16": 2,
    "bf16": 2,
    "bfloat16": 2,
    "fp8": 1,
    "int8": 1,
    "q8_0": 34 / 32,
    "q4_0": 18 / 32,
}
# bundled example configs (src/wattserve/data/configs/<name>.json) and names they answer to
ALIASES: dict[str, str] = {
    "huggingfacetb/smollm2-135m": "smollm2-135m",
    "huggingfacetb/smollm2-135m-instruct": "smollm2-135m",
    "smollm2-135m-instruct": "smollm2-135m",
    "smollm2": "smollm2-135m",
    "qwen/qwen2-0.5b": "qwen2-0.5b",
    "qwen/qwen2-0.5b-instruct": "qwen2-0.5b",
    "google/gemma-3-270m": "gemma-3-270m",
    "gemma3-270m": "gemma-3-270m",
    "google/gemma-3-270m-it": "gemma-3-270m",
    "deepseek-ai/deepseek-v2-lite": "deepseek-v2-lite",
    "deepseek-ai/deepseek-v2-lite-chat": "deepseek-v2-lite",
    "openai-community/gpt2": "gpt2",
    "bigcode/gpt_bigcode-santacoder": "santacoder",
}


@dataclass(frozen=True, slots=True)
class Footprint:
    """Memory footprint of one model at one weight format and KV-cache dtype."""

    model: str
    model_type: str
    attention: str  # "mha" | "gqa" | "mqa" | "mla"
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    params: int
    active_params: int
    weight_dtype: str
    weight_bytes: int
    kv_dtype: str
    kv_elements_per_token_layer: int  # per full-attention layer
    kv_bytes_per_token: float  # all layers, no window applied
    sliding_window: int | None = None
    windowed_layers: int = 0
    source: str = "config"  # "config" | "gguf" | "bundled:<name>"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def kv_bytes(self, context_tokens: int, concurrency: int = 1) -> float:
        """KV-cache bytes for ``concurrency`` sequences of ``context_tokens`` each."""
        per_layer = self.kv_elements_per_token_layer * KV_BYTES[self.kv_dtype]
        full = self.num_layers - self.windowed_layers
        held = full * context_tokens
        if self.windowed_layers:
            held += self.windowed_layers * min(
                context_tokens, self.sliding_window or context_tokens
            )
        return per_layer * held * concurrency

    def replica_bytes(
        self, context_tokens: int, concurrency: int = 1, overhead_bytes: float = 0
    ) -> float:
        return self.weight_bytes + self.kv_bytes(context_tokens, concurrency) + overhead_bytes

    def replicas_fit(
        self,
        device_bytes: float,
        context_tokens: int,
        concurrency: int = 1,
        reserve_fraction: float = 0.1,
        overhead_bytes: float = 0,
    ) -> int:
        """Replicas (each serving ``concurrency`` sequences of ``context_tokens``) that fit."""
        if not 0 <= reserve_fraction < 1:
            raise ConfigError(f"reserve fraction must be in [0, 1), got {reserve_fraction}")
        usable = device_bytes * (1 - reserve_fraction)
        return max(
            0, math.floor(usable / self.replica_bytes(context_tokens, concurrency, overhead_bytes))
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def bundled_configs() -> list[str]:
    """Names of the example configs shipped with wattserve."""
    root = resources.files("wattserve") / "data" / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def _bundled(name: str) -> dict[str, Any] | None:
    key = ALIASES.get(name.lower(), name.lower())
    path = resources.files("wattserve") / "data" / "configs" / f"{key}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def load_config(name_or_path: Any) -> tuple[dict[str, Any], str, str]:
    """(config dict, display name, source) for a path, bundled name, dict or HF config object."""
    if isinstance(name_or_path, Mapping):
        cfg = dict(name_or_path)
        return cfg, str(cfg.get("_name_or_path") or cfg.get("model_type", "model")), "config"
    if hasattr(name_or_path, "to_dict"):  # transformers PretrainedConfig
        cfg = name_or_path.to_dict()
        return cfg, str(cfg.get("_name_or_path") or cfg.get("model_type", "model")), "config"
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        path = path / "config.json"
    if path.is_file():
        if path.suffix == ".gguf":
            return {}, path.name, "gguf"
        try:
            return json.loads(path.read_text()), text, "config"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read model config {path}: {exc}") from None
    bundled = _bundled(text)
    if bundled is not None:
        return bundled, text, f"bundled:{ALIASES.get(text.lower(), text.lower())}"
    raise ConfigError(
        f"no config.json for {text!r}: give a local config.json, a model directory, a .gguf file, "
        f"or one of the bundled examples: {', '.join(bundled_configs())}"
    )


def _get(cfg: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if cfg.get(n) is not None:
            return cfg[n]
    return default


def _attention_kind(cfg: Mapping[str, Any], heads: int, kv_heads: int) -> str:
    if cfg.get("kv_lora_rank"):
        return "mla"
    if kv_heads == 1 and heads > 1:
        return "mqa"
    return "gqa" if kv_heads < heads else "mha"


def _count_params(cfg: Mapping[str, Any]) -> tuple[int, int, dict[str, Any]]:
    """(total params, active params per token, shape facts) from an HF config dict."""
    mt = str(cfg.get("model_type", ""))
    h = int(_get(cfg, "hidden_size", "n_embd", "d_model"))
    layers = int(_get(cfg, "num_hidden_layers", "n_layer", "num_layers"))
    heads = int(_get(cfg, "num_attention_heads", "n_head"))
    vocab = int(cfg["vocab_size"])
    gpt_style = mt in ("gpt2", "gpt_bigcode")
    if mt == "gpt_bigcode":
        kv_heads = 1 if cfg.get("multi_query", True) else heads
    else:
        kv_heads = int(_get(cfg, "num_key_value_heads", "num_kv_heads", default=heads))
    d = int(_get(cfg, "head_dim", default=h // heads))
    tied = bool(cfg.get("tie_word_embeddings", True))
    mla = bool(cfg.get("kv_lora_rank"))

    # attention
    if mla:
        r, rope, nope, dv = (
            int(cfg[k])
            for k in ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")
        )
        qd = heads * (nope + rope)
        ql = cfg.get("q_lora_rank")
        q = h * qd if not ql else h * ql + ql + ql * qd
        attn = q + h * (r + rope) + r + r * heads * (nope + dv) + heads * dv * h
        kv_elems = r + rope
    else:
        qd, kvd = heads * d, kv_heads * d
        attn = h * qd + 2 * h * kvd + qd * h
        if gpt_style or mt == "qwen2" or cfg.get("attention_bias"):
            attn += qd + 2 * kvd  # q, k, v biases
        if gpt_style or (cfg.get("attention_bias") and mt not in ("qwen2",)):
            attn += h  # output projection bias
        if mt.startswith("gemma3") or mt.startswith("qwen3"):
            attn += 2 * d  # q_norm, k_norm
        kv_elems = 2 * kv_heads * d

    # feed-forward
    inter = int(_get(cfg, "intermediate_size", "n_inner", default=4 * h))
    if gpt_style:
        dense = 2 * h * inter + inter + h
    else:
        dense = 3 * h * inter + (inter * 2 + h if cfg.get("mlp_bias") else 0)
    n_experts = int(_get(cfg, "n_routed_experts", "num_local_experts", "num_experts", default=0))
    if n_experts:
        moe_inter = int(_get(cfg, "moe_intermediate_size", default=inter))
        shared = int(_get(cfg, "n_shared_experts", default=0))
        top_k = int(_get(cfg, "num_experts_per_tok", default=2))
        first_dense = int(_get(cfg, "first_k_dense_replace", default=0))
        freq = int(_get(cfg, "moe_layer_freq", default=1))
        expert = 3 * h * moe_inter
        moe_total = n_experts * expert + shared * expert + h * n_experts
        moe_active = top_k * expert + shared * expert + h * n_experts
        moe_layers = sum(1 for i in range(layers) if i >= first_dense and i % freq == 0)
    else:
        moe_layers, moe_total, moe_active = 0, 0, 0
    dense_layers = layers - moe_layers

    norms = {"gpt2": 4 * h, "gpt_bigcode": 4 * h}.get(
        mt, 4 * h if mt.startswith("gemma3") else 2 * h
    )
    final_norm = 2 * h if gpt_style else h
    embed = vocab * h + (0 if tied else vocab * h)
    pos = int(_get(cfg, "n_positions", default=0)) * h if gpt_style else 0

    base = embed + pos + final_norm + layers * (attn + norms) + dense_layers * dense
    total = base + moe_layers * moe_total
    active = base + moe_layers * moe_active
    facts = {
        "model_type": mt,
        "hidden_size": h,
        "num_layers": layers,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": d,
        "kv_elements": kv_elems,
        "attention": _attention_kind(cfg, heads, kv_heads),
    }
    return total, active, facts


def _sliding(cfg: Mapping[str, Any], layers: int) -> tuple[int | None, int]:
    """(window, number of windowed layers) from ``layer_types``/``sliding_window``."""
    window = cfg.get("sliding_window")
    types = cfg.get("layer_types")
    if window and types:
        return int(window), sum(1 for t in types if t == "sliding_attention")
    if window and cfg.get("use_sliding_window"):
        # Qwen2: layers with index >= max_window_layers use the window
        return int(window), max(0, layers - int(cfg.get("max_window_layers", 0)))
    pattern = cfg.get("sliding_window_pattern") or cfg.get("_sliding_window_pattern")
    if window and pattern:
        return int(window), sum(1 for i in range(layers) if (i + 1) % int(pattern) != 0)
    return None, 0


def footprint(
    name_or_path: Any,
    dtype: str = "bf16",
    kv_dtype: str = "bf16",
) -> Footprint:
    """The footprint of a model at weight format ``dtype`` and KV-cache dtype ``kv_dtype``."""
    canon = {
        "bfloat16": "bf16",
        "float16": "fp16",
        "float32": "fp32",
        "half": "fp16",
        "float": "fp32",
    }
    dtype, kv_dtype = (
        canon.get(dtype.lower(), dtype.lower()),
        canon.get(kv_dtype.lower(), kv_dtype.lower()),
    )
    if kv_dtype not in KV_BYTES:
        raise ConfigError(f"unknown KV-cache dtype {kv_dtype!r}; choose from {', '.join(KV_BYTES)}")
    cfg, name, source = load_config(name_or_path)
    notes: list[str] = []
    gguf_bytes: int | None = None
    if source == "gguf":
        cfg, gguf_params, gguf_bytes = config_from_gguf(Path(str(name_or_path)).expanduser())
        name = str(cfg.get("_name_or_path") or name)
    elif dtype not in WEIGHT_BITS:
        raise ConfigError(f"unknown weight dtype {dtype!r}; choose from {', '.join(WEIGHT_BITS)}")
    try:
        params, active, facts = _count_params(cfg)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise ConfigError(f"{name}: config lacks a field needed for the footprint ({exc})") from exc
    if gguf_bytes is not None:
        notes.append(f"weights: exact GGUF tensor bytes ({gguf_params:,} stored parameters)")
        weight_bytes, weight_dtype, params = gguf_bytes, "gguf", gguf_params
        active = params if active == params else active
    else:
        weight_bytes, weight_dtype = int(math.ceil(params * WEIGHT_BITS[dtype] / 8)), dtype
        if WEIGHT_BITS[dtype] < 16:
            notes.append(
                f"all parameters counted at {WEIGHT_BITS[dtype]:g} bits "
                "(embeddings/norms often stay wider)"
            )
    window, windowed = _sliding(cfg, facts["num_layers"])
    per_token = facts["kv_elements"] * KV_BYTES[kv_dtype] * facts["num_layers"]
    return Footprint(
        model=name,
        model_type=facts["model_type"],
        attention=facts["attention"],
        num_layers=facts["num_layers"],
        hidden_size=facts["hidden_size"],
        num_heads=facts["num_heads"],
        num_kv_heads=facts["num_kv_heads"],
        head_dim=facts["head_dim"],
        params=params,
        active_params=active,
        weight_dtype=weight_dtype,
        weight_bytes=weight_bytes,
        kv_dtype=kv_dtype,
        kv_elements_per_token_layer=facts["kv_elements"],
        kv_bytes_per_token=per_token,
        sliding_window=window,
        windowed_layers=windowed,
        source=source,
        notes=tuple(notes),
    )


def footprint_for_model(name_or_path: Any, dtype: str | None = None) -> dict[str, Any] | None:
    """Footprint as a dict for a benchmark record, or ``None`` when the model's config is unknown.

    ``dtype`` defaults to the config's ``torch_dtype`` (GGUF files use their own tensor bytes).
    Never raises: a record without a footprint beats a failed benchmark.
    """
    try:
        try:
            cfg, _, source = load_config(name_or_path)
        except ConfigError:  # a model registered with the engines: use its file on disk
            from wattserve.engines.models import resolve_model

            found = resolve_model(str(name_or_path))
            name_or_path = found.gguf_path or found.hf_dir
            cfg, _, source = load_config(name_or_path)
        if dtype is None:
            dtype = str(cfg.get("torch_dtype") or "bf16")
            dtype = dtype if dtype.lower() in WEIGHT_BITS else "bf16"
        return footprint(name_or_path, dtype=dtype).to_dict()
    except Exception:  # noqa: BLE001 - see docstring
        return None
