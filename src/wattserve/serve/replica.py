"""Replicas: engine endpoints the gateway forwards to.

``HttpReplica`` is any OpenAI-compatible server (vLLM, llama-server, the mock server, a
replica the launcher started). The gateway forwards the client's body (model name
rewritten) over the replica's keep-alive connections (``wattserve.serve.upstream``) and
passes the upstream SSE bytes through,
parsing each event only to learn the text and usage it needs for the cache and metrics.
``EngineReplica`` wraps an in-process ``Engine`` (``stream(request) -> Chunk``s).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from wattserve.engines.openai_http import api_base
from wattserve.errors import EngineUnavailable, WattserveError
from wattserve.serve.upstream import ERRORS, Origin, Response, Timeouts, UpstreamTimeoutError
from wattserve.types import Chunk, Request


class UpstreamError(Exception):
    """A replica failed. ``retryable``: nothing reached the client yet and another replica
    may answer; ``status``/``body``: an upstream HTTP answer to pass on as-is (4xx)."""

    def __init__(
        self,
        message: str,
        retryable: bool = True,
        status: int = 502,
        body: bytes | None = None,
        down: bool = True,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.down = down  # the replica looks dead (no connection, timeout), not just one bad answer
        self.status = status
        self.body = body


class Replica:
    """State the pool and the balancers read: health, load, counts."""

    kind = "base"

    def __init__(self, name: str, model: str, device: str = "cpu", slots: int = 8) -> None:
        self.name = name
        self.model = model
        self.device = device
        self.slots = slots
        self.healthy = True
        self.outstanding = 0
        self.served = 0
        self.failures = 0
        self.last_error: str | None = None
        self.down_since: float | None = None

    async def start(self) -> None:  # pragma: no cover - trivial
        return None

    async def probe(self, timeout_s: float) -> bool:  # pragma: no cover - overridden
        return True

    async def aclose(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "kind": self.kind,
            "device": self.device,
            "healthy": self.healthy,
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
    ) -> None:
        super().__init__(name, model, device, slots)
        self.base_url = api_base(base_url)
        self.engine_model = engine_model or model
        self.origin = Origin(self.base_url)

    async def probe(self, timeout_s: float) -> bool:
        t = Timeouts(timeout_s, timeout_s, timeout_s)
        try:
            resp = await self.origin.request("GET", "/models", b"", t)
            await resp.read()
            resp.release()
            return resp.status < 500
        except ERRORS:
            return False

    async def open(self, path: str, body: bytes, timeouts: Timeouts) -> Response:
        """POST ``body``; the response once its head and first body bytes arrived (2xx only)."""
        try:
            resp = await self.origin.request("POST", path, body, timeouts)
        except UpstreamTimeoutError as exc:
            raise UpstreamError(f"{self.name}: {exc}") from None
        except ERRORS as exc:
            raise UpstreamError(f"{self.name}: {type(exc).__name__}: {exc}") from None
        if resp.status >= 400:
            try:
                data = await resp.read()
                resp.release()
            except ERRORS:
                resp.close()
                data = b""
            if resp.status >= 500 or resp.status == 429:
                raise UpstreamError(f"{self.name}: upstream status {resp.status}", down=False)
            raise UpstreamError(
                f"{self.name}: upstream status {resp.status}",
                retryable=False,
                status=resp.status,
                body=data,
                down=False,
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
        engine: Any,
        engine_model: str | None = None,
        device: str = "cpu",
        slots: int = 8,
    ) -> None:
        super().__init__(name, model, device, slots)
        self.engine = engine
        self.engine_model = engine_model or model
        self._started = False

    async def start(self) -> None:
        start = getattr(self.engine, "start", None)
        if start is not None and not self._started:
            try:
                res = start()
                if hasattr(res, "__await__"):
                    await res
            except WattserveError:
                raise
            except Exception as exc:
                raise EngineUnavailable(
                    f"replica {self.name}: the engine did not start: {type(exc).__name__}: {exc}"
                ) from exc
        self._started = True

    async def probe(self, timeout_s: float) -> bool:
        ok = getattr(self.engine, "healthy", True)
        return bool(ok() if callable(ok) else ok)

    def stream(self, request: Request) -> AsyncIterator[Chunk]:
        return self.engine.stream(request)

    async def aclose(self) -> None:
        close = getattr(self.engine, "aclose", None)
        if close is not None and self._started:
            await close()
        self._started = False


def mark_down(replica: Replica, reason: str) -> None:
    replica.failures += 1
    replica.last_error = reason
    if replica.healthy:
        replica.healthy = False
        replica.down_since = time.monotonic()
