"""The walk of one streaming cache-miss request through the gateway's code.

A ``Service`` with its cache, metrics, energy accountant and two HTTP replicas on in-memory
``MockTransport``s answers one streaming chat request whose answer arrives in three reads
(so the relay's stream runs, not the whole-answer shortcut). ``sys.setprofile`` watches
``Gateway.handle`` and the reply's stream to its end and records every Python call whose
code lives in ``wattserve``:

- **modules**: the wattserve modules entered, in the order first entered;
- **crossings**: calls from code in one wattserve module into code in another (a return is
  not counted; a generator resumed counts as a call from its resumer);
- **packages**: the wattserve packages those modules are in (``serve``, ``openai`` ...).

``python benchmarks/request_walk.py`` prints both; ``tests/test_serve_walk.py`` pins them.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import orjson

CHAT = {
    "model": "m",
    "messages": [{"role": "user", "content": "walk me through it"}],
    "max_tokens": 8,
    "temperature": 0,
    "stream": True,
}


@dataclass
class Walk:
    modules: list[str] = field(default_factory=list)  # first-entry order
    crossings: int = 0
    edges: dict[tuple[str, str], int] = field(default_factory=dict)  # (caller, callee) -> calls
    packages: list[str] = field(default_factory=list)  # first-entry order
    status: int = 0
    body: bytes = b""


def _module(frame: FrameType | None) -> str | None:
    if frame is None:
        return None
    name = frame.f_globals.get("__name__", "")
    return name if isinstance(name, str) and name.startswith("wattserve") else None


def _stream_parts() -> list[bytes]:
    from wattserve.openai import answers

    usage = answers.usage_dict(5, 3)
    return [
        answers.chunk_event("chat", "r", "m", "a", first=True),
        answers.chunk_event("chat", "r", "m", "b") + answers.chunk_event("chat", "r", "m", "c"),
        answers.chunk_event("chat", "r", "m", None, "stop")
        + answers.usage_event("chat", "r", "m", usage)
        + answers.DONE,
    ]


async def _service() -> Any:
    from wattserve.openai.transport import MockResponse, MockTransport
    from wattserve.serve.config import config_from_dict
    from wattserve.serve.replica import HttpReplica
    from wattserve.serve.service import Service

    def handler(method: str, path: str, body: bytes) -> MockResponse:
        if method == "GET":
            return MockResponse(200, b'{"data": [{"id": "m"}]}')
        return MockResponse(200, _stream_parts())

    cfg = config_from_dict(
        {
            "models": [{"name": "m", "replicas": [{"kind": "url", "url": "http://r/v1"}]}],
            "cache": {"enabled": True},
            "energy": {"meter": "null"},
        }
    )
    # MockTransport answers whole MockResponses, not the Transport protocol's Connection
    mocks: list[Any] = [MockTransport(handler) for _ in range(2)]
    reps = [
        HttpReplica(f"m/{i}", "m", f"http://r{i}/v1", transport=mock)
        for i, mock in enumerate(mocks)
    ]
    svc = Service(cfg, replicas=reps)
    await svc.start()
    return svc


async def measure(prompt: str = "walk me through it") -> Walk:
    """One streaming cache-miss request through a started ``Service``; its walk."""
    svc = await _service()
    try:
        gw = svc.gateway
        body = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": prompt}]})
        warm = await gw.handle("chat", body)  # imports and first-use memos stay out of the walk
        if warm.stream is not None:
            _ = [c async for c in warm.stream]
        body = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": prompt + "!"}]})
        walk = Walk()

        def profile(frame: FrameType, event: str, arg: object) -> None:
            if event != "call":
                return
            callee = _module(frame)
            if callee is None:
                return
            if callee not in walk.modules:
                walk.modules.append(callee)
            caller = _module(frame.f_back)
            if caller is not None and caller != callee:
                walk.crossings += 1
                walk.edges[(caller, callee)] = walk.edges.get((caller, callee), 0) + 1

        sys.setprofile(profile)
        try:
            reply = await gw.handle("chat", body)
            parts = [reply.body] if reply.stream is None else [c async for c in reply.stream]
        finally:
            sys.setprofile(None)
        walk.status = reply.status
        for m in walk.modules:
            package = m.split(".")[1]
            if package not in walk.packages:
                walk.packages.append(package)
        walk.body = b"".join(p for p in parts if p)
        hit = dict(reply.headers).get("x-wattserve-cache")
        assert hit == "miss", f"the walked request was not a cache miss: {hit}"
        return walk
    finally:
        await svc.stop()


def main() -> None:
    walk = asyncio.run(measure())
    print(f"status {walk.status}, {len(walk.modules)} modules, {walk.crossings} crossings")
    print(f"packages: {', '.join(walk.packages)}")
    for m in walk.modules:
        print(f"  {m}")
    for (a, b), n in sorted(walk.edges.items(), key=lambda kv: -kv[1]):
        print(f"  {n:3d}  {a} -> {b}")


if __name__ == "__main__":
    main()
