"""The loop closed on mock servers: bench each model (constant-power replay meter) ->
``wattserve fit`` the run directories -> serve both models with the trained router and an
LEC cache (the fits file given to the gateway; one replica metered, one unmetered and so
charged by its fit) -> the gateway's request log -> ``wattserve simulate --fits --trace
--router`` -> the simulated and the served total joules agree within 10%."""

from __future__ import annotations

import asyncio
import json
import re
import time
from types import SimpleNamespace

import pytest

from routing_support import easy_prompt, hard_prompt, train_router
from wattserve.bench import store
from wattserve.bench.benchmark import run_benchmark
from wattserve.bench.config import BenchConfig
from wattserve.cli import main
from wattserve.energy.replay import ReplayMeter
from wattserve.engines.mock_server import MockServer
from wattserve.serve.config import config_from_dict
from wattserve.serve.service import Service
from wattserve.types import EnergyReading

CPU = "Test CPU 9000"
WATTS = 20.0
DELAYS = {"weak": (8.0, 3.0), "strong": (12.0, 6.0)}  # model -> (ttft, per-token) ms


@pytest.fixture(autouse=True)
def _small_environment(monkeypatch):
    monkeypatch.setattr(
        "wattserve.bench.benchmark.environment", lambda: {"cpu": {"model": CPU}, "gpus": []}
    )


class ConstantPower:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def read(self) -> EnergyReading:
        t = time.perf_counter()
        return EnergyReading(t, {"cpu": WATTS * (t - self.t0)}, {"cpu": "replay"})


def constant_replay() -> ReplayMeter:
    return ReplayMeter(
        [EnergyReading(k * 0.05, {"cpu": WATTS * k * 0.05}, {"cpu": "replay"}) for k in range(4001)]
    )


def cli(args: list[str], capsys) -> SimpleNamespace:
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return SimpleNamespace(code=code, out=out.out, err=out.err)


def test_bench_fit_serve_simulate_agree(tmp_path, capsys):
    servers = {
        m: MockServer(follow_max_tokens=True, ttft_ms=t, token_delay_ms=d, model=m)
        for m, (t, d) in DELAYS.items()
    }
    for s in servers.values():
        s.start()
    try:
        # 1. bench each model at concurrency 1 (the gateway below serves one at a time)
        runs = []
        for model, srv in servers.items():
            cfg = BenchConfig(
                model=model,
                backend="openai",
                base_url=srv.url,
                input_lens=[4, 16, 32],
                output_lens=[2, 6, 12, 20],
                num_prompts=2,
                max_concurrencies=[1],
                energy_interval_s=0.02,
                result_dir=str(tmp_path / "runs"),
                label=model,
            )
            rec = run_benchmark(cfg, meter=constant_replay())
            rdir = tmp_path / "runs" / rec.run_id
            records = store.read_requests(rdir / store.REQUESTS)
            assert records and all(r["energy_j"] and r["energy_j"] > 0 for r in records)
            runs.append(str(rdir))
        # 2. fit both run directories
        fits = tmp_path / "fits.json"
        res = cli(["fit", *runs, "-o", str(fits), "--min-rows", "10", "--folds", "3"], capsys)
        assert res.code == 0, res.err
        got = {(f["model"], f["device"]) for f in json.loads(fits.read_text())["fits"]}
        assert got == {("weak", CPU), ("strong", CPU)}
        # 3. serve: router + LEC + both models; strong on an unmetered device (fitted)
        router = train_router(tmp_path)
        log_file = tmp_path / "served.jsonl"
        served_cfg = config_from_dict(
            {
                "models": [
                    {
                        "name": "weak",
                        "replicas": [{"kind": "url", "url": servers["weak"].url}],
                    },
                    {
                        "name": "strong",
                        "replicas": [
                            {
                                "kind": "url",
                                "url": servers["strong"].url,
                                "device": CPU,
                                "meter": "unmetered",
                            }
                        ],
                    },
                ],
                "fits": str(fits),
                "router": {"enabled": True, "file": str(router)},
                "cache": {"policy": "lec", "capacity_entries": 4},
                "energy": {"interval_s": 0.05},
                "auth": {"keys_env": None},
                "request_log": str(log_file),
            }
        )
        order = [0, 4, 0, 1, 5, 4, 2, 6, 0, 7, 3, 4, 1, 5, 0, 6, 2, 4, 7, 3]
        asyncio.run(serve(served_cfg, order))
        rows = [json.loads(line) for line in log_file.read_text().splitlines()]
        assert len(rows) == len(order) and all(r["error"] is None for r in rows)
        answered = [r for r in rows if not r["cache_hit"]]
        assert {r["served_model"] for r in answered} == {"weak", "strong"}
        assert {r["energy_source"] for r in answered} == {"replay", "fitted"}
        served_j = sum(r["energy_j"] for r in answered)
        # 4. replay the served trace through the simulator with the same fits and router
        out = tmp_path / "sim.json"
        res = cli(
            [
                "simulate",
                "--trace",
                str(log_file),
                "--fits",
                str(fits),
                "--router",
                str(router),
                "--policy",
                "lec",
                "--capacity",
                "4",
                "--output",
                str(out),
            ],
            capsys,
        )
        assert res.code == 0, res.err
        (sim,) = json.loads(out.read_text())["rows"]
        assert sim["hits"] == sum(r["cache_hit"] for r in rows)
        print(f"served {served_j:.3f} J, simulated {sim['total_j']:.3f} J, hits {sim['hits']}")
        assert sim["total_j"] == pytest.approx(served_j, rel=0.10), (sim, served_j)
    finally:
        for s in servers.values():
            s.stop()


async def serve(cfg, order: list[int]) -> None:
    """Send the requests of ``order`` (prompt indices) one at a time, streams drained."""
    svc = Service(cfg, meter=ConstantPower())
    await svc.start()
    prompts = [easy_prompt(i) for i in range(4)] + [hard_prompt(i) for i in range(4)]
    try:
        for n, q in enumerate(order):
            body = {
                "model": "auto",
                "prompt": prompts[q],
                "max_tokens": 6 + 2 * (q % 4),
                "temperature": 0,
                "stream": n % 2 == 0,
            }
            reply = await svc.gateway.handle("completions", json.dumps(body).encode())
            assert reply.status == 200
            if reply.stream is not None:
                async for _ in reply.stream:
                    pass
    finally:
        await svc.stop()


def test_report_shows_served_and_simulated(tmp_path, capsys):
    """A request log written by the gateway's writer (weak metered at 5% above its fit,
    strong charged its fit, repeats answered by the cache, one upstream error) -> wattserve
    simulate --fits --trace -> wattserve report --served --simulated --eval."""
    from wattserve.evaluate.summary import summarize
    from wattserve.fit import predict, save_fits
    from wattserve.serve.request_log import RequestLog
    from wattserve.types import ModelFit, Request

    coef = {"weak": (0.1, 0.001, 0.01, 0.0), "strong": (0.3, 0.002, 0.03, 0.0)}
    fits = [
        ModelFit(m, CPU, "energy_j", "physical", ("c0", "c1", "c2", "c3"), c, units="J")
        for m, c in coef.items()
    ]
    save_fits(fits, tmp_path / "fits.json")
    log_file = tmp_path / "served.jsonl"
    log = RequestLog(log_file)
    seen: set[int] = set()
    served_j = metered_j = 0.0
    order = [0, 1, 2, 0, 3, 1, 0, 4, 2, 5]
    for n, q in enumerate(order):
        model = "weak" if q % 2 == 0 else "strong"
        req = Request(f"r{n}", model, prompt=f"question {q}", max_tokens=8, endpoint="completions")
        n_in, n_out = 10 + q, 4 + q
        if q in seen:
            log.write(req, model, n_in, n_out, f"answer {q}", 0.0, "cache", cache_hit=True)
            continue
        seen.add(q)
        fitted = float(predict(fits[q % 2], n_in, n_out, warn=False))
        joules, source = (fitted * 1.05, "replay") if model == "weak" else (fitted, "fitted")
        log.write(req, model, n_in, n_out, f"answer {q}", joules, source)
        served_j += joules
        metered_j += joules if source == "replay" else 0.0
    bad = Request("r-bad", "weak", prompt="question 9", max_tokens=8, endpoint="completions")
    log.write(bad, "weak", 19, 0, None, 0.4, "replay", error="upstream status 502")
    log.close()
    sim_file = tmp_path / "sim.json"
    args = ["simulate", "--trace", str(log_file), "--fits", str(tmp_path / "fits.json")]
    args += ["--policy", "lec", "--capacity", "16", "--format", "json", "--output", str(sim_file)]
    res = cli(args, capsys)
    assert res.code == 0, res.err
    (sim,) = json.loads(sim_file.read_text())["rows"]
    assert sim["hits"] == 4 and sim["requests"] == 10
    # an eval summary as `wattserve eval` writes it (eval.json: summary)
    right = {"weak": 3, "strong": 4}  # of 5 items: accuracy 0.6 and 0.8
    records = {
        (m, f"i{k}"): {
            "family": "arith",
            "item_id": f"i{k}",
            "correct": k < right[m],
            "energy_j": 0.5,
            "error": None,
            "output_tokens": 4,
        }
        for m in right
        for k in range(5)
    }
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    summary = summarize(records, ["weak", "strong"], n_boot=50)
    (eval_dir / "eval.json").write_text(json.dumps({"summary": summary}))
    out = tmp_path / "r.html"
    args = ["report", "--served", str(log_file), "--simulated", str(sim_file)]
    res = cli([*args, "--eval", str(eval_dir), "-o", str(out)], capsys)
    assert res.code == 0, res.err
    page = out.read_text()
    assert "<h2>Served vs simulated</h2>" in page
    served_row = re.search(r"<tr><td>served \(request log\)</td>(.*?)</tr>", page)
    sim_row = re.search(r"<tr><td>simulated \(([^<]*)\)</td>(.*?)</tr>", page)
    assert served_row and sim_row, page
    cells = re.findall(r"<td>(.*?)</td>", served_row.group(1))
    assert cells[:3] == ["10", "4", "6"]  # requests (the error left out), hits, answers computed
    assert cells[3] == "strong 3, weak 3" and cells[4] == f"{served_j:.4g}"
    assert cells[5] == f"{metered_j:.4g} (replay 3)" and cells[6].endswith("(3)")
    cells = re.findall(r"<td>(.*?)</td>", sim_row.group(2))
    assert sim_row.group(1).startswith("LEC") or "lec" in sim_row.group(1).lower()
    assert cells[:4] == ["10", "4", "6", "strong 3, weak 3"]
    assert cells[4] == f"{sim['total_j']:.4g}"
    rel = (sim["total_j"] - served_j) / served_j
    assert rel < 0 and cells[-1] == f"{rel * 100:+.2f}%"
    assert "1 errored request(s) in the log are left out" in page
    assert 'alt="Served vs simulated joules" src="data:image/png;base64,' in page
    # J per correct answer: the joules served over the answers sent x their model's accuracy
    correct = 6 * 0.6 + 4 * 0.8  # weak sent 6 answers (3 hits), strong 4 (1 hit)
    assert f"<b>J per correct answer, served:</b> {served_j / correct:.4g} J" in page
    # the log as PATH: the same section, written beside the log
    res = cli(["report", str(log_file), "--simulated", str(sim_file)], capsys)
    assert res.code == 0, res.err
    assert "Served vs simulated" in (tmp_path / "served.report.html").read_text()
    # bad input: one line on stderr, non-zero exit
    for bad_args in (
        ["report", "--simulated", str(sim_file)],
        ["report", "--served", str(log_file), "--simulated", str(tmp_path / "fits.json")],
        ["report", "--served", str(tmp_path / "none.jsonl")],
        ["report", "--served", str(tmp_path / "fits.json")],
    ):
        res = cli(bad_args, capsys)
        assert res.code != 0 and "Traceback" not in res.err and res.err.strip(), bad_args
        assert len(res.err.strip().splitlines()) == 1, res.err
