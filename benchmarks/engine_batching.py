"""Continuous batching of the embedded engine: output tokens/s at concurrency 1 vs 8, one run.

The same workload (``--num-prompts`` requests of exactly ``--input-len`` random-vocabulary
tokens, ``--output-len`` output tokens with ignore_eos) is sent through one
``LocalEngine`` (smollm2-135m, ``--threads`` CPU threads) with at most C requests in
flight, for each C in ``--concurrency``; with ``--repeat-first`` the first level runs again
at the end so drift from other load on the machine shows. Prints output tokens/s per level
and the ratio to concurrency 1 (the goal: >= 3x at concurrency 8).

    .venv/bin/python benchmarks/engine_batching.py [--threads 1] [--num-prompts 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time


async def run_level(engine, requests, concurrency: int) -> dict:
    from wattserve.engines.base import complete

    sem = asyncio.Semaphore(concurrency)

    async def one(r):
        async with sem:
            return await complete(engine, r)

    rows0, steps0 = engine.max_rows_seen, engine.steps
    engine.max_rows_seen = 0
    t0 = time.perf_counter()
    done = await asyncio.gather(*(one(r) for r in requests))
    wall = time.perf_counter() - t0
    bad = [c.error for c in done if not c.ok]
    if bad:
        raise SystemExit(f"errors at concurrency {concurrency}: {bad[:3]}")
    out_tok = sum(c.output_tokens for c in done)
    ttft = sorted(c.ttft_s for c in done)
    tpot = sorted(c.tpot_s for c in done if c.tpot_s is not None)
    res = {
        "concurrency": concurrency,
        "wall_s": wall,
        "out_tok_s": out_tok / wall,
        "out_tokens": out_tok,
        "ttft_p50_s": ttft[len(ttft) // 2],
        "tpot_p50_s": tpot[len(tpot) // 2] if tpot else float("nan"),
        "max_rows": engine.max_rows_seen,
        "steps": engine.steps - steps0,
    }
    engine.max_rows_seen = max(rows0, engine.max_rows_seen)
    return res


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    p.add_argument("--num-prompts", type=int, default=16)
    p.add_argument("--input-len", type=int, default=64)
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument("--concurrency", default="1,8")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--repeat-first",
        action="store_true",
        help="run the first level again at the end (drift check)",
    )
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from wattserve.engines.local import LocalEngine
    from wattserve.types import Request

    levels = [int(x) for x in a.concurrency.split(",")]
    engine = LocalEngine(a.model, threads=a.threads, max_batch=max(levels), dtype=a.dtype)
    t0 = time.perf_counter()
    await engine.start()
    print(
        f"loaded {a.model} ({engine.resolved_dtype}, {a.threads} thread(s)) "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    reqs = [
        Request(
            id=f"r{i}",
            prompt=engine.make_prompt(a.input_len, seed=a.seed + i),
            max_tokens=a.output_len,
            ignore_eos=True,
            endpoint="completions",
        )
        for i in range(a.num_prompts)
    ]
    await run_level(engine, reqs[:2], max(levels))  # warm-up
    results = []
    for c in levels + (levels[:1] if a.repeat_first else []):
        r = await run_level(engine, reqs, c)
        results.append(r)
        print(
            f"concurrency {c:3d}: {r['out_tok_s']:6.2f} output tok/s  wall {r['wall_s']:6.1f} s  "
            f"TTFT p50 {r['ttft_p50_s']:.2f} s  TPOT p50 {r['tpot_p50_s'] * 1000:.0f} ms  "
            f"max rows {r['max_rows']}  decode steps {r['steps']}",
            flush=True,
        )
    firsts = [r["out_tok_s"] for r in results if r["concurrency"] == levels[0]]
    base = sum(firsts) / len(firsts)
    for r in results[1 : len(levels)]:
        print(f"ratio concurrency {r['concurrency']} / {levels[0]}: {r['out_tok_s'] / base:.2f}x")
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
