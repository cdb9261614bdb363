"""The gateway's HTTP/1.1 server: asyncio protocols parsed by httptools (the parser uvicorn
uses), the two hot POST routes answered straight from ``Gateway.handle``, everything else
(models, health, ready, metrics, stats, OpenAPI, docs) handed to the FastAPI app over ASGI.

Why not uvicorn for everything: with the gateway's own work trimmed, uvicorn's per-request
ASGI machinery (scope dict, request/response cycle, an ``asyncio.Event``, a task, message
dicts, header checks, a keep-alive timer per request) was the largest remaining item. A
forwarder on this server spent 0.05 ms of CPU per request against 0.11 ms on uvicorn with
the same upstream client, side by side (``benchmarks/gateway_overhead.py --gateway-modes
fast,uvicorn``; figures in docs/serve.md). ``server: uvicorn`` in the config runs the same
app on uvicorn instead.

What it implements: keep-alive (HTTP/1.1 default, HTTP/1.0 on request), pipelined requests
answered in order, ``Expect: 100-continue``, request size limits (413/431), chunked request
bodies (httptools decodes them), chunked streaming answers with write back-pressure, an idle
keep-alive timeout, and a graceful shutdown: stop accepting, close idle connections, let
in-flight answers finish within the grace period, then close the rest. No TLS, no HTTP/2, no
upgrades (WebSocket): put a TLS proxy in front when the gateway leaves 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import httptools

from wattserve.serve import wire
from wattserve.serve.relay import error_reply
from wattserve.serve.wire import APIError

log = logging.getLogger("wattserve.serve")
HOT = {b"/v1/chat/completions": "chat", b"/v1/completions": "completions"}
_MAX_HEAD = 64 * 1024
_PIPELINE = 16  # parsed requests queued on one connection before it stops reading
_STATUS = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}


def _status_line(code: int) -> bytes:
    return _STATUS.get(code) or b"HTTP/1.1 %d Unknown\r\n" % code


class _Req:
    __slots__ = ("method", "url", "headers", "body", "keep_alive", "error", "version")

    def __init__(
        self,
        method: bytes,
        url: bytes,
        headers: list,
        body: bytes,
        keep_alive: bool,
        error: int,
        version: str,
    ) -> None:
        self.method, self.url, self.headers, self.body = method, url, headers, body
        self.keep_alive, self.error, self.version = keep_alive, error, version

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


class _AsgiState:
    """How far one ASGI answer has got: request body handed over, head built, body written."""

    __slots__ = ("body_sent", "started", "chunked", "done", "head", "close")

    def __init__(self) -> None:
        self.body_sent = self.started = self.chunked = self.done = self.close = False
        self.head = b""


class Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them one after another in a task."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.queue: deque[_Req] = deque()
        self.closed = False
        self.busy = False
        self.last_active = self.loop.time()
        self._waiter: asyncio.Future | None = None
        self._drain: asyncio.Future | None = None
        self._paused_writing = self._paused_reading = False
        self.lost: asyncio.Future = self.loop.create_future()
        self._new()

    def _new(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._error = 0

    # ---------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.connections.add(self)
        self.task = self.loop.create_task(self._run())

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported")
        except httptools.HttpParserError:
            self._reject(400, "invalid HTTP request")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for f in (self._waiter, self._drain, self.lost):
            if f is not None and not f.done():
                f.set_result(None)

    def pause_writing(self) -> None:  # the transport's buffer is full: streams wait in drain()
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # ---------------------------------------------------------------- httptools callbacks
    def on_message_begin(self) -> None:
        self._new()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > _MAX_HEAD:
            self._error = 431

    def on_header(self, name: bytes, value: bytes) -> None:
        self._size += len(name) + len(value)
        if self._size > _MAX_HEAD:
            self._error = 431
            return
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._size = 0
        for k, v in self._headers:
            if k == b"content-length" and v.strip().isdigit() and int(v) > self.server.max_body:
                if (
                    not self.busy and not self.queue
                ):  # nothing else in flight here: refuse before the body
                    self._reject(413, self.server.too_large())
                self._error = self._error or 413
            elif (
                k == b"expect"
                and v.lower() == b"100-continue"
                and not self._error
                and not self.busy
                and not self.queue
            ):  # never inside another answer's bytes
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._error:
            return
        self._size += len(body)
        if self._size > self.server.max_body:
            self._error = 413
            self._body = []
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        p = self.parser
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self.queue.append(
            _Req(
                p.get_method(),
                self._url,
                self._headers,
                body,
                p.should_keep_alive(),
                self._error,
                p.get_http_version(),
            )
        )
        if len(self.queue) >= _PIPELINE and not self._paused_reading:
            self._paused_reading = True
            self.transport.pause_reading()
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # ---------------------------------------------------------------- answering
    def _reject(self, status: int, message: str) -> None:
        """Answer with an error right away (from the parser) and close the connection."""
        if not self.closed and not self.transport.is_closing():
            exc = APIError(status, message, code="body_too_large" if status == 413 else None)
            self.transport.write(self.server.whole(error_reply(exc), False))
            self.transport.close()

    async def _run(self) -> None:
        server = self.server
        try:
            while not self.closed:
                if not self.queue:
                    if server.shutting_down:
                        break
                    self._waiter = self.loop.create_future()
                    await self._waiter
                    self._waiter = None
                    continue
                req = self.queue.popleft()
                if self._paused_reading and len(self.queue) < _PIPELINE // 2:
                    self._paused_reading = False
                    self.transport.resume_reading()
                self.busy = True
                try:
                    keep = await server.answer(self, req)
                finally:
                    self.busy = False
                    self.last_active = self.loop.time()
                if not keep or server.shutting_down or self.transport.is_closing():
                    break
        except Exception:
            log.exception("connection handler failed")
        finally:
            if not self.closed:
                self.transport.close()

    def write(self, data: bytes) -> None:
        if not self.closed and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        while self._paused_writing and not self.closed:
            self._drain = self.loop.create_future()
            await self._drain


class GatewayServer:
    """Serves ``app`` (``wattserve.serve.app.create_app``) with the interface the gateway's
    runners use from uvicorn's ``Server``: ``serve()``, ``started``, ``should_exit``."""

    def __init__(
        self, app: Any, host: str, port: int, grace_s: float = 10.0, keep_alive_s: float = 30.0
    ) -> None:
        self.app, self.host, self.port = app, host, port
        self.service = app.service
        self.grace_s, self.keep_alive_s = grace_s, keep_alive_s
        self.max_body = self.service.config.max_body_bytes
        self.connections: set[Connection] = set()
        self.started = self.should_exit = self.shutting_down = False
        self.install_signal_handlers = True
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.date = b""

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._tick()
        srv = await self.loop.create_server(
            lambda: Connection(self), self.host, self.port, backlog=2048, reuse_address=True
        )
        if self.install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.loop.add_signal_handler(sig, self._signal)
        self.started = True
        try:
            while not self.should_exit:
                await asyncio.sleep(0.25)
                self._tick()
        finally:
            await self._shutdown(srv)

    def _signal(self) -> None:
        if self.should_exit:  # a second Ctrl-C: no more grace
            self.grace_s = 0.0
        self.should_exit = True

    def _tick(self) -> None:
        """Once per loop tick: the Date header, and idle keep-alive connections closed."""
        self.date = b"date: " + formatdate(time.time(), usegmt=True).encode() + b"\r\n"
        if self.loop is not None:
            old = self.loop.time() - self.keep_alive_s
            for c in list(self.connections):
                if not c.busy and not c.queue and c.last_active < old:
                    c.transport.close()

    async def _shutdown(self, srv: asyncio.AbstractServer) -> None:
        srv.close()  # stop accepting
        self.shutting_down = True
        for c in list(self.connections):
            if not c.busy and not c.queue:
                c.transport.close()
            elif c._waiter is not None and not c._waiter.done():
                c._waiter.set_result(None)
        # each connection's task ends after the answer it is writing (and any it had queued)
        pending = [c.task for c in self.connections if c.busy or c.queue]
        if pending:
            await asyncio.wait(pending, timeout=self.grace_s)
        for c in list(self.connections):
            c.transport.close()
        if self.install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.loop.remove_signal_handler(sig)

    # ---------------------------------------------------------------- one request
    async def answer(self, conn: Connection, req: _Req) -> bool:
        """Answer ``req`` on ``conn``; returns whether the connection stays open."""
        keep = req.keep_alive and not self.shutting_down
        if req.error:
            msg = self.too_large() if req.error == 413 else "request line or headers too large"
            conn.write(
                self.whole(
                    error_reply(
                        APIError(
                            req.error, msg, code="body_too_large" if req.error == 413 else None
                        )
                    ),
                    False,
                )
            )
            return False
        path, _, query = req.url.partition(b"?")
        endpoint = HOT.get(path) if req.method == b"POST" else None
        if endpoint is None or not self.service.config.fast_path:
            return await self._asgi(conn, req, path, query, keep)
        # a client that goes away cancels its answer, which closes the upstream request
        me, active = asyncio.current_task(), [True]

        def gone(_: asyncio.Future) -> None:
            if active[0] and me is not None:
                me.cancel()

        conn.lost.add_done_callback(gone)
        try:
            try:
                auth = req.header(b"authorization")
                reply = await self.service.gateway.handle(
                    endpoint, req.body, auth.decode("latin-1") if auth else None
                )
            except APIError as exc:
                reply = error_reply(exc)
            except Exception:
                log.exception("internal error on %s", path.decode("latin-1"))
                reply = error_reply(APIError.internal())
            return await self.send_reply(conn, reply, keep, chunked=req.version != "1.0")
        except asyncio.CancelledError:
            if not conn.closed:
                raise
            return False
        finally:
            active[0] = False
            conn.lost.remove_done_callback(gone)
            if conn.closed and me is not None and me.cancelling():
                me.uncancel()

    def _head(
        self, status: int, media_type: bytes, headers: list[tuple[str, str]], keep: bool
    ) -> list[bytes]:
        out = [_status_line(status), self.date, b"content-type: ", media_type, b"\r\n"]
        for k, v in headers:
            out += (k.encode("latin-1"), b": ", v.encode("latin-1"), b"\r\n")
        if not keep:
            out.append(b"connection: close\r\n")
        return out

    def too_large(self) -> str:  # the 413 message, as the ASGI path words it
        return f"request body larger than {self.max_body} bytes"

    def whole(self, reply: Any, keep: bool) -> bytes:
        """The bytes of a ``Reply`` with a whole body (JSON, or a whole SSE stream)."""
        if reply.sse:
            head = self._head(reply.status, b"text/event-stream", reply.headers, keep)
            head.append(b"cache-control: no-cache\r\n")
        else:
            head = self._head(reply.status, b"application/json", reply.headers, keep)
        head += (b"content-length: %d\r\n\r\n" % len(reply.body), reply.body)
        return b"".join(head)

    async def send_reply(
        self, conn: Connection, reply: Any, keep: bool, chunked: bool = True
    ) -> bool:
        """Write a pipeline ``Reply``; a stream is driven to its end (or closed when the client
        goes). ``chunked=False`` (HTTP/1.0 clients): the stream's end is the connection's end."""
        if reply.stream is None:
            conn.write(self.whole(reply, keep))
            return keep
        keep = keep and chunked
        head = self._head(reply.status, b"text/event-stream", reply.headers, keep)
        head.append(
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n" if chunked else b"\r\n"
        )
        pending = b"".join(head)  # the head leaves with the first events: one write
        stream, ended = reply.stream, False
        try:
            async for chunk in stream:
                if conn.closed:
                    break
                ended = chunk.endswith(
                    wire.DONE
                )  # the last event: the stream's terminator goes with it
                if chunked:
                    chunk = b"%x\r\n%s\r\n%s" % (len(chunk), chunk, b"0\r\n\r\n" if ended else b"")
                conn.write(pending + chunk)
                pending = b""
                if ended:
                    break
                await conn.drain()
            if not ended:
                conn.write(pending + (b"0\r\n\r\n" if chunked else b""))
        finally:
            await stream.aclose()
        return keep and not conn.closed

    # ---------------------------------------------------------------- everything else: ASGI
    async def _asgi(
        self, conn: Connection, req: _Req, path: bytes, query: bytes, keep: bool
    ) -> bool:
        from urllib.parse import unquote

        raw = path.decode("latin-1")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": req.version,
            "method": req.method.decode("ascii"),
            "scheme": "http",
            "path": unquote(raw) if "%" in raw else raw,
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": req.headers,
            "server": (self.host, self.port),
            "client": conn.transport.get_extra_info("peername"),
            "state": {},
        }
        head_only = req.method == b"HEAD"
        st = _AsgiState()

        async def receive() -> dict:
            if not st.body_sent:
                st.body_sent = True
                return {"type": "http.request", "body": req.body, "more_body": False}
            await conn.lost  # the app waits for a disconnect (cancelled when its response ends)
            return {"type": "http.disconnect"}

        async def send(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                headers = list(msg.get("headers", []))
                sized = any(k.lower() == b"content-length" for k, _ in headers)
                st.chunked = not sized and req.version != "1.0"
                if not sized and not st.chunked:
                    st.close = True  # an HTTP/1.0 client: the body ends with the connection
                out = [_status_line(msg["status"]), self.date]
                for k, v in headers:
                    out += (k, b": ", v, b"\r\n")
                if not keep or st.close:
                    out.append(b"connection: close\r\n")
                if st.chunked and not head_only:
                    out.append(b"transfer-encoding: chunked\r\n")
                st.head, st.started = b"".join(out) + b"\r\n", True
            elif msg["type"] == "http.response.body" and st.started and not st.done:
                body, more = msg.get("body", b""), msg.get("more_body", False)
                if head_only:
                    body = b""
                elif st.chunked:
                    body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (
                        b"" if more else b"0\r\n\r\n"
                    )
                conn.write(st.head + body)
                st.head, st.done = b"", not more
                if more:
                    await conn.drain()

        try:
            await self.app(scope, receive, send)
        except Exception:
            log.exception("internal error on %s", raw)
            if not st.started:
                conn.write(self.whole(error_reply(APIError.internal()), False))
            return False
        return keep and st.done and not st.close and not conn.closed
