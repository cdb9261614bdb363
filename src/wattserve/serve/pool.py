"""The replica pool: replicas per served model, a balancer, health checks, one shared
aiohttp session for every HTTP replica."""

from __future__ import annotations

import asyncio
from typing import Any, Iterable, Sequence

import aiohttp

from wattserve.serve.health import HealthChecker
from wattserve.serve.replica import Replica, mark_down
from wattserve.types import Request


class ReplicaPool:
    def __init__(self, replicas: Iterable[Replica], balancer: Any, health: HealthChecker | None = None,
                 connect_s: float = 2.0) -> None:
        self.replicas: list[Replica] = list(replicas)
        self.balancer = balancer
        self.by_model: dict[str, list[Replica]] = {}
        for r in self.replicas:
            self.by_model.setdefault(r.model, []).append(r)
        self.health = health or HealthChecker(self.replicas)
        self.connect_s = connect_s
        self.session: aiohttp.ClientSession | None = None
        self._health_task: asyncio.Task | None = None

    @property
    def models(self) -> list[str]:
        return list(self.by_model)

    async def start(self, health_loop: bool = True) -> None:
        connector = aiohttp.TCPConnector(limit=1024, limit_per_host=0, ttl_dns_cache=300,
                                         enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                             skip_auto_headers=("User-Agent",),
                                             cookie_jar=aiohttp.DummyCookieJar())
        for r in self.replicas:  # one at a time: in-process engines load models (not thread-safe to import)
            await r.start(self.session)
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
        if self.session is not None:
            await self.session.close()
            self.session = None
