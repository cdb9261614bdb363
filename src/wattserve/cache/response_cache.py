"""``ResponseCache``: a cost-aware response cache whose eviction order is a policy's priority.

The index is a binary heap with lazy updates: a hit only rewrites the entry's fields;
because priorities never fall on a hit (frequency, time and GDSF's inflation only rise),
the stale, lower heap key stays a lower bound and is refreshed when it reaches the top.
A priority that does fall (e.g. a cost estimate that dropped) pushes a fresh heap key.
So ``get`` is O(1) and ``put`` is O(log n) amortised, with no per-op allocation on hits.

Admission: a new entry competes with the cached ones (the paper's rule, Zhu et al.
2306.02003): when the cache is full and the newcomer's priority is below every cached
entry's, it is refused (``admission=True``, the default). ``admission=False`` always
admits (classic cache behaviour). Frequencies of keys that missed are remembered
(bounded), and so are evicted keys' counts, so a popular key returns with its count.

With a ``store`` (SQLite file, Redis, see ``wattserve.cache.stores``) every admitted entry
is written through and every eviction deleted, and the cache reloads the store on start,
so a restart keeps its contents; a shared store (Redis) is also read on a local miss.

On an event loop, give an ``AsyncStore`` (``wattserve.cache.async_stores``): its writes are
queued and applied off the loop, so ``put`` stays synchronous and cheap; ``await aopen()``
loads the store, ``await aget(key)`` reads a shared store on a local miss without blocking,
and ``await aclose()`` flushes it. Synchronous stores keep the synchronous API (the CLI, the
simulator); ``aget``/``aclose`` work with them too.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import Any

from wattserve.cache.async_stores import AsyncStore
from wattserve.cache.policies import Node, Policy, make_policy
from wattserve.cache.stores import Record, Row, Store
from wattserve.errors import ConfigError
from wattserve.types import CacheEntry


class ResponseCache:
    """Cache of responses keyed by ``make_key(...)`` strings (any hashable key works).

    ``policy``: ``"lru" | "lfu" | "gdsf" | "lec"`` or a ``Policy`` object.
    ``capacity_entries`` / ``capacity_bytes``: limits (either, both, or neither = unbounded).
    ``store``: a store object or a spec string (``sqlite:PATH``, ``redis://HOST:PORT/DB``);
    an ``AsyncStore`` is loaded by ``await aopen()``, a synchronous one at once.
    """

    def __init__(
        self,
        policy: str | Policy = "gdsf",
        capacity_entries: int | None = None,
        capacity_bytes: int | None = None,
        store: Store | AsyncStore | str | None = None,
        admission: bool = True,
        history_limit: int | None = None,
    ) -> None:
        if capacity_entries is not None and capacity_entries < 1:
            raise ConfigError("capacity_entries must be at least 1")
        if capacity_bytes is not None and capacity_bytes < 1:
            raise ConfigError("capacity_bytes must be at least 1")
        self.policy = make_policy(policy)
        self.capacity_entries = capacity_entries
        self.capacity_bytes = capacity_bytes
        self.admission = admission
        if isinstance(store, str):  # a spec: "sqlite:PATH", "PATH.sqlite", "redis://..."
            from wattserve.cache.stores import open_store

            self.store: Store | AsyncStore | None = open_store(store)
        else:
            self.store = store
        self._async: AsyncStore | None = None
        self._sync: Store | None = None
        if isinstance(self.store, AsyncStore):
            self._async = self.store
        else:
            self._sync = self.store
        self._prio = self.policy.priority
        self._on_evict = self.policy.on_evict
        self._shared = bool(self._sync is not None and self._sync.shared)
        self._ashared = bool(self._async is not None and self._async.shared)
        # GDSF's newcomer always outranks the evicted minimum (H = L + f*c/s >= L), so
        # admission is moot there; its priority is recomputed after L rises.
        self._inflates = bool(getattr(self.policy, "inflates", False))
        self._admission = admission and not self._inflates
        self._lazy = bool(getattr(self.policy, "lazy", False))
        # the online GDSF priority is inlined in ``get`` (its hot path)
        self._gdsf: Any = (
            self.policy
            if getattr(self.policy, "priority", None) == getattr(self.policy, "_online_priority", 0)
            and self._inflates
            else None
        )
        self._entries_only = capacity_entries is not None and capacity_bytes is None
        self._cap_entries = capacity_entries or 0  # the fast path's bound (entries only)
        self._nodes: dict[Any, Node] = {}
        # heap entries (priority, last access, key): (priority, last access) is unique per
        # entry (every operation ticks the clock), so keys are compared only between
        # duplicates of one entry
        self._heap: list[tuple[float, int, Any]] = []
        self._history: dict[Any, int] = {}
        self._history_limit = history_limit or max(1024, 2 * (capacity_entries or 65536))
        self._clock = 0
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.rejections = 0
        self.saved_cost = 0.0
        if self._sync is not None:
            self._load_rows(self._sync.load_all())

    # ------------------------------------------------------------------ public API
    async def aopen(self) -> None:
        """Connect an ``AsyncStore`` and load its entries (nothing to do for other stores)."""
        if self._async is not None:
            await self._async.aopen()
            self._load_rows(await self._async.aload_all())

    async def aget(self, key: Any) -> Any:
        """``get`` for code on an event loop: a shared ``AsyncStore`` is read on a local miss
        without blocking the loop."""
        if self._ashared and key not in self._nodes:
            assert self._async is not None
            rec = await self._async.aget(key)
            if rec is not None and key not in self._nodes:  # not put while we waited
                self._adopt_record(key, rec)
        return self.get(key)

    async def aclose(self) -> None:
        """``close`` for code on an event loop: frequencies written, queued writes applied."""
        if self._async is None:
            self.close()
            return
        for i, node in enumerate(list(self._nodes.values())):
            self._write(node)
            if i % 4096 == 4095:  # let the queue drain rather than overflow
                await self._async.aflush()
        await self._async.aclose()

    def get(self, key: Any) -> Any:
        """The cached value or ``None``; counts a hit or a miss."""
        self._clock = clock = self._clock + 1
        node = self._nodes.get(key)
        if node is None:
            if self._shared:
                node = self._adopt(key)
            if node is None:
                self.misses += 1
                h = self._history
                h[key] = h.get(key, 0) + 1
                if len(h) > self._history_limit:
                    h.clear()  # coarse ageing keeps the history bounded
                return None
        self.hits += 1
        node.frequency += 1
        node.last_access = clock
        self.saved_cost += node.cost
        if self._lazy:  # priority evaluated when the entry reaches the heap top
            return node.value
        gdsf = self._gdsf
        if gdsf is not None:  # inlined GDSF: H = L + f * c / s
            p = gdsf.inflation + node.frequency * node.cost / (node.size or 1)
        else:
            p = self._prio(node)
        if p < node.prio:  # rare: a falling priority needs a fresh heap key
            heapq.heappush(self._heap, (p, clock, key))
            if len(self._heap) > 2 * len(self._nodes) + 1024:
                self._compact()
        node.prio = p
        return node.value

    def put(self, key: Any, value: Any, cost: float = 1.0, size: int = 1) -> bool:
        """Store ``value`` (recompute ``cost``, ``size`` bytes or units); False if refused."""
        if size < 0 or cost < 0:
            raise ConfigError("cache cost and size must be non-negative")
        self._clock += 1
        nodes = self._nodes
        old = nodes.get(key)
        if old is not None:  # refresh in place
            self.bytes += size - old.size
            old.value, old.cost, old.size = value, cost, size
            old.last_access = self._clock
            self._reprioritise(old)
            self._write(old)
            self._shrink(None)
            return key in nodes
        node = Node(key, value, cost, size, self._history.pop(key, 0) or 1, self._clock)
        node.prio = p = self._prio(node)
        if self._entries_only:  # fast path: one eviction at most, inlined
            if len(nodes) >= self._cap_entries:
                heap = self._heap
                lazy, prio_fn = self._lazy, self._prio
                while True:
                    prio, last, k = heap[0]
                    victim = nodes.get(k)
                    if victim is None:
                        heapq.heappop(heap)
                        continue
                    if lazy:
                        victim.prio = prio_fn(victim)
                    if victim.prio != prio or victim.last_access != last:
                        heapq.heapreplace(heap, (victim.prio, victim.last_access, k))
                    else:
                        break
                if self._admission and (p, node.last_access) < (prio, last):
                    self._refuse(node)
                    return False
                del nodes[k]
                self._history[k] = victim.frequency  # a returning key keeps its count
                self.bytes -= victim.size
                self.evictions += 1
                if self.store is not None:
                    self.store.delete(k)
                if self._inflates:  # GDSF: L rises; the newcomer's H uses the raised L
                    self._on_evict(prio)
                    node.prio = p = self._prio(node)
                nodes[key] = node
                self.bytes += size
                # the victim is the heap top: replace it in one sift instead of pop + push
                heapq.heapreplace(heap, (p, node.last_access, key))
            else:
                nodes[key] = node
                self.bytes += size
                heapq.heappush(self._heap, (p, node.last_access, key))
            if self.store is not None:
                self._write(node)
            return True
        if self.capacity_bytes is not None and size > self.capacity_bytes:
            self._refuse(node)
            return False
        if not self._shrink(node):
            self._refuse(node)
            return False
        nodes[key] = node
        self.bytes += size
        heapq.heappush(self._heap, (node.prio, node.last_access, key))
        if len(self._heap) > 2 * len(nodes) + 1024:
            self._compact()
        self._write(node)
        return True

    def delete(self, key: Any) -> bool:
        node = self._nodes.pop(key, None)
        if node is None:
            return False
        self.bytes -= node.size
        if self.store is not None:
            self.store.delete(key)
        if len(self._heap) > 2 * len(self._nodes) + 1024:
            self._compact()
        return True

    def clear(self) -> None:
        self._nodes.clear()
        self._heap.clear()
        self._history.clear()
        self.bytes = 0
        if self.store is not None:
            self.store.clear()

    def stats(self) -> dict[str, Any]:
        total = self.hits + self.misses
        return {
            "policy": self.policy.describe(),
            "entries": len(self._nodes),
            "bytes": self.bytes,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / total if total else 0.0,
            "evictions": self.evictions,
            "rejections": self.rejections,
            "saved_cost": self.saved_cost,
            "capacity_entries": self.capacity_entries,
            "capacity_bytes": self.capacity_bytes,
        }

    def entries(self) -> Iterator[CacheEntry]:
        """Snapshots of the cached entries (frozen ``CacheEntry``), lowest priority first."""
        if self._lazy:
            for node in self._nodes.values():
                node.prio = self._prio(node)
        for node in sorted(self._nodes.values(), key=lambda n: (n.prio, n.last_access)):
            yield CacheEntry(
                node.key,
                node.value,
                node.cost,
                node.size,
                node.frequency,
                float(node.last_access),
                float(node.inserted),
            )

    def eviction_order(self) -> list[Any]:
        """Keys in the order they would be evicted now (for inspection and tests)."""
        return [e.key for e in self.entries()]

    def flush(self) -> None:
        """Write current frequencies to the store (done on ``close``)."""
        if self.store is not None:
            for node in list(self._nodes.values()):
                self._write(node)

    def close(self) -> None:
        if self._async is not None:
            raise ConfigError("this cache has an asynchronous store: use 'await aclose()'")
        if self._sync is not None:
            self.flush()
            self._sync.close()

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, key: Any) -> bool:
        return key in self._nodes

    # ------------------------------------------------------------------ internals
    def _over(self, extra_entries: int, extra_bytes: int) -> bool:
        if (
            self.capacity_entries is not None
            and len(self._nodes) + extra_entries > self.capacity_entries
        ):
            return True
        return self.capacity_bytes is not None and self.bytes + extra_bytes > self.capacity_bytes

    def _shrink(self, newcomer: Node | None) -> bool:
        """Evict until ``newcomer`` fits; False when the newcomer itself ranks lowest."""
        extra_n, extra_b = (1, newcomer.size) if newcomer is not None else (0, 0)
        while self._over(extra_n, extra_b):
            victim = self._peek_min()
            if victim is None:
                return False
            if (
                newcomer is not None
                and self._admission
                and (newcomer.prio, newcomer.last_access) < (victim.prio, victim.last_access)
            ):
                return False
            heapq.heappop(self._heap)
            del self._nodes[victim.key]
            self._history[victim.key] = victim.frequency  # a returning key keeps its count
            self.bytes -= victim.size
            self.evictions += 1
            self._on_evict(victim.prio)
            if self.store is not None:
                self.store.delete(victim.key)
            if newcomer is not None and self._inflates:
                newcomer.prio = self._prio(newcomer)
        return True

    def _peek_min(self) -> Node | None:
        heap, nodes = self._heap, self._nodes
        while heap:
            prio, last, key = heap[0]
            node = nodes.get(key)
            if node is None:
                heapq.heappop(heap)
                continue
            if self._lazy:
                node.prio = self._prio(node)
            if node.prio != prio or node.last_access != last:
                heapq.heapreplace(heap, (node.prio, node.last_access, key))
            else:
                return node
        return None

    def _reprioritise(self, node: Node) -> None:
        p = self._prio(node)
        if p < node.prio:
            heapq.heappush(self._heap, (p, node.last_access, node.key))
        node.prio = p

    def _refuse(self, node: Node) -> None:
        self.rejections += 1
        self.policy.on_evict(node.prio)
        self._history[node.key] = node.frequency

    def _compact(self) -> None:
        self._heap = [(n.prio, n.last_access, k) for k, n in self._nodes.items()]
        heapq.heapify(self._heap)

    def _write(self, node: Node) -> None:
        if self.store is not None:
            try:
                self.store.put(node.key, node.value, node.cost, node.size, node.frequency)
            except ConfigError:  # a value the store cannot hold is not kept in memory either
                self.delete(node.key)
                raise

    def _adopt(self, key: Any) -> Node | None:
        assert self._sync is not None
        rec = self._sync.get(key)
        if rec is None:
            return None
        return self._adopt_record(key, rec)

    def _adopt_record(self, key: Any, rec: Record) -> Node | None:
        value, cost, size, freq = rec
        node = Node(key, value, cost, size, freq, self._clock)
        node.prio = self._prio(node)
        if not self._shrink(node):
            return None
        self._nodes[key] = node
        self.bytes += size
        heapq.heappush(self._heap, (node.prio, node.last_access, key))
        return node

    def _load_rows(self, rows: Iterable[Row]) -> None:
        for key, value, cost, size, freq in rows:
            self._clock += 1
            node = Node(key, value, cost, size, freq, self._clock)
            node.prio = self._prio(node)
            if not self._shrink(node):
                if self.store is not None:
                    self.store.delete(key)
                continue
            self._nodes[key] = node
            self.bytes += size
            heapq.heappush(self._heap, (node.prio, node.last_access, key))
