"""The limits the app enforces in front of every route (the server enforces the rest while
reading: header timeout, header and URL bytes, connections; ``serve/server.py``).

- **Host**: exactly one non-empty ``Host`` (a missing, empty or repeated one is a 400 and the
  connection is closed); with ``limits.allowed_hosts`` other than ``*``, only those names.
- **URL length**: a request target over ``max_url_bytes`` is a 414.
- **In-flight cap**: more than ``max_in_flight`` requests being answered at once sheds the
  newcomer with a 503 and ``Retry-After`` (before its body is read).
- **Body budget**: the bodies of the requests in flight hold at most
  ``max_buffered_body_bytes``; a request is charged its ``Content-Length`` (``max_body_bytes``
  when chunked) before its body is read, so 300 clients each sending most of a 1 MB body
  cost at most the budget, not 300 MB. Over budget: 503 with ``Retry-After``.
- **Body read timeout**: the whole body must arrive within ``body_read_timeout_s`` of the
  request reaching the app; a client that drips it is answered 408 and disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from wattserve.openai.answers import APIError
from wattserve.serve.config import LimitsConfig

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_error(send: Send, exc: APIError, headers: list[tuple[bytes, bytes]]) -> None:
    """An OpenAI-style JSON error as a whole ASGI answer."""
    body = exc.body()
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": exc.status, "headers": head})
    await send({"type": "http.response.body", "body": body})


_CLOSE = [(b"connection", b"close")]


def _host_name(host: bytes) -> bytes:
    """The name part of a Host value, lower-case (``[::1]:8000`` -> ``[::1]``)."""
    if host.startswith(b"["):
        return host[: host.find(b"]") + 1].lower()
    return host.partition(b":")[0].lower()


class _Exchange:
    """One request's view of its answer: whether it has started, whether its body timed out."""

    __slots__ = ("send", "started", "expired", "cut")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False
        self.expired = False
        self.cut = False  # the body ended in a disconnect: gone, or framing the server refused

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


class Guard:
    """ASGI middleware applying ``LimitsConfig`` to every HTTP request of ``app``."""

    def __init__(self, app: ASGIApp, limits: LimitsConfig, service: Any = None) -> None:
        self.app = app
        self.service = service  # read by the runners and tests, as on the wrapped app
        self.limits = limits
        self.in_flight = 0
        self.buffered = 0  # bytes charged to the body budget by the requests in flight
        self.shed = 0  # requests answered 503 by the in-flight cap or the body budget
        any_host = "*" in limits.allowed_hosts
        self._hosts = None if any_host else {h.lower().encode() for h in limits.allowed_hosts}
        self._retry = [(b"retry-after", str(limits.retry_after_s).encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lim = self.limits
        host: bytes | None = None
        length: bytes | None = None
        coding: bytes | None = None
        for k, v in scope["headers"]:
            if k == b"host":
                if host is not None:
                    await send_error(send, APIError(400, "more than one Host header"), _CLOSE)
                    return
                host = v
            elif k == b"content-length":
                if length is not None:
                    await send_error(send, APIError(400, "more than one Content-Length"), _CLOSE)
                    return
                length = v
            elif k == b"transfer-encoding":
                # one Transfer-Encoding, exactly chunked, never with a Content-Length: every
                # other framing is where a proxy in front and this server could disagree
                if coding is not None or v.strip().lower() != b"chunked":
                    await send_error(send, APIError(400, "unsupported transfer coding"), _CLOSE)
                    return
                coding = v
        chunked = coding is not None
        if chunked and length is not None:
            exc = APIError(400, "both Content-Length and Transfer-Encoding")
            await send_error(send, exc, _CLOSE)
            return
        if not host:
            await send_error(send, APIError(400, "a Host header is required"), _CLOSE)
            return
        if self._hosts is not None and _host_name(host) not in self._hosts:
            await send_error(send, APIError(400, "this Host is not served here"), _CLOSE)
            return
        target = len(scope.get("raw_path") or scope["path"]) + len(scope.get("query_string", b""))
        if target > lim.max_url_bytes:
            exc = APIError(414, f"request target longer than {lim.max_url_bytes} bytes")
            await send_error(send, exc, _CLOSE)
            return
        if self.in_flight >= lim.max_in_flight:
            self.shed += 1
            exc = APIError(503, "the gateway is at its in-flight limit", type="server_error")
            await send_error(send, exc, self._retry)
            return
        charge = 0
        if chunked:
            charge = lim.max_body_bytes
        elif length is not None and length.isdigit():
            charge = min(int(length), lim.max_body_bytes)
        if charge and self.buffered + charge > lim.max_buffered_body_bytes:
            self.shed += 1
            exc = APIError(503, "the gateway is reading too many bodies", type="server_error")
            await send_error(send, exc, self._retry + _CLOSE)
            return
        self.in_flight += 1
        self.buffered += charge
        try:
            if charge:
                await self._timed(scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.buffered -= charge

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a deadline on the body: past it the request is cancelled and, if
        nothing was sent yet, answered 408 (the connection closes)."""
        task = asyncio.current_task()
        exchange = _Exchange(send)
        loop = asyncio.get_running_loop()

        def expire() -> None:
            exchange.expired = True
            if task is not None:
                task.cancel()

        timer = loop.call_at(loop.time() + self.limits.body_read_timeout_s, expire)

        async def body_receive() -> Message:
            try:
                message = await receive()
            except Exception:  # noqa: BLE001 - the server could not decode the body's framing
                timer.cancel()
                raise APIError(400, "invalid request body framing", code="bad_framing") from None
            if not message.get("more_body", False):
                timer.cancel()  # the body is in (or the client left): no deadline any more
                exchange.cut = message["type"] == "http.disconnect"
            return message

        try:
            await self.app(scope, body_receive, exchange)
        except asyncio.CancelledError:
            if not exchange.expired or task is None:
                raise
            task.uncancel()
            if not exchange.started:
                exc = APIError(408, "the request body did not arrive in time", code="timeout")
                await send_error(send, exc, _CLOSE)
        finally:
            timer.cancel()
        if exchange.cut and not exchange.started:
            # granian ends a body it cannot decode (bad chunk sizes, chunk data over its size)
            # as a disconnect: answer 400 and close; a client that really left hears nothing
            with contextlib.suppress(Exception):
                exc = APIError(400, "invalid request body framing", code="bad_framing")
                await send_error(send, exc, _CLOSE)
