"""The HTTP servers' own floor: latency of a trivial app, with no gateway in it.

``benchmarks/gateway_overhead.py`` measures what the whole gateway adds over talking to a
replica directly. This script measures how much of that the server alone costs: each server
runs a trivial app (read the body, answer 11 bytes of JSON with a Content-Length) in its own
process on uvloop, and one keep-alive client on a raw socket sends POSTs one at a time
(concurrency 1, the case where the gateway's added-p50 goal of 0.3 ms applies). Servers:

- ``uvicorn``: uvicorn on httptools, the ASGI app;
- ``granian-asgi``: granian's embedded server with the ASGI interface, as the gateway runs it;
- ``granian-rsgi``: the same server with granian's native RSGI interface (not used by the
  gateway; shown to size the ASGI bridge);
- ``granian-asgi-2t``: ``runtime_threads=2``.

Each round runs every server once, a different one first each round, so a noisy machine moves
all of them alike. Prints per server the median over rounds of p50 and p99, and p50 minus
uvicorn's in the same round.

    python benchmarks/server_floor.py [--rounds 3] [--num-requests 3000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import statistics
import time
from typing import Any

from wattserve.engines.launcher import free_port

BODY = b'{"ok":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
RSGI_HEADERS = [(k.decode(), v.decode()) for k, v in HEADERS]
SERVERS = ("uvicorn", "granian-asgi", "granian-rsgi", "granian-asgi-2t")
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


async def rsgi_app(scope: Any, proto: Any) -> None:
    await proto()
    proto.response_bytes(200, RSGI_HEADERS, BODY)


def _serve(name: str, port: int) -> None:
    import uvloop

    async def main() -> None:
        if name == "uvicorn":
            import uvicorn

            cfg = uvicorn.Config(
                asgi_app, host="127.0.0.1", port=port, log_level="error", http="httptools",
                lifespan="off",
            )  # fmt: skip
            await uvicorn.Server(cfg).serve()
            return
        from granian.constants import HTTPModes, Interfaces
        from granian.log import LogLevels
        from granian.server.embed import Server

        rsgi = name == "granian-rsgi"
        server = Server(
            rsgi_app if rsgi else asgi_app,
            address="127.0.0.1",
            port=port,
            interface=Interfaces.RSGI if rsgi else Interfaces.ASGINL,
            http=HTTPModes.http1,
            websockets=False,
            runtime_threads=2 if name.endswith("-2t") else 1,
            log_level=LogLevels.error,
        )
        await server.serve()

    uvloop.run(main())


def _read_response(sock: socket.socket) -> None:
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
        head, sep, body = buf.partition(b"\r\n\r\n")
        if sep and len(body) >= len(BODY):
            return


def measure(port: int, num_requests: int, warmup: int = 300) -> tuple[float, float]:
    """(p50, p99) in microseconds of ``num_requests`` sequential POSTs on one connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lat: list[float] = []
        for i in range(warmup + num_requests):
            t0 = time.perf_counter()
            sock.sendall(REQUEST)
            _read_response(sock)
            if i >= warmup:
                lat.append(time.perf_counter() - t0)
    lat.sort()
    return lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6


def _wait_listening(port: int, proc: Any, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if not proc.is_alive():
            raise RuntimeError(f"server for port {port} exited with code {proc.exitcode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start within {deadline_s:.0f} s")


def run_round(num_requests: int, first: int) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    order = SERVERS[first % len(SERVERS) :] + SERVERS[: first % len(SERVERS)]
    for name in order:
        port = free_port()
        proc = mp.get_context("spawn").Process(target=_serve, args=(name, port), daemon=True)
        proc.start()
        try:
            _wait_listening(port, proc)
            time.sleep(0.3)
            out[name] = measure(port, num_requests)
        finally:
            proc.kill()
            proc.join(5)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--num-requests", type=int, default=3000)
    args = ap.parse_args()
    rounds = []
    for r in range(args.rounds):
        res = run_round(args.num_requests, first=r)
        rounds.append(res)
        cells = "  ".join(f"{n} {res[n][0]:.0f}/{res[n][1]:.0f}" for n in SERVERS)
        print(f"round {r + 1}: p50/p99 us  {cells}", flush=True)
    print(f"\n{'server':18s} {'p50 us':>8s} {'p99 us':>8s} {'p50 - uvicorn':>14s}")
    for name in SERVERS:
        p50 = statistics.median(rd[name][0] for rd in rounds)
        p99 = statistics.median(rd[name][1] for rd in rounds)
        delta = statistics.median(rd[name][0] - rd["uvicorn"][0] for rd in rounds)
        print(f"{name:18s} {p50:8.0f} {p99:8.0f} {delta:+13.0f}")


if __name__ == "__main__":
    main()
