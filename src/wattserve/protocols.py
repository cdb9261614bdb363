"""The seams of wattserve: one small Protocol per replaceable part.

Each seam has a real, a null and a fake/replay implementation so the whole tool runs and
is tested on a CPU-only machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, runtime_checkable

from wattserve.types import CacheEntry, Chunk, EnergyReading, Request, RouteDecision, Schedule


@runtime_checkable
class Engine(Protocol):
    """Produces a stream of ``Chunk``s for a ``Request``.

    Chunks are stamped with ``time.perf_counter()`` when they arrive; the final chunk may
    carry ``usage`` and ``finish_reason``; ``wattserve.engines.base.complete`` turns a stream
    into a ``Completion``. ``start``/``aclose`` bracket its use.
    """

    name: str

    def stream(self, request: Request) -> AsyncIterator[Chunk]: ...

    async def start(self) -> None:
        """Load weights / open connections; idempotent (``wattserve.engines.base.EngineBase``
        is the no-op lifecycle)."""

    async def aclose(self) -> None:
        """Release what ``start`` took; the engine may be started again."""

    def healthy(self) -> bool:
        """Whether it can serve requests now (the gateway's active probe of an in-process
        replica)."""


@runtime_checkable
class Meter(Protocol):
    """Reads cumulative joules per device. Windows are differences of two readings."""

    def read(self) -> EnergyReading: ...


class ArrivalPattern(Protocol):
    """A seeded load shape: send offsets (seconds from start) for ``n`` requests.

    Fixed-concurrency loads return all zeros and rely on the runner's concurrency bound.
    """

    def offsets(self, n: int, seed: int) -> list[float]: ...


class EvictionPolicy(Protocol):
    """Priority of an entry; the entry with the lowest priority is evicted first."""

    def priority(self, entry: CacheEntry) -> float: ...


class Scorer(Protocol):
    """Predicted probability that each model answers each text well: shape (n_texts, n_models)."""

    def predict_quality(self, texts: Sequence[str]) -> Any: ...


class Balancer(Protocol):
    """Picks one replica (by index into ``replicas``) for a request."""

    def pick(self, request: Request, replicas: Sequence[Any]) -> int: ...


class Router(Protocol):
    """Picks the model for a request; ``with_threshold`` is the same router at another
    quality threshold (``router-<name>-<threshold>`` in a request's model field)."""

    name: str

    def route(self, request: Request) -> RouteDecision: ...

    def with_threshold(self, threshold: float) -> Router: ...


class Cache(Protocol):
    """The gateway's response cache: answers by key, each put with its cost and size."""

    async def aget(self, key: str) -> Any: ...

    def put(self, key: str, value: Any, cost: float = 1.0, size: int = 1) -> bool: ...


class Planner(Protocol):
    def solve(self, problem: Any) -> Schedule: ...
