"""One generating sequence of the local engine: its tokens, sampling, detokenisation, stops.

A ``Sequence`` lives in the engine's worker thread. It turns each new token id into the
text it releases (incremental detokenisation, so a multi-byte character split over
several tokens comes out whole) and decides when the sequence is finished (EOS unless
``ignore_eos``, ``max_tokens``, a stop string).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(slots=True)
class Emission:
    """What one step releases for a sequence: text (maybe empty), and the finish reason if done."""

    text: str
    tokens: int
    finish_reason: str | None = None


@dataclass(slots=True)
class Sequence:
    request_id: str
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    ignore_eos: bool
    eos_ids: frozenset[int]
    deliver: Callable[[Any], None]  # thread-safe: hands an item to the consumer's event loop
    output_ids: list[int] = field(default_factory=list)
    status: Status = Status.WAITING
    cancelled: threading.Event = field(default_factory=threading.Event)
    generator: Any = None  # torch.Generator when sampling
    finish_reason: str | None = None
    _prefix_offset: int = 0
    _read_offset: int = 0
    _text: str = ""  # all released-or-held text
    _released: int = 0  # characters of _text already sent

    @property
    def input_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def output_tokens(self) -> int:
        return len(self.output_ids)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def _detok(self, tokenizer: Any) -> str:
        """New text for the tokens since the last call (vLLM/TGI offsets scheme)."""
        ids = self.output_ids
        prefix = tokenizer.decode(
            ids[self._prefix_offset : self._read_offset], skip_special_tokens=True
        )
        full = tokenizer.decode(ids[self._prefix_offset :], skip_special_tokens=True)
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self._prefix_offset = self._read_offset
            self._read_offset = len(ids)
            return full[len(prefix) :]
        return ""

    def accept(self, token_id: int, tokenizer: Any) -> Emission:
        """Record one sampled token; return the text it releases and whether we are done."""
        if token_id in self.eos_ids and not self.ignore_eos:
            self.finish_reason = "stop"
            return Emission(self._flush(), 0, "stop")
        self.output_ids.append(token_id)
        self._text += self._detok(tokenizer)
        reason: str | None = None
        if self.stop:
            cut = _find_stop(self._text, self.stop, self._released)
            if cut is not None:
                self._text = self._text[:cut]
                reason = "stop"
        if reason is None and len(self.output_ids) >= self.max_tokens:
            reason = "length"
        if reason is not None:
            self.finish_reason = reason
            return Emission(self._flush(), 1, reason)
        # hold back a tail that could still become a stop string
        hold = max((len(s) - 1 for s in self.stop), default=0)
        end = max(self._released, len(self._text) - hold)
        text = self._text[self._released : end]
        self._released = end
        return Emission(text, 1, None)

    def _flush(self) -> str:
        text = self._text[self._released :]
        self._released = len(self._text)
        return text


def _find_stop(text: str, stops: tuple[str, ...], released: int) -> int | None:
    """Index where the earliest stop string starts, searching only where it can be new."""
    longest = max(len(s) for s in stops)
    start = max(0, released - longest)
    best: int | None = None
    for s in stops:
        if not s:
            continue
        i = text.find(s, start)
        if i >= 0 and (best is None or i < best):
            best = i
    return best
