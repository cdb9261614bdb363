"""One replica process: an engine behind a minimal OpenAI-compatible streaming server.

    python -m wattserve.sweep.replica_server --model smollm2-135m --backend local \
        --threads 1 --cpus 0 --port 8101

Serves ``GET /v1/models``, ``GET /health`` and ``POST /v1/completions`` /
``/v1/chat/completions`` (streamed as server-sent events with a final ``usage`` chunk, or
whole). Each replica is its own process so replicas on a CPU do not share a GIL or a torch
thread pool; ``--cpus`` pins it to a core set. ``--backend mock`` serves a paced echo
engine (``--mock-token-s`` seconds per token, no model) for tests of the orchestration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from wattserve.engines.base import EngineBase
from wattserve.openai import answers, schema
from wattserve.openai.answers import APIError
from wattserve.protocols import Engine
from wattserve.types import Chunk, Request, Usage


class PacedEngine(EngineBase):
    """Deterministic stand-in engine: ``max_tokens`` one-word chunks, ``token_s`` apart."""

    def __init__(self, token_s: float = 0.001, name: str = "mock") -> None:
        self.token_s = token_s
        self.name = name

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        n_in = len(request.text().split())
        for i in range(request.max_tokens):
            await asyncio.sleep(self.token_s)
            yield Chunk(text=f" w{i}", t_s=time.perf_counter(), tokens=1)
        yield Chunk(
            text="",
            t_s=time.perf_counter(),
            finish_reason="length",
            usage=Usage(n_in, request.max_tokens, "engine"),
        )


def build_engine(
    model: str,
    backend: str,
    threads: int,
    mock_token_s: float,
    device: str = "cpu",
    load_format: str = "auto",
    memory_fraction: float | None = None,
) -> Engine:
    if backend == "mock":
        return PacedEngine(mock_token_s)
    from wattserve.engines.factory import create_engine

    kw: dict[str, Any] = {}
    if device != "cpu" or load_format != "auto" or memory_fraction is not None:
        kw = {"device": device, "load_format": load_format, "memory_fraction": memory_fraction}
    return create_engine(model, backend=backend, threads=threads, **kw)


def make_app(engine: Engine, model: str) -> Any:
    """The aiohttp app: requests parsed by the OpenAI schema, answers written by its encoders
    (``wattserve.openai``)."""
    from aiohttp import web

    def error(exc: APIError) -> web.Response:
        return web.Response(body=exc.body(), status=exc.status, content_type="application/json")

    async def models(_: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "wattserve"}]}
        )

    async def health(_: web.Request) -> web.Response:
        facts = engine.facts() if hasattr(engine, "facts") else {}
        return web.json_response({"status": "ok", "pid": os.getpid(), "engine": facts})

    async def generate(http: web.Request) -> web.StreamResponse:
        ep = "chat" if http.path.endswith("chat/completions") else "completions"
        try:
            body = schema.parse_body(await http.read())
            rid = str(body.get("request_id") or uuid.uuid4().hex[:12])
            req = schema.to_request(ep, body, rid, "default", 16, 1 << 20)
        except APIError as exc:
            return error(exc)
        parts: list[str] = []
        usage: Usage | None = None
        finish: str | None = None
        resp: web.StreamResponse | None = None
        if req.stream:
            resp = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await resp.prepare(http)
        try:
            async for ch in engine.stream(req):
                usage = ch.usage or usage
                finish = ch.finish_reason or finish
                if ch.text:
                    if resp is not None:
                        await resp.write(
                            answers.chunk_event(ep, rid, model, ch.text, first=not parts)
                        )
                    parts.append(ch.text)
        except Exception as exc:  # noqa: BLE001 - report the engine failure to the client
            failure = APIError(500, f"{type(exc).__name__}: {exc}", type="server_error")
            if resp is None:
                return error(failure)
            await resp.write(failure.sse())
            return resp
        n_in, n_out = (usage.input_tokens, usage.output_tokens) if usage else (0, len(parts))
        use = answers.usage_dict(n_in, n_out)
        if resp is None:
            whole = answers.full_body(ep, rid, model, "".join(parts), finish or "stop", use)
            return web.Response(body=whole, content_type="application/json")
        await resp.write(
            answers.chunk_event(ep, rid, model, None, finish or "stop")
            + answers.usage_event(ep, rid, model, use)
            + answers.DONE
        )
        return resp

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_post("/v1/completions", generate)
    app.router.add_post("/v1/chat/completions", generate)
    return app


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m wattserve.sweep.replica_server", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--model", required=True)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cpus", default="", help="comma-separated CPU ids to pin this process to")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mock-token-s", type=float, default=0.001)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i] (embedded engine)")
    ap.add_argument("--load-format", default="auto", help="auto or dummy (random weights)")
    ap.add_argument("--memory-fraction", type=float, default=None, help="share of GPU memory")
    ap.add_argument(
        "--parent-pid", type=int, default=0, help="exit when this process is gone (0: never)"
    )
    args = ap.parse_args(argv)
    if args.cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",") if c.strip()})
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    engine = build_engine(
        args.model,
        args.backend,
        args.threads,
        args.mock_token_s,
        args.device,
        args.load_format,
        args.memory_fraction,
    )
    from aiohttp import web

    async def start_engine(_: Any) -> None:
        await engine.start()

    async def watch_parent(_: Any) -> None:
        async def watch() -> None:  # a sweep killed with SIGKILL must not leave replicas behind
            while True:
                await asyncio.sleep(1.0)
                try:
                    os.kill(args.parent_pid, 0)
                except ProcessLookupError:
                    os._exit(0)
                if os.getppid() != parent_at_start:
                    os._exit(0)

        if args.parent_pid:
            asyncio.get_running_loop().create_task(watch())

    parent_at_start = os.getppid()
    app = make_app(engine, args.model)
    app.on_startup.append(start_engine)
    app.on_startup.append(watch_parent)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":  # pragma: no cover - run as a process
    main()
