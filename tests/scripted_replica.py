"""A scripted OpenAI-style replica for the health tests (no tests here): a bare asyncio
HTTP/1.1 server on a free 127.0.0.1 port whose POST behaviour a test sets and changes while
it runs, counting what reached it.

``post``: ``ok`` (a short chat answer, JSON or SSE), ``500`` (an error to everything),
``400`` (a client error to everything), ``cut_first`` / ``cut_mid`` (a stream that ends
with ``[DONE]`` before any finish_reason, as llama-cpp-python's server ends one it
interrupts: in the first write, or after a first content event), ``500_on_list``
(llama.cpp's answer to list-style message content: 500 for that, ``ok`` otherwise),
``hang`` (reads the request, never answers), ``stall_stream`` (sends the SSE head and one
event, then nothing). ``delay_s`` delays each ``ok`` answer; ``models_wait_busy`` makes
GET /v1/models wait until no POST is in flight (llama.cpp's server serves both under one
lock).

Counters: ``posts`` (user requests), ``trials`` (the gateway's one-token "ping" POSTs),
``models_calls``, ``peer_closed`` (requests whose connection the gateway closed before an
answer was complete).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

_OK_TEXT = "hello there"


class ScriptedReplica:
    def __init__(self, post: str = "ok", delay_s: float = 0.0, models_wait_busy: bool = False):
        self.post = post
        self.delay_s = delay_s
        self.models_wait_busy = models_wait_busy
        self.posts = self.trials = self.models_calls = self.peer_closed = 0
        self.in_flight = 0
        self.closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> ScriptedReplica:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.closing = True
        for w in self._conns.values():
            w.close()  # each handler then sees its connection end and returns
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=5.0)

    # ------------------------------------------------------------------ one connection
    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = writer
        try:
            for _ in range(10_000):  # keep-alive: one request after another, bounded
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v.strip())
                body = await reader.readexactly(length) if length else b""
                if method == "GET":
                    await self._models(writer)
                else:
                    await self._complete(json.loads(body or b"{}"), reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            self._conns.pop(task, None)

    async def _models(self, writer: asyncio.StreamWriter) -> None:
        self.models_calls += 1
        if self.models_wait_busy:
            await self._idle.wait()
        _write(writer, 200, {"object": "list", "data": [{"id": "m", "object": "model"}]})
        await writer.drain()

    async def _complete(
        self, body: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        msgs = body.get("messages") or [{}]
        if body.get("max_tokens") == 1 and msgs[0].get("content") == "ping":
            self.trials += 1
        else:
            self.posts += 1
        mode = self.post
        if mode == "500_on_list":
            mode = "500" if any(isinstance(m.get("content"), list) for m in msgs) else "ok"
        if mode == "500":
            _write(writer, 500, {"error": {"message": "can only concatenate str (not list)"}})
        elif mode == "400":
            _write(writer, 400, {"error": {"message": "bad request", "type": "invalid"}})
        elif mode == "cut_first":
            events = _event(None) + b"data: [DONE]\n\n"  # the role-only event, then [DONE]
            writer.write(_SSE_HEAD + _chunk(events) + b"0\r\n\r\n")
        elif mode == "cut_mid":
            writer.write(_SSE_HEAD + _chunk(_event("hel")))
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(_chunk(_event("lo") + b"data: [DONE]\n\n") + b"0\r\n\r\n")
        elif mode in ("hang", "stall_stream"):
            if mode == "stall_stream":
                writer.write(_SSE_HEAD + _chunk(_event("hel")))
                await writer.drain()
            if await _peer_closes(reader, 30.0) and not self.closing:
                self.peer_closed += 1
            raise ConnectionError("done with this connection")
        else:
            self.in_flight += 1
            self._idle.clear()
            try:
                await asyncio.sleep(self.delay_s)
            finally:
                self.in_flight -= 1
                if not self.in_flight:
                    self._idle.set()
            if body.get("stream"):
                events = _event(_OK_TEXT) + _event(None, "stop") + b"data: [DONE]\n\n"
                writer.write(_SSE_HEAD + _chunk(events) + b"0\r\n\r\n")
            else:
                _write(writer, 200, _answer(body))
        await writer.drain()


async def _peer_closes(reader: asyncio.StreamReader, timeout_s: float) -> bool:
    """Whether the other end closes the connection within ``timeout_s``."""
    try:
        return await asyncio.wait_for(reader.read(), timeout_s) == b""
    except (TimeoutError, ConnectionError):
        return False


_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(text: str | None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {}
    ev = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(ev).encode() + b"\n\n"


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-s",
        "object": "chat.completion",
        "model": body.get("model", "m"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": _OK_TEXT},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def _write(writer: asyncio.StreamWriter, status: int, obj: dict[str, Any]) -> None:
    data = json.dumps(obj).encode()
    writer.write(
        b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (status, len(data), data)
    )
