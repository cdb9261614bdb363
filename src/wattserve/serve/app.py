"""The HTTP face of the gateway as one ASGI app: the limits in front (``serve/limits.py``),
a lean ASGI handler for the two hot POST routes, FastAPI for the schema and the small routes.

The lean handler (``FastRoutes``) keeps the hot routes out of FastAPI: FastAPI/Starlette
build a ``Request``, run the dependency machinery and wrap a ``StreamingResponse`` per call,
which cost about twice the CPU per request (docs/serve.md, ``benchmarks/gateway_overhead.py
--gateway-modes granian,fastapi``). Both call the same ``Gateway.handle``; ``fast_path:
false`` serves everything through FastAPI. With API keys set every route but the OpenAPI
document and its pages needs one (``auth.public_probes`` opens ``/health`` and ``/metrics``).
The servers and runners are in ``serve/server.py`` (re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from wattserve.openai import answers
from wattserve.openai.answers import APIError
from wattserve.openai.schema import openapi_schemas
from wattserve.serve.config import ServeConfig
from wattserve.serve.limits import Guard, Scope, send_error
from wattserve.serve.relay import error_reply
from wattserve.serve.server import BackgroundServer, make_server, run_loop, serve

__all__ = ["BackgroundServer", "create_app", "make_server", "run_loop", "serve"]

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
                answers.DONE
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

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
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
            raw = await _read_body(receive, headers, self.service.config.limits.max_body_bytes)
        except APIError as exc:  # the body was not read to its end: close the connection
            await send_error(send, exc, [(b"connection", b"close")])
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
        redirect_slashes=False,  # a redirect would be built from the client's Host header
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
            raw = await _read_body(request.receive, headers, service.config.limits.max_body_bytes)
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

    def refused(request: Request, probe: bool = False) -> JSONResponse | None:
        """The 401 for a request without a valid key, when keys are required."""
        keys = service.gateway.keys if service.gateway is not None else None
        if keys is None or not keys.required or (probe and service.config.auth.public_probes):
            return None
        try:
            keys.tenant(request.headers.get("authorization"))
        except APIError as exc:
            return JSONResponse(
                exc.payload(), status_code=exc.status, headers={"www-authenticate": "Bearer"}
            )
        return None

    @api.get("/v1/models", summary="served models")
    async def models(request: Request):
        if (no := refused(request)) is not None:
            return no
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
    async def health(request: Request):
        if (no := refused(request, probe=True)) is not None:
            return no
        return {"status": "ok"}

    @api.get("/ready", summary="readiness: at least one healthy replica per served model")
    async def ready(request: Request):
        if (no := refused(request)) is not None:
            return no
        state = service.pool.readiness() if service.pool else {"status": "unavailable"}
        ok = state["status"] != "unavailable" and not service.gateway.draining
        replicas = [r.describe() for r in service.pool.replicas] if service.pool else []
        return JSONResponse(
            {"ready": ok, **state, "replicas": replicas}, status_code=200 if ok else 503
        )

    @api.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics(request: Request):
        if (no := refused(request, probe=True)) is not None:
            return no
        return PlainTextResponse(service.metrics.render(), media_type="text/plain; version=0.0.4")

    @api.get("/stats", summary="cache, energy and per-model counts as JSON")
    async def stats(request: Request):
        if (no := refused(request)) is not None:
            return no
        return service.stats()

    base_openapi = api.openapi

    def openapi() -> dict:
        if api.openapi_schema is None:
            schema = base_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(openapi_schemas())
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
    return Guard(FastRoutes(api, service), config.limits, service)  # .service: for the runners
