"""EnergySampler and windows: interpolation by hand, threads, persistence."""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path

import pytest

from wattserve.energy import windows
from wattserve.energy.errors import WindowError
from wattserve.energy.meters import NullMeter, ReplayMeter
from wattserve.energy.sampler import EnergySampler
from wattserve.types import EnergyReading


def reading(t: float, **joules: float) -> EnergyReading:
    return EnergyReading(t, dict(joules), dict.fromkeys(joules, "nvml"))


class LinearMeter:
    """A device drawing constant power: cumulative joules exactly ``watts x (t - t0)``."""

    def __init__(self, watts: float = 50.0, fail_every: int = 0) -> None:
        self.watts = watts
        self.t0 = time.perf_counter()
        self.reads = 0
        self.fail_every = fail_every
        self.threads: set[str] = set()

    def read(self) -> EnergyReading:
        self.reads += 1
        self.threads.add(threading.current_thread().name)
        if self.fail_every and self.reads % self.fail_every == 0:
            raise OSError("counter busy")
        t = time.perf_counter()
        return EnergyReading(t, {"gpu0": self.watts * (t - self.t0)}, {"gpu0": "nvml"})


SERIES = [
    reading(0.0, gpu0=0.0, cpu=0.0),
    reading(1.0, gpu0=100.0, cpu=10.0),
    reading(3.0, gpu0=200.0, cpu=50.0),
    reading(4.0, gpu0=380.0, cpu=60.0),
]


def test_window_interpolates_between_samples() -> None:
    s = EnergySampler.from_readings(SERIES)
    m = s.window("steady", 0.5, 2.0)
    # gpu0: E(2.0) = 100 + 100 * (1/2) = 150; E(0.5) = 50 -> 100 J. cpu: 30 - 5 = 25 J
    assert m.energy_j == {"gpu0": pytest.approx(100.0), "cpu": pytest.approx(25.0)}
    assert m.sources == {"gpu0": "nvml", "cpu": "nvml"}
    assert m.duration_s == 1.5 and m.avg_power_w == pytest.approx(125.0 / 1.5)
    whole = s.window("whole", 0.0, 4.0)
    assert whole.energy_j == {"gpu0": 380.0, "cpu": 60.0}
    # overlapping windows are independent differences: [0,2] + [2,4] == whole
    a, b = s.window("a", 0.0, 2.0), s.window("b", 2.0, 4.0)
    assert a.energy_j["gpu0"] + b.energy_j["gpu0"] == pytest.approx(380.0)
    assert s.window("point", 3.5, 3.5).energy_j == {"gpu0": 0.0, "cpu": 0.0}


def test_window_outside_series_or_reversed_is_an_error() -> None:
    s = EnergySampler.from_readings(SERIES)
    with pytest.raises(WindowError, match="outside the recorded series"):
        s.window("late", 1.0, 4.5)
    with pytest.raises(WindowError, match="outside"):
        s.window("early", -1.0, 1.0)
    with pytest.raises(WindowError, match="ends before it starts"):
        s.window("rev", 2.0, 1.0)
    with pytest.raises(WindowError, match="no readings"):
        EnergySampler.from_readings([]).window("x", 0, 1)


def test_device_missing_from_part_of_the_series_is_left_out() -> None:
    readings = [
        reading(0.0, cpu=0.0),
        reading(1.0, cpu=1.0, gpu0=5.0),
        reading(2.0, cpu=2.0, gpu0=9.0),
    ]
    m = windows.measure(readings, "w", 0.0, 2.0)
    assert m.energy_j == {"cpu": 2.0}
    assert windows.measure(readings, "w", 1.0, 2.0).energy_j == {"cpu": 1.0, "gpu0": 4.0}


def test_power_series_for_plots() -> None:
    p = windows.power_series(SERIES)
    assert [t for t, _ in p] == [0.5, 2.0, 3.5]
    assert p[0][1] == {"gpu0": 100.0, "cpu": 10.0}
    assert p[1][1] == {"gpu0": 50.0, "cpu": 20.0}
    assert EnergySampler.from_readings(SERIES).power()[2][1]["gpu0"] == 180.0


def test_background_sampling_track_and_clean_stop(tmp_path: Path) -> None:
    meter = LinearMeter(watts=50.0)
    seen: list[EnergyReading] = []
    record = tmp_path / "run" / "energy.csv"
    sampler = EnergySampler(meter, interval_s=0.02, record_path=record, on_reading=seen.append)
    with sampler:
        with sampler.track("whole") as whole:
            time.sleep(0.1)
            with sampler.track("steady"):
                time.sleep(0.1)
            # a killed run keeps what it measured: rows are on disk while the sampler runs
            with record.open() as f:
                on_disk = list(csv.DictReader(f))
            assert len(on_disk) >= 3
            time.sleep(0.05)
    assert not sampler.running and sampler._thread is None
    assert "energy-sampler" in meter.threads  # the background thread did read
    series = sampler.series()
    assert len(series) >= 8 and series == sorted(series, key=lambda r: r.t_s)
    assert len(seen) == len(series)
    w, st = sampler.measurements["whole"], sampler.measurements["steady"]
    assert whole["measurement"] == w
    assert w.start_s <= st.start_s < st.end_s <= w.end_s
    # constant power: every window is exactly 50 W x its duration, wherever the samples fell
    assert w.energy_j["gpu0"] == pytest.approx(50.0 * w.duration_s, rel=1e-6)
    assert st.energy_j["gpu0"] == pytest.approx(50.0 * st.duration_s, rel=1e-6)
    assert sampler.marks["steady:end"] == st.end_s
    mid = sampler.window("mid", series[1].t_s + 0.001, series[-2].t_s - 0.001)
    assert mid.energy_j["gpu0"] == pytest.approx(50.0 * mid.duration_s, rel=1e-6)
    # the file holds exactly the in-memory series, and replays it
    assert EnergySampler.read_csv(record).series() == series
    replay = EnergySampler.from_readings(ReplayMeter(record).at(r.t_s) for r in series)
    assert replay.window("w", w.start_s, w.end_s).energy_j["gpu0"] == pytest.approx(
        w.energy_j["gpu0"]
    )
    assert sampler.stop() is None  # idempotent


def test_window_while_running_reads_up_to_now() -> None:
    meter = LinearMeter()
    sampler = EnergySampler(meter, interval_s=10.0).start()  # the thread will not fire
    try:
        t0 = sampler.series()[0].t_s
        time.sleep(0.02)
        t1 = time.perf_counter()
        m = sampler.window("so-far", t0, t1)  # past the last reading: takes a fresh one
        assert m.energy_j["gpu0"] == pytest.approx(50.0 * (t1 - t0), rel=1e-6)
        assert len(sampler.series()) == 2
    finally:
        sampler.stop()


def test_meter_errors_in_the_thread_do_not_stop_sampling() -> None:
    meter = LinearMeter(fail_every=2)
    sampler = EnergySampler(meter, interval_s=0.01).start()
    deadline = time.monotonic() + 2.0
    while meter.reads < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    assert sampler.errors and "counter busy" in sampler.errors[0]
    assert len(sampler.series()) >= 3


def test_track_records_window_when_block_raises() -> None:
    sampler = EnergySampler(LinearMeter(), interval_s=10.0).start()
    with pytest.raises(RuntimeError):
        with sampler.track("interrupted"):
            raise RuntimeError("load generator crashed")
    sampler.stop()
    assert sampler.measurements["interrupted"].duration_s >= 0


def test_rows_round_trip_including_null_readings() -> None:
    s = EnergySampler.from_readings(SERIES)
    rows = s.to_rows()
    assert rows[1] == {"t_s": 0.0, "device": "cpu", "joules": 0.0, "source": "nvml"}
    assert EnergySampler.from_rows(rows).series() == SERIES
    null = EnergySampler(NullMeter(), interval_s=10.0).start()
    null.mark("x")
    null.stop()
    back = EnergySampler.from_rows(null.to_rows())
    assert [r.t_s for r in back.series()] == [r.t_s for r in null.series()]
    m = back.window("w", back.series()[0].t_s, back.series()[-1].t_s)
    assert m.energy_j == {} and m.total_j == 0.0
    with pytest.raises(WindowError, match="no meter"):
        back.mark()
    with pytest.raises(WindowError, match="bad energy row"):
        EnergySampler.from_rows([{"t_s": "soon", "device": "gpu0", "joules": 1}])


def test_write_csv_then_replay(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    EnergySampler.from_readings(SERIES).write_csv(path)
    meter = ReplayMeter(path)
    assert meter.at(2.0).joules == {"gpu0": 150.0, "cpu": 30.0}


def test_resumed_series_with_a_counter_restart_is_stitched(tmp_path: Path) -> None:
    path = tmp_path / "energy.csv"
    windows.write_csv(path, SERIES)  # first session: 0..380 J over [0, 4]
    later = [
        reading(10.0, gpu0=0.0, cpu=0.0),
        reading(12.0, gpu0=50.0, cpu=4.0),
    ]  # new meter after resume
    windows.write_csv(path, later, append=True)
    s = EnergySampler.read_csv(path)
    assert s.resets == 2  # one per device
    assert s.window("second", 10.0, 12.0).energy_j == {"gpu0": 50.0, "cpu": 4.0}
    assert s.window("both", 0.0, 12.0).energy_j == {
        "gpu0": 430.0,
        "cpu": 64.0,
    }  # the gap counts 0 J
    assert s.window("first", 0.0, 4.0).energy_j == {"gpu0": 380.0, "cpu": 60.0}
    raw = EnergySampler.read_csv(path, stitch=False)
    assert raw.resets == 0 and raw.window("second", 10.0, 12.0).energy_j["gpu0"] == 50.0


def test_a_meter_failing_at_start_raises_and_leaves_no_thread(tmp_path: Path) -> None:
    class Broken:
        def read(self) -> EnergyReading:
            raise OSError("device gone")

    sampler = EnergySampler(Broken(), interval_s=0.01, record_path=tmp_path / "e.csv")
    with pytest.raises(OSError, match="device gone"):
        sampler.start()
    assert not sampler.running and sampler._record_file is None
    assert (tmp_path / "e.csv").read_text().strip() == "t_s,device,joules,source"
