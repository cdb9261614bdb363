"""Helpers for the gateway tests (no tests here): mock OpenAI replicas in subprocesses that a
test can kill, and an in-process gateway on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Iterator

import httpx

# A tiny OpenAI-compatible server with failure knobs: per-token delay, break the stream
# after N events (connection dropped mid-stream), fail with HTTP 500.
MOCK = r'''
import asyncio, json, os, sys
from aiohttp import web
tokens, delay, brk = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
async def handle(req):
    body = await req.json()
    chat = req.path.endswith("chat/completions")
    if body.get("fail"):
        return web.json_response({"error": {"message": "boom"}}, status=500)
    words = [f"w{i} " for i in range(tokens)]
    usage = {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens}
    if body.get("stream"):
        r = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await r.prepare(req)
        for i, w in enumerate(words):
            if brk and i == brk:
                req.transport.close()  # the replica dies mid-stream
                return r
            c = {"index": 0, "finish_reason": "length" if i == tokens - 1 else None}
            c.update({"delta": {"content": w}} if chat else {"text": w})
            await r.write(b"data: " + json.dumps({"id": "m", "object": "x", "created": 0, "model": body["model"], "choices": [c]}).encode() + b"\n\n")
            if delay:
                await asyncio.sleep(delay)
        if (body.get("stream_options") or {}).get("include_usage"):
            await r.write(b"data: " + json.dumps({"id": "m", "choices": [], "usage": usage}).encode() + b"\n\n")
        await r.write(b"data: [DONE]\n\n")
        return r
    if delay:
        await asyncio.sleep(delay * tokens)
    text = "".join(words)
    c = {"index": 0, "finish_reason": "length"}
    c.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
    return web.json_response({"id": "m", "object": "x", "created": 0, "model": body["model"], "choices": [c], "usage": usage})
async def models(req):
    return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})
app = web.Application()
app.router.add_post("/v1/chat/completions", handle)
app.router.add_post("/v1/completions", handle)
app.router.add_get("/v1/models", models)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MockReplica:
    def __init__(self, tokens: int = 8, delay_s: float = 0.0, break_after: int = 0) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-c", MOCK, str(self.port), str(tokens), str(delay_s),
                                      str(break_after)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def wait(self, timeout_s: float = 20.0) -> "MockReplica":
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                if httpx.get(self.url + "/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise TimeoutError("mock replica did not start")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)


@contextlib.contextmanager
def mock_replicas(n: int = 2, **kw: Any) -> Iterator[list[MockReplica]]:
    reps = [MockReplica(**kw) for _ in range(n)]
    try:
        yield [r.wait() for r in reps]
    finally:
        for r in reps:
            r.kill()


def config(urls: list[str], model: str = "tiny", **over: Any) -> Any:
    from wattserve.serve.config import config_from_dict

    data = {"models": [{"name": model, "replicas": [{"kind": "url", "url": u} for u in urls]}],
            "energy": {"meter": "modeled", "interval_s": 0.1},
            "health": {"interval_s": 0.5, "timeout_s": 0.5, "retry_after_s": 0.5},
            "timeouts": {"connect_s": 1.0, "first_token_s": 5.0, "total_s": 10.0},
            "auth": {"keys_env": None}, "grace_s": 5.0}
    for k, v in over.items():
        data[k] = v
    return config_from_dict(data)


@contextlib.contextmanager
def gateway(cfg: Any, service: Any = None) -> Iterator[Any]:
    from wattserve.serve.app import BackgroundServer, create_app

    app = create_app(cfg, service)
    srv = BackgroundServer(app, grace_s=cfg.grace_s).start()
    srv.service = app.service
    try:
        yield srv
    finally:
        srv.stop()


os.environ.setdefault("HF_HUB_OFFLINE", "1")
