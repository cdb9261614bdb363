"""Persistent stores behind ``ResponseCache``: a SQLite file and Redis, one interface.

A store keeps ``key -> (value, cost, size, frequency)``; values must be JSON-serialisable
(text, dicts of a completion). The cache writes admitted entries through, deletes evicted
ones, and reloads everything on start, so a restart keeps the cache. ``shared = True``
(Redis) makes the cache also look in the store on a local miss, for several gateway
processes over one Redis. Each process still keeps its own eviction index.

These stores are synchronous (the CLI, the simulator, scripts). Code on an event loop (the
gateway) uses ``wattserve.cache.async_stores``, which applies writes off the loop.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from wattserve.errors import ConfigError, EngineUnavailable

Record = tuple[Any, float, int, int]  # value, cost, size, frequency
Row = tuple[str, Any, float, int, int]  # key, value, cost, size, frequency
# a queued write: ("put", key, json_text, cost, size, frequency) | ("delete", key) | ("clear",)
WriteOp = tuple[Any, ...]

_UPSERT = (
    "INSERT INTO cache (key, value, cost, size, frequency, seq) VALUES (?,?,?,?,?,?)"
    " ON CONFLICT(key) DO UPDATE SET value=excluded.value, cost=excluded.cost,"
    " size=excluded.size, frequency=excluded.frequency"
)


class Store(Protocol):
    shared: bool

    def get(self, key: str) -> Record | None: ...
    def put(self, key: str, value: Any, cost: float, size: int, frequency: int) -> None: ...
    def delete(self, key: str) -> None: ...
    def load_all(self) -> Iterator[tuple[str, Any, float, int, int]]: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"cache values in a persistent store must be JSON-serialisable: {exc}"
        ) from exc


class SQLiteStore:
    """A single SQLite file (WAL mode); safe across threads of one process."""

    shared = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise ConfigError(f"cache store folder does not exist: {self.path.parent}")
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
                " cost REAL NOT NULL, size INTEGER NOT NULL, frequency INTEGER NOT NULL,"
                " seq INTEGER NOT NULL)"
            )
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cannot open cache store {self.path}: {exc}") from exc
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM cache").fetchone()
        self._seq = int(row[0])

    def get(self, key: str) -> Record | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value, cost, size, frequency FROM cache WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return json.loads(row[0]), float(row[1]), int(row[2]), int(row[3])

    def put(self, key: str, value: Any, cost: float, size: int, frequency: int) -> None:
        text = _dumps(value)
        with self._lock:
            self._seq += 1
            self._db.execute(
                _UPSERT, (key, text, float(cost), int(size), int(frequency), self._seq)
            )

    def delete(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM cache WHERE key = ?", (key,))

    def write_many(self, ops: Iterable[WriteOp]) -> None:
        """Apply queued writes in order in one transaction: ``("put", key, json_text, cost,
        size, frequency)``, ``("delete", key)``, ``("clear",)``."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for op in ops:
                    if op[0] == "put":
                        _, key, text, cost, size, freq = op
                        self._seq += 1
                        self._db.execute(_UPSERT, (key, text, cost, size, freq, self._seq))
                    elif op[0] == "delete":
                        self._db.execute("DELETE FROM cache WHERE key = ?", (op[1],))
                    else:
                        self._db.execute("DELETE FROM cache")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def load_all(self) -> Iterator[tuple[str, Any, float, int, int]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value, cost, size, frequency FROM cache ORDER BY seq"
            ).fetchall()
        for key, value, cost, size, freq in rows:
            yield key, json.loads(value), float(cost), int(size), int(freq)

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM cache")

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM cache").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisStore:
    """Entries as Redis hashes under ``prefix``; shared by several gateway processes.

    Needs the ``redis`` package (extra ``redis``) and a reachable server.
    """

    shared = True

    def __init__(
        self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "wattserve:cache:"
    ) -> None:
        try:
            import redis
        except ImportError as exc:
            raise EngineUnavailable(
                "the redis store needs the 'redis' package: pip install 'wattserve[redis]'"
            ) from exc
        self.prefix = prefix
        self._r = redis.Redis.from_url(url, decode_responses=True)
        try:
            self._r.ping()
        except redis.RedisError as exc:
            raise EngineUnavailable(f"cannot reach Redis at {url}: {exc}") from exc

    def _k(self, key: str) -> str:
        return self.prefix + key

    def get(self, key: str) -> Record | None:
        h = self._r.hgetall(self._k(key))
        if not h:
            return None
        return json.loads(h["value"]), float(h["cost"]), int(h["size"]), int(h["frequency"])

    def put(self, key: str, value: Any, cost: float, size: int, frequency: int) -> None:
        self._r.hset(
            self._k(key),
            mapping={
                "value": _dumps(value),
                "cost": repr(float(cost)),
                "size": int(size),
                "frequency": int(frequency),
            },
        )

    def delete(self, key: str) -> None:
        self._r.delete(self._k(key))

    def load_all(self) -> Iterator[tuple[str, Any, float, int, int]]:
        n = len(self.prefix)
        for full in self._r.scan_iter(match=self.prefix + "*", count=1000):
            h = self._r.hgetall(full)
            if h:
                yield (
                    full[n:],
                    json.loads(h["value"]),
                    float(h["cost"]),
                    int(h["size"]),
                    int(h["frequency"]),
                )

    def clear(self) -> None:
        keys = list(self._r.scan_iter(match=self.prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            self._r.delete(*keys[i : i + 500])

    def close(self) -> None:
        self._r.close()


def open_store(spec: str | None) -> Store | None:
    """``None``/``memory`` -> no store; ``sqlite:PATH`` or ``*.sqlite``/``*.db``; ``redis://...``."""
    if spec is None or spec in ("", "memory"):
        return None
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(spec)
    if spec.startswith("sqlite:"):
        return SQLiteStore(spec[len("sqlite:") :])
    if spec.endswith((".sqlite", ".sqlite3", ".db")):
        return SQLiteStore(spec)
    raise ConfigError(
        f"unknown cache store {spec!r}: use memory, sqlite:PATH or redis://HOST:PORT/DB"
    )
