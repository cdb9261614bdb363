"""Runner, store and resume, in process against a small fake engine and meter (fast)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from wattserve.bench import store
from wattserve.bench.benchmark import load_points, resume_benchmark, run_benchmark
from wattserve.bench.config import BenchConfig
from wattserve.bench.runner import run_schedule, send_error_stats_ms, sleep_until
from wattserve.engines.base import EngineBase
from wattserve.types import Chunk, EnergyReading, Request, Usage


class FakeEngine(EngineBase):
    """Streams ``max_tokens`` one-token chunks, ``delay_s`` apart; fails ids in ``fail``."""

    name = "fake"

    def __init__(self, delay_s: float = 0.002, fail: set[str] = frozenset(), started=None):
        self.delay_s = delay_s
        self.fail = set(fail)
        self.in_flight = 0
        self.peak = 0
        self.seen: list[str] = []

    async def stream(self, req: Request):
        self.seen.append(req.id)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if req.id in self.fail:
                raise RuntimeError("boom")
            for _ in range(req.max_tokens):
                await asyncio.sleep(self.delay_s)
                yield Chunk("x", time.perf_counter(), tokens=1)
            yield Chunk(
                "",
                time.perf_counter(),
                finish_reason="length",
                usage=Usage(req.input_tokens or 0, req.max_tokens),
            )
        finally:
            self.in_flight -= 1


class FakeMeter:
    """10 W constant: cumulative joules = 10 * t."""

    def read(self) -> EnergyReading:
        t = time.perf_counter()
        return EnergyReading(t, {"cpu": 10.0 * t}, {"cpu": "modeled"})


@pytest.fixture(autouse=True)
def _small_environment(monkeypatch):
    """collect_environment imports torch (seconds); the runner only stores what it returns."""
    monkeypatch.setattr("wattserve.bench.benchmark.environment", lambda: {"python": "test"})


def reqs(n, tokens=4):
    return [Request(id=f"r{i}", prompt="p", max_tokens=tokens, input_tokens=3) for i in range(n)]


async def test_sleep_until_sub_ms():
    errs = []
    for _ in range(20):
        t = time.perf_counter() + 0.003
        await sleep_until(t)
        errs.append(time.perf_counter() - t)
    # never early; on an idle machine well under 1 ms, bounded loosely for a loaded CI box
    assert min(errs) >= 0 and sorted(errs)[10] < 0.010


async def test_concurrency_bound_and_records_written_as_they_finish():
    eng = FakeEngine(delay_s=0.003)
    lines = []
    run = await run_schedule(
        eng, reqs(12), [0.0] * 12, max_concurrency=3, label="c3", on_record=lines.append
    )
    assert eng.peak == 3
    assert len(lines) == 12 and {r["request_id"] for r in lines} == {f"r{i}" for i in range(12)}
    assert all(r["point"] == "c3" and r["error"] is None and r["output_tokens"] == 4 for r in lines)
    assert run.first_full_s is not None and run.last_send_s >= run.first_full_s


async def test_rate_schedule_is_followed():
    eng = FakeEngine(delay_s=0.001)
    offsets = [i * 0.01 for i in range(30)]
    run = await run_schedule(eng, reqs(30, tokens=1), offsets, max_concurrency=None)
    by_id = {c.request_id: c.sent_s - run.t0 for c in run.completions}
    sent = [by_id[f"r{i}"] for i in range(30)]
    assert sent == sorted(sent)  # in schedule order
    assert min(s - o for s, o in zip(sent, offsets, strict=True)) >= 0  # never early
    st = send_error_stats_ms(run.send_error_s)
    assert 0 <= st["p50"] <= st["p99"] <= st["max"] and st["p50"] < 20.0


def test_run_benchmark_writes_run_dir_and_catalog(tmp_path):
    cfg = BenchConfig(
        model="fake",
        num_prompts=24,
        input_len=4,
        output_len=4,
        max_concurrencies=[1, 4],
        num_warmups=2,
        result_dir=str(tmp_path),
        label="unit",
        goodput={"e2el": 5000},
    )
    eng = FakeEngine(fail={"req-5"})
    rec = run_benchmark(cfg, engine=eng, meter=FakeMeter())
    rdir = tmp_path / rec.run_id
    assert rec.status == "complete" and rec.run_id.startswith("unit-")
    assert {"run.json", "requests.jsonl", "energy.csv", "summary.csv"} <= {
        p.name for p in rdir.iterdir()
    }
    lines = store.read_requests(rdir / "requests.jsonl")
    assert len(lines) == 48 and not any(r["request_id"].startswith("warmup") for r in lines)
    assert "warmup-0" in eng.seen
    pts = load_points(rdir)
    assert [p.label for p in pts] == ["c1", "c4"]
    for p in pts:
        assert (p.summary.completed, p.summary.failed) == (23, 1)
        assert p.summary.slo_attainment == pytest.approx(23 / 24)
        assert p.summary.energy_source == "modeled" and p.summary.avg_power_w == pytest.approx(
            10.0, rel=0.01
        )
        assert p.summary.energy_per_output_token_j > 0
    csv_rows = (rdir / "summary.csv").read_text().splitlines()
    assert len(csv_rows) == 3 and csv_rows[0].startswith("point,")
    data = json.loads((rdir / "run.json").read_text())
    assert data["schema_version"] == 1 and data["config"]["max_concurrencies"] == [1, 4]
    assert data["environment"] and data["status"] == "complete"
    [row] = store.catalog_list(tmp_path)
    assert row["run_id"] == rec.run_id and row["completed"] == 46 and row["status"] == "complete"
    assert (
        store.find_run("unit", tmp_path) == rdir.resolve()
        or store.find_run("unit", tmp_path) == rdir
    )


def test_resume_skips_finished_reruns_failed_and_dedupes(tmp_path):
    cfg = BenchConfig(
        model="fake",
        num_prompts=10,
        input_len=4,
        output_len=3,
        max_concurrencies=[2],
        result_dir=str(tmp_path),
    )
    rdir = tmp_path / "r"
    rdir.mkdir()
    # a killed run: 4 lines written (one of them an error), then a torn half line
    first = run_benchmark(cfg, engine=FakeEngine(fail={"req-3"}), meter=None, run_dir=rdir)
    assert first.status == "complete"
    lines = (rdir / "requests.jsonl").read_text().splitlines()
    keep = [
        line
        for line in lines
        if json.loads(line)["request_id"] in {"req-0", "req-1", "req-2", "req-3"}
    ]
    (rdir / "requests.jsonl").write_text("\n".join(keep) + "\n" + keep[0][:40])
    data = json.loads((rdir / "run.json").read_text())
    data.update(status="running", points=[])
    (rdir / "run.json").write_text(json.dumps(data))

    eng = FakeEngine()
    rec = resume_benchmark(rdir, engine=eng, meter=None)
    assert sorted(r for r in eng.seen if r.startswith("req-")) == sorted(
        ["req-3"] + [f"req-{i}" for i in range(4, 10)]
    )
    recs = store.read_requests(rdir / "requests.jsonl")
    assert (
        len((rdir / "requests.jsonl").read_text().splitlines()) == len(recs) == 11
    )  # 10 + old error line
    best = store.latest_per_request(recs)
    assert {k[1] for k in best} == {f"req-{i}" for i in range(10)}
    assert all(r["error"] is None for r in best.values())
    assert rec.status == "complete" and rec.summary.completed == 10 and rec.summary.failed == 0
    assert json.loads((rdir / "run.json").read_text())["segments"][-1]


@pytest.mark.slow
def test_real_model_exact_lengths_and_modeled_energy(tmp_path, local_engine):
    """The embedded model: prompts have the stated token count, outputs the stated length."""
    from wattserve.energy.modeled import ModeledCpuMeter

    cfg = BenchConfig(
        model="smollm2-135m",
        num_prompts=4,
        input_len=16,
        output_len=6,
        max_concurrencies=[2],
        result_dir=str(tmp_path),
    )
    rec = run_benchmark(cfg, engine=local_engine, meter=ModeledCpuMeter(scope="process"))
    lines = store.read_requests(tmp_path / rec.run_id / "requests.jsonl")
    assert len(lines) == 4 and all(r["error"] is None for r in lines)
    assert {(r["input_tokens"], r["output_tokens"]) for r in lines} == {(16, 6)}
    s = rec.summary
    assert s.completed == 4 and s.output_tokens == 24
    assert s.energy_source == "modeled" and s.energy_per_output_token_j > 0
    assert s.latency["tpot_s"]["p50"] > 0 and s.latency["itl_s"]["p50"] > 0
