"""The HTTP servers that run the gateway's ASGI app, configured from ``limits:``, and the
runners (``make_server``, ``serve``, ``run_loop``, ``BackgroundServer``).

``server: granian`` (the default) runs granian's embedded server on this process's event
loop: its Rust HTTP/1.1 stack (hyper) enforces the header read timeout from a request's first
byte (a client dripping one byte at a time cannot extend it; the same timer bounds an idle
keep-alive connection), the header and URL bytes while reading (431 past
``max_header_bytes``) and the connection cap (``backpressure``: connections past
``max_connections`` wait in the listen backlog). ``server: uvicorn`` maps the same limits to
uvicorn's options where it has them: ``keep_alive_s`` -> ``timeout_keep_alive`` (armed only
after an answer, cancelled by any byte), ``max_connections`` -> ``limit_concurrency`` (503
past it) and the backlog. uvicorn has no option for the rest: no header read timeout (a
connection that sends nothing, or drips a head, is held until the client leaves), and its
one header size bound, ``h11_max_incomplete_event_size``, applies to its h11 parser, not the
httptools one the gateway runs it on; start-up logs a warning saying so. What neither server
does (Host checks, the URL length, the in-flight cap, the body budget and timeout) the app
does (``serve/limits.py``). Why granian: docs/serve.md, "HTTP server".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from wattserve.serve.config import LimitsConfig

log = logging.getLogger("wattserve.serve")

UVICORN_GAPS = (
    "server: uvicorn enforces neither limits.header_read_timeout_s (a client that sends "
    "nothing or drips its head holds its connection) nor limits.max_header_bytes (uvicorn's "
    "only header bound is for its h11 parser, not httptools); use server: granian, or a "
    "proxy in front that bounds both"
)


class GranianServer:
    """granian's embedded server on the running loop: ``serve()``, ``started``, ``stop()``."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        grace_s: float,
        limits: LimitsConfig,
        log_level: str = "warning",
        signals: bool = True,
    ) -> None:
        self.app, self.host, self.port = app, host, port
        self.grace_s, self.limits = grace_s, limits
        self.log_level, self.signals = log_level, signals
        self.started = False
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_early = False
        self._accepting: asyncio.Task | None = None

    async def _when_accepting(self, timeout_s: float = 30.0) -> None:
        """Set ``started`` once the port takes connections (the worker listens a moment after
        start-up returns)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        end = time.monotonic() + timeout_s
        while self.port and time.monotonic() < end:
            try:
                _, writer = await asyncio.open_connection(host, self.port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            writer.close()
            break
        self.started = True

    def _build(self) -> Any:
        from granian.constants import HTTPModes, Interfaces
        from granian.http import HTTP1Settings
        from granian.log import LogLevels
        from granian.server.embed import Server

        outer = self

        class Embedded(Server):
            def startup(self, spawn_target: Any, target_loader: Any) -> None:
                super().startup(spawn_target, target_loader)
                outer._accepting = asyncio.get_running_loop().create_task(outer._when_accepting())

        lim = self.limits
        timeout_ms = int(1000 * min(lim.header_read_timeout_s, lim.keep_alive_s))
        level = LogLevels.info if self.log_level.lower() in ("debug", "info") else LogLevels.error
        server = Embedded(
            self.app,
            address=self.host,
            port=self.port,
            interface=Interfaces.ASGINL,  # the lifespan is ``serve``'s, around the server
            http=HTTPModes.http1,
            websockets=False,
            backlog=max(128, min(lim.max_connections, 65535)),
            backpressure=lim.max_connections,
            http1_settings=HTTP1Settings(
                header_read_timeout=max(1, timeout_ms),
                keep_alive=True,
                max_buffer_size=lim.max_header_bytes,
            ),
            log_level=level,
            log_access=False,
        )
        server.workers_kill_timeout = max(1, math.ceil(self.grace_s))  # whole seconds
        return server

    async def serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = self._build()
        if self._stop_early:
            return
        if self.signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self._server.stop)
        try:
            await self._server.serve()
        except RuntimeError as exc:  # granian reports a failed bind as a RuntimeError
            first = str(exc).splitlines()[0] if str(exc) else repr(exc)
            if "os error" in first:
                raise OSError(first) from None
            raise
        finally:
            if self.signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    self._loop.remove_signal_handler(sig)
            self.started = False

    def stop(self) -> None:
        """Stop accepting, let in-flight answers finish within ``grace_s`` (any thread)."""
        if self._server is None or self._loop is None:
            self._stop_early = True
            return
        self._loop.call_soon_threadsafe(self._server.stop)


def _uvicorn_server(
    app: Any,
    host: str,
    port: int,
    grace_s: float,
    limits: LimitsConfig,
    log_level: str,
    signals: bool,
) -> Any:
    import uvicorn

    class UvicornServer(uvicorn.Server):
        """uvicorn with ``stop()``; without ``signals`` it leaves the process's handlers alone."""

        def stop(self) -> None:
            self.should_exit = True

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if signals:
                with super().capture_signals():
                    yield
            else:
                yield

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools",
        log_level=log_level,
        access_log=False,
        lifespan="off",
        # uvicorn annotates int but hands it to asyncio.wait_for, which takes float seconds
        timeout_graceful_shutdown=grace_s,  # type: ignore[arg-type]
        timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]
        limit_concurrency=limits.max_connections,
        # read by uvicorn's h11 parser only (not httptools, above): set for the day ``http``
        # changes, enforces nothing now (UVICORN_GAPS)
        h11_max_incomplete_event_size=limits.max_header_bytes,
        backlog=max(128, min(limits.max_connections, 65535)),
        proxy_headers=False,
        server_header=False,
    )
    return UvicornServer(config)


def make_server(
    app: Any, host: str, port: int, grace_s: float, log_level: str = "warning", signals: bool = True
) -> Any:
    """The HTTP server the config names (``server:``), with its ``limits:``. Each exposes
    ``serve()``, ``started`` and ``stop()`` (thread-safe)."""
    config = app.service.config
    if config.server == "uvicorn":
        log.warning("%s", UVICORN_GAPS)
        return _uvicorn_server(app, host, port, grace_s, config.limits, log_level, signals)
    return GranianServer(app, host, port, grace_s, config.limits, log_level, signals)


async def serve(app: Any, server: Any, announce: str | None = None) -> None:
    """Start the gateway's parts, serve until told to stop (SIGINT/SIGTERM or ``stop()``),
    let in-flight requests finish (the server's graceful shutdown), then drain and stop the
    parts. Start-up errors (``WattserveError``) propagate before any socket is opened.
    ``announce``: the URL to log "listening on URL" for once the server takes connections (its
    ``started``; the parts are ready before the server binds)."""
    service = app.service
    await service.start()
    told = asyncio.create_task(_announce(server, announce)) if announce is not None else None
    import gc

    gc.collect()
    gc.freeze()  # start-up objects (modules, schemas, models) leave the collector's scans
    # a request allocates a few hundred containers (almost all freed by refcounting): with the
    # default 700 the young generation was scanned every couple of requests
    gc.set_threshold(20000, 20, 20)
    try:
        await server.serve()
    finally:
        if told is not None:
            told.cancel()
        await service.stop()


async def _announce(server: Any, url: str, timeout_s: float = 60.0) -> None:
    """Log "listening on URL" once ``server.started`` (it takes connections)."""
    end = time.monotonic() + timeout_s
    while not server.started and time.monotonic() < end:  # noqa: ASYNC110 - a flag, no event
        await asyncio.sleep(0.02)
    if server.started:
        log.info("listening on %s", url)


def run_loop(coro: Any) -> Any:
    """Run ``coro`` on uvloop when installed (measured faster for the gateway), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)


class BackgroundServer:
    """The gateway in a thread on 127.0.0.1 (tests, demo, benchmark); ``with`` starts/stops it."""

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, grace_s: float = 5.0
    ) -> None:
        from wattserve.engines.launcher import free_port

        self.app, self.host = app, host
        self.port = port or free_port(host)
        self.grace_s = grace_s
        self.server: Any = None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 120.0) -> BackgroundServer:
        self.server = make_server(self.app, self.host, self.port, self.grace_s, signals=False)

        def run() -> None:
            try:
                run_loop(serve(self.app, self.server))
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                self.error = exc

        self.thread = threading.Thread(target=run, name="wattserve-gateway", daemon=True)
        self.thread.start()
        end = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive():
                if self.error is not None:
                    raise self.error
                raise RuntimeError("the gateway thread exited during start-up")
            if time.monotonic() > end:
                self.stop()
                raise TimeoutError("the gateway did not start in time")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.thread is not None:
            self.thread.join(self.grace_s + 30)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
