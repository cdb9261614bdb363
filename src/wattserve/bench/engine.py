"""The engine under test: built from the config, started, probed before any load.

``probe`` sends one 1-token request so an unreachable server or an unknown model fails
with one message before a run directory holds any point. ``tokenizer_of`` /
``count_tokens_fn`` give the engine's own token counts when it has a tokenizer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from wattserve.bench.config import BenchConfig
from wattserve.engines import base
from wattserve.engines.base import build_engine
from wattserve.errors import EngineUnavailable
from wattserve.protocols import Engine
from wattserve.types import Request


def make_engine(cfg: BenchConfig) -> Engine:
    """The engine ``cfg`` names; any failure to build it is an ``EngineUnavailable``."""
    return build_engine(cfg.model, base_url=cfg.base_url, backend=cfg.backend, threads=cfg.threads)


async def maybe_await(x: Any) -> Any:
    """``x``'s value, awaited when it is a coroutine or future (engines may be sync)."""
    return await x if asyncio.iscoroutine(x) or isinstance(x, asyncio.Future) else x


async def start_engine(engine: Engine, cfg: BenchConfig) -> None:
    """``engine.start()``; a failure is an ``EngineUnavailable``."""
    await base.start_engine(engine, f"engine {cfg.model!r}")


async def close_engine(engine: Engine) -> None:
    await engine.aclose()


def tokenizer_of(engine: Any) -> Any:
    """The engine's tokenizer (``encode`` and ``decode``), or None."""
    tok = getattr(engine, "tokenizer", None)
    return tok if tok is not None and hasattr(tok, "encode") and hasattr(tok, "decode") else None


def count_tokens_fn(tok: Any) -> Callable[[str], int] | None:
    """A text -> token count function of ``tok`` (no special tokens), or None without one."""
    if tok is None:
        return None
    return lambda text: len(tok.encode(text, add_special_tokens=False))


async def probe(engine: Any, cfg: BenchConfig) -> None:
    """Before any load: the server's model list (when the engine can ask for it), then one
    1-token request; an unreachable server or unknown model fails here with one message."""
    from wattserve.engines.base import complete

    served: list[str] = []
    if hasattr(engine, "check"):
        served = list(await maybe_await(engine.check()) or [])

    req = Request(
        id="probe",
        model=cfg.model,
        prompt="Hello",
        max_tokens=1,
        endpoint=cfg.endpoint,
        messages=None,
    )
    if cfg.endpoint == "chat":
        from wattserve.types import Message

        req = replace(req, prompt=None, messages=(Message("user", "Hello"),))
    c = await complete(engine, req, timeout_s=cfg.timeout_s or 120.0)
    if not c.ok:
        where = f" at {cfg.base_url}" if cfg.base_url else ""
        hint = (
            f" (the server lists: {', '.join(served[:10])})"
            if served and cfg.model not in served
            else ""
        )
        raise EngineUnavailable(
            f"engine {cfg.model!r}{where} failed a probe request: {c.error}{hint}"
        )
