"""The one replica lifecycle of ``serve`` and ``sweep``: start, wait until ready, stop.

A replica spec (``wattserve.serve.config.ReplicaConfig``) has a ``kind``:

* ``url``: an OpenAI-compatible server that is already running; nothing to start.
* ``command``: a server process, e.g. ``["vllm", "serve", "{model}", "--port", "{port}",
  "--gpu-memory-utilization", "{memory_fraction}"]`` or ``["llama-server", "-m", "model.gguf",
  "--port", "{port}"]``; ``copies`` processes on consecutive (or free) ports.
* ``local``: an in-process engine from ``wattserve.engines.factory.create_engine``.
* ``mock``: the zero-delay mock OpenAI server (``wattserve.engines.mock_server.MockServer``).

``launch`` returns ``Launched`` endpoints (a URL or an engine object). Every server process,
the gateway's command replicas and the sweep's replica processes alike, goes through
``Launcher.spawn``: started in its own session with stderr in a file (a chatty server never
blocks on a full pipe; its last line explains an early exit), polled on its ready URL,
and on ``stop`` sent SIGTERM, then SIGKILL, in reverse order. Health while serving is the
gateway's (``wattserve.serve.health``: breakers fed by real traffic and probes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from wattserve.errors import ConfigError, EngineUnavailable

if TYPE_CHECKING:
    from wattserve.engines.mock_server import MockServer
    from wattserve.protocols import Engine
    from wattserve.serve.config import ReplicaConfig

log = logging.getLogger("wattserve.launcher")


@dataclass
class Launched:
    name: str
    model: str
    device: str = "cpu"
    slots: int = 8
    engine_model: str = ""
    url: str | None = None  # OpenAI base URL ending in /v1
    engine: Engine | None = None  # an in-process engine
    process: subprocess.Popen[bytes] | None = None
    server: MockServer | None = None  # an in-process server, stopped with the launcher
    stderr: IO[bytes] | None = None  # the process's stderr file

    def stderr_tail(self) -> str:
        """The last line the process wrote to stderr (300 characters at most)."""
        if self.stderr is None:
            return ""
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else ""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` (an IPv4 or IPv6 address, a wildcard included)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def interrupts_streams(args: list[str]) -> bool:
    """Whether ``args`` start llama-cpp-python's server with its default
    ``interrupt_requests=True`` (a new request, even GET /v1/models, ends the running stream
    with ``[DONE]`` and no finish_reason)."""
    runs = any(a == "llama_cpp.server" or a.endswith("llama_cpp/server") for a in args)
    return runs and not any(a.startswith("--interrupt_requests") for a in args)


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
    url: str,
    timeout_s: float,
    process: subprocess.Popen[bytes] | None = None,
    interval_s: float = 0.25,
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

    async def spawn(
        self,
        args: list[str],
        port: int,
        ready_path: str,
        ready_timeout_s: float,
        env: Mapping[str, str] | None = None,
        **item: Any,
    ) -> Launched:
        """Start one server process listening on ``port`` and wait until ``ready_path``
        answers; ``item``: the ``Launched`` fields (name, model, device, slots,
        engine_model). A process that exits or never answers is an ``EngineUnavailable``
        naming its last stderr line (the launcher still stops it)."""
        err = tempfile.TemporaryFile()
        try:
            proc = await asyncio.to_thread(
                subprocess.Popen,
                args,
                env=dict(env if env is not None else os.environ),
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        except OSError as exc:
            err.close()
            raise EngineUnavailable(f"cannot start replica {args[0]!r}: {exc}") from None
        url = f"http://{self.host}:{port}"
        launched = Launched(url=url + "/v1", process=proc, stderr=err, **item)
        self.launched.append(launched)  # so stop() reaps it even if readiness fails
        try:
            await wait_ready(url + ready_path, ready_timeout_s, proc)
        except EngineUnavailable as exc:
            tail = launched.stderr_tail()
            raise EngineUnavailable(f"{exc}{': ' + tail if tail else ''}") from None
        return launched

    async def launch(self, model: str, spec: ReplicaConfig) -> list[Launched]:
        out: list[Launched] = []
        engine_model = spec.engine_model or model
        index = sum(1 for item in self.launched if item.model == model)
        for i in range(spec.copies):
            base: dict[str, Any] = {
                "name": f"{model}/{spec.kind}-{index + i}",
                "model": model,
                "device": spec.device,
                "slots": spec.slots,
                "engine_model": engine_model,
            }
            if spec.kind == "command":
                port = spec.port + i if spec.port else free_port(self.host)
                mem = "" if spec.memory_fraction is None else f"{spec.memory_fraction:g}"
                args = fill(
                    list(spec.command or ()),  # the config requires it for this kind
                    model=engine_model,
                    port=port,
                    device=spec.device,
                    index=i,
                    memory_fraction=mem,
                )
                env = dict(os.environ, **spec.env)
                if interrupts_streams(args):
                    log.warning(
                        "replica %s runs llama-cpp-python's server without "
                        "--interrupt_requests False: it cuts a running stream short whenever "
                        "another request arrives (the gateway retries or reports such answers "
                        "and never caches them); add --interrupt_requests False to its command",
                        base["name"],
                    )
                out.append(
                    await self.spawn(args, port, spec.ready_path, spec.ready_timeout_s, env, **base)
                )
                continue
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
                from wattserve.engines.base import build_engine

                extra = {"max_batch": spec.slots} if spec.backend in ("auto", "local") else {}
                engine = build_engine(
                    engine_model, backend=spec.backend, threads=spec.threads, **extra
                )
                out.append(Launched(engine=engine, **base))
            else:  # pragma: no cover - the config validates kinds
                raise ConfigError(f"unknown replica kind {spec.kind!r}")
            self.launched.append(out[-1])
        return out

    @property
    def pids(self) -> list[int]:
        return [item.process.pid for item in self.launched if item.process is not None]

    async def stop(self, grace_s: float = 10.0) -> None:
        for item in reversed(self.launched):
            try:
                if item.process is not None:
                    await asyncio.to_thread(terminate, item.process, grace_s)
                if item.server is not None:
                    await asyncio.to_thread(item.server.stop)
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                log.warning("stopping %s: %s", item.name, exc)
            finally:
                if item.stderr is not None:
                    item.stderr.close()
        self.launched.clear()


def terminate(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
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
