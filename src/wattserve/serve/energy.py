"""Per-request energy for live traffic: the device meter is read beside the traffic and each
request is charged its share of its device's joules over its lifetime.

Method (``active_time``): the meter is read every ``interval_s``. Within an interval ``k``
the device's power is taken as constant, so the joules of the time when at least one request
was in flight on the device are ``dE_k * busy_k / dt_k``; they are divided by the active
request-seconds ``A_k`` (the integral of the number of requests in flight), giving a rate
``r_k`` in joules per request-second, and a request is charged ``sum_k r_k * (its seconds in
flight during k)``. So concurrent requests split the device's energy equally per second
they are in flight, a lone request is charged the device's average power times its
duration, and the charges of an interval add up to its busy joules. The rest (time with no
request in flight) is idle energy (counted, charged to nobody). A request that ends closes the open
interval with a fresh meter read when the last read is at least ``min_read_s`` old, so its
charge is metered to its end; one ending sooner is charged that short part at the previous
interval's rate (an estimate, at most ``min_read_s`` of its share). Replicas on one device
share that device's joules; the meter's device keys are matched to a replica's ``device`` by
prefix (all keys when none match, e.g. the single ``cpu`` key of the modeled CPU meter).

A device this host cannot meter (``unmetered``: a remote GPU behind a URL) takes no part in
that split: its requests are charged by the energy fit of their model on that device
(``FittedEnergy``; source ``fitted``), never by this host's meter.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from wattserve.types import ModelFit

METHOD = (
    "active_time: the device's metered joules while requests are in flight on it (power taken "
    "as constant within each meter interval), split over those requests in proportion to their "
    "seconds in flight; time with nothing in flight is idle energy, charged to nobody"
)


class _Device:
    __slots__ = (
        "n",
        "last_t",
        "area",
        "busy",
        "bounds",
        "cum",
        "rates",
        "rate",
        "idle_j",
        "total_j",
        "charged_j",
    )

    def __init__(self, t0: float, history: int) -> None:
        self.n = 0  # requests in flight
        self.last_t = t0
        self.area = 0.0  # request-seconds in the open interval
        self.busy = 0.0  # seconds of the open interval with at least one request in flight
        self.bounds: deque[float] = deque([t0], maxlen=history)  # interval starts
        self.cum: deque[float] = deque(
            [0.0], maxlen=history
        )  # R at each bound (J per request, cumulative)
        self.rates: deque[float] = deque(
            [0.0], maxlen=history
        )  # rate of the interval starting there
        self.rate = 0.0  # estimate for the open interval
        self.idle_j = 0.0
        self.total_j = 0.0
        self.charged_j = 0.0

    def _advance(self, now: float) -> None:
        if self.n:
            self.area += self.n * (now - self.last_t)
            self.busy += now - self.last_t
        self.last_t = now

    def r_at(self, t: float) -> float:
        """R(t): cumulative joules one request in flight since the start would be charged."""
        i = bisect.bisect_right(self.bounds, t) - 1
        if i < 0:
            i = 0
        last = len(self.bounds) - 1
        rate = self.rate if i == last else self.rates[i]
        return self.cum[i] + rate * (t - self.bounds[i])


FITTED = "fitted"  # the energy source of a charge computed from a fit


class FittedEnergy:
    """The joules of an answer from the energy fit of its model on its device: the fit for
    exactly (model, device), else the model's own fit (``by_model``: ``models[].fit``), else
    the model's only energy fit among ``fits``; None when there is none."""

    def __init__(
        self, fits: Iterable[ModelFit] = (), by_model: Mapping[str, ModelFit] | None = None
    ) -> None:
        self.fits = [f for f in fits if f.quantity == "energy_j"]
        self.by_model = dict(by_model or {})
        self._memo: dict[tuple[str, str], ModelFit | None] = {}

    def fit_for(self, model: str, device: str) -> ModelFit | None:
        key = (model, device)
        if key not in self._memo:
            exact = [f for f in self.fits if f.model == model and f.device == device]
            same = [f for f in self.fits if f.model == model]
            fit = exact[0] if exact else self.by_model.get(model)
            if fit is None and len(same) == 1:
                fit = same[0]
            self._memo[key] = fit
        return self._memo[key]

    def __call__(
        self, model: str, device: str, input_tokens: int, output_tokens: int
    ) -> float | None:
        fit = self.fit_for(model, device)
        if fit is None:
            return None
        from wattserve.fit import predict  # on first use: numpy forms

        return max(0.0, float(predict(fit, input_tokens, output_tokens, warn=False)))


class _Unmetered:
    __slots__ = ("n", "requests", "fitted_j", "unknown")

    def __init__(self) -> None:
        self.n = 0  # requests in flight
        self.requests = 0  # requests charged
        self.fitted_j = 0.0
        self.unknown = 0  # requests with no fit for their model on this device


class EnergyAccountant:
    """Online attribution of metered device joules to requests (see the module docstring).

    ``unmetered``: the devices this host has no meter for; ``fitted`` prices their answers."""

    def __init__(
        self,
        meter: Any,
        interval_s: float = 0.5,
        clock: Callable[[], float] = time.perf_counter,
        history: int = 7200,
        min_read_s: float | None = None,
        unmetered: Iterable[str] = (),
        fitted: FittedEnergy | None = None,
    ) -> None:
        self.meter = meter
        self.unmetered: dict[str, _Unmetered] = {d: _Unmetered() for d in unmetered}
        self.fitted = fitted if fitted is not None else FittedEnergy()
        self.interval_s = interval_s
        self.min_read_s = interval_s / 5 if min_read_s is None else min_read_s
        self._last_read = float("-inf")
        self.clock = clock
        self.history = history
        self.devices: dict[str, _Device] = {}
        self.source = "null"
        self._keys: dict[str, list[str]] = {}
        self._last_reading: Any = None
        self._task: asyncio.Task | None = None
        self.method = METHOD

    @property
    def enabled(self) -> bool:
        return self.meter is not None

    def _device(self, name: str) -> _Device:
        d = self.devices.get(name)
        if d is None:
            d = self.devices[name] = _Device(self.clock(), self.history)
        return d

    def is_metered(self, device: str) -> bool:
        """Whether ``device``'s requests are charged by this host's meter (else by their fit)."""
        return device not in self.unmetered

    def begin(self, device: str) -> float:
        """A request starts on ``device``; returns the token to hand to ``end``."""
        now = self.clock()
        u = self.unmetered.get(device)
        if u is not None:
            u.n += 1
            return now
        d = self._device(device)
        d._advance(now)
        d.n += 1
        return now

    def end(self, device: str, started: float) -> float | None:
        """The request ends: its metered charge in joules (None without a meter, and for an
        unmetered device: ``charge_fitted`` prices those)."""
        u = self.unmetered.get(device)
        if u is not None:
            u.n = max(0, u.n - 1)
            return None
        if self.meter is None:
            d = self._device(device)
            d._advance(self.clock())
            d.n = max(0, d.n - 1)
            return None
        if self.clock() - self._last_read >= self.min_read_s:
            self.tick()  # meter the interval up to this request's end
        now = self.clock()
        d = self._device(device)
        d._advance(now)
        d.n = max(0, d.n - 1)
        j = max(0.0, d.r_at(now) - d.r_at(started))
        d.charged_j += j
        return j

    def charge_fitted(
        self, model: str, device: str, input_tokens: int, output_tokens: int
    ) -> float | None:
        """The fitted charge of an answer of ``model`` on the unmetered ``device`` (None: no
        fit for it), counted in that device's books."""
        j = self.fitted(model, device, input_tokens, output_tokens)
        u = self.unmetered.setdefault(device, _Unmetered())
        u.requests += 1
        if j is None:
            u.unknown += 1
        else:
            u.fitted_j += j
        return j

    def _joules(self, reading: Any, device: str) -> float:
        keys = self._keys.get(device)
        if keys is None:
            names = list(reading.joules)
            keys = [k for k in names if k.startswith(device)] or names
            self._keys[device] = keys
        return float(sum(reading.joules[k] for k in keys))

    def tick(self) -> None:
        """Read the meter and close the current interval on every device."""
        if self.meter is None:
            return
        reading = self.meter.read()
        now = reading.t_s
        self._last_read = now
        self.source = ",".join(sorted(set(reading.sources.values()))) or "null"
        last = self._last_reading
        for name, d in self.devices.items():
            d._advance(now)
            prev = None if last is None else self._joules(last, name)
            de = 0.0 if prev is None else max(0.0, self._joules(reading, name) - prev)
            d.total_j += de
            start = d.bounds[-1]
            dt = now - start
            busy_j = de * min(1.0, d.busy / dt) if dt > 0 and d.area > 0 else 0.0
            rate = busy_j / d.area if d.area > 0 else 0.0
            d.idle_j += de - busy_j
            d.rates[-1] = rate
            d.bounds.append(now)
            d.cum.append(d.cum[-1] + rate * (now - start))
            d.rates.append(rate)
            d.rate = rate
            d.area = 0.0
            d.busy = 0.0
        self._last_reading = reading

    async def run(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self.meter is not None and self._task is None:
            self._task = asyncio.create_task(self.run(), name="wattserve-energy")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._task = None
        close = getattr(self.meter, "close", None)
        if close is not None:
            close()

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "metered_j": d.total_j,
                "charged_j": d.charged_j,
                "idle_j": d.idle_j,
                "in_flight": d.n,
            }
            for name, d in self.devices.items()
        }

    def fitted_summary(self) -> dict[str, dict[str, float]]:
        """Per unmetered device: fitted joules charged, requests, those without a fit."""
        return {
            name: {
                "fitted_j": u.fitted_j,
                "requests": u.requests,
                "unpriced": u.unknown,
                "in_flight": u.n,
            }
            for name, u in self.unmetered.items()
        }


def make_meter(kind: str) -> tuple[Any, str]:
    """The meter named by ``kind`` (``wattserve.energy.meters.METER_CHOICES``; ``auto`` probes
    NVML, RAPL, else the modeled CPU meter) and why; ``null`` -> (None, reason)."""
    if kind == "null":
        return None, "no meter (energy.meter: null)"
    from wattserve.energy.meters import auto_meter

    return auto_meter("modeled:system" if kind == "modeled" else kind)
