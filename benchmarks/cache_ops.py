"""Cache get/put throughput at 1M entries: GDSF and LEC beside cachetools.LRUCache, one run.

Each cache is filled to 1,000,000 entries, then serves the same key stream (Zipf-like
popularity over 2,000,000 keys): ``get``; on a miss ``put`` (which evicts at capacity).
Prints operations per second (a get and its put count as separate operations) and the
ratio to cachetools.LRUCache measured in the same process, interleaved rounds, best of 3.
Rates use the process's CPU time (``time.process_time``): the machine is shared, and wall
time there mostly measures the other tenants; the wall-clock ratio is printed too.

    .venv/bin/python benchmarks/cache_ops.py [--entries 1000000] [--ops 1000000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def key_stream(n_ops: int, universe: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    # Zipf-like popularity (exponent ~0.9) over `universe` keys, shuffled ids
    ranks = np.floor(universe * rng.power(0.35, size=n_ops)).astype(np.int64)
    perm = rng.permutation(universe)
    return [f"k{x}" for x in perm[ranks].tolist()]


def run_cachetools(cache, keys: list[str]) -> tuple[int, float, float]:
    get = cache.get
    ops = 0
    t0, w0 = time.process_time(), time.perf_counter()
    for k in keys:
        v = get(k)
        ops += 1
        if v is None:
            cache[k] = k
            ops += 1
    return ops, time.process_time() - t0, time.perf_counter() - w0


def run_wattserve(cache, keys: list[str], costs: dict[str, float]) -> tuple[int, float, float]:
    get, put = cache.get, cache.put
    ops = 0
    t0, w0 = time.process_time(), time.perf_counter()
    for k in keys:
        v = get(k)
        ops += 1
        if v is None:
            put(k, k, costs.get(k, 1.0), 1)
            ops += 1
    return ops, time.process_time() - t0, time.perf_counter() - w0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import cachetools

    from wattserve.cache import ResponseCache

    universe = 2 * args.entries
    fill = [f"k{i}" for i in range(args.entries)]
    rng = np.random.default_rng(1)
    cost_arr = rng.choice([1.0, 101.0], size=universe)
    costs = {f"k{i}": float(c) for i, c in enumerate(cost_arr.tolist())}
    keys = key_stream(args.ops, universe, seed=2)

    def fresh(name: str):
        if name == "cachetools.LRUCache":
            lru: cachetools.LRUCache[str, str] = cachetools.LRUCache(maxsize=args.entries)
            for k in fill:
                lru[k] = k
            return lru
        pol = name.split()[-1]
        c = ResponseCache(pol, capacity_entries=args.entries, admission=False)
        for k in fill:
            c.put(k, k, costs[k], 1)
        return c

    names = [
        "cachetools.LRUCache",
        "wattserve gdsf",
        "wattserve lec",
        "wattserve lru",
        "wattserve lfu",
    ]
    best: dict[str, float] = {}
    best_wall: dict[str, float] = {}
    hit: dict[str, float] = {}
    for _ in range(args.rounds):
        for name in names:
            c = fresh(name)
            if name.startswith("cachetools"):
                ops, dt, wall = run_cachetools(c, keys)
                h = None
            else:
                ops, dt, wall = run_wattserve(c, keys, costs)
                h = c.stats()["hit_rate"]
            best[name] = max(best.get(name, 0.0), ops / dt)
            best_wall[name] = max(best_wall.get(name, 0.0), ops / wall)
            if h is not None:
                hit[name] = h
            del c
    base, base_wall = best["cachetools.LRUCache"], best_wall["cachetools.LRUCache"]
    print(
        f"entries={args.entries:,} ops/round={args.ops:,} rounds={args.rounds} "
        "(best round; CPU-time rates)"
    )
    print(f"{'cache':24s} {'ops/s':>12s} {'ratio':>7s} {'wall ratio':>11s} {'hit rate':>9s}")
    for name in names:
        hr = f"{hit[name]:.3f}" if name in hit else "-"
        print(
            f"{name:24s} {best[name]:12,.0f} {best[name] / base:7.2f} "
            f"{best_wall[name] / base_wall:11.2f} {hr:>9s}"
        )
    print(
        "goal: gdsf and lec at least 0.5 x cachetools.LRUCache "
        "(GDSF/LEC here always admit, like cachetools)"
    )


if __name__ == "__main__":
    main()
