"""Persistence: a SQLite-backed cache survives a restart; Redis shares entries between processes;
the asynchronous stores the gateway uses apply their writes off the event loop, in order."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from redis_support import redis_server
from wattserve.cache import (
    AsyncRedisStore,
    AsyncSQLiteStore,
    ResponseCache,
    SQLiteStore,
    open_async_store,
    open_store,
)
from wattserve.errors import ConfigError, EngineUnavailable


def test_sqlite_store_keeps_the_cache_across_a_restart(tmp_path):
    path = tmp_path / "cache.sqlite"
    c = ResponseCache("lec", capacity_entries=3, store=SQLiteStore(path))
    c.put("k1", {"text": "one", "tokens": 3}, cost=5.0, size=3)
    c.put("k2", "two", cost=1.0)
    c.put("k3", "three", cost=2.0)
    for _ in range(4):
        c.get("k2")  # k2: 5 requests x 1 = 5
    c.get("k4")
    c.get("k4")
    c.put("k4", "four", cost=3.0)  # 3 requests x 3 = 9: evicts k3 (2)
    assert "k3" not in c
    c.close()

    again = ResponseCache("lec", capacity_entries=3, store=SQLiteStore(path))
    assert len(again) == 3
    assert again.get("k1") == {"text": "one", "tokens": 3}
    assert again.get("k3") is None
    assert again.get("k4") == "four"
    # frequencies came back too: k2 (5 x 1 = 5) now ranks below k4 (3 x 3) and k1 (2 x 5)
    order = again.eviction_order()
    assert order[0] == "k2" and set(order) == {"k1", "k2", "k4"}
    entries = {e.key: e for e in again.entries()}
    assert entries["k2"].frequency == 5 and entries["k4"].frequency == 3
    again.close()


def test_sqlite_store_deletes_evicted_entries_and_rejects_unserialisable_values(tmp_path):
    store = SQLiteStore(tmp_path / "c.db")
    c = ResponseCache("lru", capacity_entries=1, store=store)
    c.put("a", "x")
    c.put("b", "y")
    assert len(store) == 1
    with pytest.raises(ConfigError):
        c.put("c", object())
    assert "c" not in c and len(store) == 0  # "b" was evicted for it, "c" is not kept


def test_open_store_parses_specs(tmp_path):
    assert open_store(None) is None and open_store("memory") is None
    c = ResponseCache("lru", capacity_entries=2, store=f"sqlite:{tmp_path / 'spec.sqlite'}")
    c.put("k", "v")
    c.close()
    assert (
        ResponseCache("lru", capacity_entries=2, store=str(tmp_path / "spec.sqlite")).get("k")
        == "v"
    )
    assert isinstance(open_store(f"sqlite:{tmp_path / 'x.sqlite'}"), SQLiteStore)
    with pytest.raises(ConfigError):
        open_store("ftp://nowhere")
    with pytest.raises(ConfigError):
        open_store(str(tmp_path / "missing" / "x.db"))


@pytest.fixture
def redis_url(tmp_path):
    with redis_server(tmp_path) as url:
        yield url


def test_redis_store_is_shared_and_survives_a_restart(redis_url):
    from wattserve.cache import RedisStore

    one = ResponseCache("gdsf", capacity_entries=10, store=RedisStore(redis_url, prefix="t:"))
    two = ResponseCache("gdsf", capacity_entries=10, store=RedisStore(redis_url, prefix="t:"))
    one.put("q", {"text": "shared"}, cost=2.0, size=6)
    assert two.get("q") == {"text": "shared"}  # another process sees it on its local miss
    other_ns = ResponseCache("gdsf", capacity_entries=10, store=RedisStore(redis_url, prefix="u:"))
    assert other_ns.get("q") is None
    one.close()
    restarted = ResponseCache("gdsf", capacity_entries=10, store=RedisStore(redis_url, prefix="t:"))
    assert len(restarted) == 1 and restarted.get("q") == {"text": "shared"}
    restarted.clear()
    assert (
        ResponseCache("lru", capacity_entries=10, store=RedisStore(redis_url, prefix="t:")).get("q")
        is None
    )


def test_cache_stats_and_clear_commands(tmp_path, capsys):
    import json

    from wattserve.cli import main

    path = tmp_path / "c.sqlite"
    c = ResponseCache("lec", capacity_entries=10, store=SQLiteStore(path))
    c.put("a" * 64, "x", cost=2.0, size=10)
    c.put("b" * 64, "y", cost=5.0, size=20)
    for _ in range(3):
        c.get("b" * 64)
    c.close()

    def run(args):
        code = 0
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code or 0
        return code, capsys.readouterr()

    code, out = run(["cache", "stats", str(path), "--format", "json"])
    s = json.loads(out.out)
    assert code == 0 and s["entries"] == 2 and s["bytes"] == 30 and s["requests"] == 5
    assert s["saved_cost_so_far"] == 15.0 and s["top"][0]["key"] == "b" * 16
    assert run(["cache", "clear", f"sqlite:{path}"])[0] == 0
    assert json.loads(run(["cache", "stats", str(path), "--format", "json"])[1].out)["entries"] == 0
    code, out = run(["cache", "stats", str(tmp_path / "none.sqlite")])
    assert code == 2 and "no cache store" in out.err


# ---------------------------------------------------------------- asynchronous stores
def _rows(path):
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT key, value FROM cache").fetchall())


async def test_async_sqlite_writes_leave_the_caller_and_keep_their_order(tmp_path):
    path = tmp_path / "a.sqlite"
    store = AsyncSQLiteStore(path)
    await store.aopen()
    store.db._lock.acquire()  # the file is busy: a synchronous write would wait here
    try:
        t0 = time.perf_counter()
        for i in range(200):
            store.put(f"k{i}", {"text": "x" * 100, "i": i}, 1.0, 100, 1)
        store.delete("k0")
        store.clear()
        store.put("after", "kept", 2.0, 4, 3)
        store.delete("k1")  # deleting an absent key is harmless
        queued_s = time.perf_counter() - t0
        assert queued_s < 0.5  # nothing waited for the lock
    finally:
        store.db._lock.release()
    await store.aflush()
    assert _rows(path) == {"after": '"kept"'}  # the clear came after the 200 puts
    assert await store.aget("after") == ("kept", 2.0, 4, 3)
    await store.aclose()


async def test_async_sqlite_cache_keeps_its_entries_across_a_restart(tmp_path):
    path = tmp_path / "c.sqlite"
    c = ResponseCache("lfu", capacity_entries=2, store=AsyncSQLiteStore(path))
    await c.aopen()
    c.put("a", {"text": "one"}, cost=1.0, size=3)
    c.put("b", "two", cost=1.0, size=3)
    for _ in range(3):
        assert await c.aget("a") == {"text": "one"}
    with pytest.raises(ConfigError):
        c.put("bad", object())  # refused in the caller, not lost in the writer
    assert "bad" not in c and "a" in c
    c.put("c", "three")  # b, the least frequent, is gone: deleted from the file in order
    with pytest.raises(ConfigError):
        c.close()  # an asynchronous store is closed with aclose
    await c.aclose()
    assert set(_rows(path)) == {"a", "c"}
    again = ResponseCache("lfu", capacity_entries=2, store=AsyncSQLiteStore(path))
    await again.aopen()
    assert again.get("a") == {"text": "one"} and again.get("b") is None
    assert {e.key: e.frequency for e in again.entries()}["a"] == 5  # 1 put + 3 hits + this get
    await again.aclose()


def test_open_async_store_selects_by_kind(tmp_path):
    assert open_async_store("memory") is None
    s = open_async_store("sqlite", path=str(tmp_path / "x.db"))
    assert isinstance(s, AsyncSQLiteStore)
    asyncio.run(s.aclose())
    assert isinstance(open_async_store("redis", url="redis://127.0.0.1:1/0"), AsyncRedisStore)
    for kind, kw in (("sqlite", {}), ("redis", {"url": "http://x"}), ("nosql", {})):
        with pytest.raises(ConfigError):
            open_async_store(kind, **kw)


async def test_async_redis_store_that_cannot_connect_says_so(free_port):
    store = AsyncRedisStore(f"redis://127.0.0.1:{free_port}/0")
    with pytest.raises(EngineUnavailable, match="cannot reach Redis"):
        await store.aopen()


async def test_async_redis_caches_share_entries_and_keep_write_order(redis_url):
    one_store = AsyncRedisStore(redis_url, prefix="a:")
    one = ResponseCache("gdsf", capacity_entries=10, store=one_store)
    two = ResponseCache("gdsf", capacity_entries=10, store=AsyncRedisStore(redis_url, prefix="a:"))
    await one.aopen()
    await two.aopen()
    one.put("q", {"text": "shared"}, cost=2.0, size=6)
    assert two.get("q") is None  # written after the two opened: only a store read finds it
    await one_store.aflush()
    assert await two.aget("q") == {"text": "shared"}  # read from Redis on the local miss
    assert two.get("q") == {"text": "shared"} and two.stats()["hits"] == 2
    assert await two.aget("absent") is None and two.stats()["misses"] == 2
    for i in range(50):
        one_store.put(f"n{i}", i, 1.0, 1, 1)
    one_store.clear()
    one_store.put("last", "x", 1.0, 1, 1)
    await one_store.aflush()
    rows = await one_store.aload_all()
    assert [r[0] for r in rows] == ["last"]
    await one.aclose()
    await two.aclose()
