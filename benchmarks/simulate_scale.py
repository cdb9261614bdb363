"""Simulator speed: time to replay 10 million requests (goal: under 60 s on one core).

Measured in one run, side by side:
  1. the compiled lane kernel (what `wattserve simulate` uses), the paper's setting
     (20 queries, cache 8, online LEC + an 80%-accurate multiplexer), one lane of N requests;
  2. the same kernel over 8 lanes (4 policies x offline/online) of N/8 requests each;
  3. a replay through the real ``ResponseCache`` object (online LEC), 10,000 distinct
     queries and a cache of 1,000 - the path for traces with many distinct queries.

    .venv/bin/python benchmarks/simulate_scale.py [--requests 10000000] [--skip-replay]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=10_000_000)
    ap.add_argument(
        "--skip-replay", action="store_true", help="skip the (slower) ResponseCache replay"
    )
    args = ap.parse_args()
    n = args.requests

    from wattserve.sim import Selector, simulate_lanes, simulate_sequential, zhu_scenario
    from wattserve.sim.kernel import compiled
    from wattserve.sim.selectors import expected_costs, request_costs
    from wattserve.sim.trace import power_trace

    t0 = time.perf_counter()
    scen = zhu_scenario(0, 0.8, 100.0, 20, n)
    sel = Selector("mux", accuracy=0.8)
    costs = request_costs(scen, sel)
    t_gen = time.perf_counter() - t0
    print(f"trace generation (numpy, {n:,} requests): {t_gen:.2f} s")

    engine = "numba" if compiled() is not None else "numpy"
    # warm the JIT on a tiny run so compile time is reported apart
    t0 = time.perf_counter()
    simulate_lanes("lec", scen.queries[None, :1000], costs[None, :1000], 8, 20, engine=engine)
    print(f"kernel compile/load ({engine}): {time.perf_counter() - t0:.2f} s")

    t0 = time.perf_counter()
    c0 = time.process_time()
    total = simulate_lanes("lec", scen.queries[None, :], costs[None, :], 8, 20, engine=engine)[0]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"[1] kernel, 1 lane x {n:,} requests (online LEC + mux@0.8): "
        f"{wall:.2f} s wall, {cpu:.2f} s CPU ({n / wall / 1e6:.1f} M requests/s); "
        f"total cost {total:,.0f} vs {costs.sum():,.0f} uncached"
    )

    m = n // 8
    pols = ["lru", "lfu", "gdsf", "lec"] * 2
    off = np.array([True] * 4 + [False] * 4)
    kf = scen.popularity[None, :]
    kc = expected_costs(scen, sel)[None, :]
    t0 = time.perf_counter()
    c0 = time.process_time()
    tot = simulate_lanes(
        pols,
        scen.queries[None, :m],
        costs[None, :m],
        8,
        20,
        kf,
        kc,
        offline=off,
        source=np.zeros(8, dtype=np.int64),
        engine=engine,
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"[2] kernel, 8 lanes x {m:,} requests (all policies, offline+online): {wall:.2f} s wall, "
        f"{cpu:.2f} s CPU; totals "
        f"{', '.join(f'{p}:{x:,.0f}' for p, x in zip(pols, tot, strict=True))}"
    )

    if not args.skip_replay:
        q = power_trace(n, 10_000, 0.5, seed=1)
        rng = np.random.default_rng(2)
        base = np.where(rng.random(10_000) < 0.5, 1.0, 101.0)
        c = np.maximum(base[q] + rng.normal(0, 1, n), 0.1)
        t0 = time.perf_counter()
        c0 = time.process_time()
        total, missed = simulate_sequential("lec", q, c, 1000)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"[3] ResponseCache replay, {n:,} requests, 10,000 queries, cache 1,000 (online LEC): "
            f"{wall:.2f} s wall, {cpu:.2f} s CPU ({n / wall / 1e6:.2f} M requests/s); hit rate "
            f"{1 - missed.mean():.3f}"
        )
    print("goal: 10 million requests in under 60 s on one core")


if __name__ == "__main__":
    main()
