"""The serving pipeline, free of any web framework, one stage after the other:

parse (``wattserve.openai.schema``) -> authenticate -> cache lookup -> route (``model="auto"``
/ ``router-...``) -> pick a healthy replica (one retry on another replica before the first
byte) -> relay (``wattserve.serve.relay``) -> close the books (``wattserve.serve.ledger``:
energy, metrics, the cache put, waking identical waiting requests).

``Gateway.handle(endpoint, raw_body, authorization)`` returns a ``Reply``: status, headers
and either a whole body or an async iterator of SSE bytes. Errors are OpenAI-style JSON.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from wattserve.cache.keys import is_cacheable, make_key
from wattserve.openai import answers, schema
from wattserve.openai.answers import APIError
from wattserve.openai.transport import Timeouts
from wattserve.protocols import Cache, Router
from wattserve.serve.auth import ApiKeys
from wattserve.serve.energy import EnergyAccountant
from wattserve.serve.ledger import Books, CostEstimate, Ledger, RecomputeCost
from wattserve.serve.metrics import GatewayMetrics
from wattserve.serve.pool import ReplicaPool
from wattserve.serve.relay import Reply, engine_answer, error_reply, http_answer
from wattserve.serve.replica import EngineReplica, HttpReplica, Replica, UpstreamError
from wattserve.types import Request

log = logging.getLogger("wattserve.serve")


class Gateway:
    def __init__(
        self,
        pool: ReplicaPool,
        *,
        cache: Cache | None = None,
        router: Router | None = None,
        accountant: EnergyAccountant | None = None,
        metrics: GatewayMetrics | None = None,
        keys: ApiKeys | None = None,
        default_max_tokens: int = 256,
        max_tokens_limit: int = 8192,
        first_token_s: float = 30.0,
        total_s: float = 300.0,
        connect_s: float = 2.0,
        log_content: bool = False,
        cost_estimate: CostEstimate | None = None,  # (model, in, out tokens) -> J, unmetered
        recompute_cost: RecomputeCost | None = None,  # the cache cost of an answer
    ) -> None:
        self.pool, self.cache, self.router, self.accountant = pool, cache, router, accountant
        self.metrics, self.keys = metrics, keys
        self.default_max_tokens, self.max_tokens_limit = default_max_tokens, max_tokens_limit
        self.total_s = total_s
        self.timeout = Timeouts(connect_s=connect_s, read_s=first_token_s, total_s=total_s)
        self.books = Books(
            pool, cache, accountant, metrics, cost_estimate, log_content, recompute_cost
        )
        self.log_content = log_content
        self.draining = False
        self._seq = 0
        self._prefix = os.urandom(6).hex()

    @property
    def in_flight(self) -> int:
        return self.books.in_flight

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
            body = schema.parse_body(raw)
            self._seq += 1
            rid = f"{'chatcmpl' if endpoint == 'chat' else 'cmpl'}-{self._prefix}{self._seq:x}"
            req = schema.to_request(
                endpoint, body, rid, tenant, self.default_max_tokens, self.max_tokens_limit
            )
            group = req.model
            model, scores = self._resolve(req)
            label = model
            if self.log_content:
                log.info("request %s tenant=%s model=%s text=%r", rid, tenant, model, req.text())
            key = None
            if self.cache is not None:
                if is_cacheable(req):
                    key = make_key(tenant, group, req, body)
                    hit = await self.cache.aget(key)
                    flight = self.books.flights.get(key)
                    if hit is None and flight is not None:  # the same answer is being computed
                        try:
                            await asyncio.wait_for(asyncio.shield(flight), self.total_s)
                        except (TimeoutError, Exception):  # noqa: BLE001 - then compute it ourselves
                            pass
                        hit = await self.cache.aget(key)
                    if hit is not None:
                        return self._from_cache(req, body, model, hit, t0)
            led = self.books.open(req, body, model, key, t0, scores)
            try:
                return await self._forward(led)
            except APIError as exc:
                led.close(error=exc.message, status=exc.status)
                return error_reply(exc)
            except BaseException as exc:  # 499: the client went away (nginx's code for it)
                led.close(error=type(exc).__name__, status=499)
                raise
        except APIError as exc:
            self.books.refused(label, exc.status, t0)
            return error_reply(exc)

    def _resolve(self, req: Request) -> tuple[str, Mapping[str, float] | None]:
        """The model to answer ``req``, and the router's quality scores when it chose."""
        name = req.model
        if name in self.pool.by_model:
            return name, None
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
            return decision.model, decision.scores
        raise APIError(
            404,
            f"model {name!r} does not exist; served: {', '.join(self.pool.by_model)}",
            code="model_not_found",
            param="model",
        )

    def _router_for(self, name: str) -> Router:
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
        return self.router.with_threshold(threshold)

    # ------------------------------------------------------------------ cache hits
    def _from_cache(
        self, req: Request, body: dict[str, Any], model: str, hit: dict[str, Any], t0: float
    ) -> Reply:
        saved = float(hit.get("energy_j") or 0.0)
        usage = answers.usage_dict(hit["input_tokens"], hit["output_tokens"], 0.0, True, "cache")
        ep, rid = req.endpoint, req.id
        headers = [
            ("x-wattserve-model", model),
            ("x-wattserve-replica", "cache"),
            ("x-wattserve-cache", "hit"),
        ]
        if self.books.request_log is not None:
            self.books.request_log.write(
                req, hit.get("model") or model, hit["input_tokens"], hit["output_tokens"],
                hit.get("text"), 0.0, "cache", cache_hit=True, replica="cache", status=200,
            )  # fmt: skip
        if self.metrics is not None:
            self.metrics.hit(model, saved)
            dt = time.perf_counter() - t0
            self.metrics.done(
                model, 200, "hit", dt, dt, hit["input_tokens"], hit["output_tokens"], None, ""
            )
        if not req.stream:
            headers.append(("x-wattserve-energy-j", "0"))
            whole = answers.full_body(ep, rid, model, hit["text"], hit["finish"], usage)
            return Reply(200, headers, body=whole)
        data = answers.chunk_event(ep, rid, model, hit["text"], None, first=True)
        data += answers.chunk_event(ep, rid, model, None, hit["finish"] or "stop")
        if schema.wants_usage(body):
            data += answers.usage_event(ep, rid, model, usage)
        return Reply(200, headers, body=data + answers.DONE, sse=True)

    # ------------------------------------------------------------------ upstream
    async def _forward(self, led: Ledger) -> Reply:
        """Pick a replica and get its first bytes; on failure before them, try one other replica."""
        tried: list[Replica] = []
        failed: list[tuple[Replica, UpstreamError]] = []  # counted by the pool once settled
        last: Exception | None = None
        for attempt in range(2):
            rep = self.pool.pick(led.req, led.model, tried)
            if rep is None:
                break
            if attempt and self.metrics is not None:
                self.metrics.retries.labels(led.model).inc()
            tried.append(rep)
            led.engage(rep)
            try:
                reply = await self._relay(led, rep)
            except UpstreamError as exc:
                led.disengage()
                if not exc.retryable:
                    self.pool.settle(failed, answered=True)
                    return self._upstream_answer(led, exc)
                failed.append((rep, exc))
                log.warning("replica %s failed before the first byte: %s", rep.name, exc)
                last = exc
                continue
            self.pool.succeeded(rep)
            self.pool.settle(failed, answered=True)
            return reply
        self.pool.settle(failed, answered=False)
        if last is None:
            raise APIError(
                503,
                f"no healthy replica for model {led.model!r}",
                type="server_error",
                code="no_healthy_replica",
            )
        raise APIError(
            502, f"upstream failed: {last}", type="upstream_error", code="upstream_failed"
        )

    async def _relay(self, led: Ledger, rep: Replica) -> Reply:
        if isinstance(rep, HttpReplica):
            return await http_answer(led, rep, self.timeout)
        if isinstance(rep, EngineReplica):
            return await engine_answer(led, rep, self.timeout)
        raise UpstreamError(f"{rep.name}: a {rep.kind} replica cannot be relayed", fault=None)

    def _upstream_answer(self, led: Ledger, exc: UpstreamError) -> Reply:
        """A replica's own 4xx answer, passed on as it came."""
        body = exc.body or APIError(exc.status, str(exc), type="upstream_error").body()
        led.close(error=str(exc), status=exc.status)
        return Reply(exc.status, [("x-wattserve-model", led.model)], body=body)

    async def drain(self, grace_s: float) -> int:
        """Refuse new requests and wait up to ``grace_s`` for in-flight ones; returns those left."""
        self.draining = True
        return await self.books.wait_idle(grace_s)
