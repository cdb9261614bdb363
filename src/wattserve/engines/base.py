"""``EngineBase``, the no-op lifecycle of an engine; ``complete`` turns an engine's chunk
stream into a ``Completion`` with raw timestamps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from wattserve.errors import EngineUnavailable, WattserveError
from wattserve.protocols import Engine
from wattserve.types import Chunk, Completion, Request


class EngineBase:
    """The lifecycle of an engine that holds nothing: ``start`` and ``aclose`` do nothing and it
    is always ``healthy``. Engines that load weights or hold connections override them."""

    name: str = "engine"

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def healthy(self) -> bool:
        return True


def build_engine(model: str, **options: Any) -> Engine:
    """``create_engine(model, **options)``; any failure but a ``WattserveError`` is an
    ``EngineUnavailable`` naming the model and the cause."""
    from wattserve.engines.factory import create_engine

    try:
        return create_engine(model, **options)
    except WattserveError:
        raise
    except Exception as exc:  # noqa: BLE001 - a backend's own errors become one clear line
        raise EngineUnavailable(
            f"cannot create engine for {model!r}: {type(exc).__name__}: {exc}"
        ) from None


async def start_engine(engine: Engine, what: str) -> None:
    """``engine.start()``; any failure but a ``WattserveError`` is an ``EngineUnavailable``
    saying that ``what`` failed to start and why."""
    try:
        await engine.start()
    except WattserveError:
        raise
    except Exception as exc:
        raise EngineUnavailable(f"{what} failed to start: {type(exc).__name__}: {exc}") from exc


async def complete(
    engine: Engine,
    request: Request,
    on_chunk: Callable[[Chunk], None] | None = None,
    timeout_s: float | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> Completion:
    """Consume ``engine.stream(request)``; never raises for engine errors.

    Token counts come from the final chunk's ``usage`` when present, else from summing the
    chunks' ``tokens``, else from ``count_tokens`` on the text (recorded as ``retokenized``),
    else one token per content chunk (``estimated``). Engine exceptions and timeouts become
    ``Completion.error`` so the caller can keep errored requests apart.
    """
    sent = time.perf_counter()
    first: float | None = None
    chunk_t: list[float] = []
    parts: list[str] = []
    tokens = 0
    usage = None
    finish = None
    error: str | None = None

    async def consume() -> None:
        nonlocal first, tokens, usage, finish
        async for chunk in engine.stream(request):
            if chunk.text:
                if first is None:
                    first = chunk.t_s
                chunk_t.append(chunk.t_s)
                parts.append(chunk.text)
            tokens += chunk.tokens
            if chunk.usage is not None:
                usage = chunk.usage
            if chunk.finish_reason is not None:
                finish = chunk.finish_reason
            if on_chunk is not None:
                on_chunk(chunk)

    try:
        if timeout_s is None:
            await consume()
        else:
            await asyncio.wait_for(consume(), timeout_s)
    except TimeoutError:
        error = f"timeout after {timeout_s:g} s"
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - any engine failure is recorded, not raised
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    end = time.perf_counter()
    text = "".join(parts)
    if usage is not None:
        in_tok, out_tok, source = usage.input_tokens, usage.output_tokens, usage.source
    elif tokens:
        in_tok, out_tok, source = request.input_tokens or 0, tokens, "engine"
    elif count_tokens is not None:
        in_tok, out_tok, source = request.input_tokens or 0, count_tokens(text), "retokenized"
    else:
        in_tok, out_tok, source = request.input_tokens or 0, len(chunk_t), "estimated"
    return Completion(
        request_id=request.id,
        model=request.model,
        text=text,
        input_tokens=in_tok,
        output_tokens=out_tok,
        sent_s=sent,
        first_token_s=first,
        end_s=end,
        chunk_t=tuple(chunk_t),
        token_source=source,
        finish_reason=finish,
        error=error,
        replica=getattr(engine, "name", None),
    )
