"""Replicas: engine endpoints the gateway forwards to.

``HttpReplica`` is any OpenAI-compatible server (vLLM, llama-server, the mock server, a
replica the launcher started). The gateway forwards the client's body (model name
rewritten) over the replica's keep-alive connections (``wattserve.openai.transport``) and
passes the upstream SSE bytes through,
parsing each event only to learn the text and usage it needs for the cache and metrics.
``EngineReplica`` wraps an in-process ``Engine`` (``stream(request) -> Chunk``s).

Each replica carries a ``wattserve.serve.breaker.Breaker``: ``healthy`` is its breaker being
closed. ``probe`` is the active health check (GET ``/models``: is anything answering),
``trial`` the half-open check that may put an ejected replica back (a one-token POST with a
short timeout: does it answer requests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from wattserve.engines.base import start_engine
from wattserve.openai.client import api_base
from wattserve.openai.transport import (
    ERRORS,
    Origin,
    Response,
    Timeouts,
    Transport,
    UpstreamTimeoutError,
)
from wattserve.protocols import Engine
from wattserve.serve.breaker import Breaker, Fault
from wattserve.types import Chunk, Request


class UpstreamError(Exception):
    """A replica failed. ``retryable``: nothing reached the client yet and another replica
    may answer; ``status``/``body``: the upstream HTTP answer (a 4xx is passed on as-is);
    ``fault``: what counts against the replica's breaker (None: nothing, e.g. a 4xx the
    request caused, a 429 from a busy replica, an in-process engine's error). ``down=False``
    is the older spelling of ``fault=None``."""

    def __init__(
        self,
        message: str,
        retryable: bool = True,
        status: int = 502,
        body: bytes | None = None,
        down: bool = True,
        fault: Fault | None = "broken",
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.fault: Fault | None = fault if down else None
        self.status = status
        self.body = body

    @property
    def down(self) -> bool:
        return self.fault is not None


def _fault_of(exc: BaseException) -> Fault:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    return "broken"


class Replica:
    """State the pool and the balancers read: health, load, counts."""

    kind = "base"

    def __init__(self, name: str, model: str, device: str = "cpu", slots: int = 8) -> None:
        self.name = name
        self.model = model
        self.device = device
        self.slots = slots
        self.breaker = Breaker()
        self.outstanding = 0
        self.served = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_ok = float("-inf")  # time.monotonic() of the last answered request

    @property
    def healthy(self) -> bool:
        """Takes user requests (its breaker is closed)."""
        return self.breaker.allows

    async def start(self) -> None:  # pragma: no cover - trivial
        return None

    async def probe(self, timeout_s: float) -> Fault | None:  # pragma: no cover - overridden
        """The active health check: None when it passed, else why it failed."""
        return None

    async def trial(self, timeout_s: float) -> bool:  # pragma: no cover - overridden
        """The half-open check: does the replica answer a request within ``timeout_s``."""
        return await self.probe(timeout_s) is None

    async def aclose(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "kind": self.kind,
            "device": self.device,
            "healthy": self.healthy,
            "state": self.breaker.describe(),
            "ejections": self.breaker.opens,
            "outstanding": self.outstanding,
            "served": self.served,
            "failures": self.failures,
            "last_error": self.last_error,
        }


class HttpReplica(Replica):
    kind = "http"

    def __init__(
        self,
        name: str,
        model: str,
        base_url: str,
        engine_model: str | None = None,
        device: str = "cpu",
        slots: int = 8,
        transport: Transport | None = None,
    ) -> None:
        super().__init__(name, model, device, slots)
        self.base_url = api_base(base_url)
        self.engine_model = engine_model or model
        self.origin: Transport = transport or Origin(self.base_url)
        self._trial_body = orjson.dumps(
            {
                "model": self.engine_model,
                "messages": [{"role": "user", "content": "ping"}],
                "max_tokens": 1,
                "temperature": 0,
                "stream": False,
            }
        )

    async def probe(self, timeout_s: float) -> Fault | None:
        t = Timeouts(timeout_s, timeout_s, timeout_s)
        try:
            resp = await self.origin.request("GET", "/models", b"", t)
            await resp.read()
            resp.release()
        except ERRORS as exc:
            return _fault_of(exc)
        return "status" if resp.status >= 500 else None

    async def trial(self, timeout_s: float) -> bool:
        """A one-token chat POST: passes on any answer but a 5xx or 429 (a 4xx still says the
        replica answers requests, e.g. a base model without a chat template)."""
        t = Timeouts(timeout_s, timeout_s, timeout_s)
        try:
            resp = await self.origin.request("POST", "/chat/completions", self._trial_body, t)
            await resp.read()
            resp.release()
        except ERRORS:
            return False
        return resp.status < 500 and resp.status != 429

    async def open(self, path: str, body: bytes, timeouts: Timeouts) -> Response:
        """POST ``body``; the response once its head and first body bytes arrived (2xx only)."""
        try:
            resp = await self.origin.request("POST", path, body, timeouts)
        except UpstreamTimeoutError as exc:
            raise UpstreamError(f"{self.name}: {exc}", fault="timeout") from None
        except ERRORS as exc:
            raise UpstreamError(
                f"{self.name}: {type(exc).__name__}: {exc}", fault=_fault_of(exc)
            ) from None
        if resp.status >= 400:
            try:
                data = await resp.read()
                resp.release()
            except ERRORS:
                resp.close()
                data = b""
            if resp.status >= 500 or resp.status == 429:  # 429: busy, not broken
                raise UpstreamError(
                    f"{self.name}: upstream status {resp.status}",
                    body=data,
                    fault="status" if resp.status >= 500 else None,
                )
            raise UpstreamError(  # the request's own fault: passed on, never counted
                f"{self.name}: upstream status {resp.status}",
                retryable=False,
                status=resp.status,
                body=data,
                fault=None,
            )
        return resp

    async def aclose(self) -> None:
        self.origin.close()


class EngineReplica(Replica):
    """An in-process engine (``LocalEngine``, ``SimulatedEngine`` ...) as a replica."""

    kind = "engine"

    def __init__(
        self,
        name: str,
        model: str,
        engine: Engine,
        engine_model: str | None = None,
        device: str = "cpu",
        slots: int = 8,
    ) -> None:
        super().__init__(name, model, device, slots)
        self.engine = engine
        self.engine_model = engine_model or model
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await start_engine(self.engine, f"replica {self.name}'s engine")
        self._started = True

    async def probe(self, timeout_s: float) -> Fault | None:
        return None if self.engine.healthy() else "status"

    def stream(self, request: Request) -> AsyncIterator[Chunk]:
        return self.engine.stream(request)

    async def aclose(self) -> None:
        if self._started:
            await self.engine.aclose()
        self._started = False
