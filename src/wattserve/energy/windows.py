"""Windows over a series of cumulative energy readings: pure functions, no threads.

A reading holds cumulative joules per device; energy in ``[t0, t1]`` is the difference of
the counter at ``t1`` and ``t0``, each linearly interpolated between the two neighbouring
readings (constant power between samples). Windows may overlap and nest freely (the whole
run and its steady state), and may be computed after the fact from a stored series.

Rows (``to_rows``/``from_rows``) are the long form ``t_s, device, joules, source`` that
``ReplayMeter`` also reads, so a recorded series can be written to CSV and replayed.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from wattserve.energy.errors import WindowError
from wattserve.types import EnergyReading, EnergySource, Measurement

ROW_FIELDS = ("t_s", "device", "joules", "source")
# readings with no device (NullMeter) still need their timestamps to survive a round trip
NO_DEVICE = ""

Curves = dict[str, tuple[np.ndarray, np.ndarray]]


def device_curves(readings: Sequence[EnergyReading]) -> Curves:
    """Per device: (times, cumulative joules), sorted by time, from every reading that has it."""
    points: dict[str, list[tuple[float, float]]] = {}
    for r in readings:
        for device, j in r.joules.items():
            points.setdefault(device, []).append((r.t_s, float(j)))
    curves: Curves = {}
    for device, pts in points.items():
        pts.sort(key=lambda p: p[0])
        arr = np.asarray(pts, dtype=float)
        curves[device] = (arr[:, 0], arr[:, 1])
    return curves


def joules_at(curves: Curves, t: float) -> dict[str, float]:
    """Cumulative joules per device at time ``t`` (linear interpolation, clamped at the ends)."""
    return {d: float(np.interp(t, ts, js)) for d, (ts, js) in curves.items()}


def last_sources(readings: Sequence[EnergyReading]) -> dict[str, EnergySource]:
    sources: dict[str, EnergySource] = {}
    for r in readings:
        sources.update(r.sources)
    return sources


def measure(
    readings: Sequence[EnergyReading],
    name: str,
    t0: float,
    t1: float,
    tolerance_s: float = 1e-6,
    curves: Curves | None = None,
) -> Measurement:
    """Energy per device in ``[t0, t1]``.

    Raises ``WindowError`` when ``t1 < t0`` or the window reaches outside the recorded
    series (a counter cannot be extrapolated honestly). Devices whose own readings do not
    cover the window are left out.
    """
    if t1 < t0:
        raise WindowError(f"window {name!r} ends before it starts ({t0} > {t1})")
    if not readings:
        raise WindowError(f"window {name!r}: no readings recorded")
    first = min(r.t_s for r in readings)
    last = max(r.t_s for r in readings)
    if t0 < first - tolerance_s or t1 > last + tolerance_s:
        raise WindowError(
            f"window {name!r} [{t0:.3f}, {t1:.3f}] lies outside the recorded series "
            f"[{first:.3f}, {last:.3f}]"
        )
    curves = device_curves(readings) if curves is None else curves
    sources = last_sources(readings)
    energy: dict[str, float] = {}
    for device, (ts, js) in curves.items():
        if ts[0] > t0 + tolerance_s or ts[-1] < t1 - tolerance_s:
            continue
        energy[device] = max(0.0, float(np.interp(t1, ts, js) - np.interp(t0, ts, js)))
    return Measurement(
        window=name,
        start_s=float(t0),
        end_s=float(t1),
        energy_j=energy,
        sources={d: sources.get(d, "null") for d in energy},
    )


def stitch_resets(readings: Sequence[EnergyReading]) -> tuple[list[EnergyReading], int]:
    """Join counter restarts (a resumed run appends a new meter session starting at 0 J).

    Wherever a device's cumulative joules drop, later values are offset so the counter
    continues from where it was: the gap between sessions counts as 0 J. Returns the
    stitched readings (time order) and the number of resets found.
    """
    offset: dict[str, float] = {}
    last: dict[str, float] = {}
    resets = 0
    out: list[EnergyReading] = []
    for r in sorted(readings, key=lambda r: r.t_s):
        joules = {}
        for device, j in r.joules.items():
            if device in last and j + offset.get(device, 0.0) < last[device]:
                offset[device] = last[device] - j
                resets += 1
            joules[device] = j + offset.get(device, 0.0)
            last[device] = joules[device]
        out.append(EnergyReading(r.t_s, joules, r.sources))
    return out, resets


def power_series(readings: Sequence[EnergyReading]) -> list[tuple[float, dict[str, float]]]:
    """Average watts per device between consecutive readings, stamped at each interval's middle."""
    out: list[tuple[float, dict[str, float]]] = []
    ordered = sorted(readings, key=lambda r: r.t_s)
    for a, b in pairwise(ordered):
        dt = b.t_s - a.t_s
        if dt <= 0:
            continue
        watts = {d: (b.joules[d] - a.joules[d]) / dt for d in b.joules if d in a.joules}
        out.append(((a.t_s + b.t_s) / 2, watts))
    return out


def to_rows(readings: Iterable[EnergyReading]) -> list[dict[str, Any]]:
    """Long-form rows: one per (reading, device); a reading without devices keeps one row."""
    rows: list[dict[str, Any]] = []
    for r in readings:
        if not r.joules:
            rows.append({"t_s": r.t_s, "device": NO_DEVICE, "joules": 0.0, "source": "null"})
        for device, j in r.joules.items():
            rows.append(
                {
                    "t_s": r.t_s,
                    "device": device,
                    "joules": float(j),
                    "source": r.sources.get(device, "null"),
                }
            )
    return rows


def from_rows(rows: Iterable[Mapping[str, Any]]) -> list[EnergyReading]:
    """Inverse of ``to_rows``: rows sharing a ``t_s`` become one reading (sorted by time)."""
    grouped: dict[float, tuple[dict[str, float], dict[str, Any]]] = {}
    for row in rows:
        try:
            t = float(row["t_s"])
            device = str(row.get("device") or NO_DEVICE)
            joules = float(row.get("joules") or 0.0)
        except (KeyError, TypeError, ValueError) as exc:
            raise WindowError(f"bad energy row {dict(row)!r}: {exc}") from exc
        js, srcs = grouped.setdefault(t, ({}, {}))
        if device != NO_DEVICE:
            js[device] = joules
            srcs[device] = str(row.get("source") or "replay")
    return [
        EnergyReading(t_s=t, joules=js, sources=srcs) for t, (js, srcs) in sorted(grouped.items())
    ]


def write_csv(path: Path | str, readings: Iterable[EnergyReading], append: bool = False) -> None:
    path = Path(path)
    new = not append or not path.exists() or path.stat().st_size == 0
    with path.open("a" if append else "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(to_rows(readings))


def read_csv(path: Path | str) -> list[EnergyReading]:
    with Path(path).open(newline="") as f:
        return from_rows(csv.DictReader(f))
