"""CPU package and DRAM energy through the Linux powercap interface (RAPL).

Each zone directory (``/sys/class/powercap/intel-rapl:0``, ``intel-rapl:0:2`` ...) holds
``name`` (``package-0``, ``dram``, ``core``, ``uncore``, ``psys``), ``energy_uj`` (a
cumulative counter in microjoules) and ``max_energy_range_uj`` (where the counter wraps to
zero). AMD Zen CPUs expose the same ``intel-rapl:*`` zones (intel_rapl_msr driver, Linux
5.8+); zones named ``amd-rapl:*`` are accepted too. Since Linux 5.10 (CVE-2020-8694)
``energy_uj`` is readable by root only; the error says how to open it.

Devices are named ``cpu-package-N`` and ``dram-N``. ``core``/``uncore`` are parts of the
package and are left out by default so that nothing is counted twice.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wattserve.energy.errors import MeterError
from wattserve.types import EnergyReading

DEFAULT_ROOT = Path("/sys/class/powercap")
ZONE_PATTERNS = ("intel-rapl:*", "amd-rapl:*")
_ZONE_ID = re.compile(r"-rapl:(\d+)(?::(\d+))?$")


@dataclass(frozen=True, slots=True)
class RaplZone:
    path: Path
    kind: str  # "package", "dram", "core", "uncore", "psys"
    device: str  # "cpu-package-0", "dram-0", ...
    max_range_uj: int


def permission_hint(path: Path) -> str:
    return (
        f"cannot read {path}: permission denied. On Linux 5.10 and later RAPL energy_uj is "
        "readable by root only. Fix: run as root, or open the counters until the next reboot "
        "with `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj "
        "/sys/class/powercap/intel-rapl:*/intel-rapl:*/energy_uj`; or choose another meter "
        "(--meter modeled)."
    )


def _kind(name: str) -> str:
    return name.split("-", 1)[0] if name.startswith("package") else name


def discover_zones(
    root: Path | str = DEFAULT_ROOT, domains: Sequence[str] = ("package", "dram")
) -> list[RaplZone]:
    """Zones under ``root`` whose kind is in ``domains``, sorted by device name.

    Raises ``MeterError`` when there is no powercap tree or no matching zone.
    """
    root = Path(root)
    if not root.is_dir():
        raise MeterError(
            f"no RAPL powercap tree at {root} "
            "(not Linux, a VM without RAPL, or no intel_rapl driver)"
        )
    seen: set[Path] = set()
    zones: list[RaplZone] = []
    dirs = sorted({p for pattern in ZONE_PATTERNS for p in root.glob(pattern)})
    # nested zones (intel-rapl:0/intel-rapl:0:2) are also linked flat at the root in sysfs;
    # fake trees may nest only, so look one level down as well and de-duplicate by real path
    dirs += sorted({p for d in list(dirs) for pattern in ZONE_PATTERNS for p in d.glob(pattern)})
    for zdir in dirs:
        real = zdir.resolve()
        match = _ZONE_ID.search(zdir.name)
        if real in seen or not match or not (zdir / "energy_uj").exists():
            continue
        seen.add(real)
        try:
            name = (zdir / "name").read_text().strip()
        except OSError:
            continue
        kind = _kind(name)
        if kind not in domains:
            continue
        package = int(match.group(1))
        if kind == "package":
            suffix = name.split("-", 1)[1] if "-" in name else str(package)
            device = f"cpu-package-{suffix}"
        else:
            device = f"{kind}-{package}"
        try:
            max_range = int((zdir / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError):
            max_range = 0  # unknown: a decrease is then treated as a reset, not a wrap
        zones.append(RaplZone(zdir, kind, device, max_range))
    if not zones:
        raise MeterError(f"no RAPL zones of kind {', '.join(domains)} under {root}")
    zones.sort(key=lambda z: z.device)
    return zones


def read_uj(path: Path) -> int:
    try:
        return int((path / "energy_uj").read_text().strip())
    except PermissionError as exc:
        raise MeterError(permission_hint(path / "energy_uj")) from exc
    except (OSError, ValueError) as exc:
        raise MeterError(f"cannot read {path / 'energy_uj'}: {exc}") from exc


class RaplMeter:
    """Cumulative joules per CPU package and DRAM domain, source ``rapl``.

    Counters wrap at ``max_energy_range_uj``; each read adds the forward distance since the
    previous read, so read at least once per wrap period (minutes at full load; the
    ``EnergySampler`` reads every 0.2 s).
    """

    def __init__(
        self,
        root: Path | str = DEFAULT_ROOT,
        domains: Sequence[str] = ("package", "dram"),
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.root = Path(root)
        self.zones = discover_zones(self.root, domains)
        self._clock = clock
        self._lock = threading.Lock()
        self._last_uj = {z.device: read_uj(z.path) for z in self.zones}  # raises if unreadable
        self._total_uj = {z.device: 0 for z in self.zones}
        self.wraps = {z.device: 0 for z in self.zones}

    @property
    def devices(self) -> list[str]:
        return [z.device for z in self.zones]

    def read(self) -> EnergyReading:
        with self._lock:
            now = self._clock()
            for zone in self.zones:
                raw = read_uj(zone.path)
                last = self._last_uj[zone.device]
                if raw >= last:
                    delta = raw - last
                elif zone.max_range_uj > 0:
                    delta = raw + zone.max_range_uj - last
                    self.wraps[zone.device] += 1
                else:
                    delta = raw  # counter reset without a known range: count from zero
                self._total_uj[zone.device] += delta
                self._last_uj[zone.device] = raw
            joules = {d: uj / 1e6 for d, uj in self._total_uj.items()}
        return EnergyReading(t_s=now, joules=joules, sources=dict.fromkeys(joules, "rapl"))

    def close(self) -> None:
        pass


def rapl_status(root: Path | str = DEFAULT_ROOT) -> tuple[bool, str]:
    """(usable, reason) for ``auto_meter``; never raises."""
    try:
        zones = discover_zones(root)
        for z in zones:
            read_uj(z.path)
    except MeterError as exc:
        return False, str(exc)
    return True, "RAPL readable: " + ", ".join(z.device for z in zones)
