"""A circuit breaker per replica: the pool's memory of whether a replica answers.

States: ``closed`` (takes user requests), ``open`` (ejected: takes none until its cool-down
has passed), ``half_open`` (one trial in flight: a tiny POST from the health loop, never a
user request). A closed breaker opens after ``failures`` consecutive failures, or when at
least ``failure_rate`` of the last ``window`` outcomes failed; a refused connection (nothing
listens) opens it at once. A trial that passes closes it; one that fails opens it again
with the cool-down doubled (up to ``max_cool_down_s``), and so does one that opens again soon
after it was put back, so a replica that answers probes but not requests stays out instead
of flapping. The back-off level falls back to zero once the
replica has stayed closed and answered for one full cool-down.

Which outcomes count is the caller's choice (``wattserve.serve.pool``): real requests report
successes and failures, the active health loop reports probe failures that are not explained
by load, and ``hold`` keeps a breaker closed but ``degraded`` when opening it would leave its
model with no replica for timeouts alone.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

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
