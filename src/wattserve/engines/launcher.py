"""Start and stop engine replicas described by a config; wait until each is ready.

A replica spec (duck-typed: the gateway passes ``wattserve.serve.config.ReplicaConfig``) has
a ``kind``:

* ``url``: an OpenAI-compatible server that is already running; nothing to start.
* ``command``: a server process, e.g. ``["vllm", "serve", "{model}", "--port", "{port}",
  "--gpu-memory-utilization", "{memory_fraction}"]`` or ``["llama-server", "-m", "model.gguf",
  "--port", "{port}"]``; ``copies`` processes on consecutive (or free) ports, each polled on
  ``ready_path`` until it answers, killed (SIGTERM, then SIGKILL) on stop.
* ``local``: an in-process engine from ``wattserve.engines.factory.create_engine``.
* ``mock``: the zero-delay mock OpenAI server (``wattserve.engines.mock_server.MockServer``).

``launch`` returns ``Launched`` endpoints (a URL or an engine object) and ``Launcher.stop``
tears everything down in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from wattserve.errors import ConfigError, EngineUnavailable

log = logging.getLogger("wattserve.launcher")


@dataclass
class Launched:
    name: str
    model: str
    device: str
    slots: int
    engine_model: str
    url: str | None = None  # OpenAI base URL ending in /v1
    engine: Any = None  # an in-process Engine
    process: subprocess.Popen | None = None
    server: Any = None  # an in-process server object with ``stop()``/``aclose()``


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def fill(args: list[str], **values: Any) -> list[str]:
    """Fill ``{model}``, ``{port}``, ``{memory_fraction}``, ``{device}`` in each argument."""
    try:
        return [a.format(**values) for a in args]
    except (KeyError, IndexError) as exc:
        raise ConfigError(
            f"replica command uses an unknown placeholder {exc}; "
            "known: {model} {port} {memory_fraction} {device} {index}"
        ) from None


async def wait_ready(
    url: str, timeout_s: float, process: subprocess.Popen | None = None, interval_s: float = 0.25
) -> None:
    """Poll ``url`` until it answers below 500; fail early if ``process`` exits."""
    import aiohttp

    end = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            if process is not None and process.poll() is not None:
                args = process.args
                cmd = " ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args)
                raise EngineUnavailable(
                    f"replica process exited with code {process.returncode} before "
                    f"it was ready ({cmd})"
                )
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            if time.monotonic() > end:
                raise EngineUnavailable(f"replica at {url} not ready after {timeout_s:g} s")
            await asyncio.sleep(interval_s)


class Launcher:
    """Owns what it started; ``stop()`` ends it all."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.launched: list[Launched] = []

    async def launch(self, model: str, spec: Any) -> list[Launched]:
        out: list[Launched] = []
        engine_model = spec.engine_model or model
        index = sum(1 for item in self.launched if item.model == model)
        for i in range(spec.copies):
            name = f"{model}/{spec.kind}-{index + i}"
            base = {
                "name": name,
                "model": model,
                "device": spec.device,
                "slots": spec.slots,
                "engine_model": engine_model,
            }
            if spec.kind == "url":
                out.append(Launched(url=spec.url, **base))
            elif spec.kind == "mock":
                from wattserve.engines.mock_server import MockServer

                server = MockServer(
                    process=True,
                    output_len=spec.mock_tokens,
                    token_delay_ms=spec.mock_delay_s * 1000,
                    model=engine_model,
                )
                await asyncio.to_thread(server.start)
                out.append(Launched(url=server.url, server=server, **base))
            elif spec.kind == "local":
                from wattserve.engines.factory import create_engine

                try:
                    extra = {"max_batch": spec.slots} if spec.backend in ("auto", "local") else {}
                    engine = create_engine(
                        engine_model, backend=spec.backend, threads=spec.threads, **extra
                    )
                except Exception as exc:
                    if isinstance(exc, (ConfigError, EngineUnavailable)):
                        raise
                    raise EngineUnavailable(
                        f"cannot create local engine {engine_model!r}: {exc}"
                    ) from None
                out.append(Launched(engine=engine, **base))
            elif spec.kind == "command":
                port = spec.port + i if spec.port else free_port(self.host)
                args = fill(
                    spec.command,
                    model=engine_model,
                    port=port,
                    device=spec.device,
                    index=i,
                    memory_fraction=""
                    if spec.memory_fraction is None
                    else f"{spec.memory_fraction:g}",
                )
                env = dict(os.environ, **spec.env)
                try:
                    proc = await asyncio.to_thread(
                        subprocess.Popen,
                        args,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        start_new_session=True,
                    )
                except OSError as exc:
                    raise EngineUnavailable(f"cannot start replica {args[0]!r}: {exc}") from None
                item = Launched(url=f"http://{self.host}:{port}/v1", process=proc, **base)
                self.launched.append(item)  # so stop() reaps it even if readiness fails
                await wait_ready(
                    f"http://{self.host}:{port}{spec.ready_path}", spec.ready_timeout_s, proc
                )
                out.append(item)
                continue
            else:  # pragma: no cover - the config validates kinds
                raise ConfigError(f"unknown replica kind {spec.kind!r}")
            self.launched.append(out[-1])
        return out

    async def stop(self, grace_s: float = 10.0) -> None:
        for item in reversed(self.launched):
            try:
                if item.process is not None:
                    await asyncio.to_thread(terminate, item.process, grace_s)
                if item.server is not None:
                    await asyncio.to_thread(item.server.stop)
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                log.warning("stopping %s: %s", item.name, exc)
        self.launched.clear()


def terminate(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace_s``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait(5)


async def _maybe_await(value: Any) -> Any:
    if hasattr(value, "__await__"):
        return await value
    return value
