"""The walk of one streaming cache-miss request through the gateway's modules stays short
(``benchmarks/request_walk.py`` measures it under ``sys.setprofile``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import orjson

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "request_walk.py"
MAX_MODULES = 16  # the bound reached; lower it when the walk gets shorter, never raise it
MAX_CROSSINGS = 51
PACKAGES = ["serve", "openai", "types", "cache", "route"]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("request_walk", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["request_walk"] = mod
    spec.loader.exec_module(mod)
    return mod


async def test_a_streaming_cache_miss_walks_few_modules() -> None:
    walk = await _load().measure()
    assert walk.status == 200
    events = [e for e in walk.body.split(b"\n\n") if e.startswith(b"data: {")]
    text = "".join(
        c["delta"].get("content") or ""
        for e in events
        for c in orjson.loads(e[6:]).get("choices", ())
    )
    assert text == "abc" and walk.body.endswith(b"data: [DONE]\n\n")
    assert walk.modules[0] == "wattserve.serve.pipeline"
    assert len(walk.modules) == len(set(walk.modules))
    assert len(walk.modules) <= MAX_MODULES, walk.modules
    assert walk.crossings <= MAX_CROSSINGS, sorted(walk.edges.items(), key=lambda kv: -kv[1])
    assert walk.packages == PACKAGES


async def test_the_walk_counts_what_it_sees() -> None:
    """The profile sees the request's real path: the relay and the transport are on it."""
    walk = await _load().measure()
    assert {"wattserve.serve.relay", "wattserve.openai.transport"} <= set(walk.modules)
    assert walk.crossings >= len(walk.modules) - 1  # every module after the first is entered
