"""``wattserve bench`` driven by a ``vllm bench serve`` command line: flags, result, checks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from wattserve.bench import store
from wattserve.bench.workloads import _lengths
from wattserve.commands.bench import join_goodput

# every key `vllm bench serve --save-result` writes for a generation run (vllm/benchmarks/serve.py)
VLLM_KEYS = (
    "date endpoint_type backend label model_id tokenizer_id num_prompts request_rate burstiness "
    "max_concurrency duration completed failed total_input_tokens total_output_tokens "
    "request_throughput request_goodput output_throughput total_token_throughput "
    "max_output_tokens_per_s max_concurrent_requests rtfx"
).split()
DETAILED = ("input_lens", "output_lens", "ttfts", "itls", "generated_texts", "errors")
MS_METRICS = ("ttft", "tpot", "itl", "e2el")


@pytest.fixture
def wattserve(monkeypatch, capsys):
    """The real CLI entry point, in process: (exit code, stdout, stderr, seconds)."""
    from wattserve.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("WATTSERVE_METER", "null")
    monkeypatch.delenv("WATTSERVE_HOME", raising=False)
    # collect_environment imports torch (seconds); run.json only stores what it returns
    monkeypatch.setattr("wattserve.bench.benchmark.environment", lambda: {"python": "test"})

    def run(*args: str) -> tuple[int, str, str, float]:
        capsys.readouterr()
        t0 = time.perf_counter()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return code, out.out, out.err, time.perf_counter() - t0

    return run


@pytest.fixture(scope="module")
def server():
    """Mock OpenAI server on a free 127.0.0.1 port: 20 ms to the first token, then 5 ms a token."""
    from wattserve.engines.mock_server import MockServer

    with MockServer(ttft_ms=20.0, token_delay_ms=5.0, follow_max_tokens=True) as srv:
        yield srv


def _vllm_cmd(url: str, result_dir: Path, *extra: str) -> list[str]:
    return [
        "bench",
        "--backend",
        "openai",
        "--base-url",
        url,
        "--model",
        "mock",
        "--dataset-name",
        "random",
        "--random-input-len",
        "32",
        "--random-output-len",
        "8",
        "--num-prompts",
        "8",
        "--max-concurrency",
        "2",
        "--save-result",
        "--result-dir",
        str(result_dir),
        *extra,
    ]


def test_vllm_command_line_writes_vllm_result_in_ms(tmp_path, server, wattserve):
    code, out, err, _ = wattserve(
        *_vllm_cmd(server.url, tmp_path, "--goodput", "ttft:200", "tpot:50")
    )
    assert code == 0, err
    [path] = tmp_path.glob("*.json")
    # vLLM's default name: {label or backend}-{rate}qps-concurrency{c}-{model}-{date}.json
    assert re.fullmatch(r"openai-infqps-concurrency2-mock-\d{8}-\d{6}\.json", path.name), path
    assert f"result file: {path}" in out
    res = json.loads(path.read_text())
    for key in VLLM_KEYS:
        assert key in res, key
    for m in MS_METRICS:
        for stat in ("mean", "median", "std", "p50", "p90", "p99"):
            assert isinstance(res[f"{stat}_{m}_ms"], float), (stat, m)
    assert not any(k in res for k in DETAILED)
    assert res["completed"] == 8 and res["failed"] == 0 and res["num_prompts"] == 8
    assert res["max_concurrency"] == 2 and res["request_rate"] == "inf"
    assert res["model_id"] == "mock" and res["backend"] == "openai"
    assert res["total_output_tokens"] == 64
    assert res["total_input_tokens"] == 8 * 32  # the mock counts prompt words, one per token
    assert 1 <= res["max_concurrent_requests"] <= 2
    # milliseconds: the server waits 20 ms before the first token and 5 ms between tokens
    # (lower bounds only: a busy client reads late, never early)
    assert 20 <= res["mean_ttft_ms"] < 1000 and res["median_ttft_ms"] <= res["p99_ttft_ms"]
    assert res["mean_e2el_ms"] >= 20 + 7 * 5 and 0 < res["mean_tpot_ms"] < 500
    assert 0 <= res["median_itl_ms"] < 500
    # the same numbers as the raw records (seconds) in requests.jsonl
    [run_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    recs = store.read_requests(run_dir / store.REQUESTS)
    ttft = [r["first_token_s"] - r["sent_s"] for r in recs]
    tpot = [(r["end_s"] - r["first_token_s"]) / 7 for r in recs]
    assert res["mean_ttft_ms"] == pytest.approx(1000 * float(np.mean(ttft)), rel=1e-6)
    assert res["mean_tpot_ms"] == pytest.approx(1000 * float(np.mean(tpot)), rel=1e-6)
    assert res["duration"] < 60 and res["output_throughput"] == pytest.approx(64 / res["duration"])
    # goodput: both SLOs from one --goodput flag, every request met them
    assert res["request_goodput"] == pytest.approx(res["request_throughput"])
    data = store.load_run_json(run_dir)
    assert data["config"]["goodput"] == {"ttft": 200.0, "tpot": 50.0}
    assert data["config"]["input_len"] == 32 and data["config"]["output_len"] == 8
    # run.json keeps its own records and gains the vLLM keys per point
    [point] = data["points"]
    assert point["summary"]["completed"] == 8
    assert point["vllm"]["mean_ttft_ms"] == pytest.approx(res["mean_ttft_ms"])
    assert data["result_files"] == [str(path)]


def test_repeated_goodput_detailed_and_result_filename_per_point(tmp_path, server, wattserve):
    cmd = _vllm_cmd(server.url, tmp_path, "--save-detailed", "--result-filename", "r.json")
    i = cmd.index("--max-concurrency")
    cmd[i + 1] = "1,2"
    # a 1 µs TTFT SLO no request meets: goodput 0 shows the flag reached the computation
    code, _, err, _ = wattserve(*cmd, "--goodput", "ttft:0.001", "--goodput", "tpot:50")
    assert code == 0, err
    files = sorted(p.name for p in tmp_path.glob("*.json"))
    assert files == ["r-c1.json", "r-c2.json"]
    for name, conc in (("r-c1.json", 1), ("r-c2.json", 2)):
        res = json.loads((tmp_path / name).read_text())
        assert res["max_concurrency"] == conc and res["completed"] == 8
        assert res["request_goodput"] == 0.0
        assert res["output_lens"] == [8] * 8 and res["input_lens"] == [32] * 8
        assert [len(x) for x in res["itls"]] == [7] * 8 and res["errors"] == [""] * 8
        assert all(0.015 < t < 30.0 for t in res["ttfts"])  # per-request lists in s, as vLLM's
        assert all(t == " tok" * 8 for t in res["generated_texts"])
    [run_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    cfg = store.load_run_json(run_dir)["config"]
    assert cfg["goodput"] == {"ttft": 0.001, "tpot": 50.0}


def test_join_goodput_takes_vllm_variadic_form():
    assert join_goodput(["--goodput", "ttft:200", "tpot:50", "--num-prompts", "8"]) == [
        "--goodput",
        "ttft:200 tpot:50",
        "--num-prompts",
        "8",
    ]
    assert join_goodput(["--goodput=ttft:1", "e2el:9"]) == ["--goodput", "ttft:1 e2el:9"]
    assert join_goodput(["--goodput", "ttft:1", "--goodput", "tpot:2"]) == [
        "--goodput",
        "ttft:1",
        "--goodput",
        "tpot:2",
    ]
    assert join_goodput(["--goodput"]) == ["--goodput"]  # click reports the missing value
    assert join_goodput(["--", "--goodput", "a", "b"]) == ["--", "--goodput", "a", "b"]


def test_range_ratio_bounds_follow_vllm():
    """floor(L*(1-r)) .. ceil(L*(1+r)) inclusive: 10 with r=0.25 gives 7..13."""
    got = _lengths(4000, 10, 0.25, np.random.default_rng(0))
    assert min(got) == 7 and max(got) == 13
    assert set(_lengths(500, 1, 0.9, np.random.default_rng(0))) == {1, 2}  # never 0 tokens


def _no_gpu_meter() -> bool:
    from wattserve.energy.errors import MeterError
    from wattserve.energy.nvml import NvmlMeter

    try:
        NvmlMeter()
    except MeterError:
        return True
    return False


BAD_INPUTS = [
    (["--dataset-name", "custom", "--dataset-path", "{tmp}/missing.jsonl"], "no such file"),
    (["--dataset-name", "sharegpt", "--dataset-path", "{tmp}"], "not a file"),
    (
        ["--dataset-name", "custom", "--dataset-path", "{tmp}/bad.jsonl"],
        "bad.jsonl:2: invalid JSON",
    ),
    (["--dataset-path", "{tmp}/bad.jsonl"], "random takes no --dataset-path"),
    (["--result-dir", "{tmp}/bad.jsonl/runs"], "is not a directory"),
    (["--base-url", "localhost:8000"], "expected http://HOST:PORT"),
    (["--random-range-ratio", "1"], "--random-range-ratio"),
    (["--goodput", "ttft:fast"], "expected NAME:MS"),
    (["--goodput", "ttft:200", "latency:5"], "goodput SLO 'latency' unknown"),
    (["--save-result", "--result-filename", "{tmp}/"], "--result-filename"),
    pytest.param(
        ["--meter", "nvml"],
        "NVML",
        marks=pytest.mark.skipif(not _no_gpu_meter(), reason="an NVML GPU is present"),
    ),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS)
def test_bad_input_fails_before_the_engine(args, message, tmp_path, wattserve, monkeypatch):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{"prompt": \n')

    def no_engine(cfg):  # the embedded model would load for tens of seconds
        raise AssertionError("an engine was created")

    monkeypatch.setattr("wattserve.bench.benchmark.make_engine", no_engine)
    runs = tmp_path / "runs"
    base = ["bench", "--model", "smollm2-135m", "--result-dir", str(runs), "--meter", "null"]
    code, out, err, seconds = wattserve(*base, *[a.format(tmp=tmp_path) for a in args])
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert seconds < 5.0
    assert not runs.exists()  # nothing created for a run that never started


def test_missing_dataset_fails_fast_in_a_real_process(tmp_path):
    """The whole CLI, embedded model named: exits in seconds (loading it would take tens)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "wattserve", "bench", "--model", "smollm2-135m"]
    cmd += ["--dataset-name", "custom", "--dataset-path", str(tmp_path / "none.jsonl")]
    cmd += ["--result-dir", str(tmp_path / "runs")]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    seconds = time.perf_counter() - t0
    assert r.returncode != 0 and "no such file" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert seconds < 20.0, seconds


@pytest.mark.parametrize("backend, endpoint", [("vllm", "completions"), ("openai-chat", "chat")])
def test_vllm_backend_names_and_root_url(backend, endpoint, tmp_path, server, wattserve):
    """``--backend vllm|openai-chat --base-url http://HOST:PORT`` (no /v1), as vLLM takes them."""
    cmd = _vllm_cmd(server.url.removesuffix("/v1"), tmp_path, "--num-prompts", "2")
    cmd[cmd.index("--backend") + 1] = backend
    code, _, err, _ = wattserve(*cmd)
    assert code == 0, err
    [run_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    data = store.load_run_json(run_dir)
    assert data["config"]["backend"] == "openai" and data["config"]["endpoint"] == endpoint
    [path] = tmp_path.glob("*.json")
    assert path.name.startswith("openai-infqps-concurrency2-mock-")
    assert json.loads(path.read_text())["completed"] == 2
