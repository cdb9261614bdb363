"""Replay recorded cumulative energy counters (source ``replay``), for tests and re-analysis.

Two CSV shapes are read:

* long: ``t_s,device,joules[,source]`` (what ``EnergySampler.to_rows`` / ``write_csv`` write);
* wide: ``t_s,<device>,<device>...`` (one cumulative-joules column per device).

Cumulative joules are linearly interpolated at query time and held flat beyond the last
row. ``read()`` maps the live clock onto the recording: the first ``read``-able instant
is the recording's first ``t_s`` at the moment the meter is created, then time runs at
``speed``; ``at(t)`` queries a recorded time directly.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wattserve.energy.errors import MeterError
from wattserve.energy.windows import device_curves, from_rows, joules_at
from wattserve.types import EnergyReading


def load_rows(path: Path | str) -> list[dict[str, Any]]:
    """Rows of a long or wide energy CSV, normalised to long form."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in (reader.fieldnames or [])]
            raw = list(reader)
    except OSError as exc:
        raise MeterError(f"cannot read energy CSV {path}: {exc}") from exc
    if "t_s" not in fields:
        raise MeterError(
            f"{path}: energy CSV needs a t_s column (got {', '.join(fields) or 'no header'})"
        )
    if "device" in fields and "joules" in fields:
        return [{k.strip(): v for k, v in row.items()} for row in raw]
    devices = [c for c in fields if c != "t_s" and c != "source"]
    if not devices:
        raise MeterError(
            f"{path}: expected t_s,device,joules rows or t_s plus one column per device"
        )
    rows: list[dict[str, Any]] = []
    for row in raw:
        row = {k.strip(): v for k, v in row.items()}
        for device in devices:
            value = (row.get(device) or "").strip()
            if value:  # a blank cell: that device was not read at this time
                rows.append(
                    {"t_s": row["t_s"], "device": device, "joules": value, "source": "replay"}
                )
    return rows


class ReplayMeter:
    """A meter that answers from a recorded series of cumulative readings."""

    def __init__(
        self,
        source: Path | str | Sequence[EnergyReading] | Iterable[Mapping[str, Any]],
        clock: Callable[[], float] = time.perf_counter,
        speed: float = 1.0,
    ) -> None:
        if speed <= 0:
            raise MeterError("replay speed must be positive")
        if isinstance(source, (str, Path)):
            self.origin = str(source)
            try:
                readings = from_rows(load_rows(source))
            except ValueError as exc:  # WindowError on a malformed row
                raise MeterError(f"{source}: {exc}") from exc
        else:
            items: list[Any] = list(source)  # readings, or rows for from_rows
            self.origin = "memory"
            readings = (
                items if all(isinstance(r, EnergyReading) for r in items) else from_rows(items)
            )
        readings = [r for r in readings if r.joules]
        if not readings:
            raise MeterError(f"no energy readings to replay from {self.origin}")
        self._curves = device_curves(readings)
        for device, (ts, js) in self._curves.items():
            if any(not math.isfinite(x) for x in js):
                raise MeterError(f"{self.origin}: non-finite joules for {device}")
            drops = (js[1:] < js[:-1]).nonzero()[0]
            if len(drops):
                i = int(drops[0]) + 1
                raise MeterError(
                    f"{self.origin}: joules for {device} decrease at t_s={ts[i]:g} "
                    f"({js[i - 1]:g} -> {js[i]:g}); replay needs cumulative counters"
                )
        self.t_first = min(float(ts[0]) for ts, _ in self._curves.values())
        self.t_last = max(float(ts[-1]) for ts, _ in self._curves.values())
        self.speed = speed
        self._clock = clock
        self._t_start = clock()

    @property
    def devices(self) -> list[str]:
        return list(self._curves)

    def at(self, t: float) -> EnergyReading:
        """The recorded counters at recorded time ``t`` (``t_s`` is ``t`` itself)."""
        joules = joules_at(self._curves, t)
        return EnergyReading(t_s=t, joules=joules, sources=dict.fromkeys(joules, "replay"))

    def read(self) -> EnergyReading:
        now = self._clock()
        recorded = self.at(self.t_first + (now - self._t_start) * self.speed)
        return EnergyReading(t_s=now, joules=recorded.joules, sources=recorded.sources)

    def close(self) -> None:
        pass
