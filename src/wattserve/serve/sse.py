"""An upstream OpenAI SSE stream, read in batches: the gateway passes the events through and
learns from them only what the cache and the metrics need (text, finish reason, usage).

Batches, not events: everything one socket read brought is split with one regex call, parsed
with one ``orjson.loads`` of a JSON array and re-framed with one join. Per event that left a
short Python loop; parsing each event on its own cost about 60 us of gateway CPU per
16-token stream (py-spy, ``benchmarks/gateway_overhead.py``).
"""

from __future__ import annotations

import re
import time

import orjson

DONE = b"[DONE]"
ERROR_EVENT = "upstream error event"  # the replica answered with an error event: passed on, not a failure
_DATA = re.compile(rb"^data:[ \t]*([^\n]*[^\s])", re.M)  # the payload, trimmed; empty data lines skipped


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
                    if t:
                        if self.ttft_s is None:
                            self.ttft_s = time.perf_counter() - self.t0
                        self.parts.append(t)
                    if c.get("finish_reason"):
                        self.finish = c["finish_reason"]
                u = d.get("usage")
                if u:
                    self.in_tok, self.out_tok = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
                    if not choices:
                        drop = [i] if drop is None else drop + [i]
        except (AttributeError, TypeError, KeyError, IndexError, ValueError):
            return b"", done, "upstream sent an event that is not an OpenAI chunk"
        if drop is not None:
            events = [e for j, e in enumerate(events) if j not in drop]
        if not events:
            return b"", done, error
        self.n += len(events)
        return b"data: " + b"\n\ndata: ".join(events) + b"\n\n", done, error
