"""Gateway overhead: requests/s and added latency through the wattserve gateway versus direct,
and the same through LiteLLM proxy, side by side in one run against one zero-delay mock
OpenAI server on 127.0.0.1.

    .venv/bin/python benchmarks/gateway_overhead.py            # all targets, a few minutes
    .venv/bin/python benchmarks/gateway_overhead.py --skip-litellm \
        --gateway-modes granian,uvicorn,fastapi

Targets: ``direct`` (the mock itself), ``wattserve`` (the gateway on granian, the default
server), ``wattserve-uvicorn`` (the same app on uvicorn), ``wattserve-fastapi`` (granian and
``fast_path: false``: every route through FastAPI), ``floor``
(``--with-floor``: a bare uvicorn + aiohttp forwarder with no gateway logic), ``litellm``
(``litellm[proxy]``, installed on first use into benchmarks/.peers/.venv, never into the
project's environment; skipped with a message when it cannot be installed or started).
Each gateway runs in its own process, the load generator (aiohttp) in this one. The
gateway runs its cache-miss path: every request carries a unique prompt at temperature 0,
so each is looked up, missed, forwarded and stored. This 2-core machine is shared and
noisy, so direct and the gateways are measured in ``--rounds`` interleaved rounds (a
different target first each round); ratios and added latencies are taken within each round
against that round's direct figures, and the medians are reported with their range. LiteLLM
(~20 requests/s) is measured once, after the rounds. Goals: gateway requests/s
>= 30x LiteLLM's and >= half of direct at concurrency 32; added p50 <= 0.3 ms and
p99 <= 0.5 ms at concurrency 1.

The targets are started by ``gateway_targets.py``; this script is the load generator, the
interleaved measurement rounds and the report (``ray_overhead.py`` imports its load generator
and, through it, the gateway launcher).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from gateway_targets import (
    MASTER_KEY,
    MODES,
    free_port,  # noqa: F401 - read by ray_overhead.py as go.free_port
    start_floor,
    start_gateway,
    start_litellm,
    stop,
    wait_http,
)

# ---------------------------------------------------------------------------- load generator
_seq = 0


def _body(model: str, stream: bool, output_len: int) -> bytes:
    global _seq
    _seq += 1  # a unique prompt: the gateway's cache-miss path
    import json

    return json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": f"question {_seq} {time.time_ns()}"}],
            "max_tokens": output_len,
            "temperature": 0,
            "stream": stream,
        }
    ).encode()


async def _request(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict) -> float:
    t0 = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as r:
        data = await r.read()
        if r.status != 200 or (b"[DONE]" not in data and b'"choices"' not in data):
            raise RuntimeError(f"status {r.status}: {data[:200]!r}")
    return time.perf_counter() - t0


async def throughput(
    url: str, model: str, n: int, concurrency: int, stream: bool, output_len: int, headers: dict
) -> dict:
    conn = aiohttp.TCPConnector(limit=concurrency)
    errors = 0
    async with aiohttp.ClientSession(connector=conn) as session:
        for _ in range(min(concurrency, n)):  # warm the connections
            await _request(session, url, _body(model, stream, output_len), headers)
        queue = list(range(n))

        async def worker() -> None:
            nonlocal errors
            while queue:
                queue.pop()
                try:
                    await _request(session, url, _body(model, stream, output_len), headers)
                except Exception:  # noqa: BLE001 - counted
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        dt = time.perf_counter() - t0
    return {"rps": (n - errors) / dt, "errors": errors}


async def latency(
    url: str, model: str, n: int, stream: bool, output_len: int, headers: dict
) -> dict:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for _ in range(10):
            await _request(session, url, _body(model, stream, output_len), headers)
        xs = sorted(
            [
                await _request(session, url, _body(model, stream, output_len), headers)
                for _ in range(n)
            ]
        )
    return {
        "p50_ms": 1000 * statistics.median(xs),
        "p99_ms": 1000 * xs[min(len(xs) - 1, int(0.99 * len(xs)))],
    }


def cpu_s(pid: int | None) -> float:
    """CPU seconds used so far by a process and its children (robust to a busy machine)."""
    if pid is None:
        return 0.0
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
        return sum(sum(q.cpu_times()[:2]) for q in procs)
    except psutil.Error:
        return 0.0


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


async def measure(
    url: str, headers: dict, pid: int | None, n: int, lat_n: int, a: argparse.Namespace
) -> dict:
    """Throughput at ``--max-concurrency`` and latency at concurrency 1, JSON then streaming."""
    r: dict = {}
    for stream in (False, True):
        tag = "stream" if stream else "json"
        c0 = cpu_s(pid)
        t = await throughput(url, "mock", n, a.max_concurrency, stream, a.output_len, headers)
        r[f"rps_{tag}"] = t["rps"]
        if t["errors"]:
            print(f"  warning: {t['errors']} of {n} {tag} requests failed on {url}", flush=True)
        # CPU of the target's own process per request (warm-up requests counted too)
        r[f"cpu_{tag}"] = 1000 * (cpu_s(pid) - c0) / (n + min(a.max_concurrency, n))
        lat = await latency(url, "mock", lat_n, stream, a.output_len, headers)
        r[f"p50_{tag}"], r[f"p99_{tag}"] = lat["p50_ms"], lat["p99_ms"]
    return r


def _line(name: str, r: dict) -> str:
    return (
        f"{name:18s} req/s json {r['rps_json']:7.1f} stream {r['rps_stream']:7.1f} "
        f"| c=1 p50/p99 ms json {r['p50_json']:.2f}/{r['p99_json']:.2f} "
        f"stream {r['p50_stream']:.2f}/{r['p99_stream']:.2f}"
        f" | CPU ms/request json {r['cpu_json']:.3f} stream {r['cpu_stream']:.3f}"
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description="gateway overhead vs direct vs LiteLLM proxy")
    ap.add_argument("--num-requests", type=int, default=3000, help="requests per throughput point")
    ap.add_argument(
        "--rounds",
        type=int,
        default=7,
        help="rounds of direct vs each gateway, interleaved; figures are medians over rounds",
    )
    ap.add_argument("--max-concurrency", type=int, default=32)
    ap.add_argument(
        "--latency-requests", type=int, default=300, help="sequential requests per latency point"
    )
    ap.add_argument(
        "--litellm-requests", type=int, default=400, help="requests per LiteLLM throughput point"
    )
    ap.add_argument("--output-len", type=int, default=16)
    ap.add_argument(
        "--gateway-modes",
        default="granian",
        help="comma-separated: granian (the default server), uvicorn (the same app on uvicorn), "
        "fastapi (granian, hot routes through FastAPI's routing)",
    )
    ap.add_argument("--skip-litellm", action="store_true")
    ap.add_argument(
        "--with-floor",
        action="store_true",
        help="also measure a bare uvicorn+aiohttp forwarder with no gateway logic (the floor)",
    )
    a = ap.parse_args()

    from wattserve.engines.mock_server import MockServer

    tmp = Path(tempfile.mkdtemp(prefix="wattserve-bench-"))
    mock = MockServer(process=True, output_len=a.output_len, model="mock")
    mock.start()
    modes = [m.strip() for m in a.gateway_modes.split(",") if m.strip()]
    if any(m not in MODES for m in modes):
        raise SystemExit(f"--gateway-modes: choose from {', '.join(MODES)}")
    procs: dict[str, subprocess.Popen] = {}
    targets: dict[str, tuple[str, int | None]] = {
        "direct": (mock.url, mock._proc.pid if mock._proc else None)
    }
    runs: dict[str, list[dict]] = {}
    try:
        # every gateway is started once and stays up; the rounds interleave the targets, so slow
        # drifts of this shared machine hit direct and gateway alike and the ratios are per round
        if a.with_floor:
            procs["floor"], url = start_floor(mock.url)
            await wait_http(url + "/", 60, procs["floor"])
            targets["floor"] = (url + "/v1", procs["floor"].pid)
        for m in modes:
            name, server, fast_path = MODES[m]
            procs[name], url = start_gateway(mock.url, server, fast_path, tmp)
            await wait_http(url + "/ready", 120, procs[name])
            targets[name] = (url + "/v1", procs[name].pid)
        names = list(targets)
        for k in range(a.rounds):
            order = (
                names[k % len(names) :] + names[: k % len(names)]
            )  # a different target goes first each round
            print(f"round {k + 1}/{a.rounds}", flush=True)
            for name in order:
                url, pid = targets[name]
                r = await measure(
                    url + "/chat/completions", {}, pid, a.num_requests, a.latency_requests, a
                )
                runs.setdefault(name, []).append(r)
                print("  " + _line(name, r), flush=True)
        if not a.skip_litellm:
            started = start_litellm(mock.url, tmp)
            if started is not None:
                procs["litellm"], url = started
                try:
                    t = await wait_http(url + "/health/liveliness", 120, procs["litellm"])
                    print(f"litellm proxy ready after {t:.1f} s")
                    r = await measure(
                        url + "/v1/chat/completions",
                        {"Authorization": f"Bearer {MASTER_KEY}"},
                        procs["litellm"].pid,
                        a.litellm_requests,
                        min(150, a.latency_requests),
                        a,
                    )
                    runs["litellm"] = [r]
                    print("  " + _line("litellm", r), flush=True)
                except (RuntimeError, TimeoutError) as exc:
                    print(f"litellm skipped: it did not start ({exc})")
    finally:
        for p in procs.values():
            stop(p)
        mock.stop()
    report(runs, a)


def report(runs: dict[str, list[dict]], a: argparse.Namespace) -> None:
    rows = {name: {k: _median([x[k] for x in rs]) for k in rs[0]} for name, rs in runs.items()}
    d = rows["direct"]
    # per-round ratios and added latencies (each against the direct figures of the same round)
    per: dict[str, dict[str, list[float]]] = {}
    for name, rs in runs.items():
        if name in ("direct", "litellm"):
            continue
        for x, dx in zip(rs, runs["direct"], strict=True):
            q = per.setdefault(name, {})
            for tag in ("json", "stream"):
                q.setdefault(f"ratio_{tag}", []).append(x[f"rps_{tag}"] / dx[f"rps_{tag}"])
                q.setdefault(f"add50_{tag}", []).append(x[f"p50_{tag}"] - dx[f"p50_{tag}"])
                q.setdefault(f"add99_{tag}", []).append(x[f"p99_{tag}"] - dx[f"p99_{tag}"])
    print(
        f"\nconcurrency {a.max_concurrency}, {a.output_len} output tokens, aiohttp client, "
        "mock on 127.0.0.1; "
        f"medians over {len(runs['direct'])} interleaved rounds of {a.num_requests} requests"
    )
    print(
        f"{'target':18s} {'rps json':>9s} {'rps strm':>9s} {'x dir json':>10s} {'x dir strm':>10s}"
        f" {'+p50 json':>10s} {'+p50 strm':>10s} {'+p99 json':>10s} {'CPU ms/req':>11s}"
    )
    for name, r in rows.items():
        med: dict[str, float] = {k: _median(v) for k, v in per.get(name, {}).items()}
        if name == "direct":
            med = {
                "ratio_json": 1.0,
                "ratio_stream": 1.0,
                "add50_json": 0.0,
                "add50_stream": 0.0,
                "add99_json": 0.0,
            }
        elif name == "litellm":
            med = {
                "ratio_json": r["rps_json"] / d["rps_json"],
                "ratio_stream": r["rps_stream"] / d["rps_stream"],
                "add50_json": r["p50_json"] - d["p50_json"],
                "add50_stream": r["p50_stream"] - d["p50_stream"],
                "add99_json": r["p99_json"] - d["p99_json"],
            }
        print(
            f"{name:18s} {r['rps_json']:9.1f} {r['rps_stream']:9.1f} "
            f"{med['ratio_json']:10.2f} {med['ratio_stream']:10.2f} "
            f"{med['add50_json']:+9.2f}ms {med['add50_stream']:+9.2f}ms "
            f"{med['add99_json']:+9.2f}ms "
            f"{r['cpu_json']:6.3f}/{r['cpu_stream']:.3f}"
        )
    for name in per:
        summary(name, rows, per[name])


def summary(name: str, rows: dict[str, dict], q: dict[str, list[float]]) -> None:
    """The goal figures of one gateway target (ratios and added latencies per round)."""
    rng = {k: (min(v), max(v)) for k, v in q.items()}
    print(
        f"\n{name} / direct requests/s at concurrency 32 (median of rounds): "
        f"json {_median(q['ratio_json']):.2f} "
        f"[{rng['ratio_json'][0]:.2f}-{rng['ratio_json'][1]:.2f}], "
        f"stream {_median(q['ratio_stream']):.2f} "
        f"[{rng['ratio_stream'][0]:.2f}-{rng['ratio_stream'][1]:.2f}] (goal >= 0.5)"
    )
    print(
        f"{name} added latency at c=1 (median of rounds): p50 json "
        f"{_median(q['add50_json']):.2f} ms, stream {_median(q['add50_stream']):.2f} ms "
        f"(goal <= 0.3 ms); p99 json {_median(q['add99_json']):.2f} ms, stream "
        f"{_median(q['add99_stream']):.2f} ms (goal <= 0.5 ms)"
    )
    w = rows[name]
    print(
        f"{name} CPU per request (its own process): "
        f"json {w['cpu_json']:.3f} ms, stream {w['cpu_stream']:.3f} ms"
    )
    if "litellm" in rows:
        lite = rows["litellm"]
        print(
            f"{name} / litellm requests/s: json {w['rps_json'] / lite['rps_json']:.1f}x, "
            f"stream {w['rps_stream'] / lite['rps_stream']:.1f}x (goal >= 30x); litellm CPU "
            f"per request json {lite['cpu_json']:.2f} ms, stream {lite['cpu_stream']:.2f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
