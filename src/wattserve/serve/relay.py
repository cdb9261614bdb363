"""Answers from a replica to the client: pass-through of an HTTP replica's SSE bytes (parsed
only to learn the text and usage the books need) and formatting of an in-process engine's
chunks. Each function gets the request's ``Ledger`` and closes it once the answer ended;
a failure before the first byte raises ``UpstreamError`` (the pipeline may try another
replica), garbage from upstream included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field, replace

import orjson

from wattserve.openai import answers
from wattserve.openai.answers import APIError
from wattserve.openai.schema import AnswerError, decode_answer, wants_usage
from wattserve.openai.sse import ERROR_EVENT, SSEError, SSEReader, StreamBooks
from wattserve.openai.transport import ERRORS, Response, Timeouts
from wattserve.serve.ledger import Ledger
from wattserve.serve.replica import EngineReplica, HttpReplica, UpstreamError
from wattserve.types import Chunk

log = logging.getLogger("wattserve.serve")
_PATHS = {"chat": "/chat/completions", "completions": "/completions"}
_BAD_STREAM = (*ERRORS, SSEError)


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    stream: AsyncIterator[bytes] | None = None
    sse: bool = False  # ``body`` holds a whole SSE stream (every event was already at hand)

    @property
    def media_type(self) -> str:
        return "text/event-stream" if self.stream is not None or self.sse else "application/json"


def error_reply(exc: APIError) -> Reply:
    """An OpenAI-style JSON error as a ``Reply``."""
    return Reply(exc.status, body=exc.body())


def _energy_header(usage: dict[str, object]) -> tuple[str, str]:
    e = usage["energy_j"]
    return ("x-wattserve-energy-j", "" if e is None else f"{e:.6g}")


# [DONE] before any finish_reason: the replica cut its own answer short
CUT_SHORT = "[DONE] before a finish_reason (the replica interrupted the answer)"


def _tail(led: Ledger, usage: dict[str, object]) -> bytes:
    """Our usage event (when the client asked for it; with joules) and ``[DONE]``."""
    if wants_usage(led.body):
        return answers.usage_event(led.req.endpoint, led.req.id, led.model, usage) + answers.DONE
    return answers.DONE


# ------------------------------------------------------------ HTTP replicas (pass-through)
async def http_answer(led: Ledger, rep: HttpReplica, timeouts: Timeouts) -> Reply:
    """Forward to an OpenAI-compatible replica; a stream is returned once its first event came."""
    req = led.req
    fwd = dict(led.body)
    fwd["model"] = rep.engine_model
    if req.stream:
        fwd["stream_options"] = {"include_usage": True}
    resp = await rep.open(_PATHS[req.endpoint], orjson.dumps(fwd), timeouts)
    if not req.stream:
        try:
            data, answer = decode_answer(await resp.read())
        except ERRORS as exc:
            resp.close()
            raise UpstreamError(f"{rep.name}: {type(exc).__name__}: {exc}") from None
        except AnswerError as exc:
            resp.close()
            raise UpstreamError(f"{rep.name}: {exc}") from None
        except BaseException:  # cancelled (the client went away): the connection is not reusable
            resp.close()
            raise
        resp.release()
        led.ttft_s = time.perf_counter() - led.t0
        usage = led.close(answer.text, answer.finish_reason, *answer.tokens)
        data["usage"] = usage
        data["model"] = led.model
        return Reply(200, [*led.headers(), _energy_header(usage)], body=orjson.dumps(data))
    reader = SSEReader()
    books = StreamBooks(req.endpoint == "chat", led.t0)
    try:
        events = b""
        while b"data:" not in events:  # the first event: until it is in, another replica may answer
            got = await resp.readany()
            if not got:
                raise UpstreamError(f"{rep.name}: stream closed before its first event")
            events += reader.feed(got)
    except _BAD_STREAM as exc:
        resp.close()
        raise UpstreamError(f"{rep.name}: stream failed before its first event: {exc}") from None
    except BaseException:
        resp.close()
        raise
    out, done, error = books.take(events)
    if error is not None and error != ERROR_EVENT and books.n == 0:
        resp.close()  # garbage first: nothing reached the client, another replica may answer
        raise UpstreamError(f"{rep.name}: {error}")
    led.ttft_s = books.ttft_s
    led.arrived(len(books.parts))
    if done and error is None and books.finish is None:
        resp.release()  # nothing reached the client: another replica may answer it whole
        raise UpstreamError(f"{rep.name}: {CUT_SHORT}", fault=None)
    if done and error is None:
        # the replica's whole answer is already here (short or fast answers): one SSE body, no
        # stream machinery; measured 0.33 -> 0.25 ms of gateway CPU per request on the mock
        resp.release()
        usage = _close_stream(led, books, None)
        return Reply(200, led.headers(), body=out + _tail(led, usage), sse=True)
    relay = http_relay(led, rep, resp, reader, books, out, done, error)
    return Reply(200, led.headers(), stream=relay)


def _close_stream(
    led: Ledger, books: StreamBooks, error: str | None, broken: bool = False
) -> dict[str, object]:
    """Close the books on a relayed stream (tokens counted from events when the replica sent
    no usage); returns the usage dict."""
    text = "".join(books.parts)
    out = books.out_tok or len(books.parts)
    return led.close(text, books.finish, books.in_tok, out, error, broken=broken)


async def http_relay(
    led: Ledger,
    rep: HttpReplica,
    resp: Response,
    reader: SSEReader,
    books: StreamBooks,
    out: bytes,
    done: bool,
    error: str | None,
) -> AsyncIterator[bytes]:
    """Pass upstream events through, those that arrived together in one write; ``out``,
    ``done`` and ``error`` are the books on the first batch."""
    held = b""
    broken = interrupted = False
    try:
        try:
            while True:
                if done or error is not None:
                    held = out  # sent with the tail below: one write less per stream
                    break
                if out:
                    yield out
                data = await resp.readany()
                if not data:
                    break
                out, done, error = books.take(reader.feed(data))
                led.arrived(len(books.parts))
                if led.ttft_s is None:
                    led.ttft_s = books.ttft_s
            if error is None and books.finish is None:
                # [DONE] before any finish_reason: the replica cut its own answer short
                # (llama-cpp-python's server does so for a request that arrives meanwhile,
                # unless started with --interrupt_requests False); not the replica's health
                interrupted = done
                error = CUT_SHORT if done else "upstream stream ended without finishing"
        except _BAD_STREAM as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if error is not None and error != ERROR_EVENT:
            broken = not interrupted
            if held:  # the answer's last events before the error event that ends it
                yield held
                held = b""
            log.warning("replica %s broke mid-stream after %d events: %s", rep.name, books.n, error)
            yield APIError(
                502,
                f"replica {rep.name} failed mid-stream after {books.n} chunks: {error}",
                type="upstream_error",
                code="stream_broken",
            ).sse()
    finally:
        if done:
            resp.release()
        else:
            resp.close()
        if error is None and not done and books.finish is None:
            error = "the client went away mid-stream"  # never cache a cut answer
        usage = _close_stream(led, books, error, broken)
    yield held + (_tail(led, usage) if error is None else answers.DONE)


# ---------------------------------------------------------------------- in-process engines
async def engine_answer(led: Ledger, rep: EngineReplica, timeouts: Timeouts) -> Reply:
    """Run an in-process engine; a stream is returned once its first chunk came."""
    req = led.req
    agen = rep.stream(replace(req, model=rep.engine_model)).__aiter__()
    deadline = asyncio.get_running_loop().time() + timeouts.total_s
    try:
        async with asyncio.timeout(timeouts.read_s):
            first = await agen.__anext__()
    except StopAsyncIteration:
        raise UpstreamError(f"{rep.name}: engine produced no output", fault=None) from None
    except TimeoutError:
        await _aclose(agen)
        raise UpstreamError(
            f"{rep.name}: no first token within {timeouts.read_s:g} s", fault=None
        ) from None
    except Exception as exc:  # noqa: BLE001 - an engine failure before any byte: retry elsewhere
        # an in-process engine does not die like a server process: it stays in the pool
        raise UpstreamError(f"{rep.name}: {type(exc).__name__}: {exc}", fault=None) from None
    led.ttft_s = time.perf_counter() - led.t0
    if req.stream:
        return Reply(200, led.headers(), stream=engine_relay(led, rep, agen, first, deadline))
    parts, finish, usage, error = [first.text], first.finish_reason, first.usage, None
    try:
        async with asyncio.timeout_at(deadline):
            async for ch in agen:
                parts.append(ch.text)
                finish = ch.finish_reason or finish
                usage = ch.usage or usage
    except Exception as exc:  # noqa: BLE001
        error = f"{type(exc).__name__}: {exc}"
    text = "".join(parts)
    in_tok, out_tok = (usage.input_tokens, usage.output_tokens) if usage else (0, len(parts))
    u = led.close(text, finish, in_tok, out_tok, error)
    if error is not None:
        raise APIError(502, f"replica {rep.name} failed: {error}", type="upstream_error")
    body = answers.full_body(req.endpoint, req.id, led.model, text, finish, u)
    return Reply(200, [*led.headers(), _energy_header(u)], body=body)


async def engine_relay(
    led: Ledger, rep: EngineReplica, agen: AsyncIterator[Chunk], ch: Chunk | None, deadline: float
) -> AsyncIterator[bytes]:
    ep, rid, model = led.req.endpoint, led.req.id, led.model
    parts: list[str] = []
    finish = usage = error = None
    first = True
    ended = False
    try:
        try:
            while ch is not None:
                if ch.text or ch.finish_reason:
                    parts.append(ch.text)
                    if ch.text:  # content: an ITL sample (not the bare finish chunk)
                        led.arrived(len(parts))
                    finish = ch.finish_reason or finish
                    yield answers.chunk_event(ep, rid, model, ch.text, ch.finish_reason, first)
                    first = False
                usage = ch.usage or usage
                try:
                    async with asyncio.timeout_at(deadline):
                        ch = await agen.__anext__()
                except StopAsyncIteration:
                    ch = None
            ended = True
        except Exception as exc:  # noqa: BLE001 - reported to the client as an error event
            error = f"{type(exc).__name__}: {exc}"
            yield APIError(
                502,
                f"replica {rep.name} failed mid-stream: {error}",
                type="upstream_error",
                code="stream_broken",
            ).sse()
    finally:
        await _aclose(agen)
        in_tok, out_tok = (usage.input_tokens, usage.output_tokens) if usage else (0, len(parts))
        if error is None and not ended:
            error = "the client went away mid-stream"  # never cache a cut answer
        u = led.close("".join(parts), finish, in_tok, out_tok, error)
    yield (_tail(led, u) if error is None else answers.DONE)


async def _aclose(agen: AsyncIterator[Chunk]) -> None:
    """Close an engine's stream (an async generator; other iterators have nothing to close)."""
    if isinstance(agen, AsyncGenerator):
        with contextlib.suppress(Exception):
            await agen.aclose()
