"""Cost-aware response cache: policies (LRU, LFU, GDSF, LEC), keys, stores, semantic lookup.

Public API (stable, used by the gateway)::

    from wattserve.cache import ResponseCache, make_key, is_cacheable
    cache = ResponseCache("gdsf", capacity_entries=10_000, store=None)
    key = make_key(tenant, model_group, request)
    value = cache.get(key)            # None on a miss
    cache.put(key, value, cost=joules, size=len(text))
    cache.stats()

On an event loop use an ``AsyncStore`` (``open_async_store``): writes leave the loop, and
``await cache.aopen()`` / ``await cache.aget(key)`` / ``await cache.aclose()`` read and close it.
"""

from wattserve.cache.async_stores import (
    AsyncRedisStore,
    AsyncSQLiteStore,
    AsyncStore,
    open_async_store,
)
from wattserve.cache.keys import canonical_request, is_cacheable, make_key, namespace
from wattserve.cache.policies import GDSF, LEC, LFU, LRU, POLICY_NAMES, Policy, make_policy
from wattserve.cache.response_cache import ResponseCache
from wattserve.cache.stores import RedisStore, SQLiteStore, open_store

__all__ = [
    "ResponseCache",
    "make_key",
    "is_cacheable",
    "canonical_request",
    "namespace",
    "Policy",
    "LRU",
    "LFU",
    "GDSF",
    "LEC",
    "POLICY_NAMES",
    "make_policy",
    "SQLiteStore",
    "RedisStore",
    "open_store",
    "AsyncStore",
    "AsyncSQLiteStore",
    "AsyncRedisStore",
    "open_async_store",
]
