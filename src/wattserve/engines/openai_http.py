"""Streaming client for any OpenAI-compatible server (vLLM, llama.cpp, SGLang, Ollama, mocks).

It is also the load generator's client, so the per-chunk path is kept short: one shared
aiohttp ``ClientSession`` with a large connection pool, SSE lines read straight off the
socket, each chunk stamped with ``time.perf_counter()`` on arrival. Token counts come from
the server's ``usage`` (requested with ``stream_options.include_usage``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from wattserve.errors import ConfigError, EngineUnavailable
from wattserve.types import Chunk, Request, Usage

_PATHS = {"chat": "/chat/completions", "completions": "/completions"}

_dumps: Callable[[Any], bytes]
_loads: Callable[[bytes | str], Any]
try:  # orjson parses SSE frames several times faster; plain json works too
    from orjson import dumps as _dumps
    from orjson import loads as _loads
except ImportError:  # pragma: no cover

    def _json_dumps(obj: Any) -> bytes:
        return json.dumps(obj).encode()

    _dumps, _loads = _json_dumps, json.loads


def _usage(raw: Any) -> Usage | None:
    if not raw:
        return None
    return Usage(
        int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0), source="usage"
    )


def api_base(base_url: str) -> str:
    """An OpenAI-compatible server's API root: ``base_url`` without a trailing /, ending in /v1."""
    url = base_url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


class OpenAIHTTPEngine:
    """Client of ``{base_url}/chat/completions`` and ``{base_url}/completions``.

    ``base_url`` ends in ``/v1`` (added when missing). ``endpoint`` overrides each request's
    own ``endpoint``; ``stream=False`` asks for whole responses (one chunk each).
    """

    def __init__(
        self,
        base_url: str,
        model: str = "",
        endpoint: str | None = None,
        api_key: str | None = None,
        stream: bool | None = None,
        max_connections: int = 2048,
        timeout_s: float | None = 600.0,
        connect_timeout_s: float = 10.0,
        name: str | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base URL must start with http:// or https://, got {base_url!r}")
        url = api_base(base_url)
        if endpoint is not None and endpoint not in _PATHS:
            raise ConfigError(f"endpoint must be one of {', '.join(_PATHS)}, got {endpoint!r}")
        self.base_url = url
        self.model = model
        self.endpoint = endpoint
        self.stream_mode = stream
        self.max_connections = max_connections
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.name = name or url
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ session
    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, limit_per_host=0, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                headers=self.headers,
                auto_decompress=False,
            )
            self._loop = loop
        return self._session

    async def start(self) -> None:
        self._get_session()

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()

    async def check(self) -> list[str]:
        """GET ``/models``; return the served model ids or raise ``EngineUnavailable``."""
        url = f"{self.base_url}/models"
        try:
            async with self._get_session().get(
                url, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                if resp.status >= 400:
                    raise EngineUnavailable(f"cannot reach {url}: HTTP {resp.status}")
                body = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise EngineUnavailable(f"cannot reach {url}: {exc or type(exc).__name__}") from exc
        return [m.get("id", "") for m in (body or {}).get("data", [])]

    # ------------------------------------------------------------------ request
    def payload(self, request: Request, stream: bool) -> tuple[str, dict[str, Any]]:
        endpoint = self.endpoint or request.endpoint
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": stream,
        }
        if endpoint == "chat":
            if request.messages:
                body["messages"] = [
                    {"role": m.role, "content": m.content} for m in request.messages
                ]
            else:
                body["messages"] = [{"role": "user", "content": request.prompt or ""}]
        else:
            body["prompt"] = request.text()
        if request.top_p != 1.0:
            body["top_p"] = request.top_p
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = list(request.stop)
        if request.ignore_eos:
            body["ignore_eos"] = True  # vLLM / SGLang / llama.cpp extension
        if stream:
            body["stream_options"] = {"include_usage": True}
        body.update(request.extra)
        return f"{self.base_url}{_PATHS[endpoint]}", body

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        stream = request.stream if self.stream_mode is None else self.stream_mode
        url, body = self.payload(request, stream)
        session = self._get_session()
        try:
            async with session.post(url, data=_dumps(body)) as resp:
                if resp.status >= 400:
                    text = (await resp.text())[:300]
                    raise EngineUnavailable(f"HTTP {resp.status} from {url}: {text}")
                if not stream:
                    data = await resp.json(content_type=None)
                    yield self._whole(data)
                    return
                async for chunk in self._sse(resp, url):
                    yield chunk
        except (aiohttp.ClientConnectorError, ConnectionRefusedError) as exc:
            raise EngineUnavailable(f"cannot reach {url}: {exc}") from exc
        except (
            aiohttp.ClientPayloadError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
        ) as exc:
            raise EngineUnavailable(
                f"connection to {url} lost mid-response: {exc or type(exc).__name__}"
            ) from exc

    async def _sse(self, resp: aiohttp.ClientResponse, url: str) -> AsyncIterator[Chunk]:
        done = False
        finish: str | None = None
        loads = _loads
        now = time.perf_counter
        async for line in resp.content:
            if not line.startswith(b"data:"):
                continue
            t = now()
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            obj = loads(data)
            if "error" in obj and not obj.get("choices"):
                raise EngineUnavailable(f"server error from {url}: {obj['error']}")
            choices = obj.get("choices")
            usage = _usage(obj.get("usage"))
            text = ""
            reason = None
            if choices:
                c = choices[0]
                delta = c.get("delta")
                text = (delta.get("content") or "") if delta is not None else (c.get("text") or "")
                reason = c.get("finish_reason")
                if reason:
                    finish = reason
            if text or reason or usage:
                yield Chunk(text=text, t_s=t, finish_reason=reason, usage=usage)
        if not done and finish is None:
            raise EngineUnavailable(f"stream from {url} ended before completion")

    @staticmethod
    def _whole(data: dict[str, Any]) -> Chunk:
        t = time.perf_counter()
        choices = data.get("choices") or [{}]
        c = choices[0]
        text = (c.get("message") or {}).get("content") if "message" in c else c.get("text")
        return Chunk(
            text=text or "",
            t_s=t,
            finish_reason=c.get("finish_reason"),
            usage=_usage(data.get("usage")),
        )
