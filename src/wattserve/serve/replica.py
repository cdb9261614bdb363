"""Replicas: engine endpoints the gateway forwards to, each with its circuit breaker.

``HttpReplica`` is any OpenAI-compatible server (vLLM, llama-server, the mock server, a
replica the launcher started): the gateway forwards the client's body (model name
rewritten) over its keep-alive connections (``wattserve.openai.transport``) and passes the
upstream SSE bytes through. ``EngineReplica`` wraps an in-process ``Engine``. ``probe`` is
the active health check (GET ``/models``: is anything answering), ``trial`` the half-open
check that may put an ejected replica back (a one-token POST with a short timeout).

``healthy`` is the replica's ``Breaker`` being closed. States: ``closed`` (takes user
requests), ``open`` (ejected until its cool-down has passed), ``half_open`` (one trial in
flight, never a user request). A closed breaker opens after ``failures`` consecutive
failures, or when at least ``failure_rate`` of the last ``window`` outcomes failed; a
refused connection opens it at once. A trial that passes closes it; one that fails opens it
again with the cool-down doubled (up to ``max_cool_down_s``), and so does one that opens
again soon after it was put back, so a replica that answers probes but not requests stays
out instead of flapping. The back-off level falls back to zero once the replica has stayed
closed and answered for one full cool-down. Which outcomes count is the pool's choice
(``wattserve.serve.pool``); a breaker kept closed where opening it would leave its model
with no replica for timeouts alone is ``degraded``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

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
from wattserve.types import Chunk, Request

Fault = Literal["refused", "timeout", "status", "broken"]
"""Why a replica failed: nothing listening, no bytes in time, a 5xx answer, a cut or garbled
answer."""


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 3  # consecutive failures that open a closed breaker
    window: int = 20  # recent outcomes the failure rate is taken over
    failure_rate: float = 0.5  # opens at this share of failures once the window is full
    cool_down_s: float = 2.0  # open -> half_open after this, doubled on each failed trial
    max_cool_down_s: float = 60.0


class Breaker:
    """One replica's breaker. Not thread-safe: the gateway's event loop owns it."""

    def __init__(
        self, policy: BreakerPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self.clock = clock
        self.state = State.CLOSED
        self.consecutive = 0  # failures since the last success
        self.degraded = False  # closed, failing, kept because it is its model's last replica
        self.opens = 0  # times taken out
        self.closes = 0  # times put back after a trial
        self.level = 0  # back-off exponent of the next cool-down
        self.retry_at = 0.0  # when an open breaker may try again
        self.closed_at = self.clock()
        self._recent: deque[bool] = deque(maxlen=self.policy.window)  # True: a failure
        self._probe_streak = False  # the consecutive failures so far all came from probes

    @property
    def allows(self) -> bool:
        """Whether user requests may go to the replica."""
        return self.state is State.CLOSED

    @property
    def cool_down_s(self) -> float:
        p = self.policy
        return min(p.max_cool_down_s, p.cool_down_s * 2.0**self.level)

    # ------------------------------------------------------------------ real traffic
    def success(self) -> None:
        """The replica answered a request (its first bytes arrived)."""
        if self.state is not State.CLOSED:
            return
        self.consecutive = 0
        self.degraded = False
        self._probe_streak = False
        self._recent.append(False)
        if self.level and self.clock() - self.closed_at >= self.cool_down_s:
            self.level = 0

    def failure(self, fault: Fault, *, may_open: bool = True, probe: bool = False) -> bool:
        """Count a failure; returns True when it opened the breaker. ``may_open=False`` keeps
        the breaker closed (and ``degraded``) where it would have opened."""
        if self.state is not State.CLOSED:
            return False
        self._probe_streak = probe and (self._probe_streak or not self.consecutive)
        self.consecutive += 1
        self._recent.append(True)
        if not self._tripped(fault):
            return False
        if not may_open:
            self.degraded = True
            return False
        self._open()
        return True

    def alive(self) -> None:
        """An active probe passed: it clears failures that only probes had counted (a probe
        says nothing about whether requests are answered)."""
        if self.state is State.CLOSED and self._probe_streak:
            self.consecutive = 0
            self._probe_streak = False

    def _tripped(self, fault: Fault) -> bool:
        p = self.policy
        if fault == "refused" or self.consecutive >= p.failures:
            return True
        recent = self._recent
        return len(recent) == recent.maxlen and sum(recent) >= p.failure_rate * len(recent)

    def _open(self) -> None:
        now = self.clock()
        if self.closes and now - self.closed_at < self.policy.max_cool_down_s:
            self.level += 1  # put back and out again soon: it waits longer this time
        self.state = State.OPEN
        self.degraded = False
        self.opens += 1
        self.retry_at = now + self.cool_down_s

    # ------------------------------------------------------------------ trials
    def trial_due(self) -> bool:
        """Open and past its cool-down: moves to half_open and returns True (the caller then
        runs one trial and reports it with ``trial_passed`` / ``trial_failed``)."""
        if self.state is not State.OPEN or self.clock() < self.retry_at:
            return False
        self.state = State.HALF_OPEN
        return True

    def trial_passed(self) -> None:
        if self.state is not State.HALF_OPEN:
            return
        self.state = State.CLOSED
        self.closes += 1
        self.consecutive = 0
        self._probe_streak = False
        self._recent.clear()
        self.closed_at = self.clock()

    def trial_failed(self) -> None:
        if self.state is not State.HALF_OPEN:
            return
        self.level += 1
        self.state = State.OPEN
        self.retry_at = self.clock() + self.cool_down_s

    def describe(self) -> str:
        """``closed``, ``degraded``, ``open`` or ``half_open``."""
        if self.state is State.CLOSED and self.degraded:
            return "degraded"
        return self.state.value


class UpstreamError(Exception):
    """A replica failed. ``retryable``: nothing reached the client yet and another replica
    may answer; ``status``/``body``: the upstream HTTP answer (a 4xx is passed on as-is);
    ``fault``: what counts against the replica's breaker (None: nothing, e.g. a 4xx the
    request caused, a 429 from a busy replica, an in-process engine's error)."""

    def __init__(
        self,
        message: str,
        retryable: bool = True,
        status: int = 502,
        body: bytes | None = None,
        fault: Fault | None = "broken",
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.fault: Fault | None = fault
        self.status = status
        self.body = body


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
