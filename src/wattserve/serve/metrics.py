"""Prometheus metrics of the gateway (prometheus-client, one registry per gateway)."""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from wattserve.serve.energy import METHOD

_LAT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _Live:
    """Gauges read at scrape time: replica health and load, queue depth, cache size."""

    def __init__(self, pool: Any, cache: Any, accountant: Any) -> None:
        self.pool, self.cache, self.accountant = pool, cache, accountant

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        healthy = GaugeMetricFamily("wattserve_replica_healthy", "1 when the replica passes health checks",
                                    labels=["model", "replica"])
        inflight = GaugeMetricFamily("wattserve_replica_outstanding_requests",
                                     "requests in flight on the replica", labels=["model", "replica"])
        failures = GaugeMetricFamily("wattserve_replica_failures", "failures seen on the replica",
                                     labels=["model", "replica"])
        for r in self.pool.replicas:
            healthy.add_metric([r.model, r.name], 1.0 if r.healthy else 0.0)
            inflight.add_metric([r.model, r.name], r.outstanding)
            failures.add_metric([r.model, r.name], r.failures)
        yield healthy
        yield inflight
        yield failures
        q = GaugeMetricFamily("wattserve_queue_depth", "requests in flight in the gateway, all replicas")
        q.add_metric([], self.pool.outstanding())
        yield q
        if self.cache is not None:
            st = self.cache.stats()
            e = GaugeMetricFamily("wattserve_cache_entries", "entries in the response cache")
            e.add_metric([], st["entries"])
            yield e
            b = GaugeMetricFamily("wattserve_cache_bytes", "bytes held by the response cache")
            b.add_metric([], st["bytes"])
            yield b
        if self.accountant is not None and self.accountant.enabled:
            idle = GaugeMetricFamily("wattserve_device_idle_joules",
                                     "metered joules with no request in flight (charged to nobody)",
                                     labels=["device", "source"])
            metered = GaugeMetricFamily("wattserve_device_metered_joules", "joules the meter read per device",
                                        labels=["device", "source"])
            for name, s in self.accountant.summary().items():
                idle.add_metric([name, self.accountant.source], s["idle_j"])
                metered.add_metric([name, self.accountant.source], s["metered_j"])
            yield idle
            yield metered


class GatewayMetrics:
    def __init__(self, energy_source: Callable[[], str] = lambda: "null") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("wattserve_requests", "requests answered, by model, HTTP status and cache outcome",
                                ["model", "status", "cache"], registry=r)
        self.ttft = Histogram("wattserve_ttft_seconds", "time to first token seen by the gateway (cache hits included)",
                              ["model"], buckets=_LAT_BUCKETS, registry=r)
        self.e2e = Histogram("wattserve_e2e_seconds", "end-to-end latency in the gateway",
                             ["model"], buckets=_LAT_BUCKETS, registry=r)
        self.tokens = Counter("wattserve_tokens", "tokens served, by model and kind (prompt/completion)",
                              ["model", "kind"], registry=r)
        self.energy = Counter("wattserve_energy_joules",
                              f"joules attributed to answered requests; method {METHOD}",
                              ["model", "source"], registry=r)
        self.cache_hits = Counter("wattserve_cache_hits", "answers served from the response cache", ["model"], registry=r)
        self.cache_saved = Counter("wattserve_cache_saved_joules",
                                   "joules the cache saved: the stored cost of each answer served from it",
                                   ["model"], registry=r)
        self.retries = Counter("wattserve_retries", "requests retried on another replica before their first byte",
                               ["model"], registry=r)
        self.routed = Counter("wattserve_routed", "multiplexer decisions, by requested group and chosen model",
                              ["group", "model"], registry=r)
        self.energy_source = energy_source
        self._live: _Live | None = None
        self._children: dict[tuple, Any] = {}  # labelled children, looked up once
        self._bundles: dict[tuple, _Bundle] = {}  # (model, status, cache, source) -> its children

    def attach(self, pool: Any, cache: Any, accountant: Any) -> None:
        if self._live is None:
            self._live = _Live(pool, cache, accountant)
            self.registry.register(self._live)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def done(self, model: str, status: int, cache: str, ttft_s: float | None, e2e_s: float,
             input_tokens: int, output_tokens: int, energy_j: float | None, source: str) -> None:
        key = (model, status, cache, source)
        b = self._bundles.get(key)
        if b is None:  # the labelled children of this outcome, looked up once (one dict lookup per request)
            b = self._bundles[key] = _Bundle(self, model, str(status), cache, source)
        b.requests.inc()
        if status < 400:
            if ttft_s is not None:
                (b.ttft or b.get("ttft")).observe(ttft_s)
            (b.e2e or b.get("e2e")).observe(e2e_s)
            if input_tokens:
                (b.prompt or b.get("prompt")).inc(input_tokens)
            if output_tokens:
                (b.completion or b.get("completion")).inc(output_tokens)
            if energy_j:
                (b.energy or b.get("energy")).inc(energy_j)

    def hit(self, model: str, saved_j: float) -> None:
        self._child(self.cache_hits, model).inc()
        if saved_j > 0:
            self._child(self.cache_saved, model).inc(saved_j)


class _Bundle:
    """The labelled children one request outcome touches; each made on first use (a child
    shows in the exposition once made, so none is made before its first observation)."""

    __slots__ = ("m", "labels", "requests", "ttft", "e2e", "prompt", "completion", "energy")

    def __init__(self, m: GatewayMetrics, model: str, status: str, cache: str, source: str) -> None:
        self.m, self.labels = m, (model, source)
        self.requests = m._child(m.requests, model, status, cache)
        self.ttft = self.e2e = self.prompt = self.completion = self.energy = None

    def get(self, name: str) -> Any:
        m, (model, source) = self.m, self.labels
        child = {"ttft": lambda: m._child(m.ttft, model), "e2e": lambda: m._child(m.e2e, model),
                 "prompt": lambda: m._child(m.tokens, model, "prompt"),
                 "completion": lambda: m._child(m.tokens, model, "completion"),
                 "energy": lambda: m._child(m.energy, model, source)}[name]()
        setattr(self, name, child)
        return child
