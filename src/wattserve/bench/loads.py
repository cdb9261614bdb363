"""Seeded load shapes: small strategy objects that compute every send offset BEFORE sending.

Each strategy implements ``ArrivalPattern.offsets(n, seed) -> list[float]`` (seconds from the
start of the point). Fixed concurrency returns zeros and relies on the runner's bound. A
sweep is a list of ``LoadPoint``s, one per ``--max-concurrency`` or ``--request-rate`` value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wattserve.errors import ConfigError
from wattserve.protocols import ArrivalPattern


@dataclass(frozen=True, slots=True)
class Concurrent:
    """As fast as the concurrency bound allows: every request is due at t=0."""

    name = "concurrency"

    def offsets(self, n: int, seed: int) -> list[float]:
        return [0.0] * n


@dataclass(frozen=True, slots=True)
class ConstantRate:
    """Evenly spaced sends: request i at i / rate."""

    rate: float
    name = "constant"

    def offsets(self, n: int, seed: int) -> list[float]:
        return [i / self.rate for i in range(n)]


@dataclass(frozen=True, slots=True)
class GammaRate:
    """Gamma inter-arrival times with mean 1/rate; shape = burstiness (1.0 is Poisson).

    Lower burstiness gives burstier traffic, higher gives more even traffic (as in vLLM's
    ``--burstiness``). The first request is sent at t=0.
    """

    rate: float
    burstiness: float = 1.0

    @property
    def name(self) -> str:
        return "poisson" if self.burstiness == 1.0 else "gamma"

    def offsets(self, n: int, seed: int) -> list[float]:
        if n <= 0:
            return []
        rng = np.random.default_rng(seed)
        gaps = rng.gamma(
            shape=self.burstiness, scale=1.0 / (self.rate * self.burstiness), size=n - 1
        )
        return [0.0, *np.cumsum(gaps).tolist()]


def Poisson(rate: float) -> GammaRate:  # noqa: N802 - reads as a strategy name
    return GammaRate(rate, 1.0)


@dataclass(frozen=True, slots=True)
class Trace:
    """Replay: offsets given (from a trace's timestamps), cycled with the trace's span if short."""

    times_s: tuple[float, ...]
    name = "trace"

    def offsets(self, n: int, seed: int) -> list[float]:
        if not self.times_s:
            return [0.0] * n
        t0 = min(self.times_s)
        base = [t - t0 for t in self.times_s]
        span = (max(base) + (base[-1] - base[-2] if len(base) > 1 else 1.0)) if base else 0.0
        return [base[i % len(base)] + span * (i // len(base)) for i in range(n)]


@dataclass(frozen=True, slots=True)
class LoadPoint:
    """One point of a sweep: an arrival pattern plus an optional in-flight bound."""

    pattern: ArrivalPattern
    max_concurrency: int | None = None
    request_rate: float = math.inf

    @property
    def label(self) -> str:
        parts = []
        if self.max_concurrency is not None:
            parts.append(f"c{self.max_concurrency}")
        if math.isfinite(self.request_rate):
            parts.append(f"r{self.request_rate:g}")
        if isinstance(self.pattern, Trace):
            parts.append("trace")
        return "-".join(parts) or "rinf"


def make_pattern(rate: float, burstiness: float = 1.0, arrival: str = "poisson") -> ArrivalPattern:
    if math.isinf(rate):
        return Concurrent()
    if arrival == "constant":
        return ConstantRate(rate)
    return GammaRate(rate, burstiness)


def make_points(
    request_rates: Sequence[float] | None,
    max_concurrencies: Sequence[int] | None,
    burstiness: float = 1.0,
    arrival: str = "poisson",
    trace_times_s: Sequence[float] | None = None,
) -> list[LoadPoint]:
    """The sweep: one point per (rate, concurrency) pair (a list on either axis sweeps it)."""
    validate(request_rates, max_concurrencies, burstiness)
    concs: list[int | None] = list(max_concurrencies) if max_concurrencies else [None]
    if trace_times_s is not None:
        return [LoadPoint(Trace(tuple(trace_times_s)), c) for c in concs]
    rates = list(request_rates) if request_rates else [math.inf]
    return [LoadPoint(make_pattern(r, burstiness, arrival), c, r) for r in rates for c in concs]


def validate(
    request_rates: Sequence[float] | None,
    max_concurrencies: Sequence[int] | None,
    burstiness: float,
) -> None:
    for r in request_rates or ():
        if not (r > 0):
            raise ConfigError(f"--request-rate must be > 0 (or inf), got {r:g}")
    for c in max_concurrencies or ():
        if c < 1:
            raise ConfigError(f"--max-concurrency must be >= 1, got {c}")
    if not (burstiness > 0) or math.isinf(burstiness):
        raise ConfigError(f"--burstiness must be a positive number, got {burstiness:g}")


def ramp_count(n: int, fraction: float = 0.1) -> int:
    """Requests treated as ramp-up for rate loads (steady window starts after them)."""
    return min(n - 1, max(0, math.ceil(n * fraction))) if n > 0 else 0
