"""Read a GGUF file's header: metadata, tensor sizes, and an HF-like config from them.

A direct header parse: ``gguf.GGUFReader`` decodes every tokenizer string and takes seconds;
this reads only the header and uses gguf's table of quantisation block sizes. Used by
``wattserve.footprint`` for exact parameter and weight-byte counts of GGUF models.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from wattserve.errors import ConfigError

_GGUF_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}


def read_gguf_header(path: Path) -> tuple[dict[str, Any], list[tuple[str, int, int]]]:
    """GGUF metadata (arrays other than short ones skipped) and tensors as (name, elements, bytes).

    A direct header parse: ``gguf.GGUFReader`` decodes every tokenizer string and takes
    seconds; this reads only the header and uses gguf's table of quantisation block sizes.
    A file that is empty, cut short or holds values the format does not define raises
    ``ConfigError`` naming the file.
    """
    import struct

    try:
        return _parse_header(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (struct.error, ValueError, KeyError, OverflowError, MemoryError) as exc:
        # struct.error: the header ends early; ValueError: an empty file (mmap) or an unknown
        # quantisation type; KeyError: a type without block sizes; Overflow/Memory: bad counts
        raise ConfigError(f"{path}: truncated or malformed GGUF header ({exc})") from None


def _parse_header(path: Path) -> tuple[dict[str, Any], list[tuple[str, int, int]]]:
    import mmap
    import struct

    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if mm[:4] != b"GGUF":
            raise ConfigError(f"{path} is not a GGUF file")
        pos = 8

        def take(fmt: str) -> Any:
            nonlocal pos
            (v,) = struct.unpack_from(fmt, mm, pos)
            pos += struct.calcsize(fmt)
            return v

        def string() -> str:
            nonlocal pos
            n = take("<Q")
            pos += n
            return bytes(mm[pos - n : pos]).decode("utf-8", "replace")

        def value(vtype: int) -> Any:
            if vtype in _GGUF_SCALARS:
                return take(_GGUF_SCALARS[vtype])
            if vtype == 8:
                return string()
            if vtype == 9:
                etype, count = take("<I"), take("<Q")
                if etype in _GGUF_SCALARS and count > 64:  # skip long numeric arrays
                    nonlocal pos
                    pos += struct.calcsize(_GGUF_SCALARS[etype]) * count
                    return count
                items = [value(etype) for _ in range(count)]
                return count if count > 64 else items
            raise ConfigError(f"{path}: unknown GGUF value type {vtype}")

        n_tensors, n_kv = take("<Q"), take("<Q")
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = string()
            meta[key] = value(take("<I"))
        tensors = []
        for _ in range(n_tensors):
            name = string()
            dims = [take("<Q") for _ in range(take("<I"))]
            qtype = take("<I")
            take("<Q")  # data offset
            n = math.prod(dims)
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(qtype)]
            tensors.append((name, n, n // block * size))
    return meta, tensors


def config_from_gguf(path: Path) -> tuple[dict[str, Any], int, int]:
    """An HF-like config plus exact (params, weight bytes) read from a GGUF file's tensors."""
    meta, tensors = read_gguf_header(path)
    arch = meta.get("general.architecture")
    cfg: dict[str, Any] = {"model_type": arch, "_name_or_path": path.stem}
    keys = {
        "num_hidden_layers": "block_count",
        "hidden_size": "embedding_length",
        "intermediate_size": "feed_forward_length",
        "num_attention_heads": "attention.head_count",
        "num_key_value_heads": "attention.head_count_kv",
        "head_dim": "attention.key_length",
        "kv_lora_rank": "attention.kv_lora_rank",
        "sliding_window": "attention.sliding_window",
    }
    for hf, g in keys.items():
        v = meta.get(f"{arch}.{g}")
        if isinstance(v, (int, float)):
            cfg[hf] = int(v)
    tokens = meta.get("tokenizer.ggml.tokens")
    cfg["vocab_size"] = int(
        meta.get(f"{arch}.vocab_size") or (tokens if isinstance(tokens, int) else len(tokens or ()))
    )
    if "num_hidden_layers" not in cfg or "hidden_size" not in cfg:
        raise ConfigError(f"{path}: GGUF metadata lacks block_count/embedding_length for {arch!r}")
    return cfg, sum(t[1] for t in tensors), sum(t[2] for t in tensors)
