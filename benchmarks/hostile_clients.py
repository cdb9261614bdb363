"""Hostile clients against the gateway: slow drip, giant header and URL, partial bodies, while
a legitimate POST probes it every 0.5 s. Bounded: about two minutes with the defaults.

    .venv/bin/python benchmarks/hostile_clients.py
    .venv/bin/python benchmarks/hostile_clients.py --slow 500 --bodies 100   # quicker

The gateway runs as ``wattserve serve`` (its default server and ``limits:``) in its own
process, over one mock replica (``wattserve.engines.mock_server``) on 127.0.0.1; its RSS is
sampled every 0.1 s. Scenarios, one after another:

- ``slow``: N connections each sending a request head one byte every 5 s. Expected: every
  probe answered, every slow connection closed by the header read timeout (10 s).
- ``header`` / ``url``: one request whose header line (or URL) is 200 MB, sent in 1 MB
  writes. Expected: 431 (or 414) after a few MB (the client's count includes the kernel's
  socket buffers), gateway RSS growth < 50 MB.
- ``bodies``: N connections each sending 998 KB of a 999 KB body, then a byte every 5 s.
  Expected: the connections past the body budget refused (503) at once, the rest answered 408
  by the body read timeout (30 s), RSS growth < 100 MB, every probe answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from soak_stack import raise_fd_limit  # the sibling script beside this one
from wattserve.engines.launcher import free_port

ROOT = Path(__file__).resolve().parents[1]
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@dataclass
class Probes:
    """A legitimate chat request every ``every_s``; counts what came back."""

    url: str
    every_s: float = 0.5
    sent: int = 0
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        import aiohttp

        body = {"model": "mock", "messages": [{"role": "user", "content": "probe"}]}
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                self.sent += 1
                t0 = time.perf_counter()
                try:
                    async with session.post(self.url, json=body) as r:
                        await r.read()
                        if r.status == 200:
                            self.ok += 1
                            self.latencies.append(time.perf_counter() - t0)
                        else:
                            self.failed.append(f"status {r.status}")
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    self.failed.append(type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.every_s)

    def line(self) -> str:
        p = sorted(self.latencies)
        worst = f", max {1000 * p[-1]:.0f} ms" if p else ""
        med = f", median {1000 * statistics.median(p):.1f} ms" if p else ""
        fails = f", failures: {sorted(set(self.failed))}" if self.failed else ""
        return f"probes answered {self.ok}/{self.sent}{med}{worst}{fails}"


class Rss:
    """The gateway process's resident memory, sampled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.base = self.peak = self.now()

    def now(self) -> int:
        return int(self.proc.memory_info().rss)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.peak = max(self.peak, self.now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)

    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


async def closed_after(reader: asyncio.StreamReader, t0: float) -> tuple[float, bytes]:
    """Seconds until the server closed the connection, and the first bytes it answered."""
    data = b""
    with contextlib.suppress(OSError):
        while chunk := await reader.read(65536):
            data += chunk
    return time.monotonic() - t0, data[:12]


async def slow_drip(port: int, n: int, every_s: float, for_s: float) -> dict:
    """``n`` connections each sending a request head one byte every ``every_s``."""
    conns = []
    for _ in range(n):
        try:
            conns.append(await asyncio.open_connection("127.0.0.1", port))
        except OSError:
            break
    t0 = time.monotonic()
    watchers = [asyncio.create_task(closed_after(r, t0)) for r, _ in conns]
    head = HEAD + b"X-Slow: " + b"a" * 10_000
    i = 0
    while time.monotonic() - t0 < for_s and not all(w.done() for w in watchers):
        for (_, w), watch in zip(conns, watchers, strict=True):
            if not watch.done():
                with contextlib.suppress(OSError):
                    w.write(head[i : i + 1])
        i += 1
        await asyncio.sleep(every_s)
    done = [w.result()[0] for w in watchers if w.done()]
    for (_, w), watch in zip(conns, watchers, strict=True):
        watch.cancel()
        w.close()
    return {
        "opened": len(conns),
        "closed_by_server": len(done),
        "closed_after_s_median": statistics.median(done) if done else None,
        "closed_after_s_max": max(done) if done else None,
    }


async def giant(port: int, where: str, total_mb: int) -> dict:
    """One request with a ``total_mb`` header line (``where='header'``) or URL; 1 MB writes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    first = HEAD + b"X-Big: " if where == "header" else b"GET /v1/models?q="
    writer.write(first)
    answer = asyncio.create_task(reader.read(65536))
    sent, mb = len(first), b"a" * 2**20
    t0 = time.monotonic()
    while sent < total_mb * 2**20 and not answer.done():
        try:
            writer.write(mb)
            await asyncio.wait_for(writer.drain(), 5)
        except (OSError, TimeoutError):
            break
        sent += len(mb)
    with contextlib.suppress(TimeoutError, OSError):
        await asyncio.wait_for(asyncio.shield(answer), 10)
    data = answer.result() if answer.done() and not answer.exception() else b""
    writer.close()
    status = int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else None
    return {"status": status, "sent_mb": sent / 2**20, "seconds": time.monotonic() - t0}


async def partial_bodies(port: int, n: int, every_s: float, for_s: float) -> dict:
    """``n`` connections each sending 998 KB of a 999 KB body, then one byte every ``every_s``."""
    body = b"a" * 998_000
    head = HEAD + b"Content-Type: application/json\r\nContent-Length: 999000\r\n\r\n"
    conns = []
    for _ in range(n):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            break
        w.write(head + body)
        conns.append((r, w))
    t0 = time.monotonic()
    watchers = [asyncio.create_task(closed_after(r, t0)) for r, _ in conns]
    while time.monotonic() - t0 < for_s and not all(w.done() for w in watchers):
        for (_, w), watch in zip(conns, watchers, strict=True):
            if not watch.done():
                with contextlib.suppress(OSError):
                    w.write(b"a")
        await asyncio.sleep(every_s)
    results = [w.result() for w in watchers if w.done()]
    for (_, w), watch in zip(conns, watchers, strict=True):
        watch.cancel()
        w.close()
    statuses: dict[str, int] = {}
    for _, first in results:
        key = first[9:12].decode() if first.startswith(b"HTTP/1.1 ") else "closed"
        statuses[key] = statuses.get(key, 0) + 1
    still_open = len(conns) - len(results)
    return {"opened": len(conns), "answers": statuses, "still_open": still_open}


def start_gateway(mock_url: str, tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cfg = tmp / "gateway.yaml"
    cfg.write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "port": port,
                "models": [{"name": "mock", "replicas": [{"kind": "url", "url": mock_url}]}],
                "energy": {"meter": "modeled"},
                "auth": {"keys_env": None},
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattserve", "serve", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    return proc, port


async def wait_ready(port: int, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited with code {proc.returncode}")
        with contextlib.suppress(OSError):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = await r.read()
            w.close()
            if data.startswith(b"HTTP/1.1 200"):
                return
        await asyncio.sleep(0.2)
    raise SystemExit("the gateway did not get ready")


async def scenario(name: str, port: int, rss: Rss, work: object) -> dict:
    probes = Probes(f"http://127.0.0.1:{port}/v1/chat/completions")
    stop = asyncio.Event()
    rss.base = rss.peak = rss.now()
    tasks = [asyncio.create_task(probes.run(stop)), asyncio.create_task(rss.run(stop))]
    t0 = time.monotonic()
    result = await work  # type: ignore[misc]
    await asyncio.sleep(1.0)  # probes after the attack, too
    stop.set()
    await asyncio.gather(*tasks)
    out = {"scenario": name, **result, "rss_growth_mb": round(rss.growth_mb(), 1)}
    out["seconds"] = round(time.monotonic() - t0, 1)
    print(f"{name}: {json.dumps(out)}\n  {probes.line()}", flush=True)
    out["probes"] = {"sent": probes.sent, "ok": probes.ok, "failed": probes.failed}
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description="hostile clients against the gateway")
    ap.add_argument("--slow", type=int, default=2000, help="slow-drip connections")
    ap.add_argument("--bodies", type=int, default=300, help="partial-body connections")
    ap.add_argument("--giant-mb", type=int, default=200, help="size of the giant header/URL")
    ap.add_argument("--drip-every-s", type=float, default=5.0)
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    a = ap.parse_args()
    limit = raise_fd_limit(a.slow + a.bodies + 1024)
    if limit < a.slow + 256:
        raise SystemExit(f"open-file limit {limit} is too low for --slow {a.slow}")
    from wattserve.engines.mock_server import MockServer

    tmp = Path(tempfile.mkdtemp(prefix="wattserve-hostile-"))
    mock = MockServer(process=True, output_len=8, model="mock")
    mock.start()
    proc, port = start_gateway(mock.url, tmp)
    results = []
    try:
        await wait_ready(port, proc)
        rss = Rss(proc.pid)
        results.append(
            await scenario("slow", port, rss, slow_drip(port, a.slow, a.drip_every_s, 25))
        )
        results.append(await scenario("header", port, rss, giant(port, "header", a.giant_mb)))
        results.append(await scenario("url", port, rss, giant(port, "url", a.giant_mb)))
        results.append(
            await scenario("bodies", port, rss, partial_bodies(port, a.bodies, a.drip_every_s, 45))
        )
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        mock.stop()
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
