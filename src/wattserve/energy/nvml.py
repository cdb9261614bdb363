"""NVIDIA GPU energy through NVML (``nvidia-ml-py``, imported as ``pynvml``).

Volta and newer GPUs keep a total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``,
millijoules since the driver loaded). The counter updates about every 100 ms, so windows
should be seconds long. Older GPUs lack it: for those, a background thread polls
``nvmlDeviceGetPowerUsage`` (milliwatts) and integrates power over time (trapezoid rule);
such readings are still labelled ``nvml`` but ``NvmlMeter.modes`` says ``"power-polling"``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from wattserve.energy.errors import MeterError
from wattserve.types import EnergyReading

COUNTER = "energy-counter"
POLLING = "power-polling"


def load_nvml() -> Any:
    """Import and initialise ``pynvml``; raise ``MeterError`` saying why it is unusable."""
    try:
        import pynvml  # nvidia-ml-py
    except ImportError as exc:
        raise MeterError("nvidia-ml-py is not installed (pip install nvidia-ml-py)") from exc
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError (no driver / library not found) or OSError
        raise MeterError(f"NVML is not available: {exc}") from exc
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlMeter:
    """Cumulative joules per GPU (``gpu0``, ``gpu1``, ...), source ``nvml``.

    ``devices`` picks GPU indices (default: all). ``force_polling`` uses the power-polling
    fallback even where the energy counter exists (for comparisons and tests).
    """

    def __init__(
        self,
        devices: Sequence[int] | None = None,
        poll_interval_s: float = 0.05,
        force_polling: bool = False,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if poll_interval_s <= 0:
            raise MeterError("poll_interval_s must be positive")
        self._nvml = load_nvml()
        self._clock = clock
        self.poll_interval_s = poll_interval_s
        try:
            count = int(self._nvml.nvmlDeviceGetCount())
            if count == 0:
                raise MeterError("NVML found no NVIDIA GPU")
            if devices is None:
                indices, self.selection = visible_indices(self._nvml, count)
            else:
                indices, self.selection = list(devices), "chosen GPUs"
            for i in indices:
                if not 0 <= i < count:
                    raise MeterError(f"GPU index {i} out of range: NVML sees {count} GPU(s)")
            self._handles = {f"gpu{i}": self._nvml.nvmlDeviceGetHandleByIndex(i) for i in indices}
            self.modes: dict[str, str] = {}
            self._origin_mj: dict[str, int] = {}
            for name, handle in self._handles.items():
                if force_polling:
                    self.modes[name] = POLLING
                    continue
                try:
                    self._origin_mj[name] = int(
                        self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                    )
                    self.modes[name] = COUNTER
                except self._nvml.NVMLError:  # not supported on pre-Volta GPUs
                    self.modes[name] = POLLING
            for name, mode in self.modes.items():
                if mode == POLLING:
                    try:
                        self._power_w(name)
                    except self._nvml.NVMLError as exc:
                        raise MeterError(
                            f"{name} reports neither an energy counter nor power draw ({exc})"
                        ) from exc
        except BaseException:
            self._nvml.nvmlShutdown()  # NVML init is reference counted: undo ours
            raise
        # power-polling state: integrated joules, last (t, watts) per device
        self._lock = threading.Lock()
        self._polled_j: dict[str, float] = {}
        self._last_power: dict[str, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if any(m == POLLING for m in self.modes.values()):
            self._poll_once()
            self._thread = threading.Thread(
                target=self._poll_loop, name="nvml-power-poll", daemon=True
            )
            self._thread.start()

    @property
    def devices(self) -> list[str]:
        return list(self._handles)

    def names(self) -> dict[str, str]:
        """GPU model name per device, e.g. ``{"gpu0": "NVIDIA H100 80GB HBM3"}``."""
        return {d: _text(self._nvml.nvmlDeviceGetName(h)) for d, h in self._handles.items()}

    def _power_w(self, name: str) -> float:
        return float(self._nvml.nvmlDeviceGetPowerUsage(self._handles[name])) / 1000.0

    def _poll_once(self) -> None:
        for name, mode in self.modes.items():
            if mode != POLLING:
                continue
            try:
                watts = self._power_w(name)
            except self._nvml.NVMLError:
                continue  # keep the last power; a transient failure should not stop the run
            now = self._clock()
            with self._lock:
                if name in self._last_power:
                    t_prev, w_prev = self._last_power[name]
                    self._polled_j[name] = self._polled_j.get(name, 0.0) + 0.5 * (
                        w_prev + watts
                    ) * (now - t_prev)
                else:
                    self._polled_j[name] = 0.0
                self._last_power[name] = (now, watts)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            self._poll_once()

    def read(self) -> EnergyReading:
        joules: dict[str, float] = {}
        for name, mode in self.modes.items():
            if mode == COUNTER:
                mj = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handles[name]))
                joules[name] = (mj - self._origin_mj[name]) / 1000.0
        now = self._clock()
        with self._lock:
            for name, mode in self.modes.items():
                if mode == POLLING:
                    # integrated so far plus the stretch since the last poll at the last power
                    t_prev, w_prev = self._last_power.get(name, (now, 0.0))
                    joules[name] = self._polled_j.get(name, 0.0) + w_prev * max(0.0, now - t_prev)
        return EnergyReading(t_s=now, joules=joules, sources=dict.fromkeys(joules, "nvml"))

    def gpu_facts(self) -> list[dict[str, Any]]:
        """Name, power limit, memory and energy mode of each metered GPU (for run.json)."""
        return [
            gpu_facts(self._nvml, int(d[3:]), self._handles[d], self.modes[d])
            for d in self._handles
        ]

    def info(self) -> dict[str, Any]:
        """For run.json: energy mode per GPU, GPU facts (name, power limit), driver, selection."""
        return {
            "modes": dict(self.modes),
            "gpus": self.gpu_facts(),
            "driver": ask_driver(self._nvml),
            "selection": self.selection,
        }

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - shutting down twice or after a driver reset
            pass

    def __enter__(self) -> NvmlMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def visible_indices(nvml: Any, count: int) -> tuple[list[int], str]:
    """NVML indices of the GPUs that ``CUDA_VISIBLE_DEVICES`` exposes, and how they were chosen.

    NVML ignores that variable, so without this a run on one GPU of a shared node would be
    charged the whole node. Integer indices and ``GPU-...`` UUIDs are understood; anything
    else (MIG ids) meters all GPUs, and the selection note says so.
    """
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return list(range(count)), "all GPUs"
    unknown = list(range(count)), f"all GPUs (CUDA_VISIBLE_DEVICES={raw!r} not understood)"
    picked: list[int] = []
    for item in (x.strip() for x in raw.split(",")):
        if item.isdigit():
            idx = int(item)
        elif item.startswith("GPU-"):
            try:
                idx = int(nvml.nvmlDeviceGetIndex(nvml.nvmlDeviceGetHandleByUUID(item)))
            except Exception:  # noqa: BLE001 - unknown UUID or an old binding
                return unknown
        elif not item:
            break
        else:
            return unknown
        if not 0 <= idx < count or idx in picked:
            break  # CUDA stops at the first invalid id
        picked.append(idx)
    if not picked:
        raise MeterError(f"CUDA_VISIBLE_DEVICES={raw!r} hides every GPU: nothing to meter")
    return picked, f"CUDA_VISIBLE_DEVICES={raw}"


def gpu_facts(nvml: Any, index: int, handle: Any, mode: str | None = None) -> dict[str, Any]:
    """Facts about one GPU; fields NVML cannot give are ``None`` rather than errors."""

    def ask(fn_name: str, *args: Any) -> Any:
        try:
            return getattr(nvml, fn_name)(*args)
        except Exception:  # noqa: BLE001 - NVMLError, or a function missing from an old binding
            return None

    limit_mw = ask("nvmlDeviceGetEnforcedPowerLimit", handle)
    if limit_mw is None:
        limit_mw = ask("nvmlDeviceGetPowerManagementLimit", handle)
    mem = ask("nvmlDeviceGetMemoryInfo", handle)
    name = ask("nvmlDeviceGetName", handle)
    if mode is None:
        mode = (
            COUNTER if ask("nvmlDeviceGetTotalEnergyConsumption", handle) is not None else POLLING
        )
    return {
        "index": index,
        "device": f"gpu{index}",
        "name": None if name is None else _text(name),
        "power_limit_w": None if limit_mw is None else float(limit_mw) / 1000.0,
        "memory_total_bytes": None if mem is None else int(getattr(mem, "total", 0)) or None,
        "energy_mode": mode,
    }


def probe_gpus() -> tuple[list[dict[str, Any]], str | None, str]:
    """(GPU facts, driver version, note) without keeping NVML open; never raises."""
    try:
        nvml = load_nvml()
    except MeterError as exc:
        return [], None, str(exc)
    try:
        driver = ask_driver(nvml)
        count = int(nvml.nvmlDeviceGetCount())
        gpus = [gpu_facts(nvml, i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
        return gpus, driver, f"{count} NVIDIA GPU(s)"
    except Exception as exc:  # noqa: BLE001 - report, never fail the caller
        return [], None, f"NVML query failed: {exc}"
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def ask_driver(nvml: Any) -> str | None:
    try:
        return _text(nvml.nvmlSystemGetDriverVersion())
    except Exception:  # noqa: BLE001
        return None
