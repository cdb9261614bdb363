"""Per-request energy for live traffic: the device meter is read beside the traffic and each
request is charged its share of its device's joules over its lifetime.

Method (``active_time``, the same as the benchmark's): the meter is read every
``interval_s``; within an interval ``k`` the device's power ``P_k = dE_k / dt_k`` is taken as
constant, and the energy of each instant is split equally among the requests in flight on the
device then. So a request is charged ``sum_k P_k * (integral of 1/n(t) over its seconds in
flight during k)``, ``n(t)`` the requests in flight: kept incrementally as ``H(t)``, the
running integral of ``1/n``, noted at every meter read and at each request's start, so a
charge costs O(1) whatever the concurrency and history. A lone request is charged the
device's average power times its duration, and the charges of an interval add up to its busy
joules (``P_k`` x its seconds with a request in flight). The rest (time with no request in
flight) is idle energy (counted, charged to nobody). A request that ends closes the open
interval with a fresh meter read when the last read is at least ``min_read_s`` old, so its
charge is metered to its end; one ending sooner is charged that short part at the previous
interval's power (an estimate, at most ``min_read_s`` of its share). Replicas on one device
share that device's joules; the meter's device keys are matched to a replica's ``device`` by
prefix (all keys when none match, e.g. the single ``cpu`` key of the modeled CPU meter).

Reference implementation: ``wattserve.energy.attribution`` (``charge_at_end``, and
``attribute_phases`` with ``idle="unattributed"``) computes the same charges from the meter's
readings and the requests' spans; ``tests/test_energy_one_method.py`` feeds both the same
readings and spans and asserts equal joules, the ``min_read_s`` estimate included (it is
``charge_at_end`` over the readings at the request's end, extended to its end at the previous
interval's power).

A device this host cannot meter (``unmetered``: a remote GPU behind a URL) takes no part in
that split: its requests are charged by the energy fit of their model on that device
(``FittedEnergy``; source ``fitted``), never by this host's meter.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from wattserve.types import ModelFit

METHOD = (
    "active_time: the device's metered joules while requests are in flight on it (power taken "
    "as constant within each meter interval), each instant's share split equally among the "
    "requests in flight then; time with nothing in flight is idle energy, charged to nobody"
)


class _Device:
    __slots__ = (
        "n",
        "last_t",
        "h",
        "busy",
        "t_open",
        "k",
        "cum",
        "hb",
        "power",
        "starts",
        "idle_j",
        "total_j",
        "charged_j",
    )

    def __init__(self, t0: float, history: int) -> None:
        self.n = 0  # requests in flight
        self.last_t = t0
        self.h = 0.0  # H(last_t): integral of 1/n over the time with n > 0 (seconds)
        self.busy = 0.0  # seconds of the open interval with at least one request in flight
        self.t_open = t0  # start of the open interval
        self.k = 0  # index of the open interval (intervals closed so far)
        # per interval, oldest first, the open one last: R (joules one request in flight
        # throughout would have been charged) and H at its start, and its power (the open
        # interval's: the previous interval's, an estimate until the next read)
        self.cum: deque[float] = deque([0.0], maxlen=history)
        self.hb: deque[float] = deque([0.0], maxlen=history)
        self.power: deque[float] = deque([0.0], maxlen=history)
        # start time (the token) -> (interval index, H at the start, requests started then)
        self.starts: dict[float, tuple[int, float, int]] = {}
        self.idle_j = 0.0
        self.total_j = 0.0
        self.charged_j = 0.0

    def _advance(self, now: float) -> None:
        if self.n:
            self.h += (now - self.last_t) / self.n
            self.busy += now - self.last_t
        self.last_t = now

    def begin(self, now: float) -> None:
        self._advance(now)
        k, h, count = self.starts.get(now, (self.k, self.h, 0))
        self.starts[now] = (k, h, count + 1)
        self.n += 1

    def finish(self, now: float, started: float) -> tuple[int, float] | None:
        """One request started at ``started`` leaves; its (interval, H) at the start."""
        self._advance(now)
        self.n = max(0, self.n - 1)
        entry = self.starts.pop(started, None)
        if entry is None:
            return None
        k, h, count = entry
        if count > 1:
            self.starts[started] = (k, h, count - 1)
        return k, h

    def r_at(self, k: int, h: float) -> float:
        """R at the instant of interval ``k`` where H was ``h``: cumulative joules per request
        in flight (an instant before the kept history counts from the oldest kept one)."""
        i = k - (self.k - len(self.cum) + 1)
        if i < 0:
            i, h = 0, self.hb[0]
        return self.cum[i] + self.power[i] * (h - self.hb[i])

    def close(self, now: float, de: float) -> None:
        """The meter read at ``now`` says ``de`` joules since the open interval began."""
        self._advance(now)
        self.total_j += de
        dt = now - self.t_open
        p = de / dt if dt > 0 else 0.0
        busy_j = min(de, p * self.busy)
        self.idle_j += de - busy_j
        self.power[-1] = p
        self.cum.append(self.cum[-1] + p * (self.h - self.hb[-1]))
        self.hb.append(self.h)
        self.power.append(p)
        self.k += 1
        self.t_open = now
        self.busy = 0.0


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
        self._prev_reading: Any = None
        self._task: asyncio.Task | None = None
        self.method = METHOD

    @property
    def enabled(self) -> bool:
        return self.meter is not None

    def _device(self, name: str) -> _Device:
        d = self.devices.get(name)
        if d is None:  # its first interval begins at the last read: the next one meters it
            last, prev = self._last_reading, self._prev_reading
            d = self.devices[name] = _Device(
                self.clock() if last is None else last.t_s, self.history
            )
            if last is not None and prev is not None and last.t_s > prev.t_s:
                de = max(0.0, self._joules(last, name) - self._joules(prev, name))
                d.power[-1] = de / (last.t_s - prev.t_s)  # its power before it appeared
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
        self._device(device).begin(now)
        return now

    def end(self, device: str, started: float) -> float | None:
        """The request ends: its metered charge in joules (None without a meter, and for an
        unmetered device: ``charge_fitted`` prices those)."""
        u = self.unmetered.get(device)
        if u is not None:
            u.n = max(0, u.n - 1)
            return None
        if self.meter is None:
            self._device(device).finish(self.clock(), started)
            return None
        if self.clock() - self._last_read >= self.min_read_s:
            self.tick()  # meter the interval up to this request's end
        d = self._device(device)
        start = d.finish(self.clock(), started)
        if start is None:  # not a token of ``begin`` on this device
            return 0.0
        j = max(0.0, d.r_at(d.k, d.h) - d.r_at(*start))
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
            prev = None if last is None else self._joules(last, name)
            de = 0.0 if prev is None else max(0.0, self._joules(reading, name) - prev)
            d.close(now, de)
        self._prev_reading, self._last_reading = last, reading

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
