"""Gateway metrics: the lock-free per-request series expose what a prometheus-client
Histogram/Counter would (parsed back with prometheus-client's own parser)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from wattserve.serve.metrics import _LAT_BUCKETS, GatewayMetrics


def _samples(m: GatewayMetrics) -> dict[tuple, float]:
    out = {}
    for fam in text_string_to_metric_families(m.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_counts_histograms_and_totals_match_hand_computed_values():
    m = GatewayMetrics()
    lat = [
        0.0004,
        0.001,
        0.003,
        0.2,
        200.0,
    ]  # 0.001 sits exactly on a bucket bound (le is inclusive)
    for i, x in enumerate(lat):
        m.done("a", 200, "miss", x, 2 * x, 10, i, 0.5, "modeled")
    m.done("a", 502, "miss", None, 1.0, 0, 0, None, "")  # errors count as requests, not in latency
    m.done("b", 200, "hit", None, 0.01, 3, 4, None, "")
    m.hit("b", 1.25)
    m.hit("b", 0.0)
    s = _samples(m)
    assert (
        s[("wattserve_requests_total", (("cache", "miss"), ("model", "a"), ("status", "200")))] == 5
    )
    assert (
        s[("wattserve_requests_total", (("cache", "miss"), ("model", "a"), ("status", "502")))] == 1
    )
    for bound in _LAT_BUCKETS:
        want = sum(1 for x in lat if x <= bound)
        key = ("wattserve_ttft_seconds_bucket", (("le", repr(float(bound))), ("model", "a")))
        assert s[key] == want, bound
    assert s[("wattserve_ttft_seconds_bucket", (("le", "+Inf"), ("model", "a")))] == 5
    assert s[("wattserve_ttft_seconds_count", (("model", "a"),))] == 5
    assert abs(s[("wattserve_e2e_seconds_sum", (("model", "a"),))] - 2 * sum(lat)) < 1e-9
    assert ("wattserve_ttft_seconds_count", (("model", "b"),)) not in s  # b never saw a first token
    assert s[("wattserve_tokens_total", (("kind", "completion"), ("model", "a")))] == sum(range(5))
    assert s[("wattserve_tokens_total", (("kind", "prompt"), ("model", "b")))] == 3
    assert s[("wattserve_energy_joules_total", (("model", "a"), ("source", "modeled")))] == 2.5
    assert s[("wattserve_cache_hits_total", (("model", "b"),))] == 2
    assert s[("wattserve_cache_saved_joules_total", (("model", "b"),))] == 1.25
    assert m.charged_j() == 2.5 and m.saved_j() == 1.25
    assert m.requests_by_outcome()[("b", "200", "hit")] == 1
