"""Energy meters: each reads cumulative joules per device (``Meter.read() -> EnergyReading``).

The real meters live in their own modules and are re-exported here:

* ``NvmlMeter`` (``energy/nvml.py``): GPU energy counter, or power polling on old GPUs;
* ``RaplMeter`` (``energy/rapl.py``): CPU package and DRAM counters from powercap;
* ``ModeledCpuMeter`` (``energy/modeled.py``): CPU time x a power model, labelled ``modeled``;
* ``ReplayMeter`` (``energy/replay.py``): a recorded CSV or series;
* ``NullMeter`` and ``CompositeMeter`` (here).

``auto_meter(prefer)`` picks one and says why: NVML if an NVIDIA GPU is present (plus RAPL
for the CPU when readable), else RAPL if readable, else the modeled CPU meter.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wattserve.energy.errors import MeterError
from wattserve.energy.modeled import ModeledCpuMeter, Scope
from wattserve.energy.nvml import NvmlMeter
from wattserve.energy.rapl import DEFAULT_ROOT, RaplMeter, rapl_status
from wattserve.energy.replay import ReplayMeter
from wattserve.errors import ConfigError
from wattserve.protocols import Meter
from wattserve.types import EnergyReading, EnergySource

__all__ = [
    "CompositeMeter",
    "Meter",
    "MeterError",
    "ModeledCpuMeter",
    "NullMeter",
    "NvmlMeter",
    "RaplMeter",
    "ReplayMeter",
    "auto_meter",
    "meter_info",
    "METER_CHOICES",
]

METER_CHOICES = (
    "auto",
    "nvml",
    "rapl",
    "modeled",
    "modeled:process",
    "modeled:system",
    "modeled:cgroup",
    "null",
    "replay:PATH",
)
ENV_VAR = "WATTSERVE_METER"


class NullMeter:
    """Measures nothing: readings carry no devices, windows come out empty (0 J)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock

    @property
    def devices(self) -> list[str]:
        return []

    def read(self) -> EnergyReading:
        return EnergyReading(t_s=self._clock(), joules={}, sources={})

    def close(self) -> None:
        pass


class CompositeMeter:
    """Several meters read together (e.g. GPU by NVML and CPU by RAPL); device names must differ."""

    def __init__(self, meters: Sequence[Any]) -> None:
        if not meters:
            raise MeterError("CompositeMeter needs at least one meter")
        self.meters = list(meters)

    @property
    def devices(self) -> list[str]:
        return [d for m in self.meters for d in getattr(m, "devices", [])]

    def read(self) -> EnergyReading:
        readings = [m.read() for m in self.meters]
        joules: dict[str, float] = {}
        sources: dict[str, EnergySource] = {}
        for r in readings:
            clash = set(joules) & set(r.joules)
            if clash:
                raise MeterError(
                    f"two meters report the same device(s): {', '.join(sorted(clash))}"
                )
            joules.update(r.joules)
            sources.update(r.sources)
        t = (readings[0].t_s + readings[-1].t_s) / 2
        return EnergyReading(t_s=t, joules=joules, sources=sources)

    def close(self) -> None:
        for m in self.meters:
            close = getattr(m, "close", None)
            if close is not None:
                close()


def _gpu_reason(meter: NvmlMeter) -> str:
    names = meter.names()
    modes = sorted(set(meter.modes.values()))
    label = ", ".join(f"{d} {n}" for d, n in names.items())
    return f"NVML: {len(names)} NVIDIA GPU(s) ({label}; {' + '.join(modes)}; {meter.selection})"


_MODELED_SCOPES: dict[str, Scope] = {
    "modeled": "system",
    "modeled:system": "system",
    "modeled:process": "process",
    "modeled:cgroup": "cgroup",
}


def _one(kind: str, rapl_root: Path | str) -> tuple[Any, str]:
    kind = kind.strip()
    if kind == "nvml":
        nvml = NvmlMeter()
        return nvml, _gpu_reason(nvml)
    if kind == "rapl":
        rapl = RaplMeter(root=rapl_root)
        return rapl, f"RAPL powercap counters ({', '.join(rapl.devices)})"
    if kind in _MODELED_SCOPES:
        modeled = ModeledCpuMeter(scope=_MODELED_SCOPES[kind])
        return modeled, modeled.describe()
    if kind == "null":
        return NullMeter(), "no energy measured (null meter chosen)"
    if kind.startswith("replay:"):
        path = kind.split(":", 1)[1]
        replay = ReplayMeter(path)
        return replay, f"replaying recorded counters from {path} ({', '.join(replay.devices)})"
    raise ConfigError(
        f"unknown meter {kind!r}; choose one of {', '.join(METER_CHOICES)} "
        "(combine with '+', e.g. nvml+rapl)"
    )


def auto_meter(
    prefer: str | None = None, rapl_root: Path | str = DEFAULT_ROOT
) -> tuple[Meter, str]:
    """The meter to use here and the human reason it was chosen.

    ``prefer`` (or the ``WATTSERVE_METER`` environment variable when ``prefer`` is None)
    names one meter from ``METER_CHOICES`` or several joined by ``+``; a named meter that
    cannot be used raises ``MeterError`` with the reason. ``None``/``"auto"`` probes:
    NVML (+ RAPL when readable), else RAPL, else the modeled CPU meter.
    """
    via_env = prefer is None and bool(os.environ.get(ENV_VAR))
    choice = (prefer if prefer is not None else os.environ.get(ENV_VAR, "auto")).strip() or "auto"
    if choice != "auto":
        parts = [p for p in choice.split("+") if p.strip()]
        picked = [_one(p, rapl_root) for p in parts]
        suffix = f" (chosen by {ENV_VAR})" if via_env else " (chosen)"
        if len(picked) == 1:
            return picked[0][0], picked[0][1] + suffix
        return CompositeMeter([m for m, _ in picked]), "; ".join(r for _, r in picked) + suffix

    try:
        gpu = NvmlMeter()
    except MeterError as exc:
        gpu, gpu_note = None, f"no GPU meter ({exc})"
    rapl_ok, rapl_note = rapl_status(rapl_root)
    if gpu is not None:
        reason = _gpu_reason(gpu)
        if rapl_ok:
            return CompositeMeter([gpu, RaplMeter(root=rapl_root)]), f"{reason}; CPU: {rapl_note}"
        return gpu, f"{reason}; CPU energy not measured ({rapl_note})"
    if rapl_ok:
        return RaplMeter(root=rapl_root), f"{rapl_note}; {gpu_note}"
    meter = ModeledCpuMeter(scope="system")
    return meter, f"{meter.describe()}: {gpu_note}; {rapl_note}"


def meter_info(meter: Any, reason: str | None = None) -> dict[str, Any]:
    """A JSON-able description of a meter for run.json and ``wattserve env``."""
    info: dict[str, Any] = {
        "type": type(meter).__name__,
        "devices": list(getattr(meter, "devices", [])),
    }
    if reason is not None:
        info["reason"] = reason
    if isinstance(meter, CompositeMeter):
        info["parts"] = [meter_info(m) for m in meter.meters]
    elif isinstance(meter, NvmlMeter):
        info.update(meter.info())
    elif isinstance(meter, ModeledCpuMeter):
        info.update(
            scope=meter.scope,
            cores=meter.cores,
            idle_w=meter.model.idle_w,
            active_w=meter.model.active_w,
            basis=meter.model.basis,
        )
    elif isinstance(meter, RaplMeter):
        info["root"] = str(meter.root)
    elif isinstance(meter, ReplayMeter):
        info["origin"] = meter.origin
    return info
