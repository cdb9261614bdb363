"""How long must an energy window be? Window error against a counter that updates every 100 ms.

A simulated GPU draws a fluctuating power (100-400 W: a slow wave plus random steps every
~0.5 s). Its energy counter behaves like NVML's: it advances only every 100 ms (random
phase), so a read returns energy up to 0-100 ms ago. An ``EnergySampler`` series is built
from reads every 0.2 s (with jitter); windows of various lengths are then answered by
``EnergySampler.window`` two ways, as the benchmark uses them:

* ``interp``: only the periodic samples, interpolated at the window edges;
* ``marked``: plus an explicit ``mark()`` read at each window edge.

Printed: median and 95th-percentile relative error against the true integral, per window
length, for 400 random windows each. Deterministic (seeded); runs in seconds.

    .venv/bin/python benchmarks/energy_window_error.py [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np

from wattserve.energy.sampler import EnergySampler
from wattserve.types import EnergyReading

DT = 0.001  # simulation step (s)
DURATION = 400.0
UPDATE_S = 0.1  # NVML counter update period


def simulate(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, DURATION, DT)
    steps = np.repeat(rng.uniform(-120, 120, int(DURATION / 0.5) + 1), int(0.5 / DT))[: len(t)]
    power = np.clip(250 + 80 * np.sin(2 * np.pi * t / 3.7) + steps, 100, 400)
    energy = np.concatenate(([0.0], np.cumsum(power[:-1] * DT)))
    return t, energy


def counter_reader(t: np.ndarray, energy: np.ndarray, phase: float):
    def read(at: float) -> float:
        updated = np.floor((at - phase) / UPDATE_S) * UPDATE_S + phase  # last counter update
        return float(np.interp(max(updated, 0.0), t, energy))

    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed + 1)
    t, energy = simulate(args.seed)
    read = counter_reader(t, energy, phase=rng.uniform(0, UPDATE_S))
    truth = lambda a, b: float(np.interp(b, t, energy) - np.interp(a, t, energy))  # noqa: E731

    sample_t = np.arange(1.0, DURATION - 1.0, 0.2) + rng.uniform(
        -0.02, 0.02, len(np.arange(1.0, DURATION - 1.0, 0.2))
    )
    periodic = [EnergyReading(float(s), {"gpu0": read(s)}, {"gpu0": "nvml"}) for s in sample_t]

    def around(a: float, b: float) -> list[EnergyReading]:
        """The periodic readings near [a, b] (enough to interpolate; keeps this fast)."""
        i, j = np.searchsorted(sample_t, [a - 1.0, b + 1.0])
        return periodic[i:j]

    print(
        f"{'window_s':>9} {'interp p50':>11} {'interp p95':>11} "
        f"{'marked p50':>11} {'marked p95':>11}"
    )
    for length in (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0):
        errs_i, errs_m = [], []
        for _ in range(400):
            a = rng.uniform(2.0, DURATION - length - 2.0)
            b = a + length
            true = truth(a, b)
            near = around(a, b)
            errs_i.append(
                abs(EnergySampler.from_readings(near).window("w", a, b).total_j - true) / true
            )
            marked = EnergySampler.from_readings(
                near
                + [
                    EnergyReading(a, {"gpu0": read(a)}, {"gpu0": "nvml"}),
                    EnergyReading(b, {"gpu0": read(b)}, {"gpu0": "nvml"}),
                ]
            )
            errs_m.append(abs(marked.window("w", a, b).total_j - true) / true)
        pi, pm = np.percentile(errs_i, [50, 95]), np.percentile(errs_m, [50, 95])
        print(f"{length:9.2f} {pi[0]:11.1%} {pi[1]:11.1%} {pm[0]:11.1%} {pm[1]:11.1%}")


if __name__ == "__main__":
    main()
