"""Persistent stores for code on an event loop (the gateway): writes never block the loop.

``put``, ``delete`` and ``clear`` only queue the write (a few microseconds: the value is
serialised to JSON at once, so a later change to it is not stored and a value that cannot be
stored fails in the caller); the queue is applied in order, in batches, off the loop. Reads
and the lifecycle are awaited: ``aopen`` (connect), ``aget``, ``aload_all``, ``aflush``
(until every queued write is applied) and ``aclose`` (flush, then close).

- ``AsyncSQLiteStore``: a ``SQLiteStore`` with one writer thread (each batch is one
  transaction); reads run in ``asyncio.to_thread``.
- ``AsyncRedisStore``: ``redis.asyncio``; one writer task sends each batch as one pipeline.
  ``shared = True``: several gateways over one Redis see each other's entries.

A write that cannot be queued (``max_queue`` writes already waiting) or that the backend
refuses is dropped and logged: an entry that is missing costs a recomputation, never a
wrong answer. A Redis read that fails is a miss.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from wattserve.cache.stores import Record, Row, SQLiteStore, WriteOp, _dumps
from wattserve.errors import ConfigError, EngineUnavailable

log = logging.getLogger("wattserve.cache")
_BATCH = 512  # writes applied together (one transaction, one pipeline)


@runtime_checkable
class AsyncStore(Protocol):
    """A store used from an event loop: queued writes, awaited reads (see the module doc)."""

    shared: bool

    async def aopen(self) -> None: ...
    async def aget(self, key: str) -> Record | None: ...
    async def aload_all(self) -> list[Row]: ...
    def put(self, key: str, value: Any, cost: float, size: int, frequency: int) -> None: ...
    def delete(self, key: str) -> None: ...
    def clear(self) -> None: ...
    async def aflush(self) -> None: ...
    async def aclose(self) -> None: ...


def _text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # what orjson refuses (e.g. integers beyond 64 bits): the stdlib's rules
        return _dumps(value)


class _Dropped:
    """Counts writes that were dropped and logs the first and then every 1000th."""

    def __init__(self, name: str) -> None:
        self.name, self.n = name, 0

    def __call__(self, why: str) -> None:
        self.n += 1
        if self.n == 1 or self.n % 1000 == 0:
            log.warning("%s: cache write dropped (%s); %d so far", self.name, why, self.n)


class AsyncSQLiteStore:
    """A SQLite file written by one writer thread; safe to use from one event loop."""

    shared = False

    def __init__(self, path: str | Path, max_queue: int = 65536) -> None:
        self.db = SQLiteStore(path)  # opens now: a bad path is a config error at build time
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()  # C-fast put; bound checked below
        self._max_queue = max_queue
        self.dropped = _Dropped(f"sqlite store {self.db.path}")
        self._thread = threading.Thread(target=self._run, name="wattserve-sqlite", daemon=True)
        self._thread.start()

    async def aopen(self) -> None:
        """Nothing to connect: the file was opened and the writer started on construction."""

    def _queue(self, op: WriteOp) -> None:
        if self._q.qsize() >= self._max_queue:
            self.dropped("queue full")
        else:
            self._q.put(op)

    def put(self, key: str, value: Any, cost: float, size: int, frequency: int) -> None:
        self._queue(("put", key, _text(value), float(cost), int(size), int(frequency)))

    def delete(self, key: str) -> None:
        self._queue(("delete", key))

    def clear(self) -> None:
        self._queue(("clear",))

    async def aget(self, key: str) -> Record | None:
        return await asyncio.to_thread(self.db.get, key)

    async def aload_all(self) -> list[Row]:
        return await asyncio.to_thread(lambda: list(self.db.load_all()))

    async def aflush(self) -> None:
        if not self._thread.is_alive():
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._q.put(("barrier", done))  # past the bound: a barrier is never dropped
        await asyncio.wrap_future(done)

    async def aclose(self) -> None:
        if self._thread.is_alive():
            self._q.put(("stop",))
            await asyncio.to_thread(self._thread.join)
        self.db.close()

    def _run(self) -> None:
        while True:
            ops = [self._q.get()]
            while len(ops) < _BATCH:
                try:
                    ops.append(self._q.get_nowait())
                except queue.Empty:
                    break
            writes = [op for op in ops if op[0] in ("put", "delete", "clear")]
            if writes:
                try:
                    self.db.write_many(writes)
                except Exception as exc:  # noqa: BLE001 - a lost write is a later miss
                    for _ in writes:
                        self.dropped(f"{type(exc).__name__}: {exc}")
            for op in ops:
                if op[0] == "barrier":
                    op[1].set_result(None)
            if any(op[0] == "stop" for op in ops):
                return


class AsyncRedisStore:
    """Entries as Redis hashes under ``prefix`` (the layout of ``RedisStore``), over
    ``redis.asyncio``; shared by every gateway that uses the same server and prefix."""

    shared = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "wattserve:cache:",
        max_queue: int = 65536,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401 - fail at build time when the package is missing
        except ImportError as exc:
            raise EngineUnavailable(
                "the redis store needs the 'redis' package: pip install 'wattserve[redis]'"
            ) from exc
        self.url, self.prefix, self._max_queue = url, prefix, max_queue
        self._r: Any = None
        self._q: asyncio.Queue[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self.dropped = _Dropped(f"redis store {url}")

    def _k(self, key: str) -> str:
        return self.prefix + key

    async def aopen(self) -> None:
        """Connect and start the writer (on the running loop, which must be the one using it)."""
        if self._r is not None:
            return
        import redis
        import redis.asyncio as aredis

        client = aredis.Redis.from_url(self.url, decode_responses=True)
        try:
            await client.ping()
        except (redis.RedisError, OSError) as exc:
            await client.aclose()
            raise EngineUnavailable(f"cannot reach Redis at {self.url}: {exc}") from None
        self._r = client
        self._q = asyncio.Queue(self._max_queue)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="wattserve-redis")

    def _queue(self, op: WriteOp) -> None:
        if self._q is None:
            raise ConfigError("the redis store is not open: await aopen() first")
        try:
            self._q.put_nowait(op)
        except asyncio.QueueFull:
            self.dropped("queue full")

    def put(self, key: str, value: Any, cost: float, size: int, frequency: int) -> None:
        self._queue(("put", key, _text(value), float(cost), int(size), int(frequency)))

    def delete(self, key: str) -> None:
        self._queue(("delete", key))

    def clear(self) -> None:
        self._queue(("clear",))

    async def aget(self, key: str) -> Record | None:
        import redis

        try:
            h = await self._r.hgetall(self._k(key))
        except (redis.RedisError, OSError) as exc:
            log.warning("redis store %s: read failed, served as a miss: %s", self.url, exc)
            return None
        return _record(h)

    async def aload_all(self) -> list[Row]:
        n, rows = len(self.prefix), []
        keys = [k async for k in self._r.scan_iter(match=self.prefix + "*", count=1000)]
        for i in range(0, len(keys), _BATCH):
            pipe = self._r.pipeline(transaction=False)
            for k in keys[i : i + _BATCH]:
                pipe.hgetall(k)
            for k, h in zip(keys[i : i + _BATCH], await pipe.execute(), strict=True):
                rec = _record(h)
                if rec is not None:
                    rows.append((k[n:], *rec))
        return rows

    async def aflush(self) -> None:
        if self._q is None or self._task is None or self._task.done():
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._q.put(("barrier", done))  # waits for room, never drops
        await done

    async def aclose(self) -> None:
        if self._r is None:
            return
        await self.aflush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._r.aclose()
        self._r = self._q = self._task = None

    async def _run(self) -> None:
        assert self._q is not None
        q = self._q
        while True:
            ops = [await q.get()]
            while len(ops) < _BATCH and not q.empty():
                ops.append(q.get_nowait())
            try:
                await self._apply(ops)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a lost write is a later miss
                for op in ops:
                    if op[0] != "barrier":
                        self.dropped(f"{type(exc).__name__}: {exc}")
            for op in ops:
                if op[0] == "barrier" and not op[1].done():
                    op[1].set_result(None)

    async def _apply(self, ops: list[Any]) -> None:
        pipe = self._r.pipeline(transaction=False)
        queued = 0
        for op in ops:
            if op[0] == "put":
                _, key, text, cost, size, freq = op
                mapping = {"value": text, "cost": repr(cost), "size": size, "frequency": freq}
                pipe.hset(self._k(key), mapping=mapping)
                queued += 1
            elif op[0] == "delete":
                pipe.delete(self._k(op[1]))
                queued += 1
            elif op[0] == "clear":  # what was queued before the clear goes first
                if queued:
                    await pipe.execute()
                    pipe, queued = self._r.pipeline(transaction=False), 0
                keys = [k async for k in self._r.scan_iter(match=self.prefix + "*", count=1000)]
                for i in range(0, len(keys), 500):
                    await self._r.delete(*keys[i : i + 500])
        if queued:
            await pipe.execute()


def _record(h: dict[str, str] | None) -> Record | None:
    if not h:
        return None
    try:
        return orjson.loads(h["value"]), float(h["cost"]), int(h["size"]), int(h["frequency"])
    except (KeyError, ValueError):  # a foreign or half-written hash under the prefix
        return None


def open_async_store(
    kind: str,
    path: str | None = None,
    url: str | None = None,
    prefix: str = "wattserve:cache:",
) -> AsyncStore | None:
    """``memory`` -> no store; ``sqlite`` -> ``AsyncSQLiteStore(path)``; ``redis`` ->
    ``AsyncRedisStore(url, prefix)`` (connects on ``aopen``)."""
    if kind == "memory":
        return None
    if kind == "sqlite":
        if not path:
            raise ConfigError("the sqlite cache store needs a path")
        return AsyncSQLiteStore(path)
    if kind == "redis":
        if not url or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"the redis cache store needs a URL redis://HOST:PORT/DB, not {url!r}"
            )
        return AsyncRedisStore(url, prefix)
    raise ConfigError(f"unknown cache store {kind!r}: use memory, sqlite or redis")
