"""A fast mock OpenAI-compatible server (aiohttp.web) for tests and load-generator benchmarks.

Both ``/v1/chat/completions`` and ``/v1/completions``, streaming (SSE) and not, plus
``/v1/models`` and ``/health``. Each output token is the pre-encoded text ``" tok"``; the
SSE frames are encoded once per server, only the final usage frame is formatted per
request. Input tokens are estimated as whitespace-separated words of the prompt.

Knobs: ``ttft_ms``, ``token_delay_ms``, ``output_len`` (output = min(max_tokens,
output_len), or max_tokens when ``follow_max_tokens``), and failure modes for replica
tests: ``fail_after`` (requests after the first N get HTTP 500) and ``die_mid_stream``
(streams are cut after N tokens by closing the connection). ``MockServer`` runs it on a
free 127.0.0.1 port in a background thread (default) or a subprocess.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from wattserve.openai import answers, schema
from wattserve.openai.answers import APIError

TOKEN_TEXT = " tok"
#: listen backlog: aiohttp's 128 overflows when a load generator opens connections in a burst,
#: and a dropped SYN costs the client a 1 s retransmit
BACKLOG = 1024
STATE = web.AppKey("state", dict)


@dataclass
class MockConfig:
    output_len: int = 16
    ttft_ms: float = 0.0
    token_delay_ms: float = 0.0
    follow_max_tokens: bool = False
    fail_after: int | None = None
    die_mid_stream: int | None = None
    model: str = "mock"


class _Frames:
    """SSE events encoded once (``wattserve.openai.answers``): a token and the finish events
    per endpoint; only the usage event is written per request."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.token = {ep: self._chunk(ep, TOKEN_TEXT) for ep in ("chat", "completions")}
        self.finish = {
            (ep, reason): self._chunk(ep, None, reason)
            for ep in ("chat", "completions")
            for reason in ("length", "stop")
        }

    def _chunk(self, endpoint: str, text: str | None, finish: str | None = None) -> bytes:
        return answers.chunk_event(endpoint, "mock", self.model, text, finish, created=0)

    def usage(self, endpoint: str, n_in: int, n_out: int) -> bytes:
        u = answers.usage_dict(n_in, n_out)
        return answers.usage_event(endpoint, "mock", self.model, u, created=0)


def _input_tokens(body: dict[str, Any]) -> int:
    if "messages" in body:
        return sum(len(str(m.get("content") or "").split()) for m in body["messages"]) or 1
    prompt = body.get("prompt") or ""
    return len(prompt.split()) if isinstance(prompt, str) else len(prompt)


def build_app(config: MockConfig) -> web.Application:
    """The aiohttp application; ``config`` is read per request, so it can be changed live."""
    frames = _Frames(config.model)
    state = {"requests": 0}

    async def models(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": config.model, "object": "model", "owned_by": "wattserve"}],
            }
        )

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def complete(request: web.Request, endpoint: str) -> web.StreamResponse:
        state["requests"] += 1
        if config.fail_after is not None and state["requests"] > config.fail_after:
            return _error(APIError(500, "mock failure (fail_after)", type="server_error"))
        try:
            body = schema.parse_body(await request.read())
        except APIError as exc:
            return _error(exc)
        max_tokens = int(
            body.get("max_tokens") or body.get("max_completion_tokens") or config.output_len
        )
        n_out = max(
            0, max_tokens if config.follow_max_tokens else min(max_tokens, config.output_len)
        )
        n_in = _input_tokens(body)
        reason = "length" if n_out >= max_tokens else "stop"
        if config.ttft_ms > 0:
            await asyncio.sleep(config.ttft_ms / 1000)
        if not body.get("stream"):
            if config.token_delay_ms > 0 and n_out > 1:
                await asyncio.sleep(config.token_delay_ms * (n_out - 1) / 1000)
            whole = answers.full_body(
                endpoint,
                "mock",
                config.model,
                TOKEN_TEXT * n_out,
                reason,
                answers.usage_dict(n_in, n_out),
                created=0,
            )
            return web.Response(body=whole, content_type="application/json")
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        token = frames.token[endpoint]
        die = config.die_mid_stream
        limit = n_out if die is None else min(n_out, die)
        delay = config.token_delay_ms / 1000
        if delay <= 0:
            await resp.write(token * limit)
        else:
            for i in range(limit):
                if i:
                    await asyncio.sleep(delay)
                await resp.write(token)
        if die is not None and die < n_out:
            if request.transport is not None:
                request.transport.close()  # cut the stream: the client sees a broken response
            return resp
        tail = frames.finish[(endpoint, reason)]
        if (body.get("stream_options") or {}).get("include_usage"):
            tail += frames.usage(endpoint, n_in, n_out)
        await resp.write(tail + answers.DONE)
        await resp.write_eof()
        return resp

    async def chat(request: web.Request) -> web.StreamResponse:
        return await complete(request, "chat")

    async def completions(request: web.Request) -> web.StreamResponse:
        return await complete(request, "completions")

    app = web.Application()
    app[STATE] = state
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    return app


def _error(exc: APIError) -> web.Response:
    return web.Response(body=exc.body(), status=exc.status, content_type="application/json")


def serve(host: str = "127.0.0.1", port: int = 8000, config: MockConfig | None = None) -> None:
    """Run the mock server in the foreground until interrupted."""
    web.run_app(
        build_app(config or MockConfig()),
        host=host,
        port=port,
        print=None,
        access_log=None,
        backlog=BACKLOG,
    )


class MockServer:
    """Context manager: the mock server on a free 127.0.0.1 port; ``.url`` ends in ``/v1``.

    ``process=True`` runs it in a subprocess (its own GIL: use that for benchmarks);
    otherwise in a background thread whose ``config`` can be changed while it runs.
    """

    def __init__(self, config: MockConfig | None = None, process: bool = False, **kw: Any) -> None:
        self.config = config or MockConfig(**kw)
        self.process = process
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._app: web.Application | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests_seen(self) -> int:
        return int(self._app[STATE]["requests"]) if self._app is not None else -1

    def __enter__(self) -> MockServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        if self.process:
            self._start_process()
            return
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._app = build_app(self.config)
                self._runner = web.AppRunner(self._app, access_log=None)
                loop.run_until_complete(self._runner.setup())
                site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=BACKLOG)
                loop.run_until_complete(site.start())
                self.port = self._runner.addresses[0][1]
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="wattserve-mock-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]

    def _start_process(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        c = self.config
        cmd = [
            sys.executable,
            "-m",
            "wattserve.engines.mock_server",
            "--port",
            str(self.port),
            "--output-len",
            str(c.output_len),
            "--ttft-ms",
            str(c.ttft_ms),
            "--token-delay-ms",
            str(c.token_delay_ms),
            "--model",
            c.model,
        ]
        if c.follow_max_tokens:
            cmd.append("--follow-max-tokens")
        if c.fail_after is not None:
            cmd += ["--fail-after", str(c.fail_after)]
        if c.die_mid_stream is not None:
            cmd += ["--die-mid-stream", str(c.die_mid_stream)]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ)
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mock server exited with code {self._proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mock server did not start within 20 s")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None
            self._loop = None


def _main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="wattserve mock OpenAI server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--output-len", type=int, default=16)
    p.add_argument("--ttft-ms", type=float, default=0.0)
    p.add_argument("--token-delay-ms", type=float, default=0.0)
    p.add_argument("--model", default="mock")
    p.add_argument("--follow-max-tokens", action="store_true")
    p.add_argument("--fail-after", type=int, default=None)
    p.add_argument("--die-mid-stream", type=int, default=None)
    a = p.parse_args(argv)
    serve(
        a.host,
        a.port,
        MockConfig(
            a.output_len,
            a.ttft_ms,
            a.token_delay_ms,
            a.follow_max_tokens,
            a.fail_after,
            a.die_mid_stream,
            a.model,
        ),
    )


if __name__ == "__main__":
    _main()
