"""Model loading for the local engine (``engines.local``): device and dtype checks, the CUDA
device and memory share, the tokenizer and model (a checkpoint converted into the cache, or
bundled random weights for ``load_format dummy``) and the end-of-sequence ids they declare.

Every torch and transformers import happens inside these functions, so importing this module
stays cheap.
"""

from __future__ import annotations

from typing import Any

from wattserve.engines.models import ResolvedModel, ensure_hf_dir, set_offline_env
from wattserve.errors import ConfigError, EngineUnavailable

DTYPES = ("float32", "bfloat16", "auto")
_EOS_NAMES = ("<|im_end|>", "<|endoftext|>", "<eos>", "<end_of_turn>", "</s>")


def check_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:<index>`` (normalised); anything else is a ``ConfigError``."""
    d = (device or "cpu").strip().lower()
    if d == "cpu" or d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        return d
    raise ConfigError(f"device must be cpu, cuda or cuda:<index>, got {device!r}")


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """The dtype ``auto`` stands for: bfloat16 on CUDA or where the CPU advertises
    ``amx_bf16``, else float32; any other name is returned as given."""
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bfloat16"
    try:
        with open("/proc/cpuinfo") as f:
            return "bfloat16" if " amx_bf16" in f.read(200_000) else "float32"
    except OSError:
        return "float32"


def import_runtime(device: str) -> tuple[Any, str]:
    """Import torch and transformers (offline, no progress bars) and register the decode
    attention; returns the torch module and the attention implementation for ``device``."""
    set_offline_env()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401 - fail here
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    from wattserve.engines.batch import ATTN_IMPL  # registers the decode attention

    return torch, "sdpa" if device.startswith("cuda") else ATTN_IMPL


def prepare_device(torch: Any, device: str, memory_fraction: float | None) -> None:
    """Check that the CUDA device exists and cap this process's share of its memory."""
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise EngineUnavailable(f"device {device}: PyTorch sees no CUDA GPU")
    index = int(device[5:]) if ":" in device else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise EngineUnavailable(
            f"device {device}: only {torch.cuda.device_count()} CUDA GPU(s) visible"
        )
    torch.cuda.set_device(index)
    if memory_fraction is not None:
        torch.cuda.set_per_process_memory_fraction(memory_fraction, index)


def build_dummy(model_name: str, dtype: Any, device: str, attn: str) -> tuple[Any, Any]:
    """Tokenizer and model of the bundled config with random weights (``engines.dummy``)."""
    from wattserve.engines.dummy import WordTokenizer, build_model

    try:
        model = build_model(model_name, dtype, device, attn)
    except RuntimeError as exc:  # e.g. CUDA out of memory for this replica's share
        raise EngineUnavailable(f"cannot build {model_name}: {exc}") from exc
    return WordTokenizer(int(model.config.get_text_config().vocab_size)), model


def load_checkpoint(resolved: ResolvedModel, dtype: Any, device: str, attn: str) -> tuple[Any, Any]:
    """Tokenizer and model from the checkpoint (the GGUF converted once into the cache)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = ensure_hf_dir(resolved)
    tok: Any
    model: Any
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype, local_files_only=True, attn_implementation=attn
        )
        model = model.to(device)
    except (OSError, ValueError, RuntimeError) as exc:
        raise EngineUnavailable(f"cannot load model from {path}: {exc}") from exc
    return tok, model


def eos_ids(tok: Any, model: Any) -> frozenset[int]:
    """Every token id that ends a sequence: the tokenizer's, the model config's, the generation
    config's, and the usual end-of-turn tokens present in the vocabulary."""
    eos = {i for i in (tok.eos_token_id, model.config.eos_token_id) if isinstance(i, int)}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos.update(
        gen_eos if isinstance(gen_eos, list) else [gen_eos] if isinstance(gen_eos, int) else []
    )
    vocab = tok.get_vocab()
    eos.update(vocab[n] for n in _EOS_NAMES if n in vocab)
    return frozenset(eos)


def max_context(model: Any) -> int:
    """The model's context length (``max_position_embeddings``, 2048 where unset)."""
    return int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
