"""Streams cut short are `truncated` errors, not successes (a scripted OpenAI server)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from wattserve.bench import store
from wattserve.bench.benchmark import load_points, run_benchmark
from wattserve.bench.config import BenchConfig
from wattserve.engines.base import complete
from wattserve.engines.openai_http import OpenAIHTTPEngine
from wattserve.types import Request

# how the n-th request's stream ends (cycled): whole, no finish reason, no [DONE], short length
ENDINGS = ("ok", "null", "no-done", "short")


def _frame(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _choice(text: str, reason: str | None) -> dict:
    return {"choices": [{"index": 0, "text": text, "finish_reason": reason}]}


class ScriptedServer:
    """/v1/completions whose n-th stream ends as ``ENDINGS[n % 4]`` (or ``force``), on a free
    127.0.0.1 port, in a background thread."""

    def __init__(self, force: str | None = None) -> None:
        self.force = force
        self.count = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "scripted"}]})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        want = int(body["max_tokens"])
        ending = self.force or ("ok" if want == 1 else ENDINGS[self.count % len(ENDINGS)])
        self.count += want > 1  # the 1-token probe is not counted
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        n = want if ending == "ok" else 1
        for k in range(n):
            last = k == n - 1
            reason = None if not last or ending in ("null", "no-done") else "length"
            await resp.write(_frame(_choice("x", reason)))
        usage = {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n}
        await resp.write(_frame({"choices": [], "usage": usage}))
        if ending != "no-done":
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _small_environment(monkeypatch):
    monkeypatch.setattr("wattserve.bench.benchmark.environment", lambda: {"python": "test"})


@pytest.mark.parametrize(
    ("ending", "ignore_eos", "error"),
    [
        ("ok", True, None),
        ("null", True, "truncated: stream from "),
        ("no-done", True, "truncated: stream from "),
        ("short", True, "truncated: stream from "),
        ("short", False, None),  # 'length' early without ignore_eos: the server's limit
    ],
)
def test_engine_stream_endings(ending, ignore_eos, error):
    from wattserve.bench.metrics import error_kind, mark_truncation

    async def one(url: str):
        engine = OpenAIHTTPEngine(url, model="scripted", endpoint="completions")
        req = Request(id="a", prompt="p", max_tokens=8, ignore_eos=ignore_eos)
        try:
            return mark_truncation(await complete(engine, req, timeout_s=10), req)
        finally:
            await engine.aclose()

    with ScriptedServer(force=ending) as srv:
        c = asyncio.run(one(srv.url))
    if error is None:
        assert c.ok and error_kind(c) is None
    else:
        assert c.error is not None and c.error.startswith(error), c.error
        assert error_kind(c) == "truncated"


def test_bench_counts_truncated_apart_from_ok_and_goodput(tmp_path, scripted):
    cfg = BenchConfig(
        model="scripted",
        backend="openai",
        base_url=scripted.url,
        input_len=4,
        output_len=8,
        num_prompts=8,
        max_concurrencies=[4],
        meter="null",
        goodput={"e2el": 60000},
        result_dir=str(tmp_path),
    )
    rec = run_benchmark(cfg)
    [point] = load_points(tmp_path / rec.run_id)
    s = point.summary
    assert (s.completed, s.failed, s.truncated) == (2, 6, 6)
    assert s.output_tokens == 2 * 8  # truncated tokens are not counted
    assert s.slo_attainment == pytest.approx(2 / 8)
    assert s.goodput_rps == pytest.approx(2 / s.duration_s)
    records = store.read_requests(tmp_path / rec.run_id / store.REQUESTS)
    kinds = sorted(str(r["error_kind"]) for r in records)
    assert kinds == ["None"] * 2 + ["truncated"] * 6
    assert all(r["error"].startswith("truncated: ") for r in records if r["error_kind"])
