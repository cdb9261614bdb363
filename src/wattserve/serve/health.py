"""Active health checks, which tell a busy replica from a dead one.

On a timer, each replica whose breaker is closed and that has no request in flight gets a
probe (GET ``/models``). A replica serving requests is not probed: its requests are the
signal (passive health: connect failures, 5xx, timeouts before the first byte), and a probe
can hurt them (llama-cpp-python's server interrupts a running stream when any other request
arrives, ``/v1/models`` included, unless started with ``--interrupt_requests False``). A
probe that fails counts against the replica like a failed request, except a probe that timed
out within ``busy_grace_s`` of an answer: a replica that was just busy may answer a probe
late (llama.cpp's server queues ``/v1/models`` behind the request it is running), and
taking it out for that would drop the requests it is about to serve.
A probe that passes says only that something answers; it never hides failed requests.

An ejected replica (breaker open) gets no probes; once its cool-down has passed it gets one
trial (``Replica.trial``: a one-token POST with ``trial_timeout_s``), which puts it back or
doubles the cool-down. User requests never serve as trials, so a replica that answers
``/v1/models`` but not POSTs stays out instead of costing a user ``first_token_s`` each time
it is put back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from wattserve.serve.replica import BreakerPolicy, Replica, State

if TYPE_CHECKING:
    from wattserve.serve.pool import ReplicaPool

log = logging.getLogger("wattserve.serve")


class HealthChecker:
    def __init__(
        self,
        replicas: Iterable[Replica],
        interval_s: float = 2.0,
        timeout_s: float = 1.0,
        retry_after_s: float = 2.0,
        *,
        failures: int = 3,
        failure_rate: float = 0.5,
        max_retry_after_s: float = 60.0,
        trial_timeout_s: float = 5.0,
        busy_grace_s: float = 10.0,
    ) -> None:
        self.replicas = list(replicas)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.trial_timeout_s = trial_timeout_s
        self.busy_grace_s = busy_grace_s
        self.policy = BreakerPolicy(
            failures=failures,
            failure_rate=failure_rate,
            cool_down_s=retry_after_s,
            max_cool_down_s=max(retry_after_s, max_retry_after_s),
        )
        self.pool: ReplicaPool | None = None  # set by the pool; failures are counted there
        self._last: dict[str, float] = {}
        self._running: dict[str, asyncio.Task[Any]] = {}

    @classmethod
    def from_config(cls, replicas: Iterable[Replica], cfg: Any) -> HealthChecker:
        """From a ``wattserve.serve.config.HealthConfig``."""
        return cls(
            replicas,
            cfg.interval_s,
            cfg.timeout_s,
            cfg.retry_after_s,
            failures=cfg.failures,
            failure_rate=cfg.failure_rate,
            max_retry_after_s=cfg.max_retry_after_s,
            trial_timeout_s=cfg.trial_timeout_s,
            busy_grace_s=cfg.busy_grace_s,
        )

    def busy(self, replica: Replica) -> bool:
        """Serving requests now, or it answered one within ``busy_grace_s``."""
        return replica.outstanding > 0 or time.monotonic() - replica.last_ok < self.busy_grace_s

    async def check(self, replica: Replica) -> bool:
        """One check of ``replica``: a trial when it is open and due, else a probe when it is
        closed. Returns whether the replica takes requests afterwards."""
        self._last[replica.name] = time.monotonic()
        b = replica.breaker
        if b.trial_due():
            if await replica.trial(self.trial_timeout_s):
                b.trial_passed()
                log.info("replica %s passed its trial request: back in", replica.name)
            else:
                b.trial_failed()
                log.warning(
                    "replica %s failed its trial request: out for %.3g s more",
                    replica.name,
                    b.cool_down_s,
                )
            return replica.healthy
        if b.state is not State.CLOSED:
            return False
        if replica.outstanding > 0:  # its requests are the health signal (passive health)
            return replica.healthy
        fault = await replica.probe(self.timeout_s)
        if fault is None:
            b.alive()
        elif fault == "timeout" and self.busy(replica):
            log.debug("replica %s: probe timed out while busy: not counted", replica.name)
        elif self.pool is not None:
            self.pool.failed(replica, f"health check failed ({fault})", fault, probe=True)
        return replica.healthy

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(r) for r in self.replicas))

    def _due(self, replica: Replica, now: float) -> bool:
        b = replica.breaker
        if b.state is State.OPEN:
            return now >= b.retry_at
        return b.state is State.CLOSED and now - self._last.get(replica.name, 0.0) >= (
            self.interval_s
        )

    def tick_s(self) -> float:
        return max(0.01, min(self.interval_s, self.policy.cool_down_s) / 2)

    async def run(self) -> None:
        """Forever: each replica's check when due, each in its own task (a slow probe or
        trial holds up no other replica's). Cancel the task to stop."""
        tick = self.tick_s()
        while True:
            now = time.monotonic()
            for r in self.replicas:
                if r.name not in self._running and self._due(r, now):
                    task = asyncio.create_task(self.check(r), name=f"wattserve-health-{r.name}")
                    self._running[r.name] = task
                    task.add_done_callback(functools.partial(self._done, r.name))
            await asyncio.sleep(tick)

    def _done(self, name: str, task: asyncio.Task[Any]) -> None:
        self._running.pop(name, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("health check of %s failed: %r", name, task.exception())

    async def aclose(self) -> None:
        tasks = list(self._running.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._running.clear()
