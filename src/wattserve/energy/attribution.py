"""Split whole-device joules across requests and across replicas sharing a device.

Energy counters are whole-device, so per-request energy is an apportioning choice; the
method is named and recorded with the result (``Attribution.method``):

* ``active_time``: the window is cut at every sample time and every request start/end;
  the energy of each piece (from the interpolated cumulative counter, i.e. the measured
  power profile) is split equally among the requests in flight during it. Energy spent
  while no request was in flight is ``idle_j``; with ``idle="spread"`` (default) it is
  added to requests in proportion to their share so the parts sum to the device total,
  with ``idle="unattributed"`` it is left out.
* ``tokens`` / ``total_tokens``: the window's energy split in proportion to each request's
  output tokens (or input + output tokens) times the fraction of the request inside the
  window.

Given only a ``Measurement`` (no series), power is taken as constant over its window.
Cache hits are left out by default (they did not run on the device).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from wattserve.energy import windows
from wattserve.energy.errors import WindowError
from wattserve.errors import ConfigError
from wattserve.types import Completion, EnergyReading, Measurement

METHODS = ("active_time", "tokens", "total_tokens")
REPLICA_METHODS = METHODS + ("equal",)
Idle = Literal["spread", "unattributed"]


@dataclass(frozen=True, slots=True)
class Attribution:
    """Joules per request over one window, and how they were split."""

    method: str
    window: str
    start_s: float
    end_s: float
    energy_j: float  # device energy in the window (devices attributed, summed)
    per_request_j: Mapping[str, float]
    per_device_j: Mapping[str, Mapping[str, float]]  # request id -> device -> joules
    idle_j: float  # energy while no request was in flight (active_time)
    idle: str
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def attributed_j(self) -> float:
        return float(sum(self.per_request_j.values()))

    @property
    def label(self) -> str:
        """E.g. ``nvml/active_time``: the energy source(s) and the split method."""
        src = "+".join(sorted(set(self.sources.values()))) or "null"
        return f"{src}/{self.method}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(attributed_j=self.attributed_j, label=self.label)
        return d


@dataclass(frozen=True, slots=True)
class ReplicaAttribution:
    """Joules per replica sharing the metered devices."""

    method: str
    window: str
    energy_j: float
    per_replica_j: Mapping[str, float]
    idle_j: float
    sources: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _series_and_window(
    source: Any, window: tuple[float, float] | str | None, spans: list[tuple[float, float]]
) -> tuple[list[EnergyReading], str, float, float]:
    """Readings to interpolate and the window (name, t0, t1) from a sampler/measurement/series."""
    if isinstance(source, Measurement):
        m = source
        readings = [
            EnergyReading(m.start_s, dict.fromkeys(m.energy_j, 0.0), dict(m.sources)),
            EnergyReading(m.end_s, dict(m.energy_j), dict(m.sources)),
        ]
        if window is None or window == m.window:
            return readings, m.window, m.start_s, m.end_s
    elif hasattr(source, "series"):  # EnergySampler
        readings = source.series()
        if isinstance(window, str):
            known = getattr(source, "measurements", {})
            if window not in known:
                raise WindowError(
                    f"no tracked window {window!r} (known: {', '.join(known) or 'none'})"
                )
            m = known[window]
            return readings, window, m.start_s, m.end_s
    else:
        readings = sorted(source, key=lambda r: r.t_s)
    if isinstance(window, tuple):
        return readings, "custom", float(window[0]), float(window[1])
    if window is None:
        if not spans:
            raise WindowError("no completions to define the window; pass window=(t0, t1)")
        return readings, "requests", min(s for s, _ in spans), max(e for _, e in spans)
    raise WindowError(f"window {window!r} must be (t0, t1), a tracked window name, or None")


def _eligible(completions: Iterable[Completion], include_cache_hits: bool) -> list[Completion]:
    return [c for c in completions if include_cache_hits or not c.cache_hit]


def _active_time_split(
    ts: np.ndarray, js: np.ndarray, t0: float, t1: float, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, float]:
    """Per-request joules for one device (equal split among in-flight requests) and idle joules."""
    inner = ts[(ts > t0) & (ts < t1)]
    s = np.clip(starts, t0, t1)
    e = np.clip(np.maximum(ends, starts), t0, t1)
    knots = np.unique(np.concatenate(([t0, t1], inner, s, e)))
    energy = np.diff(np.interp(knots, ts, js))
    if len(energy) == 0:
        return np.zeros(len(starts)), 0.0
    i0 = np.searchsorted(knots, s)
    i1 = np.searchsorted(knots, e)
    delta = np.zeros(len(knots))
    np.add.at(delta, i0, 1)
    np.add.at(delta, i1, -1)
    in_flight = np.cumsum(delta)[:-1]  # requests covering each piece [knots[k], knots[k+1]]
    share = np.divide(energy, in_flight, out=np.zeros_like(energy), where=in_flight > 0)
    prefix = np.concatenate(([0.0], np.cumsum(share)))
    return prefix[i1] - prefix[i0], float(energy[in_flight <= 0].sum())


def attribute_requests(
    completions: Sequence[Completion],
    source: Any,
    method: str = "active_time",
    window: tuple[float, float] | str | None = None,
    devices: Sequence[str] | None = None,
    idle: Idle = "spread",
    include_cache_hits: bool = False,
) -> Attribution:
    """Split the devices' energy in a window across ``completions``.

    ``source`` is an ``EnergySampler``, a list of ``EnergyReading``s or one ``Measurement``.
    ``window`` is ``(t0, t1)`` in the completions' clock, the name of a window tracked on
    the sampler, or None (the sampler's span of the requests; the measurement's window).
    ``devices`` restricts the split to some devices (e.g. the GPU a replica set shares).
    """
    if method not in METHODS:
        raise ConfigError(
            f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}"
        )
    if idle not in ("spread", "unattributed"):
        raise ConfigError(f"idle must be 'spread' or 'unattributed', not {idle!r}")
    reqs = _eligible(completions, include_cache_hits)
    spans = [(c.sent_s, c.end_s) for c in reqs]
    readings, name, t0, t1 = _series_and_window(source, window, spans)
    curves = windows.device_curves(readings)
    total = windows.measure(readings, name, t0, t1, curves=curves)
    chosen = (
        list(total.energy_j) if devices is None else [d for d in devices if d in total.energy_j]
    )
    if devices is not None and len(chosen) < len(devices):
        missing = sorted(set(devices) - set(total.energy_j))
        raise WindowError(f"devices not measured in window {name!r}: {', '.join(missing)}")
    ids = [c.request_id for c in reqs]
    per_dev = np.zeros((len(reqs), len(chosen)))
    idle_j = 0.0
    starts = np.array([c.sent_s for c in reqs], dtype=float)
    ends = np.array([c.end_s for c in reqs], dtype=float)
    if method == "active_time":
        for k, device in enumerate(chosen):
            ts, js = curves[device]
            per_dev[:, k], dev_idle = _active_time_split(ts, js, t0, t1, starts, ends)
            if idle == "spread":
                attributed = per_dev[:, k].sum()
                if attributed > 0:
                    per_dev[:, k] += dev_idle * per_dev[:, k] / attributed
                else:
                    inside = np.minimum(ends, t1) >= np.maximum(starts, t0)
                    if inside.any():
                        per_dev[inside, k] += dev_idle / inside.sum()
            idle_j += dev_idle
    else:
        tokens = np.array(
            [c.output_tokens + (c.input_tokens if method == "total_tokens" else 0) for c in reqs],
            dtype=float,
        )
        overlap = np.clip(np.minimum(ends, t1) - np.maximum(starts, t0), 0.0, None)
        length = ends - starts
        inside = (starts >= t0) & (ends <= t1)
        fraction = np.where(
            length > 0, overlap / np.where(length > 0, length, 1.0), inside.astype(float)
        )
        weights = tokens * fraction
        if weights.sum() > 0:
            for k, device in enumerate(chosen):
                per_dev[:, k] = total.energy_j[device] * weights / weights.sum()
        else:
            idle_j = float(sum(total.energy_j[d] for d in chosen))
    per_request: dict[str, float] = {}
    per_device: dict[str, dict[str, float]] = {}
    for i, rid in enumerate(ids):  # a repeated id (a retried request) accumulates
        per_request[rid] = per_request.get(rid, 0.0) + float(per_dev[i].sum())
        mine = per_device.setdefault(rid, {})
        for k, d in enumerate(chosen):
            mine[d] = mine.get(d, 0.0) + float(per_dev[i, k])
    return Attribution(
        method=method,
        window=name,
        start_s=t0,
        end_s=t1,
        energy_j=float(sum(total.energy_j[d] for d in chosen)),
        per_request_j=per_request,
        per_device_j=per_device,
        idle_j=idle_j,
        idle=idle,
        sources={d: total.sources[d] for d in chosen},
    )


def with_energy(completions: Sequence[Completion], attribution: Attribution) -> list[Completion]:
    """Completions with ``energy_j``/``energy_source`` set from an attribution (rest unchanged)."""
    out = []
    for c in completions:
        j = attribution.per_request_j.get(c.request_id)
        out.append(
            c if j is None else dataclasses.replace(c, energy_j=j, energy_source=attribution.label)
        )
    return out


@dataclass(frozen=True, slots=True)
class RequestEnergy:
    """One request's joules, split at its first token where the method allows it."""

    energy_j: float
    prefill_j: float | None = None  # sent -> first content chunk
    decode_j: float | None = None  # first content chunk -> end


def _phases(c: Completion, k: int) -> list[Completion]:
    """``c`` as its prefill and decode phases (ids ``k:prefill`` / ``k:decode``), or whole."""
    first = c.first_token_s
    if first is None or not c.sent_s <= first <= c.end_s:
        return [dataclasses.replace(c, request_id=f"{k}:whole")]
    return [
        dataclasses.replace(c, request_id=f"{k}:prefill", end_s=first),
        dataclasses.replace(c, request_id=f"{k}:decode", sent_s=first),
    ]


def attribute_phases(
    completions: Sequence[Completion],
    source: Any,
    method: str = "active_time",
    window: tuple[float, float] | str | None = None,
    devices: Sequence[str] | None = None,
    idle: Idle = "spread",
    include_cache_hits: bool = False,
) -> tuple[Attribution, dict[str, RequestEnergy]]:
    """``attribute_requests`` plus each request's prefill/decode split.

    With ``active_time`` each request is cut at its first content chunk into two spans that
    are in flight one after the other, so the in-flight count at every instant is the same
    as for whole requests and the two parts add up to the request's share exactly. The token
    methods have no time split (``prefill_j``/``decode_j`` are None). A repeated request id
    accumulates, as in ``attribute_requests``.
    """
    reqs = _eligible(completions, include_cache_hits)
    if method != "active_time":
        att = attribute_requests(reqs, source, method, window, devices, idle, True)
        return att, {rid: RequestEnergy(j) for rid, j in att.per_request_j.items()}
    pieces = [p for k, c in enumerate(reqs) for p in _phases(c, k)]
    att = attribute_requests(pieces, source, method, window, devices, idle, True)
    parts: dict[str, dict[str, float]] = {}
    per_device: dict[str, dict[str, float]] = {}
    for k, c in enumerate(reqs):
        mine = parts.setdefault(c.request_id, {})
        dev = per_device.setdefault(c.request_id, {})
        for phase in ("prefill", "decode", "whole"):
            pid = f"{k}:{phase}"
            if pid in att.per_request_j:
                mine[phase] = mine.get(phase, 0.0) + att.per_request_j[pid]
                for d, j in att.per_device_j[pid].items():
                    dev[d] = dev.get(d, 0.0) + j
    out = {
        rid: RequestEnergy(
            float(sum(p.values())),
            p.get("prefill") if "whole" not in p else None,
            p.get("decode") if "whole" not in p else None,
        )
        for rid, p in parts.items()
    }
    merged = dataclasses.replace(
        att,
        per_request_j={rid: e.energy_j for rid, e in out.items()},
        per_device_j=per_device,
    )
    return merged, out


def charge_at_end(
    request: Completion,
    overlapping: Sequence[Completion],
    source: Any,
    devices: Sequence[str] | None = None,
) -> RequestEnergy:
    """One request's ``active_time`` share, computed the moment it ends (live serving).

    The window is the request's own lifetime, so other requests only matter inside it: pass
    every request on the same device(s) whose span overlaps it, with those still in flight
    given ``end_s`` = the request's end (later ends are clipped to the window anyway). The
    request is in flight throughout its window, so nothing in it is idle and the charge is
    the same as ``attribute_phases`` over the whole run gives it (``idle="unattributed"``).
    ``source`` must hold a reading at or after ``request.end_s`` (``EnergySampler.mark()``).
    The gateway's ``serve.energy.EnergyAccountant`` keeps this charge incrementally (O(1) per
    request); ``tests/test_energy_one_method.py`` asserts the two agree.
    """
    others = [c for c in overlapping if c.request_id != request.request_id]
    window = (request.sent_s, request.end_s)
    _, parts = attribute_phases(
        [request, *others], source, "active_time", window, devices, "unattributed"
    )
    return parts.get(request.request_id, RequestEnergy(0.0))


def attribute_replicas(
    completions: Sequence[Completion],
    source: Any,
    method: str = "active_time",
    window: tuple[float, float] | str | None = None,
    devices: Sequence[str] | None = None,
    replicas: Sequence[str] | None = None,
) -> ReplicaAttribution:
    """Joules per replica sharing the metered devices.

    ``equal`` splits the window's energy evenly over ``replicas`` (default: those seen in
    the completions); the other methods sum the per-request split by ``Completion.replica``
    with idle energy spread in proportion. Requests without a replica count as ``"?"``.
    """
    if method not in REPLICA_METHODS:
        raise ConfigError(
            f"unknown replica split {method!r}; choose one of {', '.join(REPLICA_METHODS)}"
        )
    names = (
        list(replicas) if replicas is not None else sorted({c.replica or "?" for c in completions})
    )
    if not names:
        raise ConfigError("no replicas to split energy across")
    if method == "equal":
        spans = [(c.sent_s, c.end_s) for c in completions]
        readings, name, t0, t1 = _series_and_window(source, window, spans)
        total = windows.measure(readings, name, t0, t1)
        chosen = (
            list(total.energy_j) if devices is None else [d for d in devices if d in total.energy_j]
        )
        energy = float(sum(total.energy_j[d] for d in chosen))
        return ReplicaAttribution(
            method,
            name,
            energy,
            {r: energy / len(names) for r in names},
            0.0,
            {d: total.sources[d] for d in chosen},
        )
    att = attribute_requests(completions, source, method, window, devices, idle="spread")
    per_replica = dict.fromkeys(names, 0.0)
    by_id = {c.request_id: c.replica or "?" for c in completions}
    for rid, j in att.per_request_j.items():
        per_replica[by_id[rid]] = per_replica.get(by_id[rid], 0.0) + j
    return ReplicaAttribution(
        method, att.window, att.energy_j, per_replica, att.idle_j, dict(att.sources)
    )


def split_by_shares(measurement: Measurement, shares: Mapping[str, float]) -> dict[str, float]:
    """Split a measurement's total in proportion to fixed shares (e.g. memory fractions)."""
    weight = float(sum(shares.values()))
    if weight <= 0 or any(v < 0 for v in shares.values()):
        raise ConfigError("shares must be non-negative and not all zero")
    return {k: measurement.total_j * v / weight for k, v in shares.items()}
