"""Load strategies: seeded schedules computed before sending, sweep points, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wattserve.bench.config import BenchConfig, parse_goodput, parse_list
from wattserve.bench.loads import (
    Concurrent,
    ConstantRate,
    GammaRate,
    Trace,
    make_points,
    ramp_count,
)
from wattserve.errors import ConfigError


def test_constant_and_concurrent():
    assert ConstantRate(4).offsets(5, 0) == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert Concurrent().offsets(3, 0) == [0.0, 0.0, 0.0]


def test_gamma_is_seeded_and_has_the_right_rate_and_burstiness():
    a = GammaRate(10.0, 1.0).offsets(4000, seed=3)
    assert a == GammaRate(10.0, 1.0).offsets(4000, seed=3)
    assert a != GammaRate(10.0, 1.0).offsets(4000, seed=4)
    gaps = np.diff(a)
    assert a[0] == 0.0 and np.all(gaps >= 0)
    assert gaps.mean() == pytest.approx(0.1, rel=0.06)
    # Poisson: coefficient of variation 1; gamma shape k: CV = 1/sqrt(k)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.08)
    bursty = np.diff(GammaRate(10.0, 0.25).offsets(4000, seed=3))
    assert bursty.std() / bursty.mean() == pytest.approx(2.0, rel=0.12)
    assert bursty.mean() == pytest.approx(0.1, rel=0.15)


def test_trace_offsets_relative_to_first_and_cycled():
    t = Trace((10.0, 10.5, 12.0))
    assert t.offsets(3, 0) == pytest.approx([0.0, 0.5, 2.0])
    assert t.offsets(5, 0) == pytest.approx([0.0, 0.5, 2.0, 3.5, 4.0])


def test_sweep_points_one_per_value():
    pts = make_points(None, [1, 8])
    assert [p.label for p in pts] == ["c1", "c8"] and all(
        isinstance(p.pattern, Concurrent) for p in pts
    )
    pts = make_points([1, 2, 4], None)
    assert [p.label for p in pts] == ["r1", "r2", "r4"] and pts[0].pattern == GammaRate(1, 1.0)
    pts = make_points([2], [4], arrival="constant")
    assert pts[0].label == "c4-r2" and pts[0].pattern == ConstantRate(2)
    assert make_points(None, None)[0].label == "rinf"


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"max_concurrencies": [0]}, "--max-concurrency: "),
        ({"request_rates": [-1.0]}, "request rate must be > 0"),
        ({"burstiness": 0.0}, "burstiness"),
        ({"dataset_name": "custom"}, "needs --dataset-path"),
        ({"percentile_metrics": ["ttft", "foo"]}, "unknown metric"),
        ({"goodput": {"latency": 5.0}}, "goodput SLO"),
        ({"backend": "openai"}, "needs --base-url"),
    ],
)
def test_impossible_options_are_config_errors(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        BenchConfig.build(model="m", **kwargs)


def test_parsers():
    assert parse_list("1,8", int, "--max-concurrency") == [1, 8]
    assert parse_list("1, 2.5,inf", float, "--request-rate") == [1.0, 2.5, math.inf]
    with pytest.raises(ConfigError, match="not a valid int"):
        parse_list("1,x", int, "--max-concurrency")
    assert parse_goodput(["ttft:200 tpot:50", "e2el:2000"]) == {
        "ttft": 200,
        "tpot": 50,
        "e2el": 2000,
    }
    with pytest.raises(ConfigError, match="NAME:MS"):
        parse_goodput(["ttft=200"])
    assert BenchConfig(model="m", endpoint="/v1/chat/completions").endpoint == "chat"
    assert ramp_count(100) == 10 and ramp_count(1) == 0
