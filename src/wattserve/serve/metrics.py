"""Prometheus metrics of the gateway (prometheus-client, one registry per gateway).

The per-request series (requests, TTFT, TPOT, ITL and end-to-end histograms, tokens, joules,
cache hits and saved joules) are counted in plain dicts and exposed through a collector at
scrape time: prometheus-client's ``Counter``/``Histogram`` children take a lock and several
calls per update, about ten updates per request, which was a few percent of the gateway's CPU per
request (py-spy). The gateway updates them from its one event-loop thread only; scrapes run
on the same loop. Rare series (retries, router decisions) stay prometheus-client counters.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from wattserve.serve.energy import METHOD

_LAT_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)


class _Live:
    """Gauges read at scrape time: replica health and load, queue depth, cache size."""

    def __init__(self, pool: Any, cache: Any, accountant: Any) -> None:
        self.pool, self.cache, self.accountant = pool, cache, accountant

    def collect(self):
        healthy = GaugeMetricFamily(
            "wattserve_replica_healthy",
            "1 when the replica passes health checks",
            labels=["model", "replica"],
        )
        inflight = GaugeMetricFamily(
            "wattserve_replica_outstanding_requests",
            "requests in flight on the replica",
            labels=["model", "replica"],
        )
        failures = GaugeMetricFamily(
            "wattserve_replica_failures",
            "failures seen on the replica",
            labels=["model", "replica"],
        )
        state = GaugeMetricFamily(
            "wattserve_replica_state",
            "1 for the replica's breaker state: closed (serving), degraded (failing, kept as "
            "its model's last), open (ejected), half_open (on trial)",
            labels=["model", "replica", "state"],
        )
        ejections = CounterMetricFamily(
            "wattserve_replica_ejections",
            "times the replica was taken out by its breaker",
            labels=["model", "replica"],
        )
        for r in self.pool.replicas:
            healthy.add_metric([r.model, r.name], 1.0 if r.healthy else 0.0)
            inflight.add_metric([r.model, r.name], r.outstanding)
            failures.add_metric([r.model, r.name], r.failures)
            now = r.breaker.describe()
            for s in ("closed", "degraded", "open", "half_open"):
                state.add_metric([r.model, r.name, s], 1.0 if s == now else 0.0)
            ejections.add_metric([r.model, r.name], r.breaker.opens)
        yield healthy
        yield inflight
        yield failures
        yield state
        yield ejections
        q = GaugeMetricFamily(
            "wattserve_queue_depth", "requests in flight in the gateway, all replicas"
        )
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
            idle = GaugeMetricFamily(
                "wattserve_device_idle_joules",
                "metered joules with no request in flight (charged to nobody)",
                labels=["device", "source"],
            )
            metered = GaugeMetricFamily(
                "wattserve_device_metered_joules",
                "joules the meter read per device",
                labels=["device", "source"],
            )
            for name, s in self.accountant.summary().items():
                idle.add_metric([name, self.accountant.source], s["idle_j"])
                metered.add_metric([name, self.accountant.source], s["metered_j"])
            yield idle
            yield metered


class _Hist:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(_LAT_BUCKETS) + 1)  # per bucket (not cumulative); the last is +Inf
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect_left(_LAT_BUCKETS, v)] += 1
        self.sum += v

    def exposition(self) -> tuple[list[tuple[str, int]], float]:
        """(cumulative count per bucket bound, sum of observations)."""
        out: list[tuple[str, int]] = []
        acc = 0
        for bound, n in zip(
            (*(str(float(b)) for b in _LAT_BUCKETS), "+Inf"), self.counts, strict=True
        ):
            acc += n
            out.append((bound, acc))
        return out, self.sum


class _Outcome:
    """The series one (model, status, cache, source) outcome updates, found with one lookup."""

    __slots__ = ("key", "n", "ttft", "e2e", "tok", "energy")

    def __init__(self, m: GatewayMetrics, model: str, status: str, cache: str, source: str) -> None:
        self.key = (model, status, cache)
        self.n = 0
        self.ttft = m._ttft.setdefault(model, _Hist())
        self.e2e = m._e2e.setdefault(model, _Hist())
        self.tok = m._tokens.setdefault(model, [0, 0])  # prompt, completion
        self.energy = (model, source)


class _Hot:
    """Collector of the per-request series (counted by ``GatewayMetrics``)."""

    def __init__(self, m: GatewayMetrics) -> None:
        self.m = m

    def collect(self):
        m = self.m
        req = CounterMetricFamily(
            "wattserve_requests",
            "requests answered, by model, HTTP status and cache outcome",
            labels=["model", "status", "cache"],
        )
        for key, n in m.requests_by_outcome().items():
            req.add_metric(list(key), n)
        yield req
        for name, doc, hists in (
            (
                "wattserve_ttft_seconds",
                "time to first token seen by the gateway (cache hits included)",
                m._ttft,
            ),
            ("wattserve_e2e_seconds", "end-to-end latency in the gateway", m._e2e),
            (
                "wattserve_tpot_seconds",
                "time per output token after the first, per request: (e2e - ttft) / (tokens - 1)",
                m._tpot,
            ),
            (
                "wattserve_itl_seconds",
                "gaps between consecutive content arrivals from the replica, over all requests",
                m._itl,
            ),
        ):
            h = HistogramMetricFamily(name, doc, labels=["model"])
            for model, hist in hists.items():
                if any(hist.counts):  # a model with only failed requests has no latency yet
                    buckets, total = hist.exposition()
                    h.add_metric([model], buckets, total)
            yield h
        tok = CounterMetricFamily(
            "wattserve_tokens",
            "tokens served, by model and kind (prompt/completion)",
            labels=["model", "kind"],
        )
        for model, (p, c) in m._tokens.items():
            tok.add_metric([model, "prompt"], p)
            tok.add_metric([model, "completion"], c)
        yield tok
        est = CounterMetricFamily(
            "wattserve_tokens_estimated",
            "of wattserve_tokens, those estimated from the request's text (the server sent no "
            "usage, e.g. llama.cpp streams)",
            labels=["model", "kind"],
        )
        for model, n in m._prompt_estimated.items():
            est.add_metric([model, "prompt"], n)
        yield est
        e = CounterMetricFamily(
            "wattserve_energy_joules",
            f"joules attributed to answered requests; method {METHOD}",
            labels=["model", "source"],
        )
        for (model, source), j in m._energy.items():
            e.add_metric([model, source], j)
        yield e
        hits = CounterMetricFamily(
            "wattserve_cache_hits", "answers served from the response cache", labels=["model"]
        )
        saved = CounterMetricFamily(
            "wattserve_cache_saved_joules",
            "joules the cache saved: the stored cost of each answer served from it",
            labels=["model"],
        )
        for model, (count, joules) in m._hits.items():
            hits.add_metric([model], count)
            saved.add_metric([model], joules)
        yield hits
        yield saved


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.retries = Counter(
            "wattserve_retries",
            "requests retried on another replica before their first byte",
            ["model"],
            registry=r,
        )
        self.routed = Counter(
            "wattserve_routed",
            "multiplexer decisions, by requested group and chosen model",
            ["group", "model"],
            registry=r,
        )
        self._outcomes: dict[tuple, _Outcome] = {}
        self._ttft: dict[str, _Hist] = {}
        self._e2e: dict[str, _Hist] = {}
        self._tpot: dict[str, _Hist] = {}
        self._itl: dict[str, _Hist] = {}
        self._prompt_estimated: dict[str, int] = {}
        self._tokens: dict[str, list[int]] = {}
        self._energy: dict[tuple[str, str], float] = {}
        self._hits: dict[str, list[float]] = {}  # model -> [hits, saved joules]
        self._live: _Live | None = None
        self.registry.register(_Hot(self))

    def attach(self, pool: Any, cache: Any, accountant: Any) -> None:
        if self._live is None:
            self._live = _Live(pool, cache, accountant)
            self.registry.register(self._live)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def done(
        self,
        model: str,
        status: int,
        cache: str,
        ttft_s: float | None,
        e2e_s: float,
        input_tokens: int,
        output_tokens: int,
        energy_j: float | None,
        source: str,
    ) -> None:
        key = (model, status, cache, source)
        o = self._outcomes.get(key)
        if o is None:
            o = self._outcomes[key] = _Outcome(self, model, str(status), cache, source)
        o.n += 1
        if status < 400:
            if ttft_s is not None:
                o.ttft.observe(ttft_s)
            o.e2e.observe(e2e_s)
            tok = o.tok
            tok[0] += input_tokens
            tok[1] += output_tokens
            if energy_j:
                self._energy[o.energy] = self._energy.get(o.energy, 0.0) + energy_j

    def timing(
        self,
        model: str,
        tpot_s: float | None,
        itl_s: list[float],
        estimated_prompt_tokens: int = 0,
    ) -> None:
        """A whole answer's TPOT (None: fewer than two tokens), its content arrival gaps and
        the prompt tokens estimated for it (counted in ``done`` already)."""
        if tpot_s is not None:
            h = self._tpot.get(model)
            if h is None:
                h = self._tpot[model] = _Hist()
            h.observe(tpot_s)
        if itl_s:
            h = self._itl.get(model)
            if h is None:
                h = self._itl[model] = _Hist()
            for gap in itl_s:
                h.observe(gap)
        if estimated_prompt_tokens:
            est = self._prompt_estimated
            est[model] = est.get(model, 0) + estimated_prompt_tokens

    def hit(self, model: str, saved_j: float) -> None:
        h = self._hits.get(model)
        if h is None:
            h = self._hits[model] = [0, 0.0]
        h[0] += 1
        if saved_j > 0:
            h[1] += saved_j

    # ------------------------------------------------------------------ totals for /stats
    def requests_by_outcome(self) -> dict[tuple[str, str, str], int]:
        out: dict[tuple[str, str, str], int] = {}
        for o in self._outcomes.values():
            out[o.key] = out.get(o.key, 0) + o.n
        return out

    def charged_j(self) -> float:
        return sum(self._energy.values())

    def saved_j(self) -> float:
        return sum(j for _, j in self._hits.values())
