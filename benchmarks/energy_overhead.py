"""What metering costs: meter read latency, sampler overhead on a CPU-bound job, attribution speed.

1. ``read()`` latency of each meter that works on a CPU-only machine (modeled, null,
   replay, RAPL over a fake powercap tree in a temp dir), median of many reads.
2. Overhead of an ``EnergySampler`` on a CPU-bound numpy job: the same job timed with no
   sampler, a 0.2 s sampler (the default) and a 0.02 s sampler, interleaved rounds, median;
   printed as ratios to the no-sampler time measured in the same run.
3. ``attribute_requests`` on 10,000 requests over one hour of 0.2 s readings.

    .venv/bin/python benchmarks/energy_overhead.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from wattserve.energy.attribution import attribute_requests
from wattserve.energy.meters import ModeledCpuMeter, NullMeter, RaplMeter, ReplayMeter
from wattserve.energy.sampler import EnergySampler
from wattserve.types import Completion, EnergyReading


def fake_rapl(root: Path) -> Path:
    for rel, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0/intel-rapl:0:0", "dram")):
        d = root / rel
        d.mkdir(parents=True)
        (d / "name").write_text(name)
        (d / "energy_uj").write_text("123456789")
        (d / "max_energy_range_uj").write_text("262143328850")
    return root


def read_latency_us(meter, n: int = 2000) -> float:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        meter.read()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e6


def job(size: int = 400, reps: int = 12) -> float:
    """A CPU-bound job: repeated matrix products; returns its wall time."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size))
    t = time.perf_counter()
    for _ in range(reps):
        a = np.tanh(a @ a.T / size)
    return time.perf_counter() - t


def sampler_overhead(rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"none": [], "0.2 s": [], "0.02 s": []}
    for _ in range(rounds):
        for label in times:
            if label == "none":
                times[label].append(job())
                continue
            sampler = EnergySampler(
                ModeledCpuMeter(scope="process"), interval_s=float(label.split()[0])
            ).start()
            try:
                times[label].append(job())
            finally:
                sampler.stop()
    return {k: statistics.median(v) for k, v in times.items()}


def attribution_speed() -> tuple[float, int]:
    rng = np.random.default_rng(1)
    n, hour = 10_000, 3600.0
    sent = rng.uniform(0, hour - 30, n)
    dur = rng.uniform(0.5, 30, n)
    comps = [
        Completion(str(i), "m", "", 100, 100, float(s), float(s), float(s + d))
        for i, (s, d) in enumerate(zip(sent, dur, strict=True))
    ]
    t = np.arange(0, hour + 0.2, 0.2)
    joules = np.cumsum(rng.uniform(50, 300, len(t)) * 0.2)
    series = [
        EnergyReading(float(a), {"gpu0": float(b)}, {"gpu0": "replay"})
        for a, b in zip(t, joules, strict=True)
    ]
    t0 = time.perf_counter()
    att = attribute_requests(comps, series, window=(0.0, hour))
    elapsed = time.perf_counter() - t0
    assert abs(att.attributed_j - att.energy_j) < 1e-6 * att.energy_j
    return elapsed, len(series)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    print("1. meter read() latency (median of 2000 reads)")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [{"t_s": i, "device": "gpu0", "joules": 100.0 * i} for i in range(3600)]
        meters = {
            "NullMeter": NullMeter(),
            "ModeledCpuMeter(process)": ModeledCpuMeter(scope="process"),
            "ModeledCpuMeter(system)": ModeledCpuMeter(scope="system"),
            "ReplayMeter(3600 rows)": ReplayMeter(rows),
            "RaplMeter(fake tree, 2 zones)": RaplMeter(root=fake_rapl(Path(tmp) / "powercap")),
        }
        for name, meter in meters.items():
            print(f"   {name:32s} {read_latency_us(meter):8.1f} us")

    print(
        f"2. sampler overhead on a CPU-bound numpy job (median of {args.rounds} interleaved rounds)"
    )
    med = sampler_overhead(args.rounds)
    for label, t in med.items():
        print(f"   sampler {label:7s} {t * 1000:8.1f} ms   ratio to none {t / med['none']:.3f}")

    elapsed, n_readings = attribution_speed()
    print(
        f"3. attribute_requests: 10,000 requests over {n_readings} readings (1 h at 0.2 s): "
        f"{elapsed * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
