"""The gateway's assembled parts and their lifecycle: replicas (via the launcher), pool,
cache, router, energy accountant, metrics, API keys and the pipeline."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from wattserve.errors import ConfigError
from wattserve.serve.config import ServeConfig

log = logging.getLogger("wattserve.serve")


def build_cache(config: ServeConfig) -> Any:
    c = config.cache
    if not c.enabled:
        return None
    from wattserve.cache import ResponseCache, open_async_store

    store = open_async_store(c.store or "memory", path=c.path, url=c.url, prefix=c.prefix)
    return ResponseCache(
        c.policy, capacity_entries=c.capacity_entries, capacity_bytes=c.capacity_bytes, store=store
    )


def build_router(config: ServeConfig, fits: dict[str, Any]) -> Any:
    """The multiplexer for ``model="auto"`` / ``router-<name>[-<threshold>]``: a trained
    ``wattserve.route.Router``; every model it picks from must be served here."""
    r = config.router
    if not r.enabled or r.file is None:  # enabled means a file (RouterConfig checks it)
        return None
    from wattserve.route.costs import describe_router, router_with_costs

    router = router_with_costs(r.file, r.cost_source or "training", fits, r.costs)
    served = {m.name for m in config.models}
    missing = [m for m in router.models if m not in served]
    if missing:
        raise ConfigError(
            f"the router picks among {', '.join(router.models)}, but {', '.join(missing)} "
            "is not a served model"
        )
    log.info("%s", describe_router(router))
    return router


def gateway_fits(config: ServeConfig) -> list[Any]:
    """The energy fits of the gateway's ``fits:`` file (empty without one)."""
    if not config.fits:
        return []
    from wattserve.fit import load_fits as read_fits

    p = Path(config.fits)
    try:
        return [f for f in read_fits(p) if f.quantity == "energy_j"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the fits file {p}: {exc}") from None


def load_fits(config: ServeConfig, shared: list[Any] | None = None) -> dict[str, Any]:
    """Each model's energy fit: from ``models[].fit``, a fits file written by ``wattserve fit``
    (the ``energy_j`` fit whose model matches the served name, else the only energy fit), or
    one bare ModelFit JSON object; for a model without one, its fit in the gateway's ``fits:``
    file (``shared``: its energy fits; the fit on the device of the model's first metered
    replica when there is one, else its first)."""
    from wattserve.fit import load_fits as read_fits
    from wattserve.types import ModelFit

    fits = {}
    for m in config.models:
        if not m.fit:
            own = [f for f in shared or () if f.model == m.name]
            devices = [r.device for r in m.replicas if r.metered]
            on = [f for f in own if f.device in devices]
            if on or own:
                fits[m.name] = (on or own)[0]
            continue
        p = Path(m.fit)
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the fit for {m.name} from {p}: {exc}") from None
        if isinstance(doc, dict) and "coefficients" in doc:
            found = [ModelFit.from_dict(doc)]
        else:
            found = [f for f in read_fits(p) if f.quantity == "energy_j"]
        match = [f for f in found if f.model == m.name] or (found if len(found) == 1 else [])
        if not match:
            raise ConfigError(
                f"{p} has no energy_j fit for model {m.name!r} "
                f"(it has: {', '.join(sorted({f.model for f in found})) or 'none'})"
            )
        fits[m.name] = match[0]
    return fits


def process_meter_misses(config: ServeConfig) -> list[str]:
    """Metered replica groups (``model/kind``) outside this process (every kind but
    ``local``) when the meter counts this process only (``modeled:process``): their joules
    would go uncounted."""
    if "modeled:process" not in config.energy.meter.split("+"):
        return []
    return [
        f"{m.name}/{r.kind}"
        for m in config.models
        for r in m.replicas
        if r.metered and r.kind != "local"
    ]


def unmetered_devices(config: ServeConfig) -> set[str]:
    """The devices of replicas declared unmetered; a device both metered and unmetered is an
    error (its joules could not be told apart)."""
    local = {r.device for m in config.models for r in m.replicas if r.metered}
    remote = {r.device for m in config.models for r in m.replicas if not r.metered}
    both = local & remote
    if both:
        raise ConfigError(
            f"device {sorted(both)[0]!r} has both metered and unmetered replicas; "
            "give the unmetered ones their own device name"
        )
    return remote


class Service:
    def __init__(
        self, config: ServeConfig, replicas: list[Any] | None = None, meter: Any = None
    ) -> None:
        self.config = config
        self._given = replicas  # prebuilt Replica objects (tests); else launched from the config
        self._meter = meter  # a meter object (tests: replay, constant power); else energy.meter
        self.request_log: Any = None
        self.launcher: Any = None
        self.pool: Any = None
        self.cache: Any = None
        self.accountant: Any = None
        self.gateway: Any = None
        self.router: Any = None
        self.meter_reason = ""
        self.cache_cost_source = "metered"  # what the cache's entry costs are (cache_cost_source)
        self.started = False
        from wattserve.serve.metrics import GatewayMetrics

        self.metrics = GatewayMetrics()

    async def _replicas(self) -> list[Any]:
        from wattserve.engines.launcher import Launcher
        from wattserve.serve.replica import EngineReplica, HttpReplica

        self.launcher = Launcher(self.config.host if self.config.host != "0.0.0.0" else "127.0.0.1")
        out: list[Any] = []
        for m in self.config.models:
            for spec in m.replicas:
                for item in await self.launcher.launch(m.name, spec):
                    if item.engine is not None:
                        out.append(
                            EngineReplica(
                                item.name,
                                m.name,
                                item.engine,
                                item.engine_model,
                                item.device,
                                item.slots,
                            )
                        )
                    else:
                        out.append(
                            HttpReplica(
                                item.name,
                                m.name,
                                item.url,
                                item.engine_model,
                                item.device,
                                item.slots,
                            )
                        )
        return out

    async def start(self) -> None:
        from wattserve.route.costs import RecomputeCost, fitted_joules
        from wattserve.serve.auth import ApiKeys
        from wattserve.serve.energy import EnergyAccountant, FittedEnergy, make_meter
        from wattserve.serve.health import HealthChecker
        from wattserve.serve.pipeline import Gateway
        from wattserve.serve.pool import ReplicaPool, make_balancer

        cfg = self.config
        keys = ApiKeys.load(cfg.auth.keys_file, cfg.auth.keys_env, cfg.auth.required)
        shared = gateway_fits(cfg)
        fits = load_fits(cfg, shared)
        unmetered = unmetered_devices(cfg)
        per_token = {
            m.name: m.energy_per_token_j for m in cfg.models if m.energy_per_token_j is not None
        }
        joules = fitted_joules(fits, per_token)  # (model, in, out tokens) -> J, or None
        self.cache_cost_source = cache_cost_source(cfg, fits)
        self.router = router = build_router(cfg, fits)
        self.cache = build_cache(cfg)
        if self.cache is not None:
            await self.cache.aopen()  # connects and loads its store
        if self._meter is not None:
            meter, self.meter_reason = self._meter, f"given meter ({type(self._meter).__name__})"
        else:
            meter, self.meter_reason = make_meter(cfg.energy.meter)
        if unmetered:
            self.meter_reason += f"; fitted joules on {', '.join(sorted(unmetered))}"
        others = process_meter_misses(cfg)
        if others:
            log.warning(
                "energy.meter %s counts this process's CPU time only: replicas %s run in "
                "processes of their own and their work is not metered (use modeled or rapl)",
                cfg.energy.meter,
                ", ".join(others),
            )
        self.accountant = EnergyAccountant(
            meter, cfg.energy.interval_s, unmetered=unmetered, fitted=FittedEnergy(shared, fits)
        )
        if cfg.request_log:
            from wattserve.serve.request_log import RequestLog

            try:
                self.request_log = RequestLog(cfg.request_log)
            except OSError as exc:
                raise ConfigError(f"cannot open request_log {cfg.request_log}: {exc}") from None
        try:
            replicas = self._given if self._given is not None else await self._replicas()
            health = HealthChecker.from_config(replicas, cfg.health)
            self.pool = ReplicaPool(
                replicas, make_balancer(cfg.balancer, lambda r, i, o: joules(r.model, i, o)), health
            )
            await self.pool.start()
        except BaseException:
            await self.stop()
            raise
        self.accountant.start()
        self.metrics.attach(self.pool, self.cache, self.accountant)
        self.gateway = Gateway(
            self.pool,
            cache=self.cache,
            router=router,
            accountant=self.accountant,
            metrics=self.metrics,
            keys=keys if keys.keys or keys.required else None,  # None: every tenant "default"
            default_max_tokens=cfg.default_max_tokens,
            max_tokens_limit=cfg.max_tokens_limit,
            first_token_s=cfg.timeouts.first_token_s,
            total_s=cfg.timeouts.total_s,
            connect_s=cfg.timeouts.connect_s,
            log_content=cfg.log_content,
            cost_estimate=joules,
            recompute_cost=RecomputeCost(joules, router),
        )
        self.gateway.books.request_log = self.request_log
        self.started = True
        log.info(
            "gateway ready: %d replica(s) of %s; energy: %s",
            len(self.pool.replicas),
            ", ".join(self.pool.models),
            self.meter_reason,
        )

    async def stop(self) -> None:
        """Drain in-flight requests (up to ``grace_s``), stop replicas, flush the cache store."""
        if self.gateway is not None:
            left = await self.gateway.drain(self.config.grace_s)
            if left:
                log.warning(
                    "%d request(s) still in flight after the %g s grace period",
                    left,
                    self.config.grace_s,
                )
        if self.pool is not None:
            await self.pool.aclose()
        if self.launcher is not None:
            await self.launcher.stop(self.config.grace_s)
        if self.accountant is not None:
            await self.accountant.aclose()
        if self.cache is not None:
            await self.cache.aclose()
        if self.request_log is not None:
            self.request_log.close()
        self.started = False

    def stats(self) -> dict[str, Any]:
        per_model: dict[str, dict[str, float]] = {}
        for (model, _status, cache), n in self.metrics.requests_by_outcome().items():
            d = per_model.setdefault(model, {"requests": 0, "hits": 0})
            d["requests"] += n
            if cache == "hit":
                d["hits"] += n
        saved, charged = self.metrics.saved_j(), self.metrics.charged_j()
        cache_doc: dict[str, Any] | None = None
        if self.cache is not None:
            # saved_cost: the entry costs the cache ranks by, summed over its hits (joules
            # from fits where a model has one, else metered); energy.saved_j: the joules the
            # hit answers were charged when first computed (energy.source)
            cache_doc = {**self.cache.stats(), "saved_cost_unit": "J"}
            cache_doc["cost_source"] = self.cache_cost_source
        return {
            "models": per_model,
            "cache": cache_doc,
            "energy": {
                "charged_j": charged,
                "saved_j": saved,
                "source": self.accountant.source if self.accountant else "null",
                "meter": self.meter_reason,
                "method": self.accountant.method if self.accountant else "",
                "devices": self.accountant.summary() if self.accountant else {},
                "fitted": self.accountant.fitted_summary() if self.accountant else {},
            },
            "replicas": [r.describe() for r in self.pool.replicas] if self.pool else [],
            "router": _router_stats(self.router),
        }


def cache_cost_source(config: ServeConfig, fits: dict[str, Any]) -> str:
    """What a cache entry's cost is: ``fitted`` when every model has a fit or an
    ``energy_per_token_j`` (the fitted joules of answering again; for ``auto`` /
    ``router-*`` those of the model the router would pick), ``metered`` when none has (the
    joules the answer was charged), ``fitted+metered`` when some have."""
    priced = [m.name in fits or m.energy_per_token_j is not None for m in config.models]
    return "fitted" if all(priced) else "fitted+metered" if any(priced) else "metered"


def _router_stats(router: Any) -> dict[str, Any] | None:
    """The router's rule and where its costs come from (``cost_source``), for ``/stats``."""
    if router is None:
        return None
    d = router.describe_costs()
    return {
        "name": router.name,
        "models": list(router.models),
        "objective": router.objective,
        "threshold": router.threshold,
        "cost_source": d["source"],
        "costs": d["costs"],
    }
