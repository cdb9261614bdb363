"""Modeled CPU, null, replay and composite meters, and auto_meter's choices."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from wattserve.energy.errors import MeterError
from wattserve.energy.meters import (
    CompositeMeter,
    ModeledCpuMeter,
    NullMeter,
    ReplayMeter,
    auto_meter,
    meter_info,
)
from wattserve.energy.modeled import default_power_model
from wattserve.errors import ConfigError
from wattserve.protocols import Meter


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_driver() -> None:
        raise OSError("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(nvmlInit=no_driver))
    monkeypatch.delenv("WATTSERVE_METER", raising=False)


# -- modeled -------------------------------------------------------------------------------
def test_modeled_energy_matches_the_formula() -> None:
    clock, cpu = Clock(50.0), Clock(7.0)
    meter = ModeledCpuMeter(idle_w=2.0, active_w=10.0, cores=4, clock=clock, cpu_seconds=cpu)
    assert meter.read().joules == {"cpu": 0.0}
    clock.t, cpu.t = 53.0, 8.5  # 3 s wall, 1.5 busy core-seconds
    r = meter.read()
    # idle 2 W x 4 cores x 3 s + (10 - 2) W x 1.5 core-s = 24 + 12
    assert r.joules["cpu"] == pytest.approx(36.0)
    assert r.sources == {"cpu": "modeled"} and r.t_s == 53.0
    assert meter.model.basis == "configured"


def test_modeled_is_monotonic_even_if_cpu_time_steps_back() -> None:
    clock, cpu = Clock(0.0), Clock(10.0)
    meter = ModeledCpuMeter(idle_w=1.0, active_w=5.0, cores=2, clock=clock, cpu_seconds=cpu)
    clock.t, cpu.t = 1.0, 11.0
    a = meter.read().joules["cpu"]
    clock.t, cpu.t = 1.0, 10.9  # psutil idle/busy time can step back by a tick
    b = meter.read().joules["cpu"]
    assert b == a == pytest.approx(1.0 * 2 * 1.0 + 4.0 * 1.0)


def test_modeled_real_process_time_is_monotonic_and_labelled() -> None:
    meter = ModeledCpuMeter(scope="process")
    values = []
    for _ in range(5):
        sum(i * i for i in range(20_000))  # burn a little CPU
        r = meter.read()
        assert r.sources == {"cpu": "modeled"}
        values.append(r.joules["cpu"])
    assert values == sorted(values) and values[-1] > 0
    assert meter.model.active_w >= meter.model.idle_w > 0
    assert "modeled CPU power" in meter.describe()


def test_power_model_table_and_validation() -> None:
    epyc = default_power_model("AMD EPYC 7763 64-Core Processor")
    assert "EPYC" in epyc.basis and epyc.idle_w < epyc.active_w
    unknown = default_power_model("Mystery CPU 9000")
    assert "generic" in unknown.basis
    with pytest.raises(MeterError, match="idle_w <= active_w"):
        ModeledCpuMeter(idle_w=5.0, active_w=1.0)
    with pytest.raises(MeterError, match="scope"):
        ModeledCpuMeter(scope="galaxy")  # type: ignore[arg-type]


def test_cgroup_cpu_time_v2_and_v1(tmp_path: Path) -> None:
    from wattserve.energy.modeled import cgroup_cpu_s

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    assert cgroup_cpu_s(v2) == 2.5
    v1 = tmp_path / "v1" / "cpuacct"
    v1.mkdir(parents=True)
    (v1 / "cpuacct.usage").write_text("1500000000\n")
    assert cgroup_cpu_s(tmp_path / "v1") == 1.5
    with pytest.raises(MeterError, match="no cgroup CPU accounting"):
        cgroup_cpu_s(tmp_path / "none")
    clock, cpu = Clock(0.0), Clock(0.0)
    meter = ModeledCpuMeter(scope="cgroup", idle_w=1.0, active_w=3.0, clock=clock, cpu_seconds=cpu)
    assert meter.cores >= 1 and meter.scope == "cgroup"


# -- null, replay, composite ---------------------------------------------------------------
def test_null_meter_reads_nothing() -> None:
    r = NullMeter(clock=lambda: 3.0).read()
    assert r.t_s == 3.0 and r.joules == {} and r.sources == {}
    assert isinstance(NullMeter(), Meter)


def test_replay_long_csv_interpolates(tmp_path: Path) -> None:
    path = tmp_path / "energy.csv"
    path.write_text(
        "t_s,device,joules,source\n"
        "10,gpu0,0,nvml\n10,cpu-package-0,0,rapl\n"
        "12,gpu0,400,nvml\n12,cpu-package-0,60,rapl\n"
        "13,gpu0,450,nvml\n"
    )
    clock = Clock(1000.0)
    meter = ReplayMeter(path, clock=clock)
    assert (meter.t_first, meter.t_last) == (10.0, 13.0)
    assert meter.at(11.0).joules == {"gpu0": 200.0, "cpu-package-0": 30.0}
    assert meter.at(12.5).joules["gpu0"] == pytest.approx(425.0)
    assert meter.at(99.0).joules == {"gpu0": 450.0, "cpu-package-0": 60.0}  # held after the end
    clock.t = 1001.5  # 1.5 s into the replay -> recorded t = 11.5
    r = meter.read()
    assert r.t_s == 1001.5 and r.joules["gpu0"] == pytest.approx(300.0)
    assert set(r.sources.values()) == {"replay"}


def test_replay_wide_csv_with_speed(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("t_s,gpu0,gpu1\n0,0,0\n1,100,\n2,200,50\n")
    clock = Clock(0.0)
    meter = ReplayMeter(path, clock=clock, speed=2.0)
    clock.t = 0.25  # recorded t = 0.5
    assert meter.read().joules == {"gpu0": pytest.approx(50.0), "gpu1": pytest.approx(12.5)}


def test_replay_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "down.csv"
    bad.write_text("t_s,gpu0\n0,10\n1,5\n")
    with pytest.raises(MeterError, match="decrease at t_s=1"):
        ReplayMeter(bad)
    nohead = tmp_path / "nohead.csv"
    nohead.write_text("time,gpu0\n0,1\n")
    with pytest.raises(MeterError, match="t_s column"):
        ReplayMeter(nohead)
    with pytest.raises(MeterError, match="cannot read"):
        ReplayMeter(tmp_path / "absent.csv")


def test_composite_merges_devices() -> None:
    clock = Clock(5.0)
    a = ModeledCpuMeter(idle_w=1.0, active_w=1.0, cores=1, clock=clock, cpu_seconds=lambda: 0.0)
    b = ReplayMeter(
        [{"t_s": 0, "device": "gpu0", "joules": 0}, {"t_s": 10, "device": "gpu0", "joules": 100}],
        clock=clock,
    )
    meter = CompositeMeter([a, b])
    clock.t = 7.0
    r = meter.read()
    assert r.joules == {"cpu": pytest.approx(2.0), "gpu0": pytest.approx(20.0)}
    assert r.sources == {"cpu": "modeled", "gpu0": "replay"}
    with pytest.raises(MeterError, match="same device"):
        CompositeMeter([a, a]).read()


# -- auto_meter ----------------------------------------------------------------------------
def test_auto_meter_falls_back_to_modeled_and_says_why(no_gpu: None, tmp_path: Path) -> None:
    meter, reason = auto_meter(rapl_root=tmp_path / "no-powercap")
    assert isinstance(meter, ModeledCpuMeter)
    assert "modeled CPU power" in reason and "NVML" in reason and "RAPL" in reason
    assert meter_info(meter, reason)["type"] == "ModeledCpuMeter"


def test_auto_meter_named_choices(
    no_gpu: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meter, reason = auto_meter("null")
    assert isinstance(meter, NullMeter) and "null" in reason
    meter, _ = auto_meter("modeled:process")
    assert isinstance(meter, ModeledCpuMeter) and meter.scope == "process"
    csv = tmp_path / "e.csv"
    csv.write_text("t_s,gpu0\n0,0\n1,1\n")
    meter, reason = auto_meter(f"modeled+replay:{csv}")
    assert isinstance(meter, CompositeMeter) and meter.devices == ["cpu", "gpu0"]
    monkeypatch.setenv("WATTSERVE_METER", "null")
    meter, reason = auto_meter()
    assert isinstance(meter, NullMeter) and "WATTSERVE_METER" in reason
    with pytest.raises(MeterError, match="NVML"):
        auto_meter("nvml")
    with pytest.raises(ConfigError, match="unknown meter"):
        auto_meter("abacus")
