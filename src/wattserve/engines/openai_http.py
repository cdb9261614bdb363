"""Streaming engine for any OpenAI-compatible server (vLLM, llama.cpp, SGLang, Ollama, mocks).

It is also the load generator's client, so the per-chunk path is kept short: the project's
OpenAI client (``wattserve.openai.Client``: keep-alive connections, batch SSE decoding into
typed chunks), each batch of chunks stamped with ``time.perf_counter()`` when its bytes
arrived. Token counts come from the server's ``usage`` (``stream_options.include_usage``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from wattserve.engines.base import EngineBase
from wattserve.errors import ConfigError, EngineUnavailable
from wattserve.openai.client import Client, StatusError, api_base
from wattserve.openai.schema import Answer, AnswerError
from wattserve.openai.sse import SSEError, StreamChunk
from wattserve.openai.transport import ERRORS, ConnectFailedError, Response, Timeouts
from wattserve.types import Chunk, Request, Usage

_PATHS = {"chat": "/chat/completions", "completions": "/completions"}


class StreamTruncatedError(EngineUnavailable):
    """A stream that ended without a finish reason, without ``[DONE]``, or (with
    ``ignore_eos``) with ``length`` before ``max_tokens`` tokens: the answer is cut short."""


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    return Usage(raw.prompt_tokens or 0, raw.completion_tokens or 0, source="usage")


class OpenAIHTTPEngine(EngineBase):
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
        total = 1e9 if timeout_s is None else timeout_s  # None: no limit
        self.client = Client(
            url,
            api_key=api_key,
            timeouts=Timeouts(connect_s=connect_timeout_s, read_s=total, total_s=total),
            max_idle=max_connections,
        )
        self.name = name or url

    async def aclose(self) -> None:
        await self.client.aclose()

    async def check(self) -> list[str]:
        """GET ``/models``; return the served model ids or raise ``EngineUnavailable``."""
        url = f"{self.base_url}/models"
        try:
            body = await self.client.get_json("/models", Timeouts(10.0, 10.0, 10.0))
            return [str(m.get("id", "")) for m in body.get("data", [])]  # type: ignore[attr-defined]
        except (*ERRORS, StatusError, ValueError, AttributeError) as exc:
            raise EngineUnavailable(f"cannot reach {url}: {exc or type(exc).__name__}") from exc

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
        try:
            resp = await self.client.request("POST", url[len(self.base_url) :], orjson.dumps(body))
            if not stream:
                _, answer = await self.client.answer(resp)
                yield self._whole(answer)
                return
            async for chunk in self._sse(resp, url, request):
                yield chunk
        except StatusError as exc:
            raise EngineUnavailable(f"HTTP {exc.status} from {url}: {exc.text}") from exc
        except ConnectFailedError as exc:
            raise EngineUnavailable(f"cannot reach {url}: {exc}") from exc
        except (SSEError, AnswerError) as exc:
            raise EngineUnavailable(f"bad answer from {url}: {exc}") from exc
        except ERRORS as exc:
            raise EngineUnavailable(
                f"connection to {url} lost mid-response: {exc or type(exc).__name__}"
            ) from exc

    async def _sse(self, resp: Response, url: str, request: Request) -> AsyncIterator[Chunk]:
        done = False
        finish: str | None = None
        out_tokens: int | None = None
        async for t, chunks, ended in self.client.chunks(resp):
            done = ended
            for ch in chunks:
                c = _chunk(ch, url)
                if c.usage is not None:
                    out_tokens = c.usage.output_tokens
                finish = c.finish_reason or finish
                if c.text or c.finish_reason or c.usage:
                    yield Chunk(c.text, t, finish_reason=c.finish_reason, usage=c.usage)
        if not done or finish is None:
            missing = " and ".join(
                m for m, gone in (("a finish reason", finish is None), ("[DONE]", not done)) if gone
            )
            raise StreamTruncatedError(f"stream from {url} ended without {missing}")
        short = out_tokens is not None and out_tokens < request.max_tokens
        if finish == "length" and request.ignore_eos and short:
            raise StreamTruncatedError(
                f"stream from {url} ended 'length' after {out_tokens} of "
                f"{request.max_tokens} tokens with ignore_eos set"
            )

    @staticmethod
    def _whole(answer: Answer) -> Chunk:
        return Chunk(
            text=answer.text,
            t_s=time.perf_counter(),
            finish_reason=answer.finish_reason,
            usage=_usage(answer.usage),
        )


def _chunk(ch: StreamChunk, url: str) -> Chunk:
    """One decoded event as a ``Chunk`` (its time is the batch's); an error event raises."""
    if ch.error is not None and not ch.choices:
        raise EngineUnavailable(f"server error from {url}: {str(ch.error)[:300]}")
    text, reason = "", None
    if ch.choices:
        c = ch.choices[0]
        text = (c.delta.content if c.delta is not None else c.text) or ""
        reason = c.finish_reason
    return Chunk(text, 0.0, finish_reason=reason, usage=_usage(ch.usage))
