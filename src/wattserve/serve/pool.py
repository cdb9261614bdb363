"""The replica pool: replicas per served model, the balancer that picks one for a request,
and what real traffic says about each replica's health (passive health; the active loop is
``wattserve.serve.health``).

Balancers follow ``wattserve.protocols.Balancer``: ``pick(request, replicas) -> int``, an
index into the healthy candidates the pool passes; replicas expose ``outstanding``
(requests in flight) and ``slots`` (requests served concurrently without queueing).

Every answered request reports ``succeeded``; every failure before the first byte or mid-
stream reports ``failed`` with its ``Fault``, which counts on the replica's circuit breaker
(``wattserve.serve.replica``). Two rules keep a busy or unlucky replica in the pool:

- timeouts alone never eject the last replica of a model still taking requests: it stays,
  ``degraded`` (``readiness`` and the metrics say so), and the model is served slowly
  rather than not at all;
- a request that gets the same 5xx answer from two replicas caused it itself (llama.cpp
  answers 500 to message content it cannot render): ``settle`` counts it against neither.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from wattserve.errors import ConfigError
from wattserve.serve.health import HealthChecker
from wattserve.serve.replica import Breaker, Fault, Replica, UpstreamError
from wattserve.types import Request

log = logging.getLogger("wattserve.serve")


class ReplicaPool:
    def __init__(
        self, replicas: Iterable[Replica], balancer: Any, health: HealthChecker | None = None
    ) -> None:
        self.replicas: list[Replica] = list(replicas)
        self.balancer = balancer
        self.by_model: dict[str, list[Replica]] = {}
        for r in self.replicas:
            self.by_model.setdefault(r.model, []).append(r)
        self.health = health or HealthChecker(self.replicas)
        self.health.pool = self
        for r in self.replicas:
            r.breaker = Breaker(self.health.policy)
        self._health_task: asyncio.Task | None = None

    @property
    def models(self) -> list[str]:
        return list(self.by_model)

    async def start(self, health_loop: bool = True) -> None:
        for r in (
            self.replicas
        ):  # one at a time: in-process engines load models (not thread-safe to import)
            await r.start()
        await self.health.check_all()
        if health_loop:
            self._health_task = asyncio.create_task(self.health.run(), name="wattserve-health")

    def pick(self, request: Request, model: str, exclude: Sequence[Replica] = ()) -> Replica | None:
        """A healthy replica of ``model`` chosen by the balancer, or None when none is left."""
        candidates = [r for r in self.by_model.get(model, ()) if r.healthy and r not in exclude]
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        return candidates[self.balancer.pick(request, candidates)]

    # ------------------------------------------------------------------ passive health
    def succeeded(self, replica: Replica) -> None:
        """``replica`` answered a request (its first bytes arrived)."""
        replica.last_ok = time.monotonic()
        replica.breaker.success()

    def failed(
        self, replica: Replica, reason: str, fault: Fault = "broken", probe: bool = False
    ) -> None:
        """Count a failure against ``replica``; it is ejected when its breaker opens."""
        replica.failures += 1
        replica.last_error = reason
        may_open = fault != "timeout" or self._others_serve(replica)
        was_degraded = replica.breaker.degraded
        if replica.breaker.failure(fault, may_open=may_open, probe=probe):
            log.warning(
                "replica %s taken out (%s; back in %.3g s at the earliest): %s",
                replica.name,
                fault,
                replica.breaker.cool_down_s,
                reason,
            )
        elif replica.breaker.degraded and not was_degraded:
            log.warning(
                "replica %s keeps failing (%s) but is the last of %s: kept, degraded",
                replica.name,
                fault,
                replica.model,
            )

    def settle(self, attempts: Sequence[tuple[Replica, UpstreamError]], answered: bool) -> None:
        """Count the failed attempts of one request (``answered``: a later attempt succeeded).
        When every attempt failed with the same 5xx answer, the request caused it: nothing
        is counted."""
        counted = [(r, e) for r, e in attempts if e.fault is not None]
        if not counted:
            return
        if not answered and len(counted) >= 2 and _same_answer([e for _, e in counted]):
            log.warning(
                "%d replicas answered one request with the same error: not counted against them",
                len(counted),
            )
            return
        for r, e in counted:
            assert e.fault is not None
            self.failed(r, str(e), e.fault)

    def _others_serve(self, replica: Replica) -> bool:
        return any(r.healthy for r in self.by_model.get(replica.model, ()) if r is not replica)

    # ------------------------------------------------------------------ readiness
    def ready(self) -> dict[str, bool]:
        """Per served model: at least one healthy replica."""
        return {m: any(r.healthy for r in rs) for m, rs in self.by_model.items()}

    def degraded(self) -> list[str]:
        """Models served only by replicas kept in despite failing (``degraded``)."""
        return [
            m
            for m, rs in self.by_model.items()
            if any(r.healthy for r in rs) and all(r.breaker.degraded for r in rs if r.healthy)
        ]

    def readiness(self) -> dict[str, Any]:
        """``status``: ``ok``, ``degraded`` (every model served, some only by degraded
        replicas) or ``unavailable`` (some model has no healthy replica)."""
        models = self.ready()
        degraded = self.degraded()
        if not models or not all(models.values()):
            status = "unavailable"
        else:
            status = "degraded" if degraded else "ok"
        return {"status": status, "models": models, "degraded": degraded}

    def outstanding(self) -> int:
        return sum(r.outstanding for r in self.replicas)

    async def aclose(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            try:
                await self._health_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._health_task = None
        await self.health.aclose()
        await asyncio.gather(*(r.aclose() for r in self.replicas), return_exceptions=True)


def _same_answer(errors: Sequence[UpstreamError]) -> bool:
    first = errors[0]
    return all(
        e.fault == "status" and e.body is not None and e.body == first.body and e.body
        for e in errors
    )


# ---------------------------------------------------------------------- balancers
class RoundRobin:
    name = "round_robin"

    def __init__(self) -> None:
        self._n = 0

    def pick(self, request: Request, replicas: Sequence[Any]) -> int:
        self._n += 1
        return self._n % len(replicas)


class LeastOutstanding:
    """Fewest requests in flight; ties go round-robin so equal replicas share the load."""

    name = "least_outstanding"

    def __init__(self) -> None:
        self._n = 0

    def pick(self, request: Request, replicas: Sequence[Any]) -> int:
        self._n += 1
        k = len(replicas)
        best, best_load = 0, None
        for j in range(k):
            i = (self._n + j) % k
            load = replicas[i].outstanding
            if best_load is None or load < best_load:
                best, best_load = i, load
        return best


def estimate_input_tokens(request: Request) -> int:
    """Known prompt length, else about four characters per token."""
    if request.input_tokens:
        return request.input_tokens
    return max(1, len(request.text()) // 4)


class EnergyAware:
    """Lowest predicted joules for this request on each replica, given its load.

    ``energy_j(replica, input_tokens, output_tokens)`` is the replica's fitted energy for the
    request served alone (``wattserve.fit.predict`` on its model's fit). Load enters as
    queueing: while a replica has fewer requests in flight than ``slots`` a new one joins
    the batch at the fitted cost; beyond that it waits, and the device draws power while it
    waits, so the prediction grows with ``(outstanding + 1) / slots``. Ties (equal
    predictions, e.g. identical replicas below their slots) go to the least loaded.
    """

    name = "energy_aware"

    def __init__(self, energy_j: Callable[[Any, int, int], float | None]) -> None:
        self.energy_j = energy_j
        self._n = 0

    def predict(self, request: Request, replica: Any) -> float:
        base = self.energy_j(replica, estimate_input_tokens(request), request.max_tokens)
        if base is None:
            base = 1.0
        return base * max(1.0, (replica.outstanding + 1) / replica.slots)

    def pick(self, request: Request, replicas: Sequence[Any]) -> int:
        self._n += 1
        k = len(replicas)
        best, best_key = 0, None
        for j in range(k):
            i = (self._n + j) % k
            key = (self.predict(request, replicas[i]), replicas[i].outstanding)
            if best_key is None or key < best_key:
                best, best_key = i, key
        return best


def make_balancer(
    name: str, energy_j: Callable[[Any, int, int], float | None] | None = None
) -> Any:
    if name == "round_robin":
        return RoundRobin()
    if name == "least_outstanding":
        return LeastOutstanding()
    if name == "energy_aware":
        return EnergyAware(energy_j or (lambda replica, i, o: None))
    raise ConfigError(
        f"unknown balancer {name!r}; choose round_robin, least_outstanding or energy_aware"
    )
