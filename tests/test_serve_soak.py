"""A small soak of the gateway (``benchmarks/gateway_soak.py``, its processes and checks):
``wattserve serve`` in its own process in front of two ``wattserve mock-server`` replicas,
1,000 requests at concurrency 128 with no fault, then 2,000 with replica 0 SIGKILLed half-way.
Half stream, 30% repeat an earlier prompt (cache hits). Each request has a hard 15 s timeout.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "gateway_soak.py"
CONCURRENCY, TIMEOUT_S = 128, 15.0


def _soak_module() -> ModuleType:
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))  # the script imports its sibling soak_stack.py
    spec = importlib.util.spec_from_file_location("gateway_soak", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gateway_soak", mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    mod = _soak_module()
    mod.raise_fd_limit(4096)
    return mod


def test_check_stream_judges_answers(soak: ModuleType) -> None:
    """The soak's own judge: a right stream, a cut one, a clean error event, a wrong text."""
    chunk = b'data: {"choices":[{"delta":{"content":" tok"}}]}\n\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n'
    done = b"data: [DONE]\n\n"
    assert soak.check_stream(chunk * 8 + usage + done) == ("ok", "")
    assert soak.check_stream(chunk * 8 + usage)[0] == "other"  # no [DONE]
    assert soak.check_stream(chunk * 7 + usage + done)[0] == "other"  # a token short
    broken = b'data: {"error":{"message":"cut","code":"stream_broken"}}\n\n'
    assert soak.check_stream(chunk * 3 + broken + done) == ("stream_broken", "")
    other = b'data: {"error":{"message":"boom","code":"internal"}}\n\n'
    assert soak.check_stream(chunk + other + done)[0] == "other"


def test_soak_with_a_replica_killed(soak: ModuleType) -> None:
    with soak.Stack(token_delay_ms=10.0) as stack:
        plain = asyncio.run(soak.soak(stack.url, 1000, CONCURRENCY, timeout_s=TIMEOUT_S))
        assert plain.sent == 1000
        assert (plain.ok, plain.lost, plain.http_5xx, plain.other) == (1000, 0, 0, 0), plain.samples
        assert soak.cache_hits(stack) >= 200  # the repeats (about 300) were answered from cache

        kill = {1000: lambda: stack.kill_replica(0)}
        t = asyncio.run(
            soak.soak(stack.url, 2000, CONCURRENCY, seed=7, timeout_s=TIMEOUT_S, on_sent=kill)
        )
        assert stack.replicas[0].poll() is not None, "replica 0 was not killed"
        assert t.sent == 2000
        # every request answered right or ended by a clean error; none hung or dropped
        assert (t.hung, t.dropped, t.other) == (0, 0, 0), t.samples
        assert t.ok + t.http_5xx + t.stream_broken == 2000
        # the surviving replica answered the rest: only requests caught on the dead one fail
        assert t.ok >= 2000 - CONCURRENCY, (t.ok, t.http_5xx, t.stream_broken)
        # and the gateway still answers after the kill
        after = asyncio.run(soak.soak(stack.url, 200, 16, seed=8, timeout_s=TIMEOUT_S))
        assert after.ok == 200, after.samples
        assert stack.log_errors() == 0, stack.gateway_log()
