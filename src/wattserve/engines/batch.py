"""Step-level continuous batching over a Hugging Face causal LM with a batched KV cache.

The running batch keeps, per layer, one preallocated key and one value buffer of shape
(rows, kv_heads, capacity, dim). Rows are right-aligned: every row's newest token sits in
column ``width - 1``, shorter rows are left-padded and masked. A decode step writes the new
keys/values of all rows into column ``width`` in place (no per-step concatenation).

A newcomer is prefilled alone; the buffers are then rebuilt with one more row (its cache
left-padded to the batch width, or the batch left-padded to its length), so it joins at the
next decode step. Finished rows leave at once (``index_select`` of the surviving rows), and
columns that became padding for every row are dropped in the same rebuild. Each row keeps
its own position counter; the attention mask is passed as a ready 4-D mask.

Decode attention on CPU uses grouped-query matmuls directly on the cache views (no
``repeat_kv`` copies); prefill, and every step on CUDA, uses PyTorch SDPA.

All tensors live on the model's device. The host keeps each row's cached length (a row
occupies columns ``width - length .. width - 1``), so rebuilds never read the mask back from
the device; the only device-to-host copy per decode step is the sampled token ids.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from wattserve.engines.sequence import Sequence

ATTN_IMPL = "wattserve_gqa"
HEADROOM = 64  # extra columns allocated per rebuild; a full buffer grows by this much


def gqa_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kw: Any,
) -> tuple[torch.Tensor, None]:
    """Single-token decode attention for grouped KV heads; anything else goes to SDPA."""
    if query.shape[2] != 1 or attention_mask is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kw
        )
    b, hq, _, d = query.shape
    hkv = key.shape[1]
    q = query.reshape(b, hkv, hq // hkv, d)
    scores = torch.matmul(q, key.transpose(-1, -2)) * (scaling if scaling is not None else d**-0.5)
    scores = scores.masked_fill(~attention_mask[:, :, :, : key.shape[-2]], float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    out = torch.matmul(probs, value)  # (b, hkv, group, d)
    return out.reshape(b, 1, hq, d), None


AttentionInterface.register(ATTN_IMPL, gqa_attention)
AttentionMaskInterface.register(ATTN_IMPL, sdpa_mask)  # prefill masks (causal, sliding) as for SDPA


class _BufferLayer(DynamicLayer):
    """A cache layer over a preallocated buffer: ``update`` writes in place."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, length: int) -> None:
        super().__init__()
        self.bk, self.bv, self.n = k, v, length
        self.dtype, self.device = k.dtype, k.device
        self.is_initialized = True
        self.keys, self.values = k[:, :, :length], v[:, :, :length]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ):
        n, t = self.n, key_states.shape[-2]
        self.bk[:, :, n : n + t] = key_states
        self.bv[:, :, n : n + t] = value_states
        self.n = n + t
        self.keys, self.values = self.bk[:, :, : self.n], self.bv[:, :, : self.n]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.n


def sample_ids(logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
    """One token id per row as a (B,) tensor on the logits' device: greedy rows by argmax,
    sampled rows with their own generator (top-p by masking the sorted probabilities)."""
    out = logits.argmax(dim=-1)
    for i, seq in enumerate(seqs):
        if seq.greedy:
            continue
        probs = torch.softmax(logits[i].float() / seq.temperature, dim=-1)
        if seq.top_p < 1.0:
            sorted_p, idx = probs.sort(descending=True)
            kept = sorted_p * (sorted_p.cumsum(-1) - sorted_p < seq.top_p)
            probs = torch.zeros_like(probs).scatter_(0, idx, kept)
        out[i] = torch.multinomial(probs, 1, generator=seq.generator)[0]
    return out


def sample(logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
    """``sample_ids`` copied to the host (one sync)."""
    return [int(t) for t in sample_ids(logits, seqs).tolist()]


KV = list[tuple[torch.Tensor, torch.Tensor]]


class DecodeBatch:
    """The rows currently decoding together, with their KV buffers, mask and positions."""

    def __init__(self, model: Any, device: Any = None) -> None:
        self.model = model
        self.device = torch.device(device) if device is not None else _model_device(model)
        cfg = (
            model.config.get_text_config(decoder=True)
            if hasattr(model.config, "get_text_config")
            else model.config
        )
        types = getattr(cfg, "layer_types", None) or []
        self.sliding_window = (
            getattr(cfg, "sliding_window", None) if "sliding_attention" in types else None
        )
        self._reset()

    def _reset(self) -> None:
        dev = self.device
        self.rows: list[Sequence] = []
        self.kv: KV = []  # per layer (B, H, capacity, D) buffers
        self.width = 0  # columns in use
        self.lengths: list[int] = []  # host copy: cached tokens per row (= its next position)
        self.mask = torch.zeros((0, 0), dtype=torch.bool, device=dev)  # (B, capacity)
        self.pos = torch.zeros((0,), dtype=torch.long, device=dev)  # (B,): next positions
        self.last = torch.zeros((0, 1), dtype=torch.long, device=dev)  # (B, 1): newest tokens

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def capacity(self) -> int:
        return int(self.mask.shape[1])

    def prefill(self, seq: Sequence) -> tuple[torch.Tensor, KV]:
        """Run a newcomer's prompt alone; return its last-position logits and its KV cache."""
        ids = torch.tensor([seq.prompt_ids], dtype=torch.long, device=self.device)
        out = self.model(
            input_ids=ids,
            position_ids=torch.arange(ids.shape[1], device=self.device).unsqueeze(0),
            past_key_values=DynamicCache(),
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.past_key_values
        return out.logits[0, -1], [(layer.keys, layer.values) for layer in cache.layers]

    def _rebuild(self, parts: list[tuple[KV, list[int], int]]) -> None:
        """New buffers from (kv, row lengths, width) parts, right-aligned, with fresh headroom.

        Leading columns that are padding in every row of a part are dropped."""
        lengths = [n for _, lens, _ in parts for n in lens]
        width = max(lengths)
        cap = width + HEADROOM
        ref = parts[0][0][0][0]
        new_kv: KV = []
        for layer in range(len(parts[0][0])):
            shape = (len(lengths), ref.shape[1], cap, ref.shape[-1])
            k = torch.zeros(shape, dtype=ref.dtype, device=self.device)
            v = torch.zeros(shape, dtype=ref.dtype, device=self.device)
            r = 0
            for kv, lens, w in parts:
                n, live = len(lens), max(lens)
                k[r : r + n, :, width - live : width] = kv[layer][0][:, :, w - live : w]
                v[r : r + n, :, width - live : width] = kv[layer][1][:, :, w - live : w]
                r += n
            new_kv.append((k, v))
        cols = torch.arange(cap, device=self.device).unsqueeze(0)
        first = width - torch.tensor(lengths, dtype=torch.long, device=self.device).unsqueeze(1)
        self.mask = (cols >= first) & (cols < width)
        self.kv, self.width, self.lengths = new_kv, width, lengths

    def join(self, seq: Sequence, kv: KV, token: int) -> None:
        """Add a prefilled sequence (whose first sampled token is ``token``) to the batch."""
        n = int(kv[0][0].shape[-2])
        newcomer = (kv, [n], n)
        self._rebuild([(self.kv, self.lengths, self.width), newcomer] if self.rows else [newcomer])
        self.rows.append(seq)
        dev = self.device
        self.pos = torch.cat([self.pos, torch.tensor([n], dtype=torch.long, device=dev)])
        self.last = torch.cat(
            [self.last, torch.tensor([[token]], dtype=torch.long, device=dev)], dim=0
        )

    def _masks(self) -> Any:
        full = self.mask[:, None, None, : self.width + 1]
        if self.sliding_window is None:
            return full
        cols = torch.arange(self.width + 1, device=self.device)
        sliding = full & (cols > self.width - self.sliding_window)
        return {"full_attention": full, "sliding_attention": sliding}

    def step(self) -> torch.Tensor:
        """One decode step for every row: feed each row's newest token, return (B, vocab) logits."""
        if self.width >= self.capacity:  # buffers full: grow them (copy once per HEADROOM steps)
            self._rebuild([(self.kv, self.lengths, self.width)])
        self.mask[:, self.width] = True
        cache = DynamicCache()
        cache.layers = [_BufferLayer(k, v, self.width) for k, v in self.kv]
        out = self.model(
            input_ids=self.last,
            attention_mask=self._masks(),
            position_ids=self.pos.unsqueeze(1),
            past_key_values=cache,
            use_cache=True,
        )
        self.width += 1
        self.pos = self.pos + 1
        self.lengths = [n + 1 for n in self.lengths]
        return out.logits[:, -1, :]

    def set_last(self, tokens: list[int] | torch.Tensor) -> None:
        """Each row's newest token: a (B,) device tensor from ``sample_ids`` or host ints."""
        if isinstance(tokens, torch.Tensor):
            self.last = tokens.to(device=self.device, dtype=torch.long).reshape(-1, 1)
        else:
            self.last = torch.tensor(tokens, dtype=torch.long, device=self.device).unsqueeze(1)

    def keep(self, keep: list[int]) -> None:
        """Keep only the rows at these indices (finished rows leave), then trim dead columns."""
        if len(keep) == len(self.rows):
            return
        if not keep:
            self._reset()
            return
        idx = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.rows = [self.rows[i] for i in keep]
        kv = [(k.index_select(0, idx), v.index_select(0, idx)) for k, v in self.kv]
        self._rebuild([(kv, [self.lengths[i] for i in keep], self.width)])
        self.pos = self.pos.index_select(0, idx)
        self.last = self.last.index_select(0, idx)


def _model_device(model: Any) -> torch.device:
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")
