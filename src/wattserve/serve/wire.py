"""The OpenAI wire format: request bodies -> ``Request``, answers -> JSON / SSE bytes.

Kept free of any web framework so the pipeline, the fast ASGI route and the FastAPI routes
share one parser and one set of error shapes. JSON goes through ``orjson``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from wattserve.types import Message, Request

# fields that never change the answer: left out of the cache key (``Request.extra``)
_NOT_OUTPUT = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "n",
        "user",
        "metadata",
        "store",
        "service_tier",
        "ignore_eos",
    }
)

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
        return b"data: " + self.body() + b"\n\n"


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    return body


def _number(body: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise APIError(400, f"'{name}' must be a number between {lo:g} and {hi:g}", param=name)
    return float(v)


def _content(v: Any, i: int) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, list):  # content parts: only text parts are supported
        parts = []
        for p in v:
            if (
                not isinstance(p, dict)
                or p.get("type") != "text"
                or not isinstance(p.get("text"), str)
            ):
                raise APIError(
                    400,
                    f"messages[{i}].content: only text parts are supported",
                    param=f"messages[{i}].content",
                )
            parts.append(p["text"])
        return "".join(parts)
    if v is None:
        return ""
    raise APIError(
        400,
        f"messages[{i}].content must be a string or a list of text parts",
        param=f"messages[{i}].content",
    )


def to_request(
    endpoint: str,
    body: Mapping[str, Any],
    request_id: str,
    tenant: str,
    default_max_tokens: int,
    max_tokens_limit: int,
) -> Request:
    """Validate an OpenAI body and build the canonical ``Request`` (raises ``APIError`` 400)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "'model' is required and must be a non-empty string", param="model")
    messages = prompt = None
    if endpoint == "chat":
        raw = body.get("messages")
        if not isinstance(raw, list) or not raw:
            raise APIError(400, "'messages' must be a non-empty list", param="messages")
        msgs = []
        for i, m in enumerate(raw):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise APIError(
                    400, f"messages[{i}] must be an object with a 'role'", param=f"messages[{i}]"
                )
            msgs.append(Message(m["role"], _content(m.get("content"), i)))
        messages = tuple(msgs)
    else:
        p = body.get("prompt")
        if isinstance(p, list) and len(p) == 1 and isinstance(p[0], str):
            p = p[0]
        if not isinstance(p, str):
            raise APIError(
                400, "'prompt' must be a string (batched prompts are not supported)", param="prompt"
            )
        prompt = p
    mt = body.get("max_completion_tokens", body.get("max_tokens"))
    if mt is None:
        mt = default_max_tokens
    if isinstance(mt, bool) or not isinstance(mt, int) or not 1 <= mt <= max_tokens_limit:
        raise APIError(
            400,
            f"'max_tokens' must be an integer between 1 and {max_tokens_limit}",
            param="max_tokens",
        )
    n = body.get("n", 1)
    if n != 1:
        raise APIError(400, "only n=1 is supported", param="n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, "'stream' must be a boolean", param="stream")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise APIError(400, "'seed' must be an integer", param="seed")
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise APIError(400, "'stop' must be a string or a list of strings", param="stop")
    extra = {k: v for k, v in body.items() if k not in _NOT_OUTPUT}
    return Request(
        id=request_id,
        model=model,
        prompt=prompt,
        messages=messages,
        max_tokens=mt,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
        seed=seed,
        stop=stops,
        ignore_eos=bool(body.get("ignore_eos", False)),
        endpoint="chat" if endpoint == "chat" else "completions",
        stream=stream,
        tenant=tenant,
        extra=extra,
    )


def wants_usage(body: Mapping[str, Any]) -> bool:
    so = body.get("stream_options")
    return isinstance(so, dict) and bool(so.get("include_usage"))


# ---------------------------------------------------------------- answers we build ourselves
def _object(endpoint: str, stream: bool) -> str:
    if endpoint == "chat":
        return "chat.completion.chunk" if stream else "chat.completion"
    return "text_completion"


def usage_dict(
    input_tokens: int,
    output_tokens: int,
    energy_j: float | None,
    cache_hit: bool,
    energy_source: str | None = None,
) -> dict[str, Any]:
    u: dict[str, Any] = {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "energy_j": energy_j,
        "cache_hit": cache_hit,
    }
    if energy_source:
        u["energy_source"] = energy_source
    return u


def full_body(
    endpoint: str, rid: str, model: str, text: str, finish: str | None, usage: dict[str, Any]
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
            "created": int(time.time()),
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
) -> bytes:
    """One SSE ``data:`` event carrying a text delta and/or a finish reason."""
    if endpoint == "chat":
        delta: dict[str, Any] = {"role": "assistant"} if first else {}
        if text:
            delta["content"] = text
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
    return (
        b"data: "
        + orjson.dumps(
            {
                "id": rid,
                "object": _object(endpoint, True),
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
            }
        )
        + b"\n\n"
    )


def usage_event(endpoint: str, rid: str, model: str, usage: dict[str, Any]) -> bytes:
    return (
        b"data: "
        + orjson.dumps(
            {
                "id": rid,
                "object": _object(endpoint, True),
                "created": int(time.time()),
                "model": model,
                "choices": [],
                "usage": usage,
            }
        )
        + b"\n\n"
    )
