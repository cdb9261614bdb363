"""Ray Serve overhead: requests/s and added latency of the gateway on Ray Serve
(``serve --backend ray``) versus the single-process gateway versus a minimal Ray Serve
deployment that only forwards (the floor Ray itself sets), all against one zero-delay mock
OpenAI server on 127.0.0.1.

    .venv/bin/python benchmarks/ray_overhead.py                 # one run, a few minutes
    .venv/bin/python benchmarks/ray_overhead.py --json runs/ray_overhead.json

Targets: ``direct`` (the mock itself), ``gateway`` (the single-process gateway on granian, a
``url`` replica of the mock), ``ray-floor`` (a Ray Serve deployment behind Ray's HTTP proxy
that posts the body to the mock with one aiohttp session and returns the bytes), ``ray``
(the gateway as the ingress deployment, 1 replica, and one engine deployment, 1 replica,
that reaches the mock over HTTP: proxy -> ingress -> engine -> mock). The Ray cluster is a
local one (``--ray-cpus``). Every request carries a unique prompt at temperature 0 (the
cache-miss path). Latency: ``--latency-n`` sequential requests (concurrency 1); throughput:
``--throughput-n`` requests at ``--concurrency``. Added latency is a target's p50/p99 minus
direct's. The load generator and its helpers are those of ``gateway_overhead.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_overhead as go
from wattserve.engines.mock_server import MockServer


class Forwarder:
    """The floor: Ray Serve's proxy and one replica hop, no gateway logic."""

    def __init__(self, mock_url: str) -> None:
        self.url = mock_url.rstrip("/") + "/chat/completions"
        self.session: Any = None

    async def __call__(self, request: Any) -> Any:
        import aiohttp
        from starlette.responses import Response

        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        body = await request.body()
        headers = {"content-type": "application/json"}
        async with self.session.post(self.url, data=body, headers=headers) as r:
            data = await r.read()
            return Response(data, status_code=r.status, media_type=r.content_type)


def deploy_ray(mock_url: str, cpus: int) -> tuple[str, str, Any]:
    """The ray path and the floor on one local cluster: (ray URL, floor URL, RayConfig)."""
    from ray import serve

    from wattserve.serve import ray_backend
    from wattserve.serve.ray_config import split_config

    port = go.free_port()
    cfg, rc = split_config(
        {
            "host": "127.0.0.1",
            "port": port,
            "models": [{"name": "mock", "replicas": [{"kind": "url", "url": mock_url}]}],
            "cache": {"policy": "gdsf", "capacity_entries": 100000},
            "energy": {"meter": "modeled"},
            "auth": {"keys_env": None},
            "ray": {
                "num_cpus": cpus,
                "ingress": {"num_replicas": 1, "num_cpus": 0.5},
                "engines": {"mock": {"num_replicas": 1, "num_cpus": 0.5}},
            },
        }
    )
    ray_backend.run(cfg, rc)
    floor = serve.deployment(name="floor", max_ongoing_requests=1024)(Forwarder)
    serve.run(floor.bind(mock_url), name="floor", route_prefix="/floor")
    base = f"http://127.0.0.1:{port}"
    return f"{base}/v1/chat/completions", f"{base}/floor", rc


async def measure(url: str, a: argparse.Namespace) -> dict[str, float]:
    lat = await go.latency(url, "mock", a.latency_n, False, a.output_len, {})
    tp = await go.throughput(url, "mock", a.throughput_n, a.concurrency, False, a.output_len, {})
    return {**lat, "rps": tp["rps"], "errors": tp["errors"]}


async def main(a: argparse.Namespace) -> dict[str, Any]:
    from wattserve.serve import ray_backend

    out: dict[str, Any] = {"targets": {}}
    with MockServer(process=True, output_len=a.output_len, token_delay_ms=0) as mock:
        tmp = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
        proc, gw = go.start_gateway(mock.url, "granian", True, tmp)
        try:
            t0 = time.monotonic()
            ray_url, floor_url, rc = deploy_ray(mock.url, a.ray_cpus)
            out["ray_start_s"] = time.monotonic() - t0
            await go.wait_http(f"{gw}/health", 60, proc)
            urls = {
                "direct": mock.url.rstrip("/") + "/chat/completions",
                "gateway": f"{gw}/v1/chat/completions",
                "ray-floor": floor_url,
                "ray": ray_url,
            }
            for name, url in urls.items():
                r = await measure(url, a)
                out["targets"][name] = r
                print(_line(name, r), flush=True)
        finally:
            go.stop(proc)
            ray_backend.shutdown(rc if "rc" in locals() else None)
    d = out["targets"]["direct"]
    for r in out["targets"].values():
        r["added_p50_ms"] = r["p50_ms"] - d["p50_ms"]
        r["added_p99_ms"] = r["p99_ms"] - d["p99_ms"]
    return out


def _line(name: str, r: dict[str, float]) -> str:
    return (
        f"{name:10s} p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
        f"{r['rps']:8.1f} req/s  errors {r['errors']:.0f}"
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latency-n", type=int, default=200)
    p.add_argument("--throughput-n", type=int, default=400)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--output-len", type=int, default=8)
    p.add_argument("--ray-cpus", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    a = p.parse_args(argv)
    if min(a.latency_n, a.throughput_n, a.concurrency, a.output_len, a.ray_cpus) < 1:
        p.error("counts must be at least 1")
    return a


if __name__ == "__main__":
    args = parse()
    result = asyncio.run(main(args))
    print("\nadded latency vs direct (ms):")
    for name, r in result["targets"].items():
        print(f"  {name:10s} p50 {r['added_p50_ms']:+7.2f}  p99 {r['added_p99_ms']:+7.2f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
