"""Eviction order of each policy on hand-built cases; the lazy heap against a brute-force scan."""

from __future__ import annotations

import random

import pytest

from wattserve.cache import GDSF, LEC, LFU, ResponseCache, make_policy
from wattserve.errors import ConfigError
from wattserve.types import CacheEntry


def test_lru_evicts_least_recently_used():
    c = ResponseCache("lru", capacity_entries=2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1
    c.put("c", 3)
    assert "b" not in c and "a" in c and "c" in c
    assert c.stats()["evictions"] == 1


def test_lfu_online_counts_and_admission():
    c = ResponseCache("lfu", capacity_entries=2)
    c.put("a", 1)
    c.put("b", 2)
    for _ in range(2):
        c.get("a")
    c.get("b")  # a: 3 requests, b: 2
    assert c.get("c") is None  # one request for c
    assert c.put("c", 3) is False  # c (1) ranks below every cached entry: refused
    assert set(c.eviction_order()) == {"a", "b"} and c.stats()["rejections"] == 1
    c.get("c")
    c.get("c")  # misses are counted: c now has 3 requests
    assert c.put("c", 3) is True
    assert "b" not in c and c.eviction_order() == ["a", "c"]  # tie 3:3, a used longer ago


def test_lfu_without_admission_always_admits():
    c = ResponseCache("lfu", capacity_entries=2, admission=False)
    c.put("a", 1)
    c.put("b", 2)
    c.get("a")
    c.get("b")
    assert c.put("c", 3) is True
    assert "a" not in c  # a and b tie at 2; a is the least recently used


def test_lfu_offline_uses_known_frequencies():
    freq = {"a": 0.1, "b": 0.5, "c": 0.3}
    c = ResponseCache(LFU(frequency=freq), capacity_entries=2)
    c.put("a", 1)
    c.put("b", 2)
    for _ in range(5):
        c.get("a")  # observed counts do not matter offline
    c.put("c", 3)
    assert "a" not in c and c.eviction_order() == ["c", "b"]


def test_gdsf_inflation_lets_new_entries_overtake_an_old_expensive_one():
    c = ResponseCache("gdsf", capacity_entries=2)
    c.put("a", "A", cost=10.0)  # H = 10
    c.put("b", "B", cost=4.0)  # H = 4
    c.put("c", "C", cost=4.0)  # evicts b: L = 4, H(c) = 4 + 4 = 8
    assert c.policy.inflation == 4.0
    assert [e.key for e in c.entries()] == ["c", "a"]
    assert list(c.entries())[0].cost == 4.0
    c.put("d", "D", cost=4.0)  # evicts c: L = 8, H(d) = 12 > H(a) = 10
    assert c.policy.inflation == 8.0 and c.eviction_order() == ["a", "d"]
    c.put("e", "E", cost=4.0)  # the old expensive entry is aged out
    assert "a" not in c and c.policy.inflation == 10.0
    # the same stream under LEC (no inflation) never evicts a
    lec = ResponseCache("lec", capacity_entries=2, admission=False)
    for k, cost in [("a", 10.0), ("b", 4.0), ("c", 4.0), ("d", 4.0), ("e", 4.0)]:
        lec.put(k, k, cost=cost)
    assert "a" in lec


def test_gdsf_divides_by_size():
    c = ResponseCache("gdsf", capacity_bytes=100)
    c.put("big", "x", cost=10.0, size=80)  # H = 0.125
    c.put("small", "y", cost=2.0, size=10)  # H = 0.2
    c.put("mid", "z", cost=3.0, size=20)  # needs room: the big, low value-per-byte entry goes
    assert "big" not in c and c.stats()["bytes"] == 30
    assert c.put("huge", "h", cost=1e9, size=101) is False  # larger than the cache


def test_lec_priority_follows_recompute_cost_from_the_router_choice():
    # Two entries with the same stored cost; the multiplexer would answer "x" with a
    # cheap model and "y" with an expensive one, so LEC keeps "y".
    chosen_cost = {"x": 1.0, "y": 100.0}
    c = ResponseCache(LEC(recompute_cost=lambda e: chosen_cost[e.key]), capacity_entries=2)
    c.put("x", 1, cost=50.0)
    c.put("y", 2, cost=50.0)
    chosen_cost["z"] = 10.0
    c.put("z", 3, cost=50.0)
    assert "x" not in c and c.eviction_order() == ["z", "y"]
    # flip the router's choice: now y is cheap to recompute and is the one evicted
    chosen_cost.update(y=0.5, w=20.0)
    c.get("y")  # the access re-prices y: priority 2 * 0.5 = 1 (falls; fresh heap key)
    c.put("w", 4, cost=50.0)
    assert "y" not in c and set(c.eviction_order()) == {"z", "w"}


def test_lec_online_counts_times_cost():
    c = ResponseCache("lec", capacity_entries=2)
    c.put("cheap", 1, cost=1.0)
    c.put("dear", 2, cost=30.0)
    for _ in range(9):
        c.get("cheap")  # 10 x 1 = 10 < 1 x 30
    c.get("new")
    assert c.put("new", 3, cost=20.0) is True  # 2 x 20 = 40 beats cheap's 10
    assert "cheap" not in c
    assert c.stats()["saved_cost"] == pytest.approx(9.0)


def test_make_policy_rejects_unknown_names():
    with pytest.raises(ConfigError):
        make_policy("arc")
    assert isinstance(make_policy("GDSF"), GDSF)


def test_policies_accept_frozen_cache_entries():
    e = CacheEntry(key="k", value=None, cost=6.0, size=3, frequency=2, last_access=7.0)
    assert make_policy("lru").priority(e) == 7.0
    assert make_policy("lfu").priority(e) == 2.0
    assert make_policy("gdsf").priority(e) == 4.0
    assert make_policy("lec").priority(e) == 12.0


class _Reference:
    """Brute force: same rules, minimum found by scanning every entry."""

    def __init__(self, policy, cap):
        self.p, self.cap, self.d, self.clock, self.hist = make_policy(policy), cap, {}, 0, {}

    def get(self, k):
        self.clock += 1
        n = self.d.get(k)
        if n is None:
            self.hist[k] = self.hist.get(k, 0) + 1
            return None
        n.frequency += 1
        n.last_access = self.clock
        n.prio = self.p.priority(n)
        return n.value

    def put(self, k, v, cost):
        from wattserve.cache.policies import Node

        self.clock += 1
        n = Node(k, v, cost, 1, self.hist.pop(k, 0) or 1, self.clock)
        n.prio = self.p.priority(n)
        if len(self.d) >= self.cap:
            victim = min(self.d.values(), key=lambda x: (x.prio, x.last_access))
            if not getattr(self.p, "inflates", False) and (n.prio, n.last_access) < (
                victim.prio,
                victim.last_access,
            ):
                self.p.on_evict(n.prio)
                self.hist[k] = n.frequency
                return False
            del self.d[victim.key]
            self.hist[victim.key] = victim.frequency
            self.p.on_evict(victim.prio)
            n.prio = self.p.priority(n)
        self.d[k] = n
        return True


@pytest.mark.parametrize("policy", ["lru", "lfu", "gdsf", "lec"])
def test_lazy_heap_matches_brute_force(policy):
    rng = random.Random(7)
    costs = {k: rng.choice([1.0, 2.5, 40.0]) for k in range(60)}
    fast, ref = ResponseCache(policy, capacity_entries=12), _Reference(policy, 12)
    for _ in range(4000):
        k = int(60 * rng.random() ** 2.5)
        u = rng.random()
        if u < 0.02 and k in ref.d:  # delete (leaves a stale heap entry behind)
            assert fast.delete(k)
            del ref.d[k]
            continue
        if u < 0.04 and k in ref.d:  # refresh in place with a new cost (priority may fall)
            c = rng.choice([0.5, 3.0, 80.0])
            fast.put(k, k, c)
            ref.clock += 1
            n = ref.d[k]
            n.cost, n.last_access = c, ref.clock
            n.prio = ref.p.priority(n)
            continue
        a, b = fast.get(k), ref.get(k)
        assert a == b
        if a is None:
            assert fast.put(k, k, costs[k]) == ref.put(k, k, costs[k])
    assert set(fast._nodes) == set(ref.d)
    assert fast.stats()["hits"] > 500
