"""Replay a request trace as the gateway serves it, costed by fits.

Each request of the trace (``wattserve.sim.request_trace``) goes through the gateway's
steps with the gateway's objects: a cacheable request is looked up in a ``ResponseCache``
under the gateway's key (tenant, model group, canonical request); on a miss the model is
the one named, or the trained router's pick for ``auto`` / ``router-<name>[-<threshold>]``;
the answer costs that model's fitted joules at the request's token counts, and is stored
with the router's expected cost (``RoutedCost``: the same figure for a routed request, the
fitted joules for a named model), which LEC ranks by frequency x cost and GDSF by
frequency x cost / size. The total is the joules of the answers computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from wattserve.cache import ResponseCache
from wattserve.cache.keys import is_cacheable, make_key
from wattserve.errors import ConfigError
from wattserve.route.costs import RoutedCost
from wattserve.route.router import JoulesFn, Router, parse_route_model
from wattserve.sim.request_trace import TracedRequest


@dataclass
class FittedRun:
    """The outcome of one replay (one cache policy)."""

    policy: str
    requests: int = 0
    hits: int = 0
    misses: int = 0
    uncached: int = 0  # requests the gateway does not cache (sampled)
    total_j: float = 0.0  # fitted joules of the answers computed
    saved_j: float = 0.0  # the stored cost of the answers served from the cache
    answers: dict[str, int] = field(default_factory=dict)  # answers computed per model
    routed: int = 0  # requests whose model the router chose
    traced_j: float | None = None  # the trace's metered joules (rows that carry them)
    traced_hits: int = 0  # rows the served run answered from its cache

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FittedReplay:
    """Replays traces with one router (optional) and one joules function.

    ``route_all``: every request goes through the router, whatever its ``model`` field
    (for traces of a benchmark run against one model)."""

    def __init__(
        self, joules: JoulesFn, router: Router | None = None, route_all: bool = False
    ) -> None:
        if route_all and router is None:
            raise ConfigError("routing every request needs a router")
        self.joules = joules
        self.router = router
        self.route_all = route_all
        self.cost = RoutedCost(joules)

    def run(
        self,
        trace: Sequence[TracedRequest],
        policy: str = "lec",
        capacity_entries: int | None = None,
        capacity_bytes: int | None = None,
    ) -> FittedRun:
        cache = ResponseCache(
            policy, capacity_entries=capacity_entries, capacity_bytes=capacity_bytes
        )
        scores = self._scores(trace)
        out = FittedRun(policy=cache.policy.describe())
        traced = [t.energy_j for t in trace if t.energy_j is not None]
        out.traced_j = float(sum(traced)) if traced else None
        for t in trace:
            out.requests += 1
            out.traced_hits += int(t.cache_hit)
            req = t.request
            key = None
            if is_cacheable(req):
                key = make_key(req.tenant, t.group, req)
                if cache.get(key) is not None:
                    out.hits += 1
                    continue
                out.misses += 1
            else:
                out.uncached += 1
            router = self._router_for(t.group, req.id)
            if router is not None:
                model, joules = self.cost.choice(
                    router, req, t.input_tokens, t.output_tokens, scores.get(req.text())
                )
                out.routed += 1
            else:
                model = t.group
                joules = self.joules(model, t.input_tokens, t.output_tokens)
            if joules is None:
                raise ConfigError(f"no energy fit for model {model!r} (request {req.id})")
            out.total_j += joules
            out.answers[model] = out.answers.get(model, 0) + 1
            if key is not None:
                cache.put(key, {"model": model, "energy_j": joules}, cost=joules, size=t.size)
        out.saved_j = float(cache.saved_cost)
        return out

    def _router_for(self, group: str, rid: str) -> Router | None:
        """The router (at the threshold the model field names) for a group; None: a model."""
        r = self.router
        if r is None:
            if group == "auto" or group.startswith("router-"):
                raise ConfigError(f"request {rid} asks for {group!r}: replaying it needs a router")
            return None
        if self.route_all or group == "auto":
            return r
        if group in r.models:
            return None
        parsed = parse_route_model(group)
        if parsed is None:
            raise ConfigError(
                f"request {rid} asks for model {group!r}, which the router does not pick "
                f"from ({', '.join(r.models)}); replay with every request routed instead"
            )
        name, threshold = parsed
        if name != r.name:
            raise ConfigError(
                f"request {rid} names routing policy {name!r}; the router is {r.name!r}"
            )
        if threshold is None:
            return r
        return r.with_threshold(threshold)

    def _scores(self, trace: Sequence[TracedRequest]) -> Mapping[str, Mapping[str, float]]:
        """Predicted quality per distinct routed text, scored in one batch."""
        if self.router is None:
            return {}
        texts = sorted({t.request.text() for t in trace})
        if not texts:
            return {}
        q = self.router.quality(texts)
        models = self.router.models
        return {x: {m: float(q[i, j]) for j, m in enumerate(models)} for i, x in enumerate(texts)}


def energy_fits(fits: Sequence[Any], device: str | None = None) -> dict[str, Any]:
    """Model -> its ``energy_j`` fit (on ``device`` when given; one device per model)."""
    out: dict[str, Any] = {}
    for f in fits:
        if f.quantity != "energy_j" or (device is not None and f.device != device):
            continue
        if f.model in out:
            raise ConfigError(
                f"several energy fits for model {f.model!r} "
                f"({out[f.model].device}, {f.device}): name the device"
            )
        out[f.model] = f
    if not out:
        raise ConfigError(
            "no energy_j fits" + (f" on device {device!r}" if device is not None else "")
        )
    return out
