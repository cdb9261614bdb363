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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from wattserve.errors import ConfigError

POLICY_NAMES = ("lru", "lfu", "gdsf", "lec")

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


class Policy:
    """Base class: subclasses define ``priority``. ``on_evict`` is told each evicted priority."""

    name = "base"
    #: True when the priority depends only on the entry's own fields (frequency, last
    #: access, cost, size, key): the cache then skips it on hits and evaluates it when the
    #: entry reaches the top of the heap, which gives the same order
    lazy = False

    def priority(self, entry: Any) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_evict(self, priority: float) -> None:
        """Called with the priority of every entry evicted or refused admission."""

    def describe(self) -> str:
        return self.name


class LRU(Policy):
    name = "lru"
    lazy = True

    def priority(self, entry: Any) -> float:
        return float(entry.last_access)


class LFU(Policy):
    name = "lfu"
    lazy = True

    def __init__(self, frequency: FrequencyArg = None) -> None:
        self._freq = _freq_getter(frequency)
        self.offline = self._freq is not None

    def priority(self, entry: Any) -> float:
        if self._freq is not None:
            return float(self._freq(entry.key))
        return float(entry.frequency)

    def describe(self) -> str:
        return "lfu-offline" if self.offline else "lfu"


class GDSF(Policy):
    """``L + frequency * cost / size``; ``L`` rises to each evicted entry's priority."""

    name = "gdsf"
    inflates = True

    def __init__(self, frequency: FrequencyArg = None, recompute_cost: CostFn = None) -> None:
        self._freq = _freq_getter(frequency)
        self._cost = recompute_cost
        self.offline = self._freq is not None
        self.inflation = 0.0
        if self._freq is None and self._cost is None:
            self.priority = self._online_priority  # type: ignore[method-assign]  # hot path

    def _online_priority(self, entry: Any) -> float:
        return self.inflation + entry.frequency * entry.cost / (entry.size or 1)

    def priority(self, entry: Any) -> float:
        f = float(self._freq(entry.key)) if self._freq is not None else entry.frequency
        c = self._cost(entry) if self._cost is not None else entry.cost
        return self.inflation + f * c / (entry.size or 1)

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
        return entry.frequency * entry.cost

    def priority(self, entry: Any) -> float:
        f = float(self._freq(entry.key)) if self._freq is not None else entry.frequency
        c = self._cost(entry) if self._cost is not None else entry.cost
        return f * c

    def describe(self) -> str:
        return "lec-offline" if self.offline else "lec"


def make_policy(name: str | Policy, **kwargs: Any) -> Policy:
    """A policy by name (``lru``, ``lfu``, ``gdsf``, ``lec``); a ``Policy`` passes through.

    Keyword arguments (``frequency``, ``recompute_cost``) go to the policy; a fresh
    object is returned each call because GDSF keeps per-cache state.
    """
    if isinstance(name, Policy):
        return name
    key = str(name).strip().lower()
    classes = {"lru": LRU, "lfu": LFU, "gdsf": GDSF, "lec": LEC}
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
    return cls(frequency=kwargs.get("frequency"), recompute_cost=kwargs.get("recompute_cost"))
