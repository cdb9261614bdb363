"""Balancers: pick one replica (an index into the candidates) for a request.

Each follows ``wattserve.protocols.Balancer``: ``pick(request, replicas) -> int``; the pool
passes only healthy candidates. Replicas expose ``outstanding`` (requests in flight) and
``slots`` (requests served concurrently without queueing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wattserve.errors import ConfigError
from wattserve.types import Request


class RoundRobin:
    name = "round_robin"

    def __init__(self) -> None:
        self._n = 0

    def pick(self, request: Request, replicas: Sequence[Any]) -> int:
        self._n += 1
        return self._n % len(replicas)


class LeastOutstanding:
    """Fewest requests in flight; ties go round-robin so equal replicas share the load."""

    name = "least_outstanding"

    def __init__(self) -> None:
        self._n = 0

    def pick(self, request: Request, replicas: Sequence[Any]) -> int:
        self._n += 1
        k = len(replicas)
        best, best_load = 0, None
        for j in range(k):
            i = (self._n + j) % k
            load = replicas[i].outstanding
            if best_load is None or load < best_load:
                best, best_load = i, load
        return best


def estimate_input_tokens(request: Request) -> int:
    """Known prompt length, else about four characters per token."""
    if request.input_tokens:
        return request.input_tokens
    return max(1, len(request.text()) // 4)


class EnergyAware:
    """Lowest predicted joules for this request on each replica, given its load.

    ``energy_j(replica, input_tokens, output_tokens)`` is the replica's fitted energy for the
    request served alone (``wattserve.fit.predict`` on its model's fit). Load enters as
    queueing: while a replica has fewer requests in flight than ``slots`` a new one joins
    the batch at the fitted cost; beyond that it waits, and the device draws power while it
    waits, so the prediction grows with ``(outstanding + 1) / slots``. Ties (equal
    predictions, e.g. identical replicas below their slots) go to the least loaded.
    """

    name = "energy_aware"

    def __init__(self, energy_j: Callable[[Any, int, int], float | None]) -> None:
        self.energy_j = energy_j
        self._n = 0

    def predict(self, request: Request, replica: Any) -> float:
        base = self.energy_j(replica, estimate_input_tokens(request), request.max_tokens)
        if base is None:
            base = 1.0
        return base * max(1.0, (replica.outstanding + 1) / replica.slots)

    def pick(self, request: Request, replicas: Sequence[Any]) -> int:
        self._n += 1
        k = len(replicas)
        best, best_key = 0, None
        for j in range(k):
            i = (self._n + j) % k
            key = (self.predict(request, replicas[i]), replicas[i].outstanding)
            if best_key is None or key < best_key:
                best, best_key = i, key
        return best


def make_balancer(
    name: str, energy_j: Callable[[Any, int, int], float | None] | None = None
) -> Any:
    if name == "round_robin":
        return RoundRobin()
    if name == "least_outstanding":
        return LeastOutstanding()
    if name == "energy_aware":
        return EnergyAware(energy_j or (lambda replica, i, o: None))
    raise ConfigError(
        f"unknown balancer {name!r}; choose round_robin, least_outstanding or energy_aware"
    )


def fit_energy_fn(
    fits: Mapping[str, Any], per_token_j: Mapping[str, float]
) -> Callable[[Any, int, int], float | None]:
    """Predicted joules of one request on a replica from its model's fit (or a J/token estimate)."""

    def energy_j(replica: Any, input_tokens: int, output_tokens: int) -> float | None:
        fit = fits.get(replica.model)
        if fit is not None:
            from wattserve.fit import predict

            return max(0.0, float(predict(fit, input_tokens, output_tokens, warn=False)))
        j = per_token_j.get(replica.model)
        return None if j is None else j * (input_tokens + output_tokens)

    return energy_j
