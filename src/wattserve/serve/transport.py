"""One write per short answer: uvicorn's httptools protocol with a transport that holds the
response head until the first body bytes.

uvicorn writes the status line and headers as soon as the app sends ``http.response.start``
and the body in a second write: two syscalls, two TCP segments, and two reads and event-loop
wake-ups in every client. For the gateway's short JSON answers (and a stream's head plus its
first events) that second round was a measurable share of the whole exchange: the load
generator's CPU per request through the gateway rose from 0.29 ms (direct to the mock,
which writes once) to 0.39 ms. Holding the head until the next write of the same loop
iteration (or the end of it) sends both in one segment; nothing else changes, so the
protocol stays uvicorn's (keep-alive, pipelining, flow control, graceful shutdown).
Figures: docs/serve.md, ``benchmarks/gateway_overhead.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD = b"HTTP/1.1 "


class CoalescingTransport:
    """A transport proxy: a write that starts a response is held and joined with the next
    write, or flushed by a callback at the end of the current loop iteration."""

    __slots__ = ("_t", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._t = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._t.write(held + data)
        elif data.startswith(_HEAD):
            self._held = data
            self._loop.call_soon(self._flush)
        else:
            self._t.write(data)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._t.is_closing():
                self._t.write(held)

    def close(self) -> None:
        self._flush()
        self._t.close()

    def is_closing(self) -> bool:
        return self._t.is_closing()

    def __getattr__(
        self, name: str
    ) -> Any:  # pause/resume_reading, get_extra_info, set_protocol ...
        return getattr(self._t, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a ``CoalescingTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
