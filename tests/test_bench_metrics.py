"""Metric computations against hand-computed timestamps (docs/conventions.md definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wattserve.bench import metrics
from wattserve.types import Completion, Measurement


def comp(rid, sent, chunks, out_tokens, error=None, in_tokens=10):
    return Completion(
        request_id=rid,
        model="m",
        text="x" * len(chunks),
        input_tokens=in_tokens,
        output_tokens=out_tokens,
        sent_s=sent,
        first_token_s=chunks[0] if chunks else None,
        end_s=chunks[-1] if chunks else sent + 0.1,
        chunk_t=tuple(chunks),
        error=error,
    )


# A: one token per chunk. B: the server bundles 4 tokens into 2 chunks. C: failed.
A = comp("a", 0.0, [1.0, 1.5, 2.5], 3)
B = comp("b", 1.0, [1.2, 1.4], 4)
C = comp("c", 0.5, [], 0, error="HTTP 500")
ALL = [A, B, C]


def test_samples_tpot_excludes_first_token_and_itl_is_pooled():
    s = metrics.latency_samples(ALL)
    assert s["ttft_s"] == pytest.approx([1.0, 0.2])
    assert s["e2e_s"] == pytest.approx([2.5, 0.4])
    # TPOT = (e2e - ttft) / (tokens - 1): A (2.5-1.0)/2, B (0.4-0.2)/3
    assert s["tpot_s"] == pytest.approx([0.75, 0.2 / 3])
    # ITL: every chunk gap of every request, pooled (not averaged per request first)
    assert sorted(s["itl_s"]) == pytest.approx([0.2, 0.5, 1.0])


def test_summary_hand_computed():
    s = metrics.summarize(ALL, percentiles=[50, 90, 99])
    assert (s.completed, s.failed) == (2, 1)
    assert s.duration_s == pytest.approx(2.5)  # first send 0.0 -> last end 2.5
    assert s.request_throughput == pytest.approx(2 / 2.5)
    assert s.output_throughput == pytest.approx(7 / 2.5)
    assert s.total_token_throughput == pytest.approx((7 + 20) / 2.5)
    itl = s.latency["itl_s"]
    assert itl["mean"] == pytest.approx((0.5 + 1.0 + 0.2) / 3)
    assert itl["median"] == pytest.approx(0.5)
    assert itl["p50"] == pytest.approx(0.5)
    # linear interpolation between the two TTFT samples 0.2 and 1.0
    assert s.latency["ttft_s"]["p90"] == pytest.approx(0.2 + 0.9 * 0.8)
    assert s.latency["ttft_s"]["p99"] == pytest.approx(0.2 + 0.99 * 0.8)
    assert s.latency["tpot_s"]["mean"] == pytest.approx((0.75 + 0.2 / 3) / 2)
    assert s.latency["e2e_s"]["p50"] == pytest.approx(1.45)
    assert s.goodput_rps is None and s.energy_j is None


def test_percentiles_match_numpy_on_raw_samples():
    rng = np.random.default_rng(1)
    x = rng.lognormal(size=1001)
    d = metrics.distribution(x, [50, 90, 99, 99.9])
    assert d["p99.9"] == pytest.approx(np.percentile(x, 99.9))
    assert d["p90"] == pytest.approx(np.percentile(x, 90))
    assert d["mean"] == pytest.approx(x.mean())
    empty = metrics.distribution([], [50])
    assert math.isnan(empty["p50"]) and math.isnan(empty["mean"])


def test_goodput_and_slo_attainment():
    # ttft <= 500 ms: only B; failed C never counts; attainment over all 3 requests
    rps, att = metrics.goodput(ALL, {"ttft": 500}, 2.5)
    assert rps == pytest.approx(1 / 2.5) and att == pytest.approx(1 / 3)
    # tpot <= 100 ms: A's 750 ms fails, B's 66.7 ms passes
    assert metrics.goodput(ALL, {"tpot": 100}, 2.5)[1] == pytest.approx(1 / 3)
    # every SLO must hold: ttft 1100 passes both, e2el 2000 drops A
    assert metrics.goodput(ALL, {"ttft": 1100, "e2el": 2000}, 2.5)[1] == pytest.approx(1 / 3)
    assert metrics.goodput(ALL, {"ttft": 1100, "e2el": 3000}, 2.5)[1] == pytest.approx(2 / 3)
    s = metrics.summarize(ALL, goodput_slo_ms={"ttft": 500})
    assert s.goodput_rps == pytest.approx(0.4) and s.slo_attainment == pytest.approx(1 / 3)
    # a one-token request has no TPOT and passes a TPOT SLO
    one = comp("d", 0.0, [0.1], 1)
    assert metrics.meets_slo(one, {"tpot": 1})


def test_energy_per_token_from_steady_window_tokens_by_chunk_time():
    whole = Measurement(
        "whole", 0.0, 2.5, {"cpu": 20.0, "dram": 5.0}, {"cpu": "modeled", "dram": "modeled"}
    )
    steady = Measurement("steady", 1.0, 2.0, {"cpu": 8.0}, {"cpu": "rapl"})
    # in [1.0, 2.0]: A's chunks at 1.0 and 1.5 (2 of 3 tokens) + both of B's (4 tokens) = 6
    assert metrics.tokens_in_window([A, B, C], 1.0, 2.0) == pytest.approx(6.0)
    s = metrics.summarize(ALL, [whole, steady])
    assert s.energy_j == pytest.approx(25.0)
    assert s.energy_per_output_token_j == pytest.approx(8.0 / 6.0)
    assert s.energy_per_request_j == pytest.approx(25.0 / 2)
    assert s.avg_power_w == pytest.approx(10.0)
    assert s.energy_source == "modeled" and s.energy_window == "steady"
    # no steady window: falls back to the whole point, and says so
    s2 = metrics.summarize(ALL, [whole])
    assert s2.energy_per_output_token_j == pytest.approx(25.0 / 7)
    assert s2.energy_window.startswith("whole")


def test_duration_sums_segments_of_a_resumed_run():
    a = comp("a", 100.0, [101.0], 1)
    b = comp("b", 500.0, [502.0], 1)  # resumed much later: the gap is not counted
    assert metrics.duration_s([a, b], {"a": 0, "b": 1}) == pytest.approx(1.0 + 2.0)
    assert metrics.duration_s([a, b]) == pytest.approx(402.0)
