"""The OpenAI request schema: request bodies -> ``Request``, upstream answers checked for shape,
and the JSON schemas of the two request bodies for the gateway's OpenAPI document.

The schema is msgspec structs. Decoding a typical chat body (two messages, sampling options,
``stream_options``; ``benchmarks``-style script of 20,000 decodes, best of 5) cost 0.44 us
into a msgspec struct against 5.2 us with pydantic's ``model_validate_json`` and 1.2 us for
a bare ``orjson.loads``. The gateway needs the body as a dict too (it forwards it, model name
rewritten, and keys the cache by it), so a body is read with ``orjson`` once and checked with
``msgspec.convert`` (0.8 us). Fields the schema does not name pass through unchecked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
import orjson

from wattserve.openai.answers import APIError
from wattserve.types import Message, Request

MAX_DEPTH = 64  # deepest JSON nesting a body may have (orjson writes at most 254 levels)

# fields that never change the answer: left out of ``Request.extra``
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


class TextPart(msgspec.Struct):
    type: Literal["text"]
    text: str


class ChatMessage(msgspec.Struct):
    role: str
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class _Common(msgspec.Struct, kw_only=True):
    model: Annotated[
        str,
        msgspec.Meta(
            min_length=1, description="a served model, 'auto', or 'router-<policy>-<threshold>'"
        ),
    ]
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    n: Literal[1] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    ignore_eos: bool = False


class ChatCompletionRequest(_Common):
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]


class CompletionRequest(_Common):
    prompt: str | list[str]


_BODIES: dict[str, type[ChatCompletionRequest] | type[CompletionRequest]] = {
    "chat": ChatCompletionRequest,
    "completions": CompletionRequest,
}


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests containers deeper than ``MAX_DEPTH`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        items = v.values() if isinstance(v, dict) else v
        stack.extend((x, depth + 1) for x in items if isinstance(x, (dict, list)))
    return False


def parse_body(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object (``APIError`` 400 for anything else)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    # an object needs at least MAX_DEPTH brackets to be that deep: count before walking
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _too_deep(body):
        raise APIError(400, f"request body nests deeper than {MAX_DEPTH} levels", code="too_deep")
    return body


def _invalid(exc: msgspec.ValidationError) -> APIError:
    msg = str(exc)
    at = msg.rfind(" - at `$")
    param = msg[at + 8 : -1].lstrip(".") if at >= 0 else None
    return APIError(400, f"invalid request: {msg}", param=param or None)


def _text(content: str | list[TextPart] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(p.text for p in content)


def to_request(
    endpoint: str,
    body: Mapping[str, Any],
    request_id: str,
    tenant: str,
    default_max_tokens: int,
    max_tokens_limit: int,
) -> Request:
    """Validate an OpenAI body and build the canonical ``Request`` (raises ``APIError`` 400)."""
    chat = endpoint == "chat"
    try:
        b = msgspec.convert(body, _BODIES["chat" if chat else "completions"])
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    messages = prompt = None
    if isinstance(b, ChatCompletionRequest):
        messages = tuple(Message(m.role, _text(m.content)) for m in b.messages)
    else:
        p = b.prompt
        if isinstance(p, list):
            if len(p) != 1:
                raise APIError(
                    400, "'prompt' must be one string (batched prompts are not supported)", "prompt"
                )
            p = p[0]
        prompt = p
    mt = b.max_completion_tokens or b.max_tokens or default_max_tokens
    if mt > max_tokens_limit:
        raise APIError(400, f"'max_tokens' must be at most {max_tokens_limit}", param="max_tokens")
    stop = b.stop
    return Request(
        id=request_id,
        model=b.model,
        prompt=prompt,
        messages=messages,
        max_tokens=mt,
        temperature=1.0 if b.temperature is None else b.temperature,
        top_p=1.0 if b.top_p is None else b.top_p,
        seed=b.seed,
        stop=() if stop is None else (stop,) if isinstance(stop, str) else tuple(stop),
        ignore_eos=b.ignore_eos,
        endpoint="chat" if chat else "completions",
        stream=b.stream,
        tenant=tenant,
        extra={k: v for k, v in body.items() if k not in _NOT_OUTPUT},
    )


def wants_usage(body: Mapping[str, Any]) -> bool:
    so = body.get("stream_options")
    return isinstance(so, dict) and bool(so.get("include_usage"))


def openapi_schemas() -> dict[str, Any]:
    """JSON schemas of the two request bodies (``#/components/schemas/...`` references)."""
    _, components = msgspec.json.schema_components(
        (ChatCompletionRequest, CompletionRequest), ref_template="#/components/schemas/{name}"
    )
    return components


# ------------------------------------------------------------------ upstream answers
class _AnswerMessage(msgspec.Struct, gc=False):
    content: str | None = None


class _AnswerChoice(msgspec.Struct, gc=False):
    message: _AnswerMessage | None = None
    text: str | None = None
    finish_reason: str | None = None


class _AnswerUsage(msgspec.Struct, gc=False):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class Answer(msgspec.Struct, gc=False):
    """The fields of a whole (non-streaming) completion that anyone reads."""

    choices: Annotated[list[_AnswerChoice], msgspec.Meta(min_length=1)]
    usage: _AnswerUsage | None = None

    @property
    def text(self) -> str:
        c = self.choices[0]
        return (c.message.content if c.message is not None else c.text) or ""

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason

    @property
    def tokens(self) -> tuple[int, int]:
        u = self.usage
        return (u.prompt_tokens or 0, u.completion_tokens or 0) if u else (0, 0)


class AnswerError(ValueError):
    """An upstream answer that is not an OpenAI completion."""


def decode_answer(raw: bytes) -> tuple[dict[str, Any], Answer]:
    """A whole upstream answer as a dict and checked: ``AnswerError`` when it is not JSON or
    not a completion (``[1,2,3]``, an object without choices ...)."""
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise AnswerError(f"the answer is JSON {type(data).__name__}, not an object")
        return data, msgspec.convert(data, Answer)
    except orjson.JSONDecodeError:
        raise AnswerError("the answer is not JSON") from None
    except msgspec.ValidationError as exc:
        raise AnswerError(f"the answer is not a completion: {exc}") from None
