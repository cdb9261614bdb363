"""How fast and how precisely our load generator sends, beside its peers, in one run.

Against the zero-delay mock OpenAI server (``wattserve.engines.mock_server``, in its OWN
process so it shares neither the event loop nor the GIL with the client), measure:

1. the max request rate sustained (streaming /v1/completions, 8 output tokens, bounded
   concurrency, as-fast-as-possible schedule): requests completed / wall time, and the
   client's CPU time per request;
2. the send-time error at fixed rates (default 500 and 2,000 req/s, constant arrivals):
   p50/p99/max of actual send minus scheduled send, and the achieved rate; then the highest
   rate our runner sustains (completions keep up, p99 send error under 1 ms);

for: our runner (``wattserve.bench.runner.run_schedule`` over ``OpenAIHTTPEngine``, with
requests.jsonl written as in a real run); a bare aiohttp loop (semaphore + naive
``asyncio.sleep`` schedule); ``vllm bench serve``; GuideLLM (``loadgen_peers``: their own
venv, pinned in ``benchmarks/peers.txt``). Ours and bare aiohttp alternate for ``--rounds``
rounds (the machine is shared: best kept, worst shown); fixed-rate phases run with the
client thread in SCHED_FIFO where allowed (``--no-realtime`` to keep normal scheduling);
ours sends them from its send process (``bench.sender``; its SCHED_IDLE spinner keeps one
CPU from halting, so the "CPUs busy" figure counts that CPU as busy while it runs), and
``--loop-pacing`` adds ours paced on the event loop beside it. ``--pacing-only`` runs the
fixed rates and the search.

    .venv/bin/python benchmarks/loadgen_rate.py [--requests 3000] [--install-peers]
    .venv/bin/python benchmarks/loadgen_rate.py --pacing-only --loop-pacing --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadgen_peers import (
    OUT_TOKENS,
    PROMPT,
    guidellm_bench,
    install_peers,
    tokenizer_dir,
    vllm_bench,
)
from loadgen_report import line, report


# ----------------------------------------------------------------------------- ours
def _requests(n: int, prefix: str = "r"):
    from wattserve.types import Request

    return [
        Request(
            id=f"{prefix}{i}",
            model="mock",
            prompt=PROMPT,
            max_tokens=OUT_TOKENS,
            endpoint="completions",
        )
        for i in range(n)
    ]


def _stats_us(errors_s: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(errors_s) * 1e6
    return {
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


async def ours_max(url: str, n: int, concurrency: int, tmp: Path) -> dict[str, Any]:
    """Our runner as fast as ``concurrency`` allows, records written to requests.jsonl."""
    from wattserve.bench.runner import run_schedule
    from wattserve.bench.store import RequestLog
    from wattserve.engines.openai_http import OpenAIHTTPEngine

    eng = OpenAIHTTPEngine(url, model="mock")
    await eng.start()
    try:
        await run_schedule(eng, _requests(200, "w"), [0.0] * 200, concurrency)  # warm connections
        cpu0 = time.process_time()
        with RequestLog(tmp / "ours-max.jsonl") as log:
            run = await run_schedule(eng, _requests(n), [0.0] * n, concurrency, on_record=log.write)
        cpu = time.process_time() - cpu0
        ok = sum(c.ok for c in run.completions)
        return {
            "rate": ok / (run.t_end - run.t0),
            "errors": n - ok,
            "cpu_us_per_req": 1e6 * cpu / n,
        }
    finally:
        await eng.aclose()


async def ours_fixed(
    url: str, rate: float, seconds: float, tmp: Path, send_process: bool = True
) -> dict[str, Any]:
    """Our runner at a constant ``rate`` (no concurrency bound): send error and achieved rates;
    ``send_process=False`` paces on the event loop instead of the send process."""
    from wattserve.bench.loads import ConstantRate
    from wattserve.bench.runner import run_schedule
    from wattserve.bench.store import RequestLog
    from wattserve.engines.openai_http import OpenAIHTTPEngine

    n = max(2, int(rate * seconds))
    eng = OpenAIHTTPEngine(url, model="mock")
    try:
        # warm connections: enough for a 0.1 s stall of the server, so that a stall does not
        # open new ones (each at risk of a dropped SYN, 1 s, when the accept queue is full)
        warm = max(128, int(rate / 10))
        await run_schedule(eng, _requests(2 * warm, "w"), [0.0] * 2 * warm, warm)
        with RequestLog(tmp / f"ours-r{rate:g}.jsonl") as log:
            offsets = ConstantRate(rate).offsets(n, 0)
            run = await run_schedule(
                eng,
                _requests(n),
                offsets,
                None,
                on_record=log.write,
                send_process=send_process,
                keep_cpu_awake=True,  # a pacing measurement, no energy meter: sharpest wake-ups
            )
        sent = [c.sent_s for c in run.completions]
        ok = sum(c.ok for c in run.completions)
        return {
            "send_err_us": _stats_us(run.send_error_s),
            "achieved_rate": (n - 1) / (max(sent) - min(sent)),
            "completed_rate": ok / (run.t_end - min(sent)),
            "errors": n - ok,
        }
    finally:
        await eng.aclose()


# ----------------------------------------------------------------------------- bare aiohttp
class Bare:
    """The bare aiohttp loop: one session, a semaphore, ``async for`` over the body."""

    def __init__(self, url: str) -> None:
        import aiohttp

        self.url = f"{url}/completions"
        self.body = json.dumps(
            {"model": "mock", "prompt": PROMPT, "max_tokens": OUT_TOKENS, "stream": True}
        )
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            headers={"Content-Type": "application/json"},
        )

    async def one(self) -> None:
        async with self.session.post(self.url, data=self.body) as r:
            async for _ in r.content:
                pass

    async def bounded(self, sem: asyncio.Semaphore) -> None:
        async with sem:
            await self.one()


async def bare_max(url: str, n: int, concurrency: int) -> dict[str, Any]:
    b = Bare(url)
    async with b.session:
        sem = asyncio.Semaphore(concurrency)
        await asyncio.gather(*(b.bounded(sem) for _ in range(200)))
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(b.bounded(sem) for _ in range(n)))
        return {
            "rate": n / (time.perf_counter() - t0),
            "errors": 0,
            "cpu_us_per_req": 1e6 * (time.process_time() - cpu0) / n,
        }


async def bare_fixed(url: str, rate: float, seconds: float) -> dict[str, Any]:
    """Naive schedule: ``asyncio.sleep`` until each due time, then start the request."""
    b = Bare(url)
    n = max(2, int(rate * seconds))
    async with b.session:
        sem = asyncio.Semaphore(64)
        await asyncio.gather(*(b.bounded(sem) for _ in range(100)))
        errs: list[float] = []
        sent: list[float] = []

        async def timed(due: float) -> None:
            now = time.perf_counter()
            sent.append(now)
            errs.append(now - due)
            await b.one()

        tasks = []
        t0 = time.perf_counter() + 0.01
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(timed(due)))
        await asyncio.gather(*tasks)
        return {
            "send_err_us": _stats_us(errs),
            "achieved_rate": (n - 1) / (max(sent) - min(sent)),
            "completed_rate": n / (time.perf_counter() - min(sent)),
            "errors": 0,
        }


# ----------------------------------------------------------------------------- machine load
def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat (zeros where it is missing)."""
    try:
        f = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = f[3] + (f[4] if len(f) > 4 else 0.0)
    return sum(f) - idle, sum(f)


# ----------------------------------------------------------------------------- main
def _fixed(fn: Any, use_rt: bool) -> tuple[dict[str, Any], str]:
    from wattserve.bench.pacer import realtime
    from wattserve.bench.runner import run_async

    if not use_rt:
        return run_async(fn()), "normal scheduling"
    with realtime() as note:
        return run_async(fn()), note


def sustainable(r: dict[str, Any], rate: float) -> bool:
    """Completions keep up with the schedule and sends stay within 1 ms at p99."""
    return (
        r["errors"] == 0
        and r["completed_rate"] >= 0.95 * rate
        and r["achieved_rate"] >= 0.99 * rate
        and r["send_err_us"]["p99"] <= 1000
    )


def max_sustainable(url: str, start: float, seconds: float, tmp: Path, use_rt: bool) -> dict:
    """Double from ``start`` until a rate is not sustained, then bisect 3 steps."""
    good: tuple[float, dict[str, Any]] | None = None
    lo, hi, rate = 0.0, 0.0, start
    for _ in range(10):
        r, _ = _fixed(lambda rate=rate: ours_fixed(url, rate, seconds, tmp), use_rt)
        print(f"  try {rate:.0f} req/s: {line(r)}")
        if sustainable(r, rate):
            good, lo = (rate, r), rate
            if hi == 0.0:
                rate *= 2
                continue
        else:
            hi = rate
        if hi and hi - lo <= max(50.0, 0.1 * hi):
            break
        rate = (lo + hi) / 2 if lo else hi / 2
    if good is None:
        return {"rate": 0.0}
    return {"rate": good[0], **good[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000, help="requests per max-rate run")
    ap.add_argument("--concurrency", type=int, default=128, help="in-flight bound, max-rate runs")
    ap.add_argument(
        "--rates", default="500,2000", help="fixed rates (req/s) for the send-time error"
    )
    ap.add_argument("--rate-seconds", type=float, default=3.0, help="length of each fixed run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of ours and bare")
    ap.add_argument("--no-realtime", action="store_true", help="fixed-rate runs without FIFO")
    ap.add_argument(
        "--pacing-only", action="store_true", help="fixed rates and the search only (no max runs)"
    )
    ap.add_argument(
        "--loop-pacing", action="store_true", help="also ours paced on the loop, no send process"
    )
    ap.add_argument("--install-peers", action="store_true", help="build benchmarks/.peers-venv")
    ap.add_argument("--skip-peers", action="store_true", help="ours and bare aiohttp only")
    ap.add_argument("--skip-search", action="store_true", help="no max-sustainable-rate search")
    ap.add_argument("--peer-timeout", type=float, default=600.0, help="seconds per peer command")
    args = ap.parse_args()
    try:
        rates = [float(x) for x in args.rates.split(",") if x.strip()]
        if not rates or min(rates) <= 0 or args.requests < 1 or args.rounds < 1:
            raise ValueError
    except ValueError:
        print(f"error: bad --rates/--requests/--rounds: {args.rates!r}", file=sys.stderr)
        raise SystemExit(2) from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    peer_status = install_peers() if args.install_peers else {}
    from wattserve.bench.runner import run_async
    from wattserve.engines.mock_server import MockServer

    use_rt = not args.no_realtime
    results: dict[str, dict[str, Any]] = {}
    senders = ["wattserve"] + ["wattserve (loop pacing)"] * args.loop_pacing + ["bare aiohttp"]
    fixed: dict[str, dict[float, list[dict[str, Any]]]] = {name: {} for name in senders}
    load0, busy0 = os.getloadavg()[0], _cpu_times()
    with (
        tempfile.TemporaryDirectory() as td,
        MockServer(process=True, output_len=OUT_TOKENS) as srv,
    ):
        tmp = Path(td)
        base = srv.url.removesuffix("/v1")
        print(
            f"mock server (own process) at {srv.url}; {args.requests} requests at concurrency "
            f"{args.concurrency}; fixed rates {args.rates} req/s for {args.rate_seconds:g} s each"
        )
        for k in range(args.rounds):
            runs = (
                (
                    "wattserve",
                    lambda: run_async(ours_max(srv.url, args.requests, args.concurrency, tmp)),
                ),
                (
                    "bare aiohttp",
                    lambda: asyncio.run(bare_max(srv.url, args.requests, args.concurrency)),
                ),
            )
            for name, fn in runs if not args.pacing_only else ():
                r = fn()
                print(f"round {k + 1} {name}:", line(r))
                best = results.get(name)
                if best is None:
                    results[name] = {**r, "worst_rate": r["rate"]}
                else:
                    best["worst_rate"] = min(best["worst_rate"], r["rate"])
                    best["cpu_us_per_req"] = min(best["cpu_us_per_req"], r["cpu_us_per_req"])
                    best["rate"] = max(best["rate"], r["rate"])
            for rate in rates:
                fns = {
                    "wattserve": lambda rate=rate: ours_fixed(
                        srv.url, rate, args.rate_seconds, tmp
                    ),
                    "wattserve (loop pacing)": lambda rate=rate: ours_fixed(
                        srv.url, rate, args.rate_seconds, tmp, send_process=False
                    ),
                    "bare aiohttp": lambda rate=rate: bare_fixed(srv.url, rate, args.rate_seconds),
                }
                for name in senders:
                    r, note = _fixed(fns[name], use_rt)
                    print(f"round {k + 1} {name} at {rate:g} req/s ({note}):", line(r))
                    fixed[name].setdefault(rate, []).append(r)
        top = None
        if not args.skip_search:
            print("max sustainable rate (ours):")
            top = max_sustainable(srv.url, max(rates), args.rate_seconds, tmp, use_rt)
        if not args.skip_peers and not args.pacing_only:
            tok = tokenizer_dir(tmp)
            for name, peer in (("vllm bench serve", vllm_bench), ("guidellm", guidellm_bench)):
                why = peer_status.get(name)
                if why:
                    results[name] = {"skip": f"not installed: {why}"}
                else:
                    results[name] = peer(
                        base,
                        tok,
                        args.requests,
                        args.concurrency,
                        rates[0],
                        int(rates[0] * args.rate_seconds),
                        tmp,
                        args.peer_timeout,
                    )
                print(f"{name}:", line(results[name]))
    busy1 = _cpu_times()
    total = busy1[1] - busy0[1]
    busy = (busy1[0] - busy0[0]) / total if total else float("nan")
    print(
        f"\nmachine: {os.cpu_count()} CPUs, load average {load0:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end; all CPUs {100 * busy:.0f}% busy over the run "
        "(this script included)"
    )
    report(results, fixed, top)


if __name__ == "__main__":
    main()
