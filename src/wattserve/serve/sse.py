"""An upstream OpenAI SSE stream, read in batches: the gateway passes the events through and
learns from them only what the cache and the metrics need (text, finish reason, usage).

Batches, not events: everything one socket read brought is split with one regex call,
decoded with one call and re-framed with one join. Per event that leaves a short Python
loop; parsing each event on its own cost about 60 us of gateway CPU per 16-token stream
(py-spy, ``benchmarks/gateway_overhead.py``). The decoder is msgspec into structs that name
only the fields the gateway reads (the rest of each chunk is skipped, not built): 15-18 us
against 37 us for ``orjson.loads`` of the batch plus dict lookups, on the mock's 18-event
stream. Chunks that do not fit those structs (odd types from some server) take the orjson
path, which accepts any JSON object.
"""

from __future__ import annotations

import re
import time

import msgspec
import orjson

DONE = b"[DONE]"
ERROR_EVENT = "upstream error event"  # the replica answered with an error event: passed on, not a failure
_DATA = re.compile(rb"^data:[ \t]*([^\n]*[^\s])", re.M)  # the payload, trimmed; empty data lines skipped


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: str | None = None
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: msgspec.Raw | None = None


_DECODE = msgspec.json.Decoder(list[_Chunk]).decode


class SSEReader:
    """Incremental reader: ``feed(bytes)`` -> payloads of the complete ``data:`` lines."""

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self._rest:
            data = self._rest + data
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n") + 1
        self._rest = data[end:]
        return _DATA.findall(data, 0, end) if end else []


class StreamBooks:
    """What one relayed stream said so far: text parts, finish reason, usage, time to first text."""

    __slots__ = ("chat", "t0", "parts", "finish", "in_tok", "out_tok", "n", "ttft_s")

    def __init__(self, chat: bool, t0: float) -> None:
        self.chat, self.t0 = chat, t0
        self.parts: list[str] = []
        self.finish: str | None = None
        self.in_tok = self.out_tok = 0
        self.n = 0  # events passed on
        self.ttft_s: float | None = None

    def take(self, events: list[bytes]) -> tuple[bytes, bool, str | None]:
        """Book one batch of payloads. Returns the bytes to pass on (the upstream's usage-only
        event is left out: the gateway sends its own, with joules), whether ``[DONE]`` came, and
        an error (``ERROR_EVENT`` for an upstream error event, which is passed on and ends the
        stream; anything else means the replica misbehaved)."""
        done = False
        if DONE in events:
            events = events[:events.index(DONE)]
            done = True
        if not events:
            return b"", done, None
        try:
            chunks = _DECODE(b"[" + b",".join(events) + b"]")
        except msgspec.ValidationError:
            return self._take_any(events, done)
        except msgspec.DecodeError:
            return b"", done, "upstream sent an event that is not JSON"
        error = drop = None
        parts = self.parts
        for i, ch in enumerate(chunks):
            if ch.error is not None:
                error = ERROR_EVENT
                events = events[:i + 1]
                break
            choices = ch.choices
            if choices:
                c = choices[0]
                t = c.delta.content if self.chat and c.delta is not None else c.text
                if t:
                    if self.ttft_s is None:
                        self.ttft_s = time.perf_counter() - self.t0
                    parts.append(t)
                if c.finish_reason:
                    self.finish = c.finish_reason
            u = ch.usage
            if u is not None:
                self.in_tok, self.out_tok = u.prompt_tokens or 0, u.completion_tokens or 0
                if not choices:
                    drop = [i] if drop is None else drop + [i]
        return self._out(events, drop, done, error)

    def _take_any(self, events: list[bytes], done: bool) -> tuple[bytes, bool, str | None]:
        """``take`` for chunks outside the structs: any JSON objects, read as dicts."""
        try:
            ds = orjson.loads(b"[" + b",".join(events) + b"]")
        except orjson.JSONDecodeError:
            return b"", done, "upstream sent an event that is not JSON"
        error = drop = None
        try:
            for i, d in enumerate(ds):
                if "error" in d:
                    error = ERROR_EVENT
                    events = events[:i + 1]
                    break
                choices = d.get("choices")
                if choices:
                    c = choices[0]
                    t = (c.get("delta") or {}).get("content") if self.chat else c.get("text")
                    if t and isinstance(t, str):
                        if self.ttft_s is None:
                            self.ttft_s = time.perf_counter() - self.t0
                        self.parts.append(t)
                    if c.get("finish_reason"):
                        self.finish = str(c["finish_reason"])
                u = d.get("usage")
                if u:
                    self.in_tok, self.out_tok = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
                    if not choices:
                        drop = [i] if drop is None else drop + [i]
        except (AttributeError, TypeError, KeyError, IndexError, ValueError):
            return b"", done, "upstream sent an event that is not an OpenAI chunk"
        return self._out(events, drop, done, error)

    def _out(self, events: list[bytes], drop: list[int] | None, done: bool,
             error: str | None) -> tuple[bytes, bool, str | None]:
        if drop is not None:  # usually one usage event, the last
            events = events[:drop[0]] + events[drop[0] + 1:] if len(drop) == 1 else \
                [e for j, e in enumerate(events) if j not in drop]
        if not events:
            return b"", done, error
        self.n += len(events)
        return b"data: " + b"\n\ndata: ".join(events) + b"\n\n", done, error
