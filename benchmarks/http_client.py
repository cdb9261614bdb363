"""OpenAIHTTPEngine (+ engines.base.complete) vs a bare aiohttp loop against the mock server.

Both clients stream ``/v1/chat/completions`` (8 output tokens, zero delay) from the same
mock server running in its own process, at the same concurrency, interleaved A/B/A/B so
machine noise hits both; prints requests/s for each and our share of the bare rate.

    .venv/bin/python benchmarks/http_client.py [--requests 2000] [--concurrency 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


async def ours(url: str, n: int, conc: int) -> float:
    from wattserve.engines.base import complete
    from wattserve.engines.openai_http import OpenAIHTTPEngine
    from wattserve.types import Message, Request

    eng = OpenAIHTTPEngine(url, model="mock")
    sem = asyncio.Semaphore(conc)
    msgs = (Message("user", "benchmark the client " * 4),)

    async def one(i: int):
        async with sem:
            return await complete(eng, Request(id=str(i), messages=msgs, max_tokens=8))

    try:
        await asyncio.gather(*(one(i) for i in range(min(200, n))))  # warm the pool
        t0 = time.perf_counter()
        done = await asyncio.gather(*(one(i) for i in range(n)))
        rate = n / (time.perf_counter() - t0)
        assert all(c.ok and c.output_tokens == 8 for c in done), [
            c.error for c in done if not c.ok
        ][:2]
        return rate
    finally:
        await eng.aclose()


async def bare(url: str, n: int, conc: int) -> float:
    import aiohttp

    body = json.dumps(
        {
            "model": "mock",
            "messages": [{"role": "user", "content": "benchmark the client " * 4}],
            "max_tokens": 8,
            "stream": True,
        }
    )
    sem = asyncio.Semaphore(conc)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), headers={"Content-Type": "application/json"}
    ) as s:

        async def one() -> None:
            async with sem:
                async with s.post(f"{url}/chat/completions", data=body) as r:
                    async for _ in r.content:
                        pass

        await asyncio.gather(*(one() for _ in range(min(200, n))))
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    from wattserve.engines.mock_server import MockServer

    with MockServer(process=True, output_len=8) as srv:
        r_ours, r_bare = [], []
        for _ in range(a.rounds):
            r_ours.append(await ours(srv.url, a.requests, a.concurrency))
            r_bare.append(await bare(srv.url, a.requests, a.concurrency))
    mo, mb = sum(r_ours) / len(r_ours), sum(r_bare) / len(r_bare)
    print(
        f"OpenAIHTTPEngine + complete(): {mo:7.0f} req/s  "
        f"(rounds: {', '.join(f'{r:.0f}' for r in r_ours)})"
    )
    print(
        f"bare aiohttp loop:             {mb:7.0f} req/s  "
        f"(rounds: {', '.join(f'{r:.0f}' for r in r_bare)})"
    )
    print(f"ours / bare: {mo / mb:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
