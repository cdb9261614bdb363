"""The serving pipeline, free of any web framework:

canonical request -> cache lookup -> multiplexer (``model="auto"`` / ``router-...``) ->
balancer picks a healthy replica (one retry on another replica before the first byte) ->
engine streams -> completion stored in the cache with its metered cost -> answer.

``Gateway.handle(endpoint, raw_body, authorization)`` returns a ``Reply``: status, headers
and either a whole body or an async iterator of SSE bytes. Errors are OpenAI-style JSON.
How an answer travels from a replica to the client is in ``wattserve.serve.relay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

from wattserve.cache.keys import is_cacheable, make_key
from wattserve.serve import wire
from wattserve.serve.relay import Ctx, Reply, engine_answer, error_reply, http_answer
from wattserve.serve.replica import HttpReplica, Replica, UpstreamError
from wattserve.serve.upstream import Timeouts
from wattserve.serve.wire import APIError
from wattserve.types import Request

log = logging.getLogger("wattserve.serve")


class Gateway:
    def __init__(
        self,
        pool: Any,
        *,
        cache: Any = None,
        router: Any = None,
        accountant: Any = None,
        metrics: Any = None,
        keys: Any = None,
        default_max_tokens: int = 256,
        max_tokens_limit: int = 8192,
        first_token_s: float = 30.0,
        total_s: float = 300.0,
        connect_s: float = 2.0,
        log_content: bool = False,
        cost_estimate: Any = None,
    ) -> None:
        self.pool, self.cache, self.router, self.accountant = pool, cache, router, accountant
        self.metrics, self.keys = metrics, keys
        self.default_max_tokens, self.max_tokens_limit = default_max_tokens, max_tokens_limit
        self.first_token_s, self.total_s = first_token_s, total_s
        self.timeout = Timeouts(connect_s=connect_s, read_s=first_token_s, total_s=total_s)
        self._routers: dict[float, Any] = {}  # the router at each threshold named in a model field
        self._flights: dict[str, asyncio.Future] = {}  # cache key -> done when its answer is stored
        self.log_content = log_content
        self.cost_estimate = (
            cost_estimate  # (model, input_tokens, output_tokens) -> J, when unmetered
        )
        self.in_flight = 0
        self.draining = False
        self._idle: asyncio.Event | None = None  # set when in_flight drops to 0 during drain()
        self._seq = 0
        self._prefix = os.urandom(6).hex()

    # ------------------------------------------------------------------ entry point
    async def handle(self, endpoint: str, raw: bytes, authorization: str | None = None) -> Reply:
        t0 = time.perf_counter()
        label = "-"
        try:
            if self.draining:
                raise APIError(
                    503, "the gateway is shutting down", type="server_error", code="shutting_down"
                )
            tenant = self.keys.tenant(authorization) if self.keys is not None else "default"
            body = wire.parse_body(raw)
            self._seq += 1
            rid = f"{'chatcmpl' if endpoint == 'chat' else 'cmpl'}-{self._prefix}{self._seq:x}"
            req = wire.to_request(
                endpoint, body, rid, tenant, self.default_max_tokens, self.max_tokens_limit
            )
            group = req.model
            model = self._resolve(req)
            label = model
            if self.log_content:
                log.info("request %s tenant=%s model=%s text=%r", rid, tenant, model, req.text())
            key = None
            if self.cache is not None:
                if is_cacheable(req):
                    key = make_key(tenant, group, req, body)
                    hit = await self.cache.aget(key)
                    if hit is None and key in self._flights:  # the same answer is being computed
                        try:
                            await asyncio.wait_for(asyncio.shield(self._flights[key]), self.total_s)
                        except (TimeoutError, Exception):  # noqa: BLE001 - then compute it ourselves
                            pass
                        hit = await self.cache.aget(key)
                    if hit is not None:
                        return self._from_cache(req, body, model, hit, t0)
            ctx = Ctx(req, body, group, model, key, t0)
            if key is not None and key not in self._flights:
                self._flights[key] = asyncio.get_running_loop().create_future()
                ctx.flight = key
            try:
                reply = await self._forward(ctx)
            except BaseException:
                self._land(ctx)
                raise
            if reply.stream is None:
                self._land(ctx)
            return reply
        except APIError as exc:
            if self.metrics is not None:
                self.metrics.done(
                    label, exc.status, "none", None, time.perf_counter() - t0, 0, 0, None, ""
                )
            return error_reply(exc)

    def _resolve(self, req: Request) -> str:
        name = req.model
        if name in self.pool.by_model:
            return name
        if name == "auto" or name.startswith("router-"):
            router = self._router_for(name)
            try:
                decision = router.route(req)
            except Exception as exc:
                log.exception("router failed")
                raise APIError(
                    500, f"the router failed: {type(exc).__name__}", type="server_error"
                ) from None
            if decision.model not in self.pool.by_model:
                raise APIError(
                    503,
                    f"router chose {decision.model!r}, which this gateway does not serve",
                    type="server_error",
                )
            if self.metrics is not None:
                self.metrics.routed.labels(
                    "auto" if name == "auto" else "router", decision.model
                ).inc()
            return decision.model
        raise APIError(
            404,
            f"model {name!r} does not exist; served: {', '.join(self.pool.by_model)}",
            code="model_not_found",
            param="model",
        )

    def _router_for(self, name: str) -> Any:
        if self.router is None:
            raise APIError(
                404,
                f"model {name!r} needs a router, and none is configured "
                "(set router.enabled and router.file in the gateway config)",
                code="model_not_found",
                param="model",
            )
        if name == "auto":
            return self.router
        from wattserve.route import parse_route_model

        try:
            policy, threshold = parse_route_model(name)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - ConfigError for a malformed name
            raise APIError(400, str(exc), param="model") from None
        if policy != self.router.name:
            raise APIError(
                404,
                f"unknown routing policy {policy!r}; this gateway routes with "
                f"'router-{self.router.name}[-<threshold>]' or 'auto'",
                code="model_not_found",
                param="model",
            )
        if threshold is None:
            return self.router
        r = self._routers.get(threshold)
        if r is None:
            r = self._routers[threshold] = self.router.with_threshold(threshold)
        return r

    # ------------------------------------------------------------------ cache hits
    def _from_cache(self, req: Request, body: dict, model: str, hit: dict, t0: float) -> Reply:
        saved = float(hit.get("energy_j") or 0.0)
        usage = wire.usage_dict(hit["input_tokens"], hit["output_tokens"], 0.0, True)
        ep, rid = req.endpoint, req.id
        headers = [
            ("x-wattserve-model", model),
            ("x-wattserve-replica", "cache"),
            ("x-wattserve-cache", "hit"),
        ]
        if self.metrics is not None:
            self.metrics.hit(model, saved)
            dt = time.perf_counter() - t0
            self.metrics.done(
                model, 200, "hit", dt, dt, hit["input_tokens"], hit["output_tokens"], None, ""
            )
        if not req.stream:
            headers.append(("x-wattserve-energy-j", "0"))
            return Reply(
                200, headers, body=wire.full_body(ep, rid, model, hit["text"], hit["finish"], usage)
            )
        data = wire.chunk_event(ep, rid, model, hit["text"], None, first=True) + wire.chunk_event(
            ep, rid, model, None, hit["finish"] or "stop"
        )
        if wire.wants_usage(body):
            data += wire.usage_event(ep, rid, model, usage)

        return Reply(200, headers, body=data + wire.DONE, sse=True)

    # ------------------------------------------------------------------ upstream
    async def _forward(self, ctx: Ctx) -> Reply:
        """Pick a replica and get its first bytes; on failure before them, try one other replica."""
        tried: list[Replica] = []
        last: Exception | None = None
        for attempt in range(2):
            rep = self.pool.pick(ctx.req, ctx.model, tried)
            if rep is None:
                break
            if attempt and self.metrics is not None:
                self.metrics.retries.labels(ctx.model).inc()
            tried.append(rep)
            self._begin(ctx, rep)
            try:
                if isinstance(rep, HttpReplica):
                    return await http_answer(self, ctx, rep)
                return await engine_answer(self, ctx, rep)
            except UpstreamError as exc:
                self._end(ctx, ok=False)
                if not exc.retryable:
                    return self._upstream_answer(ctx, exc)
                if exc.down:
                    self.pool.failed(rep, str(exc))
                log.warning("replica %s failed before the first byte: %s", rep.name, exc)
                last = exc
            except BaseException:
                self._end(ctx, ok=False)
                raise
        if last is None:
            raise APIError(
                503,
                f"no healthy replica for model {ctx.model!r}",
                type="server_error",
                code="no_healthy_replica",
            )
        raise APIError(
            502, f"upstream failed: {last}", type="upstream_error", code="upstream_failed"
        )

    def _begin(self, ctx: Ctx, rep: Replica) -> None:
        ctx.rep = rep
        rep.outstanding += 1
        self.in_flight += 1
        if self.accountant is not None:
            ctx.token = self.accountant.begin(rep.device)

    def _end(self, ctx: Ctx, ok: bool) -> float | None:
        rep = ctx.rep
        assert rep is not None
        rep.outstanding -= 1
        self.in_flight -= 1
        if self._idle is not None and not self.in_flight:
            self._idle.set()
        if ok:
            rep.served += 1
        if self.accountant is None:
            return None
        return self.accountant.end(rep.device, ctx.token)

    def _land(self, ctx: Ctx) -> None:
        """Wake the identical requests that waited for this one's answer (single flight)."""
        if ctx.flight is not None:
            fut = self._flights.pop(ctx.flight, None)
            ctx.flight = None
            if fut is not None and not fut.done():
                fut.set_result(None)

    def _upstream_answer(self, ctx: Ctx, exc: UpstreamError) -> Reply:
        body = exc.body or APIError(exc.status, str(exc), type="upstream_error").body()
        if self.metrics is not None:
            self.metrics.done(
                ctx.model, exc.status, "miss", None, time.perf_counter() - ctx.t0, 0, 0, None, ""
            )
        return Reply(exc.status, [("x-wattserve-model", ctx.model)], body=body)

    def _headers(self, ctx: Ctx) -> list[tuple[str, str]]:
        return [
            ("x-wattserve-model", ctx.model),
            ("x-wattserve-replica", ctx.rep.name if ctx.rep else "-"),
            ("x-wattserve-cache", "miss" if ctx.key else "bypass"),
        ]

    def _finish(
        self, ctx: Ctx, text: str, finish: str | None, in_tok: int, out_tok: int, error: str | None
    ) -> dict[str, Any]:
        """Close the books on an upstream answer: energy, metrics, cache. Returns the usage dict."""
        energy = self._end(ctx, ok=error is None)
        source = self.accountant.source if self.accountant is not None else "null"
        e2e = time.perf_counter() - ctx.t0
        if self.metrics is not None:
            self.metrics.done(
                ctx.model,
                200 if error is None else 502,
                "miss" if ctx.key else "bypass",
                ctx.ttft_s,
                e2e,
                in_tok,
                out_tok,
                energy,
                source,
            )
        if error is None and ctx.key is not None and self.cache is not None:
            cost = energy
            if not cost and self.cost_estimate is not None:
                cost = self.cost_estimate(ctx.model, in_tok, out_tok)
            self.cache.put(
                ctx.key,
                {
                    "text": text,
                    "finish": finish,
                    "input_tokens": in_tok,
                    "output_tokens": out_tok,
                    "energy_j": energy,
                    "model": ctx.model,
                },
                cost=float(cost or 1e-3 * max(1, out_tok)),
                size=len(text) + 64,
            )
        self._land(ctx)
        if self.log_content and error is None:
            log.info(
                "answer %s replica=%s text=%r", ctx.req.id, ctx.rep.name if ctx.rep else "-", text
            )
        return wire.usage_dict(in_tok, out_tok, energy, False, source)

    async def drain(self, grace_s: float) -> int:
        """Refuse new requests and wait up to ``grace_s`` for in-flight ones; returns those left."""
        self.draining = True
        if self.in_flight:
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_s)
        return self.in_flight
