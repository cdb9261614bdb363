"""The OpenAI protocol, once: the request schema (validation and the OpenAPI schemas), the
answer encoders (JSON, SSE chunks, usage events, errors), a bounded SSE decoder, and one
async client over a transport seam (keep-alive HTTP, or in memory for tests)::

    from wattserve.openai import Client, MockResponse, MockTransport
    client = Client("http://127.0.0.1:8000", transport=MockTransport(
        lambda method, path, body: MockResponse(200, b'{"choices": [{"text": "hi"}]}')))

Every module here is light (orjson, msgspec, httptools, asyncio), so names import eagerly.
"""

from __future__ import annotations

from wattserve.openai.answers import DONE, APIError, chunk_event, full_body, usage_dict, usage_event
from wattserve.openai.client import Client, StatusError, api_base
from wattserve.openai.schema import (
    AnswerError,
    decode_answer,
    openapi_schemas,
    parse_body,
    to_request,
)
from wattserve.openai.sse import SSEError, SSEReader, StreamBooks
from wattserve.openai.transport import MockResponse, MockTransport, Origin, Timeouts

__all__ = [
    "DONE",
    "APIError",
    "AnswerError",
    "Client",
    "MockResponse",
    "MockTransport",
    "Origin",
    "SSEError",
    "SSEReader",
    "StatusError",
    "StreamBooks",
    "Timeouts",
    "api_base",
    "chunk_event",
    "decode_answer",
    "full_body",
    "openapi_schemas",
    "parse_body",
    "to_request",
    "usage_dict",
    "usage_event",
]
