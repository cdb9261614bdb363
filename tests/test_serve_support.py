"""Helpers for the gateway tests (no tests here): mock OpenAI replicas in subprocesses that a
test can kill, and an in-process gateway on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

FULL8 = " tok" * 8  # what a mock replica answers with output_len=8


@contextlib.contextmanager
def mock_replicas(n: int = 2, process: bool = True, **kw: Any) -> Iterator[list[Any]]:
    """``n`` mock OpenAI replicas (``wattserve.engines.mock_server.MockServer``); in subprocesses
    by default so that ``kill`` can crash one like a real replica."""
    from wattserve.engines.mock_server import MockServer

    kw.setdefault("output_len", 8)
    reps = [MockServer(process=process, **kw) for _ in range(n)]
    try:
        for r in reps:
            r.start()
        yield reps
    finally:
        for r in reps:
            r.stop()


def kill(replica: Any) -> None:
    """Crash a subprocess mock replica (SIGKILL: no graceful close of its connections)."""
    proc = replica._proc  # the MockServer's own process handle
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)


def config(urls: list[str], model: str = "tiny", **over: Any) -> Any:
    from wattserve.serve.config import config_from_dict

    data = {
        "models": [{"name": model, "replicas": [{"kind": "url", "url": u} for u in urls]}],
        "energy": {"meter": "modeled", "interval_s": 0.1},
        "health": {"interval_s": 0.5, "timeout_s": 0.5, "retry_after_s": 0.5},
        "timeouts": {"connect_s": 1.0, "first_token_s": 5.0, "total_s": 10.0},
        "auth": {"keys_env": None},
        "grace_s": 5.0,
    }
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
