"""Dummy weights (``--load-format dummy``): a bundled model config with random weights.

Speed and energy of a forward pass depend on the architecture, not on the weight values, so
a model built from its published ``config.json`` with randomly initialised weights measures
tok/s and J/token where no weights can be fetched (the GPU machine has no network). Every
record made with such a model says ``dummy weights``: its text output is meaningless.

The configs ship as package data (``wattserve/data/configs/<file>.json``). The tokenizer is
``WordTokenizer``: one token per whitespace-separated word, so the bench's word prompts
(about one token per word) keep their intended lengths; it needs no download and no model
package, and it decodes every id of any vocabulary.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from wattserve.errors import ConfigError

LOAD_FORMATS = ("auto", "dummy")
DUMMY_NOTE = "dummy weights"
TOKENIZER_NOTE = "wattserve word-level tokenizer (one token per word; dummy weights)"
# short name -> config file under wattserve/data/configs (published configs of these models)
DUMMY_MODELS: dict[str, str] = {
    "smollm2-135m": "smollm2-135m",  # HuggingFaceTB/SmolLM2-135M-Instruct
    "qwen2.5-0.5b": "qwen2.5-0.5b",  # Qwen/Qwen2.5-0.5B
    "gemma3-270m": "gemma-3-270m",  # google/gemma-3-270m
    "llama3.2-1b": "llama3.2-1b",  # meta-llama/Llama-3.2-1B (1B-class Llama)
    "tiny-llama": "tiny-llama",  # not a published model: 2 layers, 0.1M params, for CPU checks
}
MEASURED_MODELS = ("smollm2-135m", "qwen2.5-0.5b", "gemma3-270m", "llama3.2-1b")


def dummy_models() -> list[str]:
    return list(DUMMY_MODELS)


def config_dict(name: str) -> dict[str, Any]:
    """The bundled config.json of a dummy-weight model, as a dict."""
    key = (name or "").strip().lower()
    if key not in DUMMY_MODELS:
        raise ConfigError(
            f"no bundled config for {name!r} with --load-format dummy: "
            f"choose one of {', '.join(DUMMY_MODELS)}"
        )
    path = resources.files("wattserve") / "data" / "configs" / f"{DUMMY_MODELS[key]}.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    data.pop("_name_or_path", None)
    return data


def hf_config(name: str) -> Any:
    """The transformers ``PretrainedConfig`` of a bundled model."""
    from transformers import AutoConfig

    data = config_dict(name)
    return AutoConfig.for_model(data.pop("model_type"), **data)


def parameter_count(name: str) -> int:
    """Parameters of the model a bundled config describes (built on the meta device: no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config(name))
    return sum(p.numel() for p in model.parameters())


def build_model(name: str, dtype: Any, device: str, attn_implementation: str, seed: int = 0) -> Any:
    """A causal LM from a bundled config with random weights, created directly on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(
            hf_config(name), dtype=dtype, attn_implementation=attn_implementation
        )
    return model.eval()


class WordTokenizer:
    """One token per whitespace-separated word; ids 0-2 are pad, BOS and EOS.

    ``decode`` writes id ``k`` as the word ``t<k>``; ``encode`` maps such a word back to
    ``k`` (so decode/encode round-trips) and hashes any other word into the vocabulary.
    """

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2
    chat_template: str | None = None

    def __init__(self, vocab_size: int) -> None:
        if vocab_size < 16:
            raise ConfigError(f"vocabulary of {vocab_size} is too small for the word tokenizer")
        self.vocab_size = vocab_size
        self.all_special_ids = [0, 1, 2]

    def __len__(self) -> int:
        return self.vocab_size

    def _id(self, word: str) -> int:
        if word[:1] == "t" and word[1:].isdigit():
            k = int(word[1:])
            if 3 <= k < self.vocab_size:
                return k
        return 3 + zlib.crc32(word.encode()) % (self.vocab_size - 3)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [self._id(w) for w in text.split()]
        return [self.bos_token_id, *ids] if add_special_tokens else ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        names = {0: "<pad>", 1: "<bos>", 2: "<eos>"}
        words = [
            names[i] if i in names else f"t{i}"
            for i in (int(x) for x in ids)
            if not (skip_special_tokens and i in names)
        ]
        return "".join(" " + w for w in words)

    def get_vocab(self) -> dict[str, int]:
        """The special tokens only (the word tokens are ``t<id>``, too many to list)."""
        return {"<pad>": 0, "<bos>": 1, "<eos>": 2}

    def word_ids(self) -> list[int]:
        """Ids that ``make_prompt`` may draw from (every non-special id)."""
        return list(range(3, min(self.vocab_size, 50_000)))
