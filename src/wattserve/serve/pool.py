"""The replica pool: replicas per served model, a balancer, health checks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from wattserve.serve.health import HealthChecker
from wattserve.serve.replica import Replica, mark_down
from wattserve.types import Request


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

    def failed(self, replica: Replica, reason: str) -> None:
        mark_down(replica, reason)

    def ready(self) -> dict[str, bool]:
        """Per served model: at least one healthy replica."""
        return {m: any(r.healthy for r in rs) for m, rs in self.by_model.items()}

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
        await asyncio.gather(*(r.aclose() for r in self.replicas), return_exceptions=True)
