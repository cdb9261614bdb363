"""The async OpenAI client: one server's whole answers and chunk streams over a ``Transport``
(``Origin``, keep-alive HTTP; ``MockTransport`` in memory). The benchmark's HTTP engine and
the sweep use it; the gateway uses its transport and SSE books directly, since it passes
the upstream bytes through rather than decoding them into chunks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson

from wattserve.openai.schema import Answer, decode_answer
from wattserve.openai.sse import MAX_EVENT_BYTES, SSEReader, StreamChunk, decode
from wattserve.openai.transport import Origin, Response, Timeouts, Transport


def api_base(base_url: str) -> str:
    """An OpenAI-compatible server's API root: ``base_url`` without a trailing /, ending in /v1."""
    url = base_url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


class StatusError(Exception):
    """The server answered with an HTTP error status; ``text`` is the start of its body."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status, self.text = status, text


class Client:
    """Requests to one OpenAI-compatible server (``base_url`` gains ``/v1`` when missing)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        transport: Transport | None = None,
        timeouts: Timeouts | None = None,
        max_idle: int = 256,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        self.base_url = api_base(base_url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.transport: Transport = transport or Origin(self.base_url, headers, max_idle)
        self.timeouts = timeouts or Timeouts()
        self.max_event_bytes = max_event_bytes

    async def request(
        self, method: str, path: str, body: bytes = b"", timeouts: Timeouts | None = None
    ) -> Response:
        """Send a request; its response once the head is in (``StatusError`` for a 4xx/5xx)."""
        resp = await self.transport.request(method, path, body, timeouts or self.timeouts)
        if resp.status >= 400:
            try:
                text = (await resp.read())[:300].decode(errors="replace")
            finally:
                resp.close()
            raise StatusError(resp.status, text)
        return resp

    async def get_json(self, path: str, timeouts: Timeouts | None = None) -> object:
        resp = await self.request("GET", path, b"", timeouts)
        raw = await resp.read()
        resp.release()
        return orjson.loads(raw)

    async def answer(self, resp: Response) -> tuple[dict[str, object], Answer]:
        """A whole answer, as a dict and checked (``AnswerError`` when it is no completion)."""
        try:
            raw = await resp.read()
        except BaseException:
            resp.close()
            raise
        resp.release()
        return decode_answer(raw)

    async def chunks(self, resp: Response) -> AsyncIterator[tuple[float, list[StreamChunk], bool]]:
        """An SSE answer batch by batch: (arrival time, chunks, ``[DONE]`` came). The
        connection is pooled after ``[DONE]``, closed otherwise (the end of the body, an
        error, or a consumer that stopped reading)."""
        reader = SSEReader(self.max_event_bytes)
        done = False
        try:
            while not done:
                data = await resp.readany()
                if not data:
                    return
                t = time.perf_counter()
                region = reader.feed(data)
                if region:
                    chunks, done = decode(region)
                    yield t, chunks, done
        finally:
            if done:
                resp.release()
            else:
                resp.close()

    async def aclose(self) -> None:
        self.transport.close()
