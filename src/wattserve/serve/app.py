"""The HTTP face of the gateway: FastAPI for the schema and the small routes, a lean ASGI
handler for the two hot POST routes, and the runners (``make_server``, ``serve``,
``BackgroundServer``).

The default server (``serve/http_server.py``) answers the hot routes itself and hands the
rest to this ASGI app; under ``server: uvicorn`` the whole app runs on uvicorn, where the lean
handler (``FastRoutes``) keeps the hot routes out of FastAPI: FastAPI/Starlette build a
``Request``, run the dependency machinery and wrap a ``StreamingResponse`` per call, which
cost about twice the CPU per request (docs/serve.md, ``benchmarks/gateway_overhead.py
--gateway-modes fast,uvicorn,fastapi``). All paths call the same ``Gateway.handle``;
``fast_path: false`` serves everything through FastAPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from wattserve.serve import wire
from wattserve.serve.config import ServeConfig
from wattserve.serve.relay import error_reply
from wattserve.serve.wire import APIError

log = logging.getLogger("wattserve.serve")
HOT = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}


async def _read_body(receive: Any, headers: dict[bytes, bytes], limit: int) -> bytes:
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise APIError(413, f"request body larger than {limit} bytes", code="body_too_large")
    parts: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunk = msg.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise APIError(
                    413, f"request body larger than {limit} bytes", code="body_too_large"
                )
            parts.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(parts) if len(parts) != 1 else parts[0]


async def send_reply(send: Any, reply: Any) -> None:
    """Send a pipeline ``Reply`` over raw ASGI; always drives a stream to its end (or closes it)."""
    headers = [(b"content-type", reply.media_type.encode())]
    headers += [(k.encode(), v.encode()) for k, v in reply.headers]
    if reply.stream is None:
        if reply.sse:
            headers.append((b"cache-control", b"no-cache"))
        headers.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        return
    headers.append((b"cache-control", b"no-cache"))
    stream = reply.stream
    try:
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        async for chunk in stream:
            if chunk.endswith(
                wire.DONE
            ):  # the last event: end the response with it (one write less)
                await send({"type": "http.response.body", "body": chunk, "more_body": False})
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await stream.aclose()


class FastRoutes:
    """ASGI wrapper: POST to the hot routes goes straight to the pipeline; the rest to FastAPI."""

    def __init__(self, api: Any, service: Any) -> None:
        self.api = api
        self.service = service

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in HOT
            or not self.service.config.fast_path
        ):
            await self.api(scope, receive, send)
            return
        try:
            headers = dict(scope["headers"])
            raw = await _read_body(receive, headers, self.service.config.max_body_bytes)
        except APIError as exc:
            await send_reply(send, error_reply(exc))
            return
        except ConnectionError:
            return
        auth = headers.get(b"authorization")
        await _while_connected(
            self._answer(scope["path"], raw, auth.decode("latin-1") if auth else None, send),
            receive,
        )

    async def _answer(self, path: str, raw: bytes, auth: str | None, send: Any) -> None:
        try:
            reply = await self.service.gateway.handle(HOT[path], raw, auth)
        except APIError as exc:
            reply = error_reply(exc)
        except Exception:
            log.exception("internal error on %s", path)
            reply = error_reply(APIError.internal())
        await send_reply(send, reply)


async def _while_connected(answer: Any, receive: Any) -> None:
    """Await ``answer`` (the pipeline and the reply's sending) unless the client goes away
    first: on ``http.disconnect`` it is cancelled, which closes the upstream request (the
    relay closes a connection it has not read to its end)."""
    me = asyncio.current_task()
    state = {"gone": False, "over": False}

    async def watch() -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                break
        if not state["over"] and me is not None:
            state["gone"] = True
            me.cancel()

    watcher = asyncio.create_task(watch())
    try:
        await answer
    except asyncio.CancelledError:
        if not state["gone"]:
            raise
    finally:
        state["over"] = True
        watcher.cancel()
        if state["gone"] and me is not None and me.cancelling():
            me.uncancel()  # the cancel was this request's, not the server's


def _openapi_bodies() -> dict[str, dict]:
    """JSON schemas of the two request bodies, for the OpenAPI document."""
    from typing import Literal

    from pydantic import BaseModel, ConfigDict, Field

    class ChatMessage(BaseModel):
        role: str
        content: str | list[dict[str, Any]] | None = None

    class StreamOptions(BaseModel):
        include_usage: bool = False

    class _Common(BaseModel):
        model_config = ConfigDict(extra="allow")
        model: str = Field(description="a served model, 'auto', or 'router-<policy>-<threshold>'")
        max_tokens: int | None = Field(None, ge=1)
        temperature: float | None = Field(None, ge=0, le=2)
        top_p: float | None = Field(None, ge=0, le=1)
        n: Literal[1] | None = None
        stream: bool = False
        stream_options: StreamOptions | None = None
        stop: str | list[str] | None = None
        seed: int | None = None

    class ChatCompletionRequest(_Common):
        messages: list[ChatMessage] = Field(min_length=1)

    class CompletionRequest(_Common):
        prompt: str | list[str]

    out: dict[str, dict] = {}
    for m in (ChatCompletionRequest, CompletionRequest):
        schema = m.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[m.__name__] = schema
    return out


def build_api(service: Any) -> Any:
    """The FastAPI app (schema, health, metrics, models, and the fallback hot routes)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        if not service.started:
            await service.start()
        try:
            yield
        finally:
            await service.stop()

    api = FastAPI(
        title="wattserve gateway",
        version="1",
        lifespan=lifespan,
        description="OpenAI-compatible gateway with a response cache, a model multiplexer, "
        "a replica pool and per-request energy.",
    )

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            APIError(
                exc.status_code,
                str(exc.detail),
                code="not_found" if exc.status_code == 404 else None,
            ).payload(),
            status_code=exc.status_code,
        )

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            APIError(400, f"invalid request: {exc.errors()[0].get('msg')}").payload(),
            status_code=400,
        )

    @api.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        return JSONResponse(APIError.internal().payload(), status_code=500)

    async def _hot(endpoint: str, request: Request) -> Response:
        try:
            headers = {k.lower().encode(): v.encode("latin-1") for k, v in request.headers.items()}
            raw = await _read_body(request.receive, headers, service.config.max_body_bytes)
            reply = await service.gateway.handle(
                endpoint, raw, request.headers.get("authorization")
            )
        except APIError as exc:
            return Response(exc.body(), status_code=exc.status, media_type="application/json")
        if reply.stream is not None:
            return StreamingResponse(
                reply.stream,
                status_code=reply.status,
                headers=dict(reply.headers),
                media_type="text/event-stream",
            )
        return Response(
            reply.body,
            status_code=reply.status,
            headers=dict(reply.headers),
            media_type=reply.media_type,
        )

    def _body_spec(name: str) -> dict:
        return {
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                },
            }
        }

    @api.post(
        "/v1/chat/completions",
        openapi_extra=_body_spec("ChatCompletionRequest"),
        summary="OpenAI chat completions (streaming SSE or JSON)",
        response_model=None,
    )
    async def chat_completions(request: Request):
        return await _hot("chat", request)

    @api.post(
        "/v1/completions",
        openapi_extra=_body_spec("CompletionRequest"),
        summary="OpenAI text completions (streaming SSE or JSON)",
        response_model=None,
    )
    async def completions(request: Request):
        return await _hot("completions", request)

    @api.get("/v1/models", summary="served models")
    async def models():
        names = (
            list(service.pool.by_model) if service.pool else [m.name for m in service.config.models]
        )
        router = service.gateway.router if service.gateway is not None else None
        if router is not None:
            names += ["auto", f"router-{router.name}"]
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "wattserve"} for n in names
            ],
        }

    @api.get("/health", summary="liveness")
    async def health():
        return {"status": "ok"}

    @api.get("/ready", summary="readiness: at least one healthy replica per served model")
    async def ready():
        state = service.pool.readiness() if service.pool else {"status": "unavailable"}
        ok = state["status"] != "unavailable" and not service.gateway.draining
        replicas = [r.describe() for r in service.pool.replicas] if service.pool else []
        return JSONResponse(
            {"ready": ok, **state, "replicas": replicas}, status_code=200 if ok else 503
        )

    @api.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics():
        return PlainTextResponse(service.metrics.render(), media_type="text/plain; version=0.0.4")

    @api.get("/stats", summary="cache, energy and per-model counts as JSON")
    async def stats():
        return service.stats()

    base_openapi = api.openapi

    def openapi() -> dict:
        if api.openapi_schema is None:
            schema = base_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(_openapi_bodies())
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    return api


def create_app(config: ServeConfig, service: Any = None) -> Any:
    """The ASGI app for ``config`` (a ``Service`` is built unless one is passed)."""
    if service is None:
        from wattserve.serve.service import Service

        service = Service(config)
    api = build_api(service)
    return FastRoutes(api, service)  # its .service is the one the servers read


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
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(self.grace_s + 30)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def serve(app: Any, server: Any) -> None:
    """Start the gateway's parts, serve until told to stop (SIGINT/SIGTERM or ``should_exit``),
    let in-flight requests finish (the server's graceful shutdown), then drain and stop the parts.
    Start-up errors (``WattserveError``) propagate before any socket is opened."""
    service = app.service
    await service.start()
    import gc

    gc.collect()
    gc.freeze()  # start-up objects (modules, schemas, models) leave the collector's scans
    # a request allocates a few hundred containers (almost all freed by refcounting): with the
    # default 700 the young generation was scanned every couple of requests
    gc.set_threshold(20000, 20, 20)
    try:
        await server.serve()
    finally:
        await service.stop()


def run_loop(coro: Any) -> Any:
    """Run ``coro`` on uvloop when installed (measured faster for the gateway), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)


def make_server(
    app: Any, host: str, port: int, grace_s: float, log_level: str = "warning", signals: bool = True
) -> Any:
    """The HTTP server the config names (``server:``): the gateway's own (serve/http_server.py,
    the default) or uvicorn. Both expose ``serve()``, ``started`` and ``should_exit``."""
    if app.service.config.server == "uvicorn":
        import uvicorn

        config = uvicorn_config(app, host, port, grace_s, log_level)
        if signals:
            return uvicorn.Server(config)

        class QuietServer(uvicorn.Server):
            """uvicorn that leaves the process's signal handlers alone."""

            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        return QuietServer(config)
    from wattserve.serve.http_server import GatewayServer

    gateway = GatewayServer(app, host, port, grace_s)
    gateway.install_signal_handlers = signals
    return gateway


def uvicorn_config(
    app: Any, host: str, port: int, grace_s: float, log_level: str = "warning"
) -> Any:
    """uvicorn settings: the httptools parser (coalesced writes) when installed, no access log,
    lifespan handled by ``serve``."""
    import uvicorn

    http: Any
    try:
        from wattserve.serve.transport import CoalescingHttpToolsProtocol

        http = CoalescingHttpToolsProtocol  # httptools, head and first body bytes in one write
    except ImportError:  # pragma: no cover - no httptools
        http = "h11"
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=http,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        # uvicorn annotates int but hands it to asyncio.wait_for, which takes float seconds
        timeout_graceful_shutdown=grace_s,  # type: ignore[arg-type]
        timeout_keep_alive=30,
        proxy_headers=False,
        server_header=False,
    )
