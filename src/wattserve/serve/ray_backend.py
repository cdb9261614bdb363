"""``wattserve serve --backend ray``: the gateway on a Ray Serve cluster.

Two kinds of Ray Serve deployment make one application:

- ``EngineServer``, one deployment per replica group of the config: each Ray replica hosts
  one engine copy (the embedded engine, llama.cpp, the simulated engine, or a launched /
  remote OpenAI server reached over HTTP from its node), meters its node (``energy.meter``
  or ``ray.engine_meter``: NVML / RAPL / modeled / replay) with the single-process
  gateway's ``EnergyAccountant`` and ends every answer with an ``EngineReport``;
- ``Ingress``: the single-process gateway itself (``Service`` + the ASGI app of
  ``serve/app.py``) behind Ray's HTTP proxy, its replicas being ``RayReplica``s, one per
  engine deployment. Its response cache is whatever ``cache:`` says; with ``store: redis``
  every ingress replica shares it.

``run(cfg, rc)`` starts (or joins) the cluster and deploys the application; ``serve_forever``
is the command's loop. Counters of every engine replica go to Ray's metrics export
(``ray.serve.metrics``): ``wattserve_engine_requests``, ``_output_tokens`` and ``_joules`` by
node, device and deployment, on each node's Ray metrics port.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from wattserve.errors import ConfigError
from wattserve.serve.config import ServeConfig
from wattserve.serve.ray_config import EngineGroup, RayConfig, engine_groups, group_options
from wattserve.serve.ray_replica import EngineReport, RayReplica, adopt_cluster_books
from wattserve.types import Chunk, Request

log = logging.getLogger("wattserve.serve")
INSTALL_HINT = "the ray backend needs Ray Serve: pip install 'wattserve[ray]'"


def require_ray() -> Any:
    """The ``ray`` module, or a ConfigError saying how to install it (one line)."""
    try:
        import ray
        from ray import serve  # noqa: F401 - the extra, not just the core
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


class EngineServer:
    """One engine copy on a Ray replica (the class Ray Serve deploys for each group)."""

    # Ray Serve awaits an async constructor (the engine starts before the replica is ready)
    async def __init__(  # type: ignore[misc]
        self, group: dict[str, Any], meter: str, interval_s: float
    ) -> None:
        import ray
        from ray import serve

        from wattserve.engines.launcher import Launcher
        from wattserve.serve.energy import EnergyAccountant, make_meter

        g = EngineGroup.model_validate(group)
        self.group = g
        self.device = g.spec.device
        self.node = ray.get_runtime_context().get_node_id()
        ctx = serve.get_replica_context()
        rid = getattr(ctx, "replica_id", None)
        self.replica = str(getattr(rid, "unique_id", None) or getattr(ctx, "replica_tag", "?"))
        spec = g.spec.model_copy(update={"copies": 1})
        self.launcher = Launcher("127.0.0.1")
        item = (await self.launcher.launch(g.model, spec))[0]
        if item.engine is not None:
            self.engine = item.engine
        else:
            from wattserve.engines.openai_http import OpenAIHTTPEngine

            self.engine = OpenAIHTTPEngine(item.url or "", model=item.engine_model)
        await self.engine.start()
        m, self.meter_reason = make_meter(meter)
        self.accountant = EnergyAccountant(m, interval_s)
        self.accountant.start()
        self.requests = 0
        self.output_tokens = 0
        self.charged_j = 0.0
        self._counters = _ray_counters()

    async def generate(self, request: Request) -> AsyncIterator[Chunk | EngineReport]:
        """The engine's chunks for ``request``, then its ``EngineReport``."""
        acc = self.accountant
        token = acc.begin(self.device)
        in_tok = out_tok = parts = 0
        ended = False
        try:
            async for ch in self.engine.stream(request):
                parts += 1 if ch.text else 0
                if ch.usage is not None:
                    in_tok, out_tok = ch.usage.input_tokens, ch.usage.output_tokens
                yield ch
            ended = True
        finally:
            joules = acc.end(self.device, token)
            self.requests += 1
            out_tok = out_tok or parts
            self.output_tokens += out_tok
            self.charged_j += joules or 0.0
            self._count(out_tok, joules)
        if ended:
            yield EngineReport(
                joules, acc.source, self.node, self.device, self.replica, in_tok, out_tok
            )

    def _count(self, out_tok: int, joules: float | None) -> None:
        if self._counters is None:
            return
        tags = {"node": self.node, "device": self.device}
        requests, tokens, energy = self._counters
        requests.inc(1, tags)
        if out_tok:
            tokens.inc(out_tok, tags)
        if joules:
            energy.inc(joules, tags)

    async def health(self) -> bool:
        return self.engine.healthy()

    async def totals(self) -> dict[str, Any]:
        """This replica's books: requests, tokens, charged joules and its meter's totals on
        the device (read now), for tests, benchmarks and operators."""
        self.accountant.tick()
        dev = self.accountant.summary().get(self.device, {})
        return {
            "replica": self.replica,
            "node": self.node,
            "device": self.device,
            "source": self.accountant.source,
            "meter": self.meter_reason,
            "requests": self.requests,
            "output_tokens": self.output_tokens,
            "charged_j": self.charged_j,
            "metered_j": dev.get("metered_j", 0.0),
            "idle_j": dev.get("idle_j", 0.0),
        }

    async def __del__(self) -> None:
        await self.accountant.aclose()
        await self.engine.aclose()
        await self.launcher.stop(5.0)


def _ray_counters() -> tuple[Any, Any, Any] | None:
    try:
        from ray.serve import metrics
    except ImportError:  # pragma: no cover
        return None
    keys: Any = ("node", "device")  # Ray Serve adds deployment, replica and application

    def counter(name: str, doc: str) -> Any:
        return metrics.Counter(name, description=doc, tag_keys=keys)

    return (
        counter("wattserve_engine_requests", "requests an engine replica answered"),
        counter("wattserve_engine_output_tokens", "output tokens an engine replica produced"),
        counter("wattserve_engine_joules", "metered joules charged to requests on an engine"),
    )


class Ingress:
    """The gateway pipeline on a Ray replica; its replicas are the engine deployments."""

    async def __init__(  # type: ignore[misc]
        self, config: dict[str, Any], groups: list[dict[str, Any]], handles: list[Any]
    ) -> None:
        from wattserve.serve.service import Service

        cfg = ServeConfig.model_validate(config)
        cfg.energy.meter = "null"  # the engines meter their nodes; the ingress charges that
        replicas = []
        for raw, handle in zip(groups, handles, strict=True):
            g = EngineGroup.model_validate(raw)
            replicas.append(
                RayReplica(
                    g.deployment,
                    g.model,
                    handle,
                    g.engine_model,
                    g.spec.device,
                    g.spec.slots * g.spec.copies,
                )
            )
        self.config = cfg
        self.service = Service(cfg, replicas=replicas)
        await self.service.start()
        adopt_cluster_books(self.service.gateway)

    def __serve_build_asgi_app__(self) -> Any:
        from ray import serve

        from wattserve.serve.app import create_app

        ctx = serve.get_replica_context()
        rid = getattr(ctx, "replica_id", None)
        name = str(getattr(rid, "unique_id", None) or getattr(ctx, "replica_tag", "?"))
        return NamedIngress(create_app(self.config, self.service), name)


class NamedIngress:
    """An ASGI app whose answers name the ingress replica that gave them
    (``x-wattserve-ingress``), the way ``x-wattserve-replica`` names the engine; everything
    else (``.service``, lifespan) is the wrapped app's."""

    def __init__(self, app: Any, name: str) -> None:
        self.app, self.name = app, name.encode()
        self.service = getattr(app, "service", None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def named(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-wattserve-ingress", self.name),
                ]
            await send(message)

        await self.app(scope, receive, named)


def build_app(cfg: ServeConfig, rc: RayConfig) -> Any:
    """The Ray Serve application of ``cfg`` (not yet running)."""
    require_ray()
    from ray import serve

    meter = rc.engine_meter or cfg.energy.meter
    groups, handles = [], []
    for g in engine_groups(cfg):
        opts = group_options(rc, g).options(g.spec.copies, float(g.spec.threads), g.spec.slots)
        dep = serve.deployment(name=g.deployment, **opts)(EngineServer)
        groups.append(g.model_dump(mode="json"))
        handles.append(dep.bind(groups[-1], meter, cfg.energy.interval_s))
    ingress_cls = serve.ingress()(Ingress)
    ongoing = cfg.limits.max_in_flight
    opts = rc.ingress.options(1, 1.0, ongoing)
    ingress = serve.deployment(name="ingress", **opts)(ingress_cls)
    return ingress.bind(cfg.model_dump(mode="json"), groups, handles)


def check_engines(cfg: ServeConfig) -> None:
    """Engine kinds a Ray replica can host: all but ``url`` copies > 1 (one server is one
    server, whatever the replica count)."""
    for m in cfg.models:
        for spec in m.replicas:
            if spec.kind == "url" and spec.copies > 1:
                raise ConfigError(
                    f"model {m.name}: a url replica is one server; copies {spec.copies} would "
                    "send each copy's traffic to it (use copies: 1 or ray.engines num_replicas)"
                )


def start_cluster(cfg: ServeConfig, rc: RayConfig) -> None:
    """Join (``address``) or start a local Ray cluster, then Ray Serve's HTTP proxy on
    ``cfg.host:cfg.port``."""
    ray = require_ray()
    from ray import serve

    if not ray.is_initialized():
        kw: dict[str, Any] = {"namespace": rc.namespace, "log_to_driver": False}
        if rc.address is None:
            kw.update(num_cpus=rc.num_cpus, include_dashboard=False)
        else:
            kw["address"] = rc.address
        try:
            ray.init(**kw)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot start or join the Ray cluster: {exc}") from None
    http: dict[str, Any] = {"host": cfg.host, "port": cfg.port}
    if rc.request_timeout_s is not None:
        http["request_timeout_s"] = rc.request_timeout_s
    serve.start(http_options=http)


def run(cfg: ServeConfig, rc: RayConfig, blocking: bool = False) -> Any:
    """Deploy ``cfg`` on the cluster (started or joined first); returns the ingress handle
    once every deployment is running."""
    check_engines(cfg)
    start_cluster(cfg, rc)
    from ray import serve

    return serve.run(build_app(cfg, rc), name=rc.app_name, route_prefix="/", blocking=blocking)


def shutdown(rc: RayConfig | None = None) -> None:
    """Delete the application and Serve; leave a joined cluster running, stop a local one."""
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        if rc is None or rc.address is None:
            ray.shutdown()


def serve_forever(cfg: ServeConfig, rc: RayConfig) -> None:
    """The command's loop: deploy, then wait for Ctrl-C and shut down."""
    run(cfg, rc)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        shutdown(rc)


def engine_handle(rc: RayConfig, deployment: str) -> Any:
    """A handle to one engine deployment of the running application (``totals()`` etc.)."""
    from ray import serve

    return serve.get_deployment_handle(deployment, app_name=rc.app_name)


def cluster_totals(
    rc: RayConfig, deployment: str, replicas: int, tries: int = 40
) -> dict[str, dict[str, Any]]:
    """``totals()`` of every replica of ``deployment`` (each call reaches one replica, chosen
    by Ray; ``tries`` bounds the calls), from a driver: replica id -> its totals."""
    handle = engine_handle(rc, deployment)
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(tries):
        t = handle.totals.remote().result(timeout_s=30)
        seen[t["replica"]] = t
        if len(seen) >= replicas:
            break
    return seen


__all__ = [
    "INSTALL_HINT",
    "EngineServer",
    "Ingress",
    "build_app",
    "cluster_totals",
    "engine_handle",
    "require_ray",
    "run",
    "serve_forever",
    "shutdown",
]
