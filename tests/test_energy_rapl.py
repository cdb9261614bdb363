"""RaplMeter over a fake powercap tree: discovery, wrap-around, unreadable counters."""

from __future__ import annotations

from pathlib import Path

import pytest

from wattserve.energy.errors import MeterError
from wattserve.energy.meters import auto_meter
from wattserve.energy.rapl import RaplMeter, discover_zones, rapl_status


def zone(root: Path, rel: str, name: str, uj: int, max_uj: int = 1_000_000_000) -> Path:
    d = root / rel
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Two packages, each with core and dram subzones nested as in sysfs, plus psys."""
    root = tmp_path / "powercap"
    (root / "intel-rapl").mkdir(parents=True)  # the control-type directory has no counter
    zone(root, "intel-rapl:0", "package-0", 900_000_000)
    zone(root, "intel-rapl:0/intel-rapl:0:0", "core", 5)
    zone(root, "intel-rapl:0/intel-rapl:0:1", "dram", 1_000)
    zone(root, "intel-rapl:1", "package-1", 0)
    zone(root, "intel-rapl:1/intel-rapl:1:0", "dram", 0)
    zone(root, "intel-rapl:2", "psys", 0)
    # sysfs also links subzones flat at the root; they must not be counted twice
    (root / "intel-rapl:0:1").symlink_to(root / "intel-rapl:0" / "intel-rapl:0:1")
    return root


def set_uj(root: Path, rel: str, uj: int) -> None:
    (root / rel / "energy_uj").write_text(f"{uj}\n")


def test_discovers_package_and_dram_only(tree: Path) -> None:
    zones = discover_zones(tree)
    assert [z.device for z in zones] == ["cpu-package-0", "cpu-package-1", "dram-0", "dram-1"]
    assert {z.kind for z in zones} == {"package", "dram"}
    everything = discover_zones(tree, domains=("package", "dram", "core", "psys"))
    assert len(everything) == 6


def test_reads_joules_and_handles_wraparound(tree: Path) -> None:
    t = iter([1.0, 2.0, 3.0])
    meter = RaplMeter(root=tree, clock=lambda: next(t))
    r0 = meter.read()
    assert r0.joules == {"cpu-package-0": 0.0, "cpu-package-1": 0.0, "dram-0": 0.0, "dram-1": 0.0}
    assert set(r0.sources.values()) == {"rapl"}
    set_uj(tree, "intel-rapl:0", 950_000_000)  # +50 J
    set_uj(tree, "intel-rapl:0/intel-rapl:0:1", 3_001_000)  # +3 J
    set_uj(tree, "intel-rapl:1", 7_500_000)  # +7.5 J
    r1 = meter.read()
    assert r1.joules["cpu-package-0"] == pytest.approx(50.0)
    assert r1.joules["dram-0"] == pytest.approx(3.0)
    assert r1.joules["cpu-package-1"] == pytest.approx(7.5)
    # package-0 wraps at max_energy_range_uj (1000 J): 950 J -> 1000 J -> 0 -> 20 J is +70 J
    set_uj(tree, "intel-rapl:0", 20_000_000)
    r2 = meter.read()
    assert r2.joules["cpu-package-0"] == pytest.approx(120.0)
    assert meter.wraps["cpu-package-0"] == 1 and meter.wraps["dram-0"] == 0
    assert r2.joules["cpu-package-1"] == pytest.approx(7.5)  # unchanged counters stay put
    assert r2.t_s == 3.0


def test_unreadable_counter_explains_the_fix(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # tests may run as root, where chmod 000 does not stop reads: make the read itself fail
    real = Path.read_text

    def read_text(self: Path, *a, **k) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(MeterError) as info:
        RaplMeter(root=tree)
    msg = str(info.value)
    assert "permission denied" in msg and "root" in msg and "sudo chmod" in msg
    assert "energy_uj" in msg
    ok, reason = rapl_status(tree)
    assert not ok and "sudo chmod" in reason


def test_missing_tree_and_no_zones(tmp_path: Path) -> None:
    with pytest.raises(MeterError, match="no RAPL powercap tree"):
        RaplMeter(root=tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MeterError, match="no RAPL zones"):
        RaplMeter(root=tmp_path / "empty")


def test_amd_named_zones_are_accepted(tmp_path: Path) -> None:
    zone(tmp_path, "amd-rapl:0", "package-0", 10)
    meter = RaplMeter(root=tmp_path)
    assert meter.devices == ["cpu-package-0"]


def test_auto_meter_prefers_readable_rapl_over_model(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    def no_driver() -> None:
        raise OSError("NVML Shared Library Not Found")

    monkeypatch.delenv("WATTSERVE_METER", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(nvmlInit=no_driver))
    meter, reason = auto_meter(rapl_root=tree)
    assert isinstance(meter, RaplMeter)
    assert "RAPL readable" in reason and "no GPU meter" in reason
