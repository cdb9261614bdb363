"""An estimate of CPU energy from CPU time and a per-core power model (source ``modeled``).

    energy_j = idle_w * cores * wall_s + (active_w - idle_w) * busy_core_s

``busy_core_s`` is CPU time (user + system) of this process and its children
(``scope="process"``), of the whole system (``"system"``) or of this container's cgroup
(``"cgroup"``). Watts are per logical
CPU. Defaults come from the CPU's TDP per core where the model (``/proc/cpuinfo``) matches
a small table of common families, else a generic figure; every reading is labelled
``modeled`` because it is an estimate, not a measurement.
"""

from __future__ import annotations

import os
import platform
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wattserve.energy.errors import MeterError
from wattserve.types import EnergyReading

Scope = Literal["process", "system", "cgroup"]  # whose CPU time is counted

# (pattern on the model name, family, TDP watts per *physical* core); rough figures from
# vendor TDPs of typical parts, e.g. EPYC 7763 280 W / 64 cores, Xeon Platinum 8380 270 W / 40.
TDP_PER_CORE_W: tuple[tuple[str, str, float], ...] = (
    (r"EPYC", "AMD EPYC", 4.4),
    (r"Threadripper", "AMD Threadripper", 8.0),
    (r"Ryzen.*\d{4}U", "AMD Ryzen mobile", 3.5),
    (r"Ryzen", "AMD Ryzen desktop", 9.0),
    (r"Xeon.*(Platinum|Gold)", "Intel Xeon Scalable (Gold/Platinum)", 6.5),
    (r"Xeon.*(Silver|Bronze)", "Intel Xeon Scalable (Silver/Bronze)", 8.0),
    (r"Xeon", "Intel Xeon", 6.5),
    (r"Core.*i[3579]-\d+[UY]\b", "Intel Core mobile (U/Y)", 3.8),
    (r"Core.*i[3579]-\d+H", "Intel Core mobile (H)", 7.5),
    (r"Core|Ultra", "Intel Core desktop", 10.0),
    (r"Apple M", "Apple M-series", 3.0),
    (r"Neoverse|Graviton|Ampere", "Arm server", 2.5),
)
DEFAULT_TDP_PER_CORE_W = 6.0
IDLE_FRACTION = 0.25  # idle power per core as a fraction of active power (typical server package)


def cpu_model_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (``model name``), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class PowerModel:
    """Watts per logical CPU when idle and when fully busy, and where the figures came from."""

    idle_w: float
    active_w: float
    basis: str

    def __post_init__(self) -> None:
        if self.idle_w < 0 or self.active_w < self.idle_w:
            raise MeterError(
                "power model needs 0 <= idle_w <= active_w "
                f"(got idle {self.idle_w}, active {self.active_w})"
            )


def default_power_model(model_name: str | None = None) -> PowerModel:
    """Per-logical-CPU watts from the TDP table (per physical core x cores/threads)."""
    import psutil

    name = model_name if model_name is not None else cpu_model_name()
    per_core, basis = (
        DEFAULT_TDP_PER_CORE_W,
        f"generic {DEFAULT_TDP_PER_CORE_W:g} W/core (CPU not in table)",
    )
    for pattern, family, watts in TDP_PER_CORE_W:
        if re.search(pattern, name, flags=re.IGNORECASE):
            per_core, basis = watts, f"{family} TDP ~{watts:g} W/core"
            break
    logical = psutil.cpu_count(logical=True) or 1
    physical = psutil.cpu_count(logical=False) or logical
    active = per_core * physical / logical
    return PowerModel(
        idle_w=active * IDLE_FRACTION,
        active_w=active,
        basis=f"{basis}, idle {IDLE_FRACTION:.0%} of active",
    )


class ModeledCpuMeter:
    """Cumulative modeled CPU joules under device ``cpu`` (source ``modeled``).

    ``scope="process"`` counts this process and its reaped children; ``"system"`` counts all
    CPU time on the machine; ``"cgroup"`` counts this container's cgroup (v2 ``cpu.stat`` or
    v1 ``cpuacct.usage``). ``cores`` (default: CPUs this process may use for ``process`` and
    ``cgroup``, all CPUs for ``system``) sets the idle term.
    """

    def __init__(
        self,
        scope: Scope = "process",
        idle_w: float | None = None,
        active_w: float | None = None,
        cores: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
        cpu_seconds: Callable[[], float] | None = None,
    ) -> None:
        import psutil

        if scope not in ("process", "system", "cgroup"):
            raise MeterError(f"scope must be 'process', 'system' or 'cgroup', not {scope!r}")
        if idle_w is not None and active_w is not None:
            self.model = PowerModel(
                idle_w=float(idle_w), active_w=float(active_w), basis="configured"
            )
        else:
            base = default_power_model()
            self.model = PowerModel(
                idle_w=base.idle_w if idle_w is None else float(idle_w),
                active_w=base.active_w if active_w is None else float(active_w),
                basis=base.basis if idle_w is None and active_w is None else "configured",
            )
        self.scope = scope
        self.cores = (
            int(cores)
            if cores is not None
            else ((psutil.cpu_count() or 1) if scope == "system" else usable_cores())
        )
        if self.cores < 1:
            raise MeterError("cores must be at least 1")
        self._clock = clock
        if cpu_seconds is None:
            cpu_seconds = {
                "process": _process_cpu_s,
                "system": _system_busy_s,
                "cgroup": cgroup_cpu_s,
            }[scope]
        self._cpu_seconds = cpu_seconds
        self._lock = threading.Lock()
        self._t0 = clock()
        self._cpu0 = cpu_seconds()
        self._last_busy = 0.0
        self._last_j = 0.0

    @property
    def devices(self) -> list[str]:
        return ["cpu"]

    def energy_j(self, wall_s: float, busy_core_s: float) -> float:
        m = self.model
        return m.idle_w * self.cores * wall_s + (m.active_w - m.idle_w) * busy_core_s

    def read(self) -> EnergyReading:
        with self._lock:
            now = self._clock()
            # CPU time counters may step back by a tick (psutil's system idle time does): clamp
            busy = max(self._last_busy, self._cpu_seconds() - self._cpu0)
            joules = max(self._last_j, self.energy_j(now - self._t0, busy))
            self._last_busy, self._last_j = busy, joules
        return EnergyReading(t_s=now, joules={"cpu": joules}, sources={"cpu": "modeled"})

    def describe(self) -> str:
        m = self.model
        return (
            f"modeled CPU power ({self.scope} CPU time, {self.cores} core(s), "
            f"idle {m.idle_w:.2f} W + active {m.active_w:.2f} W per core; {m.basis})"
        )

    def close(self) -> None:
        pass


def _process_cpu_s() -> float:
    t = _this_process().cpu_times()
    return t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)


_PROCESS: dict[int, object] = {}


def _this_process():
    import psutil

    pid = os.getpid()
    proc = _PROCESS.get(pid)
    if proc is None:
        proc = _PROCESS[pid] = psutil.Process(pid)
    return proc


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_s(root: Path | str = CGROUP_ROOT) -> float:
    """CPU seconds used by this cgroup (a container): v2 ``cpu.stat`` or v1 ``cpuacct.usage``."""
    root = Path(root)
    v2 = root / "cpu.stat"
    try:
        if v2.exists():
            for line in v2.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
        for v1 in (root / "cpuacct" / "cpuacct.usage", root / "cpu,cpuacct" / "cpuacct.usage"):
            if v1.exists():
                return int(v1.read_text().strip()) / 1e9
    except (OSError, ValueError) as exc:
        raise MeterError(f"cannot read cgroup CPU time under {root}: {exc}") from exc
    raise MeterError(f"no cgroup CPU accounting under {root} (cpu.stat or cpuacct.usage)")


def _system_busy_s() -> float:
    import psutil

    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    # guest time is already included in user on Linux
    return sum(t) - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
