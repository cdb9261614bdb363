"""An engine deployment of a Ray Serve cluster as a gateway replica.

``RayReplica`` is an ``EngineReplica`` whose engine is a Ray Serve deployment reached through
a ``DeploymentHandle``: ``stream`` calls its ``generate`` method (a streaming call, Ray
routes it to one of the deployment's replicas) and yields the engine's ``Chunk``s, so the
pipeline, balancers, breaker and relay of the single-process gateway apply unchanged. A
replica actor that dies before the first chunk is tried once more (Ray routes the retry to a
live replica); one that dies later breaks the stream, and the relay reports that to the
client as an error event.

Energy: the engine deployment meters its own node and ends every stream with an
``EngineReport`` (joules, node, device, meter source). ``ClusterLedger`` charges the request
exactly those joules instead of a meter of the ingress's host, and names the node and device
in the usage the client gets (``energy_node``, ``energy_device``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from wattserve.engines.base import EngineBase
from wattserve.serve.ledger import Books, Ledger
from wattserve.serve.replica import EngineReplica, Fault
from wattserve.types import Chunk, Request


@dataclass(frozen=True, slots=True)
class EngineReport:
    """The books of one request on an engine deployment, sent after its last chunk."""

    energy_j: float | None
    source: str  # the engine node's meter: nvml / rapl / modeled / replay / null
    node: str  # the Ray node id
    device: str
    replica: str  # the Ray Serve replica id
    input_tokens: int = 0
    output_tokens: int = 0


def _actor_gone(exc: BaseException) -> bool:
    """A replica actor died or cannot be reached (Ray routes a new call elsewhere)."""
    try:
        from ray.exceptions import ActorUnavailableError, RayActorError
    except ImportError:  # pragma: no cover - ray is the point of this module
        return False
    return isinstance(exc, (RayActorError, ActorUnavailableError))


class _DeploymentEngine(EngineBase):
    """Stands for the engine inside the engine deployment: it holds nothing here, and
    ``RayReplica`` overrides every call that would reach an in-process engine."""

    def stream(self, request: Request) -> AsyncIterator[Chunk]:
        raise NotImplementedError("a RayReplica streams through its deployment handle")


class RayReplica(EngineReplica):
    """One engine deployment (all its Ray replicas) as one gateway replica."""

    kind = "ray"

    def __init__(
        self,
        name: str,
        model: str,
        handle: Any,
        engine_model: str | None = None,
        device: str = "cpu",
        slots: int = 8,
    ) -> None:
        super().__init__(name, model, _DeploymentEngine(), engine_model, device, slots)
        self.handle = handle
        self.reports: dict[str, EngineReport] = {}  # request id -> its engine's books
        self.retried = 0

    async def start(self) -> None:
        self._started = True

    async def probe(self, timeout_s: float) -> Fault | None:
        try:
            ok = await asyncio.wait_for(self.handle.health.remote(), timeout_s)
        except TimeoutError:
            return "timeout"
        except Exception:  # noqa: BLE001 - any failure of the call: the deployment is unwell
            return "broken"
        return None if ok else "status"

    async def trial(self, timeout_s: float) -> bool:
        return await self.probe(timeout_s) is None

    def stream(self, request: Request) -> AsyncIterator[Chunk]:
        return self._stream(request)

    async def _stream(self, request: Request) -> AsyncIterator[Chunk]:
        for attempt in range(2):
            gen = self.handle.options(stream=True).generate.remote(request)
            sent = False
            try:
                async for item in gen:
                    if isinstance(item, EngineReport):
                        self.reports[request.id] = item
                        continue
                    sent = True
                    yield item
                return
            except Exception as exc:
                if sent or attempt or not _actor_gone(exc):
                    raise
                self.retried += 1  # died before any chunk: Ray routes the retry elsewhere
            finally:
                cancel = getattr(gen, "cancel", None)
                if cancel is not None and request.id not in self.reports:
                    cancel()

    async def aclose(self) -> None:
        self.reports.clear()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "retried": self.retried}


class ClusterLedger(Ledger):
    """A ledger whose joules are the engine deployment's report (see the module docstring)."""

    __slots__ = ("report",)

    def _end(self, ok: bool) -> float | None:
        rep = self.rep
        local = super()._end(ok)
        if not isinstance(rep, RayReplica):
            return local
        self.report = rep.reports.pop(self.req.id, None)
        if self.report is None:
            return None
        acc = self.books.accountant
        if acc is not None and self.report.energy_j is not None:
            acc.source = self.report.source  # the ingress has no meter: name the engines'
        return self.report.energy_j

    def close(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        first = not self.closed
        usage = super().close(*args, **kwargs)
        report = getattr(self, "report", None) if first else None
        if report is not None:
            if usage.get("energy_j") is not None:
                usage["energy_source"] = report.source
            usage["energy_node"] = report.node
            usage["energy_device"] = report.device
        return usage


class ClusterBooks(Books):
    """``Books`` that open ``ClusterLedger``s."""

    def open(
        self,
        req: Request,
        body: dict[str, Any],
        model: str,
        key: str | None,
        t0: float,
        scores: Mapping[str, float] | None = None,
    ) -> Ledger:
        return ClusterLedger(self, req, body, model, key, t0, scores)


def adopt_cluster_books(gateway: Any) -> None:
    """Make a started gateway charge engine-reported joules: its books become
    ``ClusterBooks`` in place (same state, one method more), whatever they were built with."""
    gateway.books.__class__ = ClusterBooks
