"""Persistence: a SQLite-backed cache survives a restart; Redis shares entries between processes."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from wattserve.cache import ResponseCache, SQLiteStore, open_store
from wattserve.errors import ConfigError


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
def redis_url(free_port, tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not installed (apt-get install redis-server)")
    pytest.importorskip("redis", reason="the 'redis' package is not installed (extra 'redis')")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(free_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=free_port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.skip("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{free_port}/0"
    client.close()
    proc.terminate()
    proc.wait(timeout=10)


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
