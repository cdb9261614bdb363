"""Step-level continuous batching over a Hugging Face causal LM with a batched KV cache.

The running batch keeps one KV cache tensor pair per layer, shape (rows, kv_heads, T, dim),
left-padded so every row's newest token sits in the last column. A newcomer is prefilled
alone; its cache is left-padded to the batch width (or the batch is widened to its length)
and concatenated along the batch dimension, so it joins at the next decode step. Finished
rows leave with ``index_select``; columns that became padding for every row are trimmed.
Each row has its own position counter and attention-mask row.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from wattserve.engines.sequence import Sequence


def _kv(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _left_pad(x: torch.Tensor, n: int) -> torch.Tensor:
    """Pad dimension -2 (sequence) of a (B, H, T, D) tensor with ``n`` zero columns on the left."""
    return x if n == 0 else F.pad(x, (0, 0, n, 0))


def sample(logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
    """One token per row: greedy (argmax) rows at once, sampled rows with their own generator."""
    out = logits.argmax(dim=-1).tolist()
    for i, seq in enumerate(seqs):
        if seq.greedy:
            continue
        probs = torch.softmax(logits[i].float() / seq.temperature, dim=-1)
        if seq.top_p < 1.0:
            sorted_p, idx = probs.sort(descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < seq.top_p
            probs = torch.zeros_like(probs).scatter_(0, idx[keep], sorted_p[keep])
        out[i] = int(torch.multinomial(probs, 1, generator=seq.generator).item())
    return out


class DecodeBatch:
    """The rows currently decoding together, with their KV cache, mask and positions."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.rows: list[Sequence] = []
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.mask = torch.zeros((0, 0), dtype=torch.long)  # (B, T): 1 where a real token is cached
        self.pos = torch.zeros((0,), dtype=torch.long)  # (B,): position of each row's next token
        self.last = torch.zeros((0, 1), dtype=torch.long)  # (B, 1): each row's newest token

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    def prefill(self, seq: Sequence) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Run a newcomer's prompt alone; return its last-position logits and its KV cache."""
        ids = torch.tensor([seq.prompt_ids], dtype=torch.long)
        cache = DynamicCache()
        out = self.model(
            input_ids=ids,
            position_ids=torch.arange(ids.shape[1]).unsqueeze(0),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[0, -1], _kv(out.past_key_values)

    def join(self, seq: Sequence, kv: list[tuple[torch.Tensor, torch.Tensor]], token: int) -> None:
        """Add a prefilled sequence (whose first sampled token is ``token``) to the batch."""
        n = kv[0][0].shape[-2]
        if not self.rows:
            self.kv = kv
            self.mask = torch.ones((1, n), dtype=torch.long)
        else:
            width = max(self.width, n)
            pad_b, pad_n = width - self.width, width - n
            self.kv = [
                (
                    torch.cat([_left_pad(bk, pad_b), _left_pad(nk, pad_n)], dim=0),
                    torch.cat([_left_pad(bv, pad_b), _left_pad(nv, pad_n)], dim=0),
                )
                for (bk, bv), (nk, nv) in zip(self.kv, kv)
            ]
            row = torch.cat([torch.zeros(pad_n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
            self.mask = torch.cat([F.pad(self.mask, (pad_b, 0)), row.unsqueeze(0)], dim=0)
        self.rows.append(seq)
        self.pos = torch.cat([self.pos, torch.tensor([n])])
        self.last = torch.cat([self.last, torch.tensor([[token]])], dim=0)

    def step(self) -> torch.Tensor:
        """One decode step for every row: feed each row's newest token, return (B, vocab) logits."""
        mask = torch.cat([self.mask, torch.ones((len(self.rows), 1), dtype=torch.long)], dim=1)
        cache = DynamicCache(ddp_cache_data=self.kv)
        out = self.model(
            input_ids=self.last,
            attention_mask=mask,
            position_ids=self.pos.unsqueeze(1),
            past_key_values=cache,
            use_cache=True,
        )
        self.kv = _kv(out.past_key_values)
        self.mask = mask
        self.pos = self.pos + 1
        return out.logits[:, -1, :]

    def set_last(self, tokens: list[int]) -> None:
        self.last = torch.tensor(tokens, dtype=torch.long).unsqueeze(1)

    def keep(self, keep: list[int]) -> None:
        """Keep only the rows at these indices (finished rows leave), then trim dead columns."""
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.__init__(self.model)  # type: ignore[misc]
            return
        idx = torch.tensor(keep, dtype=torch.long)
        self.rows = [self.rows[i] for i in keep]
        mask = self.mask.index_select(0, idx)
        live = mask.any(dim=0).nonzero()
        start = int(live[0]) if live.numel() else mask.shape[1]
        self.mask = mask[:, start:]
        self.kv = [
            (k.index_select(0, idx)[:, :, start:].contiguous(), v.index_select(0, idx)[:, :, start:].contiguous())
            for k, v in self.kv
        ]
        self.pos = self.pos.index_select(0, idx)
        self.last = self.last.index_select(0, idx)
