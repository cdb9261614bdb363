"""NvmlMeter against a fake ``pynvml`` module: the energy counter and the power-polling fallback."""

from __future__ import annotations

import sys
import time
import types

import pytest

from wattserve.energy.errors import MeterError
from wattserve.energy.nvml import COUNTER, POLLING, NvmlMeter, probe_gpus


class FakeNvml(types.ModuleType):
    """GPU 0 has an energy counter (mJ); GPU 1 is pre-Volta (counter unsupported)."""

    NVML_ERROR_NOT_SUPPORTED = 3

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__(f"NVML error {value}")
            self.value = value

    def __init__(
        self, n_gpus: int = 2, counter: tuple[bool, ...] = (True, False), fail_init: bool = False
    ) -> None:
        super().__init__("pynvml")
        self.n_gpus = n_gpus
        self.counter = counter
        self.fail_init = fail_init
        self.energy_mj = [
            5_000_000 + 1000 * i for i in range(n_gpus)
        ]  # arbitrary driver-load origin
        self.power_mw = [150_000.0] * n_gpus
        self.inits = 0
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise self.NVMLError(9)  # driver not loaded
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return self.n_gpus

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        if not self.counter[h]:
            raise self.NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        return self.energy_mj[h]

    def nvmlDeviceGetPowerUsage(self, h: int) -> float:
        return self.power_mw[h]

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return b"NVIDIA H100 80GB HBM3" if h == 0 else b"Tesla P100"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:
        if uuid not in ("GPU-aaaa", "GPU-bbbb"):
            raise self.NVMLError(13)  # not found
        return 0 if uuid == "GPU-aaaa" else 1

    def nvmlDeviceGetIndex(self, h: int) -> int:
        return h

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return 700_000 if h == 0 else 250_000

    def nvmlDeviceGetMemoryInfo(self, h: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(total=80 * 2**30, used=0, free=80 * 2**30)


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


class Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_energy_counter_reads_joules_since_start(fake_nvml: FakeNvml) -> None:
    clock = Clock()
    meter = NvmlMeter(devices=[0], clock=clock)
    assert meter.modes == {"gpu0": COUNTER}
    r0 = meter.read()
    assert r0.joules == {"gpu0": 0.0} and r0.sources == {"gpu0": "nvml"} and r0.t_s == 100.0
    fake_nvml.energy_mj[0] += 12_345  # 12.345 J later
    clock.t = 101.5
    r1 = meter.read()
    assert r1.joules["gpu0"] == pytest.approx(12.345)
    assert r1.t_s == 101.5
    meter.close()
    assert fake_nvml.shutdowns == 1


def test_gpu_without_counter_falls_back_to_power_polling_trapezoid(fake_nvml: FakeNvml) -> None:
    clock = Clock(10.0)
    # a poll interval far longer than the test: the thread never fires, polls are explicit
    meter = NvmlMeter(devices=[1], poll_interval_s=3600, clock=clock)
    try:
        assert meter.modes == {"gpu1": POLLING}
        assert meter.read().joules == {"gpu1": 0.0}
        fake_nvml.power_mw[1] = 250_000.0  # 150 W -> 250 W over 2 s: trapezoid = 400 J
        clock.t = 12.0
        meter._poll_once()
        assert meter.read().joules["gpu1"] == pytest.approx(400.0)
        # between polls the reading extends at the last power: +0.5 s x 250 W
        clock.t = 12.5
        assert meter.read().joules["gpu1"] == pytest.approx(525.0)
    finally:
        meter.close()


def test_polling_thread_integrates_constant_power(fake_nvml: FakeNvml) -> None:
    fake_nvml.power_mw[1] = 200_000.0  # 200 W (from the first poll on)
    meter = NvmlMeter(poll_interval_s=0.01)
    try:
        assert meter.modes == {"gpu0": COUNTER, "gpu1": POLLING}
        a = meter.read()
        time.sleep(0.1)
        b = meter.read()
        assert set(b.joules) == {"gpu0", "gpu1"}
        # constant power: the integral between two reads is exactly 200 W x elapsed
        assert b.joules["gpu1"] - a.joules["gpu1"] == pytest.approx(
            200.0 * (b.t_s - a.t_s), rel=1e-6
        )
        assert b.joules["gpu1"] > a.joules["gpu1"] > 0
    finally:
        meter.close()
    assert meter._thread is None


def test_force_polling_on_a_counter_gpu(fake_nvml: FakeNvml) -> None:
    meter = NvmlMeter(devices=[0], force_polling=True, poll_interval_s=3600)
    try:
        assert meter.modes == {"gpu0": POLLING}
        assert meter.gpu_facts()[0]["energy_mode"] == POLLING
    finally:
        meter.close()


def test_errors_are_meter_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(fail_init=True))
    with pytest.raises(MeterError, match="NVML is not available"):
        NvmlMeter()
    none = FakeNvml(n_gpus=0)
    monkeypatch.setitem(sys.modules, "pynvml", none)
    with pytest.raises(MeterError, match="no NVIDIA GPU"):
        NvmlMeter()
    two = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", two)
    with pytest.raises(MeterError, match="out of range"):
        NvmlMeter(devices=[5])
    assert (none.inits, none.shutdowns, two.inits, two.shutdowns) == (
        1,
        1,
        1,
        1,
    )  # NVML not left open
    blind = FakeNvml()

    def no_power(h: int) -> float:
        raise blind.NVMLError(blind.NVML_ERROR_NOT_SUPPORTED)

    blind.nvmlDeviceGetPowerUsage = no_power  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "pynvml", blind)
    with pytest.raises(MeterError, match="gpu1 reports neither an energy counter nor power draw"):
        NvmlMeter(devices=[1])
    assert blind.shutdowns == 1


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        ("1", ["gpu1"]),
        ("GPU-bbbb,GPU-aaaa", ["gpu1", "gpu0"]),
        ("0,7,1", ["gpu0"]),
        ("MIG-xyz", ["gpu0", "gpu1"]),
    ],
)
def test_cuda_visible_devices_limits_what_is_metered(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch, visible: str, expected: list[str]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    meter = NvmlMeter(poll_interval_s=3600)
    try:
        assert meter.devices == expected
        assert ("not understood" in meter.selection) == visible.startswith("MIG")
    finally:
        meter.close()


def test_cuda_visible_devices_hiding_all_gpus(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(MeterError, match="hides every GPU"):
        NvmlMeter()
    with NvmlMeter(devices=[0]) as meter:  # an explicit choice wins
        assert meter.devices == ["gpu0"] and meter.selection == "chosen GPUs"


def test_probe_gpus_reports_facts(fake_nvml: FakeNvml) -> None:
    gpus, driver, note = probe_gpus()
    assert driver == "550.54.15" and note == "2 NVIDIA GPU(s)"
    assert gpus[0] == {
        "index": 0,
        "device": "gpu0",
        "name": "NVIDIA H100 80GB HBM3",
        "power_limit_w": 700.0,
        "memory_total_bytes": 80 * 2**30,
        "energy_mode": COUNTER,
    }
    assert gpus[1]["energy_mode"] == POLLING and gpus[1]["name"] == "Tesla P100"
    assert fake_nvml.shutdowns == 1  # NVML not left open


def test_probe_without_nvml_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(fail_init=True))
    gpus, driver, note = probe_gpus()
    assert gpus == [] and driver is None and "NVML is not available" in note


@pytest.mark.gpu
def test_real_nvml_counter_increases() -> None:  # pragma: no cover - needs a GPU
    meter = NvmlMeter()
    try:
        a = meter.read()
        time.sleep(0.5)
        b = meter.read()
        assert all(b.joules[d] >= a.joules[d] for d in a.joules)
        assert sum(b.joules.values()) > sum(
            a.joules.values()
        )  # an idle GPU still draws tens of watts
    finally:
        meter.close()
