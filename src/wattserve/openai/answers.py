"""What an OpenAI-compatible server sends: whole JSON answers, SSE chunks, usage events,
``[DONE]`` and OpenAI-style errors. The gateway, the mock server and the sweep's replica
server all write their answers with these functions. JSON goes through ``orjson``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


class APIError(Exception):
    """An OpenAI-style error answer: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    @classmethod
    def internal(cls) -> APIError:
        """The answer to an unexpected failure in the gateway (logged, never sent as traceback)."""
        return cls(500, "internal error in the gateway", type="server_error")

    def payload(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body(self) -> bytes:
        return orjson.dumps(self.payload())

    def sse(self) -> bytes:
        """The error as a final SSE event (for a stream that broke after its first byte)."""
        return event(self.payload())


def event(obj: Any) -> bytes:
    """One SSE ``data:`` event."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _object(endpoint: str, stream: bool) -> str:
    if endpoint == "chat":
        return "chat.completion.chunk" if stream else "chat.completion"
    return "text_completion"


def usage_dict(
    input_tokens: int,
    output_tokens: int,
    energy_j: float | None = None,
    cache_hit: bool | None = None,
    energy_source: str | None = None,
) -> dict[str, Any]:
    """OpenAI ``usage``; the gateway adds ``energy_j`` and ``cache_hit`` (None: left out)."""
    u: dict[str, Any] = {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    if cache_hit is not None:
        u["energy_j"] = energy_j
        u["cache_hit"] = cache_hit
    if energy_source:
        u["energy_source"] = energy_source
    return u


def full_body(
    endpoint: str,
    rid: str,
    model: str,
    text: str,
    finish: str | None,
    usage: dict[str, Any],
    created: int | None = None,
) -> bytes:
    """A whole non-streaming answer."""
    if endpoint == "chat":
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish or "stop",
            "logprobs": None,
        }
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish or "stop", "logprobs": None}
    return orjson.dumps(
        {
            "id": rid,
            "object": _object(endpoint, False),
            "created": int(time.time()) if created is None else created,
            "model": model,
            "choices": [choice],
            "usage": usage,
        }
    )


def chunk_event(
    endpoint: str,
    rid: str,
    model: str,
    text: str | None,
    finish: str | None = None,
    first: bool = False,
    created: int | None = None,
) -> bytes:
    """One SSE event carrying a text delta and/or a finish reason."""
    if endpoint == "chat":
        delta: dict[str, Any] = {"role": "assistant"} if first else {}
        if text:
            delta["content"] = text
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
    return event(
        {
            "id": rid,
            "object": _object(endpoint, True),
            "created": int(time.time()) if created is None else created,
            "model": model,
            "choices": [choice],
        }
    )


def usage_event(
    endpoint: str, rid: str, model: str, usage: dict[str, Any], created: int | None = None
) -> bytes:
    """The usage-only event that ends a stream whose client asked for ``include_usage``."""
    return event(
        {
            "id": rid,
            "object": _object(endpoint, True),
            "created": int(time.time()) if created is None else created,
            "model": model,
            "choices": [],
            "usage": usage,
        }
    )
