"""Attribution of whole-device joules to requests and replicas, checked by hand."""

from __future__ import annotations

import random
import time
from itertools import pairwise

import pytest

from wattserve.energy.attribution import (
    attribute_replicas,
    attribute_requests,
    split_by_shares,
    with_energy,
)
from wattserve.energy.errors import WindowError
from wattserve.energy.sampler import EnergySampler
from wattserve.errors import ConfigError
from wattserve.types import Completion, EnergyReading, Measurement


def comp(
    rid: str,
    sent: float,
    end: float,
    out: int = 10,
    inp: int = 10,
    replica: str | None = None,
    cache_hit: bool = False,
) -> Completion:
    return Completion(rid, "m", "", inp, out, sent, sent, end, replica=replica, cache_hit=cache_hit)


# 10 W for 10 s on gpu0; A [0,4], B [2,6], C [8,9]
MEAS = Measurement("whole", 0.0, 10.0, {"gpu0": 100.0}, {"gpu0": "nvml"})
REQS = [
    comp("A", 0, 4, out=10, replica="r1"),
    comp("B", 2, 6, out=30, replica="r1"),
    comp("C", 8, 9, out=60, inp=20, replica="r2"),
]


def test_active_time_constant_power_by_hand() -> None:
    att = attribute_requests(REQS, MEAS, idle="unattributed")
    # [0,2] A: 20 J; [2,4] A+B: 10 J each; [4,6] B: 20 J; [6,8] idle 20; [8,9] C: 10; [9,10] idle 10
    assert att.per_request_j == {
        "A": pytest.approx(30.0),
        "B": pytest.approx(30.0),
        "C": pytest.approx(10.0),
    }
    assert att.idle_j == pytest.approx(30.0) and att.energy_j == 100.0
    assert att.attributed_j == pytest.approx(70.0)
    assert (att.method, att.window, att.idle, att.label) == (
        "active_time",
        "whole",
        "unattributed",
        "nvml/active_time",
    )


def test_active_time_spreads_idle_in_proportion() -> None:
    att = attribute_requests(REQS, MEAS)  # idle="spread" by default
    assert att.per_request_j["A"] == pytest.approx(30 + 30 * 30 / 70)
    assert att.per_request_j["C"] == pytest.approx(10 + 30 * 10 / 70)
    assert att.attributed_j == pytest.approx(100.0)
    assert att.idle_j == pytest.approx(30.0)  # still reported


def test_active_time_follows_the_measured_power_profile() -> None:
    # 50 W for 2 s then 10 W for 2 s; A [1,3], B [1,4]; default window = span of the requests
    series = [
        EnergyReading(0.0, {"gpu0": 0.0}, {"gpu0": "nvml"}),
        EnergyReading(2.0, {"gpu0": 100.0}, {"gpu0": "nvml"}),
        EnergyReading(4.0, {"gpu0": 120.0}, {"gpu0": "nvml"}),
    ]
    att = attribute_requests(
        [comp("A", 1, 3), comp("B", 1, 4)], EnergySampler.from_readings(series)
    )
    # [1,2] 50 J -> 25 each; [2,3] 10 J -> 5 each; [3,4] 10 J -> B
    assert att.per_request_j == {"A": pytest.approx(30.0), "B": pytest.approx(40.0)}
    assert (att.window, att.start_s, att.end_s, att.idle_j) == ("requests", 1.0, 4.0, 0.0)
    # the same from a plain list of readings, and restricted to a window
    att2 = attribute_requests([comp("A", 1, 3), comp("B", 1, 4)], series, window=(2.0, 4.0))
    assert att2.per_request_j == {"A": pytest.approx(5.0), "B": pytest.approx(15.0)}


def test_a_retried_request_id_accumulates() -> None:
    att = attribute_requests([comp("A", 0, 4), comp("A", 8, 9)], MEAS, idle="unattributed")
    assert att.per_request_j == {"A": pytest.approx(50.0)}  # 40 J + 10 J


def test_token_methods_by_hand() -> None:
    att = attribute_requests(REQS, MEAS, method="tokens")
    assert att.per_request_j == {
        "A": pytest.approx(10.0),
        "B": pytest.approx(30.0),
        "C": pytest.approx(60.0),
    }
    total = attribute_requests(REQS, MEAS, method="total_tokens")  # weights 20, 40, 80
    assert total.per_request_j["A"] == pytest.approx(100 * 20 / 140)
    assert total.per_request_j["C"] == pytest.approx(100 * 80 / 140)
    # partial overlap: window [3,10] (70 J); A is 1/4 inside (10 x .25), B 3/4 (30 x .75),
    # C all (60)
    series = [
        EnergyReading(0.0, {"gpu0": 0.0}, {"gpu0": "nvml"}),
        EnergyReading(10.0, {"gpu0": 100.0}, {"gpu0": "nvml"}),
    ]
    part = attribute_requests(REQS, series, method="tokens", window=(3.0, 10.0))
    assert part.energy_j == pytest.approx(70.0)
    assert part.per_request_j["A"] == pytest.approx(70 * 2.5 / 85)
    assert part.per_request_j["B"] == pytest.approx(70 * 22.5 / 85)
    assert part.attributed_j == pytest.approx(70.0)


def test_cache_hits_devices_and_with_energy() -> None:
    meas = Measurement(
        "w",
        0.0,
        10.0,
        {"gpu0": 100.0, "cpu-package-0": 50.0},
        {"gpu0": "nvml", "cpu-package-0": "rapl"},
    )
    reqs = [comp("A", 0, 10), comp("hit", 1, 1.001, cache_hit=True)]
    att = attribute_requests(reqs, meas)
    assert att.per_request_j == {"A": pytest.approx(150.0)}
    assert att.per_device_j["A"] == {
        "gpu0": pytest.approx(100.0),
        "cpu-package-0": pytest.approx(50.0),
    }
    assert att.label == "nvml+rapl/active_time"
    gpu_only = attribute_requests(reqs, meas, devices=["gpu0"])
    assert gpu_only.per_request_j == {"A": pytest.approx(100.0)} and gpu_only.sources == {
        "gpu0": "nvml"
    }
    filled = with_energy(reqs, gpu_only)
    assert (
        filled[0].energy_j == pytest.approx(100.0) and filled[0].energy_source == "nvml/active_time"
    )
    assert filled[1] is reqs[1]  # the cache hit is left as it was
    with pytest.raises(WindowError, match="not measured"):
        attribute_requests(reqs, meas, devices=["gpu7"])
    assert attribute_requests(reqs, meas, include_cache_hits=True).per_request_j["hit"] > 0


def test_replicas_sharing_a_device() -> None:
    by_time = attribute_replicas(REQS, MEAS)
    assert by_time.per_replica_j == {
        "r1": pytest.approx(100 * 60 / 70),
        "r2": pytest.approx(100 * 10 / 70),
    }
    assert by_time.method == "active_time"
    equal = attribute_replicas(REQS, MEAS, method="equal", replicas=["r1", "r2", "r3"])
    assert equal.per_replica_j == {
        "r1": pytest.approx(100 / 3),
        "r2": pytest.approx(100 / 3),
        "r3": pytest.approx(100 / 3),
    }
    tokens = attribute_replicas(REQS, MEAS, method="tokens")
    assert tokens.per_replica_j == {"r1": pytest.approx(40.0), "r2": pytest.approx(60.0)}
    assert split_by_shares(MEAS, {"a": 3, "b": 1}) == {"a": 75.0, "b": 25.0}
    with pytest.raises(ConfigError):
        split_by_shares(MEAS, {"a": 0})


def test_tracked_window_by_name_and_bad_options() -> None:
    s = EnergySampler.from_readings(
        [
            EnergyReading(0.0, {"gpu0": 0.0}, {"gpu0": "nvml"}),
            EnergyReading(10.0, {"gpu0": 100.0}, {"gpu0": "nvml"}),
        ]
    )
    s.measurements["steady"] = s.window("steady", 2.0, 6.0)
    att = attribute_requests(REQS, s, window="steady", idle="unattributed")
    # [2,4] A+B 20 J -> 10 each; [4,6] B 20 J; C outside
    assert att.per_request_j == {"A": pytest.approx(10.0), "B": pytest.approx(30.0), "C": 0.0}
    with pytest.raises(WindowError, match="no tracked window"):
        attribute_requests(REQS, s, window="ramp")
    with pytest.raises(ConfigError, match="unknown attribution method"):
        attribute_requests(REQS, MEAS, method="vibes")
    with pytest.raises(WindowError, match="outside"):
        attribute_requests(REQS, s, window=(5.0, 20.0))


def brute_force(
    reqs: list[Completion], series: list[EnergyReading], t0: float, t1: float
) -> dict[str, float]:
    """Reference: cut at every edge, split each piece equally among the requests covering it."""
    import numpy as np

    ts = np.array([r.t_s for r in series])
    js = np.array([r.joules["gpu0"] for r in series])
    edges = sorted(
        {
            t0,
            t1,
            *[t for t in ts if t0 < t < t1],
            *[min(max(x, t0), t1) for c in reqs for x in (c.sent_s, c.end_s)],
        }
    )
    out = {c.request_id: 0.0 for c in reqs}
    for a, b in pairwise(edges):
        covering = [c for c in reqs if c.sent_s <= a and c.end_s >= b]
        for c in covering:
            out[c.request_id] += float(np.interp(b, ts, js) - np.interp(a, ts, js)) / len(covering)
    return out


def test_many_requests_match_brute_force_and_run_fast() -> None:
    rng = random.Random(7)
    reqs = []
    for i in range(5000):
        sent = rng.uniform(0, 100)
        reqs.append(comp(str(i), sent, sent + rng.uniform(0.1, 5)))
    # cumulative counter with uneven power: +65 J or +30 J per 0.2 s step
    series = [
        EnergyReading(k / 5, {"gpu0": 60.0 * k + 5 * (k % 7)}, {"gpu0": "nvml"}) for k in range(530)
    ]
    t0 = time.perf_counter()
    att = attribute_requests(reqs, series, window=(0.0, 105.0), idle="unattributed")
    elapsed = time.perf_counter() - t0
    assert att.attributed_j + att.idle_j == pytest.approx(att.energy_j, rel=1e-9)
    assert min(att.per_request_j.values()) > 0
    assert elapsed < 2.0
    small = reqs[:150]
    ref = brute_force(small, series, 0.0, 105.0)
    got = attribute_requests(small, series, window=(0.0, 105.0), idle="unattributed").per_request_j
    assert got == pytest.approx(ref, rel=1e-9, abs=1e-9)
