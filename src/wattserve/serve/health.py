"""Active health checks: probe every replica on a timer; take failing ones out, put them back
when a later probe succeeds. Passive checks (a request that could not connect) call
``wattserve.serve.replica.mark_down`` directly; this loop is what brings a replica back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from wattserve.serve.replica import Replica, mark_down

log = logging.getLogger("wattserve.serve")


class HealthChecker:
    def __init__(
        self,
        replicas: Iterable[Replica],
        interval_s: float = 2.0,
        timeout_s: float = 1.0,
        retry_after_s: float = 2.0,
    ) -> None:
        self.replicas = list(replicas)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._last: dict[str, float] = {}

    async def check(self, replica: Replica) -> bool:
        ok = await replica.probe(self.timeout_s)
        self._last[replica.name] = time.monotonic()
        if ok and not replica.healthy:
            replica.healthy = True
            replica.down_since = None
            log.warning("replica %s is healthy again", replica.name)
        elif not ok and replica.healthy:
            mark_down(replica, "health check failed")
            log.warning("replica %s failed its health check: taken out", replica.name)
        return ok

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(r) for r in self.replicas))

    def _due(self, replica: Replica, now: float) -> bool:
        last = self._last.get(replica.name, 0.0)
        every = self.interval_s if replica.healthy else self.retry_after_s
        return now - last >= every

    async def run(self) -> None:
        """Forever: probe each replica when due (healthy every ``interval_s``, down ones every
        ``retry_after_s``). Cancel the task to stop."""
        tick = min(self.interval_s, self.retry_after_s) / 2
        while True:
            now = time.monotonic()
            due = [r for r in self.replicas if self._due(r, now)]
            if due:
                await asyncio.gather(*(self.check(r) for r in due))
            await asyncio.sleep(tick)
