"""Eviction policies as priority functions: the entry with the lowest priority is evicted.

Each policy is one small object with ``priority(entry) -> float`` (the shape of
``wattserve.protocols.EvictionPolicy``); it works on the cache's mutable ``Node`` and on
the frozen ``wattserve.types.CacheEntry`` alike (same field names). Ties are broken by
``last_access`` (the least recently used of equal priority goes first).

- ``lru``:  last access time.
- ``lfu``:  request frequency (online: counted; offline: a known frequency per key).
- ``gdsf``: Greedy-Dual-Size-with-Frequency, ``L + frequency * cost / size``; the
  inflation value ``L`` is raised to the priority of every evicted (or refused) entry.
- ``lec``:  Least Expected Cost (Zhu et al., arXiv 2306.02003): expected cost saved by
  keeping the entry = frequency x the cost of recomputing it with the model the
  multiplexer would choose (``recompute_cost(entry)``; by default the cost stored with it).

The gateway and ``wattserve simulate --router`` store that routed cost with each entry at
put time (``put(key, value, cost=...)``, ``wattserve.route.costs.RoutedCost``: the fitted
joules of the model the router would pick for the request's token counts), so online LEC
ranks by ``frequency x routed cost`` and GDSF by ``frequency x routed cost / size``.

Offline variants take ``frequency=`` (a mapping or a callable key -> known frequency) and,
for LEC/GDSF, ``recompute_cost=``; online variants use the counts the cache keeps.
Priorities must not decrease between accesses for the cache's lazy heap to stay exact;
all four policies satisfy this for fixed costs (the cache handles decreases too).

One definition serves every engine: ``score`` is the priority of each policy by its
``code`` and ``estimate_cost`` the online cost estimate by its ``cost_kind``; the policy
classes below, ``ResponseCache`` through them, the numpy lane simulator and the compiled
(numba) kernel of ``wattserve.sim`` all call these two functions, so a new policy is a new
code here (``PolicySpec`` hands a policy's code and parameters to the kernels).

- ``lec-lcb``: LEC whose online cost is the lower confidence bound of Zhu et al.'s online
  algorithm, ``max(mean - sqrt(N / n), floor)`` over the ``n`` costs observed for the key
  (``N``: ``lcb_scale``, the number of distinct queries in the paper; ``floor``: the least
  possible cost, 1 there; ``floor`` before any observation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from wattserve.errors import ConfigError

POLICY_NAMES = ("lru", "lfu", "gdsf", "lec", "lec-lcb")

LRU_CODE, LFU_CODE, GDSF_CODE, LEC_CODE = 0, 1, 2, 3
MEAN_COST, LCB_COST = 0, 1  # online cost estimates: observed mean, lower confidence bound


def score(code: int, last_access: Any, frequency: Any, cost: Any, size: Any, inflation: Any) -> Any:
    """The priority of policy ``code`` (lowest evicted); scalars or numpy arrays alike.

    The compiled simulator kernel compiles this very function, so keep it to arithmetic."""
    if code == LRU_CODE:
        return last_access * 1.0
    if code == LFU_CODE:
        return frequency * 1.0
    if code == GDSF_CODE:
        return inflation + frequency * cost / size
    return frequency * cost


def estimate_cost(kind: int, total: Any, count: Any, scale: Any, floor: Any) -> Any:
    """Online recompute-cost estimate from the ``count`` costs observed (summing ``total``):
    their mean, or (``LCB_COST``) ``max(mean - sqrt(scale / count), floor)``; ``floor``
    before any observation. Scalars or numpy arrays; compiled by the simulator kernel too."""
    n = np.maximum(count, 1)
    mean = total / n
    if kind == LCB_COST:
        return np.maximum(mean - np.sqrt(scale / n), floor)
    return mean


FrequencyArg = Mapping[Any, float] | Callable[[Any], float] | None
CostFn = Callable[[Any], float] | None


class Node:
    """The cache's mutable per-entry record (hot path); fields match ``CacheEntry``."""

    __slots__ = ("key", "value", "cost", "size", "frequency", "last_access", "inserted", "prio")

    def __init__(
        self, key: Any, value: Any, cost: float, size: int, frequency: int, now: int
    ) -> None:
        self.key = key
        self.value = value
        self.cost = cost
        self.size = size
        self.frequency = frequency
        self.last_access = now
        self.inserted = now
        self.prio = 0.0


def _freq_getter(frequency: FrequencyArg) -> Callable[[Any], float] | None:
    if frequency is None:
        return None
    if callable(frequency):
        return frequency
    table = dict(frequency)
    return lambda key: float(table.get(key, 0.0))


class PolicySpec(NamedTuple):
    """What a simulator kernel needs of a policy: ``score``'s code, ``estimate_cost``'s
    kind and parameters, whether a newcomer ranking lowest is refused, offline or not."""

    code: int
    cost_kind: int
    lcb_scale: float
    lcb_floor: float
    refuses: bool
    offline: bool


class Policy:
    """Base class: subclasses define ``priority``. ``on_evict`` is told each evicted priority."""

    name = "base"
    code = LEC_CODE
    #: how ``estimate`` turns observed costs into the entry's cost (simulators, replays)
    cost_kind = MEAN_COST
    lcb_scale = 1.0
    lcb_floor = 1.0
    #: True when the priority depends only on the entry's own fields (frequency, last
    #: access, cost, size, key): the cache then skips it on hits and evaluates it when the
    #: entry reaches the top of the heap, which gives the same order
    lazy = False

    def priority(self, entry: Any) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_evict(self, priority: float) -> None:
        """Called with the priority of every entry evicted or refused admission."""

    def estimate(self, total: float, count: int) -> float:
        """The cost to store with an entry whose ``count`` observed costs sum to ``total``."""
        return float(estimate_cost(self.cost_kind, total, count, self.lcb_scale, self.lcb_floor))

    @property
    def spec(self) -> PolicySpec:
        """Code and parameters, for the simulator kernels."""
        return PolicySpec(
            self.code,
            self.cost_kind,
            float(self.lcb_scale),
            float(self.lcb_floor),
            not getattr(self, "inflates", False),
            bool(getattr(self, "offline", False)),
        )

    def describe(self) -> str:
        return self.name


class LRU(Policy):
    name = "lru"
    code = LRU_CODE
    lazy = True

    def priority(self, entry: Any) -> float:
        return float(score(LRU_CODE, entry.last_access, 0.0, 0.0, 1.0, 0.0))


class LFU(Policy):
    name = "lfu"
    code = LFU_CODE
    lazy = True

    def __init__(self, frequency: FrequencyArg = None) -> None:
        self._freq = _freq_getter(frequency)
        self.offline = self._freq is not None

    def priority(self, entry: Any) -> float:
        f = float(self._freq(entry.key)) if self._freq is not None else entry.frequency
        return float(score(LFU_CODE, entry.last_access, f, 0.0, 1.0, 0.0))

    def describe(self) -> str:
        return "lfu-offline" if self.offline else "lfu"


class GDSF(Policy):
    """``L + frequency * cost / size``; ``L`` rises to each evicted entry's priority."""

    name = "gdsf"
    code = GDSF_CODE
    inflates = True

    def __init__(self, frequency: FrequencyArg = None, recompute_cost: CostFn = None) -> None:
        self._freq = _freq_getter(frequency)
        self._cost = recompute_cost
        self.offline = self._freq is not None
        self.inflation = 0.0
        if self._freq is None and self._cost is None:
            self.priority = self._online_priority  # type: ignore[method-assign]  # hot path

    def _online_priority(self, entry: Any) -> float:
        return score(GDSF_CODE, 0, entry.frequency, entry.cost, entry.size or 1, self.inflation)

    def priority(self, entry: Any) -> float:
        f = float(self._freq(entry.key)) if self._freq is not None else entry.frequency
        c = self._cost(entry) if self._cost is not None else entry.cost
        return score(GDSF_CODE, 0, f, c, entry.size or 1, self.inflation)

    def on_evict(self, priority: float) -> None:
        if priority > self.inflation:
            self.inflation = priority

    def describe(self) -> str:
        return "gdsf-offline" if self.offline else "gdsf"


class LEC(Policy):
    """Least Expected Cost: ``frequency * recompute_cost(entry)``.

    ``recompute_cost`` is where the multiplexer enters offline: the expected cost of
    answering the entry's request again with the model the router would choose; without it
    the cost stored with the entry is used (online, the router's expected cost at put time,
    ``Router.expected_cost``).
    """

    name = "lec"
    code = LEC_CODE

    def __init__(self, frequency: FrequencyArg = None, recompute_cost: CostFn = None) -> None:
        self._freq = _freq_getter(frequency)
        self._cost = recompute_cost
        self.offline = self._freq is not None
        # without a recompute_cost callback the priority depends only on the entry's own
        # fields, so the cache may evaluate it lazily (at eviction time) and skip it on hits
        self.lazy = recompute_cost is None
        if self._freq is None and self._cost is None:
            self.priority = self._online_priority  # type: ignore[method-assign]  # hot path

    @staticmethod
    def _online_priority(entry: Any) -> float:
        return score(LEC_CODE, 0, entry.frequency, entry.cost, 1.0, 0.0)

    def priority(self, entry: Any) -> float:
        f = float(self._freq(entry.key)) if self._freq is not None else entry.frequency
        c = self._cost(entry) if self._cost is not None else entry.cost
        return score(LEC_CODE, 0, f, c, 1.0, 0.0)

    def describe(self) -> str:
        return f"{self.name}-offline" if self.offline else self.name


class LECLCB(LEC):
    """LEC with Zhu et al.'s online cost estimate, the lower confidence bound
    ``max(mean - sqrt(lcb_scale / n), lcb_floor)`` (``estimate``); the priority is LEC's."""

    name = "lec-lcb"
    cost_kind = LCB_COST

    def __init__(
        self,
        frequency: FrequencyArg = None,
        recompute_cost: CostFn = None,
        lcb_scale: float = 1.0,
        lcb_floor: float = 1.0,
    ) -> None:
        super().__init__(frequency=frequency, recompute_cost=recompute_cost)
        if lcb_scale < 0:
            raise ConfigError("lcb_scale must be non-negative")
        self.lcb_scale = float(lcb_scale)
        self.lcb_floor = float(lcb_floor)


def make_policy(name: str | Policy, **kwargs: Any) -> Policy:
    """A policy by name (``lru``, ``lfu``, ``gdsf``, ``lec``, ``lec-lcb``); a ``Policy``
    passes through.

    Keyword arguments (``frequency``, ``recompute_cost``; ``lcb_scale``, ``lcb_floor`` for
    ``lec-lcb``) go to the policy; a fresh
    object is returned each call because GDSF keeps per-cache state.
    """
    if isinstance(name, Policy):
        return name
    key = str(name).strip().lower()
    classes = {"lru": LRU, "lfu": LFU, "gdsf": GDSF, "lec": LEC, "lec-lcb": LECLCB}
    if key not in classes:
        raise ConfigError(f"unknown cache policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
    cls = classes[key]
    if cls is LRU:
        if kwargs.get("frequency") is not None or kwargs.get("recompute_cost") is not None:
            raise ConfigError("the lru policy takes no frequency or cost")
        return LRU()
    if cls is LFU:
        if kwargs.get("recompute_cost") is not None:
            raise ConfigError("the lfu policy takes no recompute_cost")
        return LFU(frequency=kwargs.get("frequency"))
    if cls is LECLCB:
        return LECLCB(
            frequency=kwargs.get("frequency"),
            recompute_cost=kwargs.get("recompute_cost"),
            lcb_scale=float(kwargs.get("lcb_scale", 1.0)),
            lcb_floor=float(kwargs.get("lcb_floor", 1.0)),
        )
    return cls(frequency=kwargs.get("frequency"), recompute_cost=kwargs.get("recompute_cost"))
