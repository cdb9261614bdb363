"""The HTTP transport of the OpenAI client: keep-alive HTTP/1.1 connections on asyncio
protocols, parsed by httptools (the response parser uvicorn's server side already uses), and
``MockTransport``, the in-memory stand-in for tests (httpx's ``MockTransport`` in shape).

A transport has one method that matters, ``request(method, path, body, timeouts)``, which
returns a ``Response`` (``status``, ``readany()``, ``read()``, ``release()``, ``close()``)
once its head and first body bytes are in. Everything above it (the gateway's relay, the
benchmark's engine, the sweep) talks to that seam only.

Why not aiohttp's client: on the gateway's hot path it was the largest single cost. A bare
forwarder (uvicorn + one aiohttp session) spent 0.38 ms of CPU per request in front of the
zero-delay mock, the same forwarder with this client 0.15 ms; the gateway's own CPU per
request fell from 0.59/0.67 ms to 0.33/0.40 ms (JSON/streaming) on the 2-core test machine
(``benchmarks/gateway_overhead.py``; figures in docs/serve.md). It does what an OpenAI
client needs and no more: a request with a body, status, streamed body (chunked, sized or
close-delimited), keep-alive reuse, connect/read/total timeouts, back-pressure, TLS through
``ssl``. No redirects, cookies, proxies or compression.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl as _ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httptools

ERRORS = (
    OSError,
    TimeoutError,
)  # what a request or a read may raise (ConnectionError is an OSError)
_HIGH, _LOW = 1 << 20, 1 << 16  # pause reading above 1 MiB buffered, resume below 64 KiB
_MAX_IDLE = 256

# Set in a task's context, a request's bytes go to ``WRITER(transport, data)``
# instead of ``transport.write``: the load generator's send thread writes them at their
# scheduled time. The response is read as usual.
WRITER: ContextVar[Callable[[asyncio.Transport, bytes], None] | None] = ContextVar(
    "wattserve_writer", default=None
)


class UpstreamTimeoutError(TimeoutError):
    pass


class UpstreamProtocolError(ConnectionError):
    pass


class ConnectFailedError(ConnectionRefusedError):
    """No connection to the server could be made (refused, unreachable, unknown host)."""


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 2.0
    read_s: float = 30.0  # the longest wait for the next bytes (the first token included)
    total_s: float = 300.0


class Response(Protocol):
    """An answer whose head and first body bytes arrived; read it, then release or close it."""

    status: int

    async def readany(self) -> bytes: ...

    async def read(self) -> bytes: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class Transport(Protocol):
    """Sends one request to one server (``path`` below the server's base URL)."""

    async def request(
        self, method: str, path: str, body: bytes, timeouts: Timeouts
    ) -> Connection: ...

    def close(self) -> None: ...


class Connection(asyncio.Protocol):
    """One keep-alive connection; while a request is on it, also that request's ``Response``."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.status = 0
        self._reset()

    def _reset(self) -> None:
        self._buf: list[bytes] = []
        self._size = 0
        self._headers_done = False
        self._done = False
        self._framed = False  # Content-Length or chunked: otherwise the body ends at EOF
        self._got_bytes = False
        self._keep_alive = False
        self._release_pending: asyncio.TimerHandle | None = None
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._deadline = 0.0
        self._read_s = 0.0
        self._paused = False

    # ---------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamProtocolError(f"malformed HTTP response from the replica: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._release_pending is not None:
            self._release_pending.cancel()
        if self._headers_done and not self._done and not self._framed:
            self.on_message_complete()  # a close-delimited body ends here
        elif not self._done:
            self._fail(
                ConnectionResetError(
                    "the replica closed the connection" + (f" ({exc})" if exc else "")
                )
            )

    # ---------------------------------------------------------------- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        n = name.lower()
        if n == b"content-length" or (n == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self._keep_alive = (
            self.parser.should_keep_alive()
        )  # read here: llhttp resets it after the body
        self._headers_done = (
            True  # no wake-up: _send waits for the first body bytes (or the end) too
        )

    def on_body(self, body: bytes) -> None:
        self._buf.append(body)
        self._size += len(body)
        if self._size > _HIGH and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._done = True
        if self._release_pending is not None:
            self._release_pending.cancel()
            if self._keep_alive and not self.closed:
                self.origin._put(self)
            else:
                self.close()
        else:
            self._wake()

    # ---------------------------------------------------------------- waiting
    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._exc is None:
            self._exc = exc
        w = self._waiter
        if w is not None and not w.done():
            w.set_exception(exc)

    def _timed_out(self) -> None:
        self._fail(
            UpstreamTimeoutError(
                f"no bytes from the replica within {self._read_s:g} s"
                if self.origin.loop.time() < self._deadline
                else "the replica's answer exceeded the total timeout"
            )
        )

    async def _wait(self) -> None:
        if self._exc is not None:
            raise self._exc
        loop = self.origin.loop
        self._waiter = fut = loop.create_future()
        timer = loop.call_at(min(loop.time() + self._read_s, self._deadline), self._timed_out)
        try:
            await fut
        finally:
            timer.cancel()
            self._waiter = None

    # ---------------------------------------------------------------- the response API
    async def _send(self, head: bytes, body: bytes, timeouts: Timeouts) -> None:
        self._reset()
        self._read_s = timeouts.read_s
        self._deadline = self.origin.loop.time() + timeouts.total_s
        self.parser = httptools.HttpResponseParser(self)
        assert self.transport is not None
        if (writer := WRITER.get()) is not None:
            writer(self.transport, head + body)
        elif len(body) >= 65536:
            self.transport.write(head)
            self.transport.write(body)
        else:
            self.transport.write(head + body)
        # the head and the first body bytes: servers that flush the head on its own (SSE) would
        # otherwise cost one more wake-up of the caller, which reads the body next anyway
        while not self._headers_done or not (self._buf or self._done):
            await self._wait()

    async def readany(self) -> bytes:
        """The body bytes that arrived since the last call (waits for some); b"" at the end."""
        while not self._buf:
            if self._done:
                return b""
            await self._wait()
        buf = self._buf
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        self._buf = []
        self._size = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def read(self) -> bytes:
        parts: list[bytes] = []
        while True:
            data = await self.readany()
            if not data:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            parts.append(data)

    def release(self) -> None:
        """Done with this response: back to the pool when it was read to its end and the
        server keeps the connection alive, else closed."""
        if self.closed or not self._keep_alive:
            self.close()
        elif self._done:
            self.origin._put(self)
        elif self._release_pending is None:
            # the caller has what it needs (an SSE stream's [DONE]) before the body's last bytes
            # (the chunked terminator) came: pool the connection when they come, else close it
            self._buf = []
            if self._paused and self.transport is not None:
                self._paused = False
                self.transport.resume_reading()
            self._release_pending = self.origin.loop.call_later(min(self._read_s, 10.0), self.close)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Origin:
    """The real transport: keep-alive connections to one ``scheme://host:port``; ``headers``
    go with every request, at most ``max_idle`` idle connections are kept."""

    def __init__(
        self, base_url: str, headers: Mapping[str, str] | None = None, max_idle: int = _MAX_IDLE
    ) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.ssl = _ssl.create_default_context() if u.scheme == "https" else None
        self.prefix = u.path.rstrip("/")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        self._host_header = host if u.port is None else f"{host}:{u.port}"
        self._extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._max_idle = max_idle
        self._idle: list[Connection] = []
        self._heads: dict[tuple[str, str], bytes] = {}
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    def _head(self, method: str, path: str) -> bytes:
        head = self._heads.get((method, path))
        if head is None:
            head = self._heads[(method, path)] = (
                f"{method} {self.prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
                f"Accept: */*\r\n{self._extra}Content-Type: application/json\r\nContent-Length: "
            ).encode("latin-1")
        return head

    async def _connect(self, timeouts: Timeouts) -> Connection:
        try:
            async with asyncio.timeout(timeouts.connect_s):
                _, conn = await self.loop.create_connection(
                    lambda: Connection(self), self.host, self.port, ssl=self.ssl
                )
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"no connection to {self.host}:{self.port} within {timeouts.connect_s:g} s"
            ) from None
        except OSError as exc:
            raise ConnectFailedError(
                f"no connection to {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        return conn

    @property
    def idle(self) -> int:
        """Kept-alive connections waiting for the next request."""
        return len(self._idle)

    async def request(self, method: str, path: str, body: bytes, timeouts: Timeouts) -> Connection:
        """Send a request and return its response once its head and first body bytes arrived."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        head = self._head(method, path) + b"%d\r\n\r\n" % len(body)
        while self._idle:
            conn = self._idle.pop()
            if conn.closed:
                continue
            try:
                await conn._send(head, body, timeouts)
                return conn
            except BaseException:
                conn.close()
                # a kept-alive connection the server closed as we wrote: nothing reached it; the
                # request goes out once more on a fresh connection (what browsers and urllib3 do)
                if conn._got_bytes or not isinstance(conn._exc, ConnectionResetError):
                    raise
        conn = await self._connect(timeouts)
        try:
            await conn._send(head, body, timeouts)
        except BaseException:
            conn.close()
            raise
        return conn

    def _put(self, conn: Connection) -> None:
        conn._reset()
        if len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


# ------------------------------------------------------------------------- in memory
class MockResponse:
    """A scripted answer: ``parts`` are what successive reads return; ``error`` is raised
    by the read after the last part (a stream cut short)."""

    def __init__(
        self, status: int = 200, parts: bytes | Iterable[bytes] = b"", error: OSError | None = None
    ) -> None:
        self.status = status
        self._parts = iter([parts] if isinstance(parts, bytes) else parts)  # read lazily
        self._error = error
        self.closed = self.released = False

    async def readany(self) -> bytes:
        await asyncio.sleep(0)  # a read is a suspension point, as on a socket
        part = next(self._parts, None)
        if part is not None:
            return part
        if self._error is not None:
            raise self._error
        return b""

    async def read(self) -> bytes:
        parts = []
        while data := await self.readany():
            parts.append(data)
        return b"".join(parts)

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


Handler = Callable[[str, str, bytes], "MockResponse | Awaitable[MockResponse]"]


class MockTransport:
    """A transport that answers from ``handler(method, path, body)`` in memory; the handler
    may raise ``OSError`` or ``TimeoutError`` to stand for a network failure."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[tuple[str, str, bytes]] = []

    async def request(
        self, method: str, path: str, body: bytes, timeouts: Timeouts
    ) -> MockResponse:
        self.requests.append((method, path, body))
        answer = self.handler(method, path, body)
        return await answer if inspect.isawaitable(answer) else answer

    def close(self) -> None:
        return None
