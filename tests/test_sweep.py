"""Replica sweep logic against paced mock replicas (separate processes, no model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wattserve.errors import ConfigError
from wattserve.sweep.config import SweepConfig
from wattserve.sweep.replicas import ReplicaSet, plan_replicas
from wattserve.sweep.run import compare_replicas, point_id, read_rows, run_sweep


def test_plan_splits_threads_cores_and_memory():
    p = plan_replicas(2, 4, pin=True, cpu_ids=[0, 1, 2, 3])
    assert p.threads_per_replica == 2 and p.cpus == [[0, 1], [2, 3]]
    assert plan_replicas(1, 2, pin=True, cpu_ids=[0, 1]).cpus == [[0, 1]]
    assert plan_replicas(2, 2, pin=True, cpu_ids=[0]).cpus == []  # too few cores: no pinning
    g = plan_replicas(4, 4, pin=False, memory_utilization=0.8)
    assert g.memory_fraction == pytest.approx(0.2) and g.cpus == []
    with pytest.raises(ConfigError):
        plan_replicas(3, 2)


def test_gpu_command_template_gets_port_and_memory_fraction():
    plan = plan_replicas(2, 2, pin=False, memory_utilization=0.9)
    rs = ReplicaSet(
        "Qwen/Qwen2-0.5B",
        plan,
        command="vllm serve {model} --port {port} --gpu-memory-utilization {memory_fraction}",
    )
    assert rs.command_for(1, 8123) == [
        "vllm",
        "serve",
        "Qwen/Qwen2-0.5B",
        "--port",
        "8123",
        "--gpu-memory-utilization",
        "0.45",
    ]
    cpu = ReplicaSet(
        "m", plan_replicas(2, 2, pin=True, cpu_ids=[0, 1]), backend="local"
    ).command_for(1, 9000)
    assert cpu[cpu.index("--threads") + 1] == "1" and cpu[cpu.index("--cpus") + 1] == "1"


def test_gpu_replicas_must_fit_the_device_share():
    from wattserve.sweep.run import check_fit

    cfg = SweepConfig(
        model="deepseek-v2-lite", command="vllm serve {model} --port {port}", memory_utilization=0.9
    )
    gib = 1024**3
    check_fit(cfg, 2, 80 * gib)  # 2 x 36 GiB shares hold 29.3 GiB of weights + a little KV cache
    with pytest.raises(ConfigError, match="do not fit"):
        check_fit(cfg, 3, 80 * gib)  # 24 GiB shares cannot
    check_fit(cfg, 3, None)  # no GPU to ask: nothing checked


def test_point_ids_and_comparison_by_hand():
    assert point_id("local", 2, 8, float("inf")) == "local-r2-c8"
    assert point_id("local", 1, 4, 2.5) == "local-r1-c4-rate2.5"
    rows = [
        {
            "backend": "local",
            "replicas": 1,
            "threads_per_replica": 2,
            "max_concurrency": 1,
            "tok_s_per_device": 44.5,
            "j_per_token": 0.2,
        },
        {
            "backend": "local",
            "replicas": 2,
            "threads_per_replica": 1,
            "max_concurrency": 1,
            "tok_s_per_device": 53.9,
            "j_per_token": 0.18,
        },
    ]
    (c,) = compare_replicas(rows)
    assert c["throughput_ratio"] == pytest.approx(53.9 / 44.5) and c[
        "energy_ratio"
    ] == pytest.approx(0.9)
    assert c["base"] == "1 x 2 threads" and c["alt"] == "2 x 1 threads"


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="--replicas"):
        SweepConfig.build(replicas=[0])
    with pytest.raises(ConfigError, match="objective"):
        SweepConfig.build(objective="fast")
    with pytest.raises(ConfigError, match="unknown backend"):
        SweepConfig.build(backends=["vllm"])


def _cfg(tmp_path: Path, **kw) -> SweepConfig:
    base = {
        "backends": ["mock"],
        "replicas": [1, 2],
        "max_concurrencies": [1, 4],
        "num_prompts": 8,
        "output_len": 6,
        "input_len": 8,
        "threads": 2,
        "meter": "modeled",
        "result_dir": str(tmp_path / "sweep"),
        "mock_token_s": 0.01,
        "num_warmups": 0,
        "timeout_s": 30,
    }
    base.update(kw)
    return SweepConfig(**base)


def test_mock_sweep_rows_frontier_and_recommendation(tmp_path):
    cfg = _cfg(tmp_path, goodput={"tpot": 1000})
    res = run_sweep(cfg)
    assert res.ran == 4 and res.skipped == 0
    rows = read_rows(Path(cfg.result_dir))
    assert [r["point"] for r in rows] == ["mock-r1-c1", "mock-r1-c4", "mock-r2-c1", "mock-r2-c4"]
    for r in rows:
        assert int(r["completed"]) == 8 and int(r["failed"]) == 0
        assert float(r["tok_s_per_device"]) > 0 and float(r["tok_s_per_user"]) > 0
        assert r["pareto"] in ("0", "1")
        assert float(r["slo_attainment"]) == 1.0
    by = {r["point"]: r for r in rows}
    # paced replicas: 4 concurrent requests finish about 4x the tokens per second of 1
    assert float(by["mock-r1-c4"]["tok_s_per_device"]) > 2 * float(
        by["mock-r1-c1"]["tok_s_per_device"]
    )
    # two replicas: round robin sends half of the requests (and output tokens) to each
    assert json.loads(by["mock-r2-c4"]["replica_tokens"]) == {"replica-0": 24, "replica-1": 24}
    assigned = json.loads((Path(cfg.result_dir) / "points/mock-r2-c4/replicas.json").read_text())[
        "assignments"
    ]
    measured = [
        v for k, v in assigned.items() if k.startswith("req-")
    ]  # the probe request is not measured
    assert measured.count("replica-0") == measured.count("replica-1") == 4
    run_json = json.loads((Path(cfg.result_dir) / "points/mock-r1-c1/run.json").read_text())
    assert (
        run_json["footprint"]["params"] == 134_515_008
    )  # every bench record carries the footprint
    assert by["mock-r2-c1"]["omp_wait_policy"] == "passive"
    doc = json.loads((Path(cfg.result_dir) / "sweep.json").read_text())
    assert (
        doc["recommendation"]["point"] in doc["frontier"]
        or doc["recommendation"]["index"] is not None
    )
    assert doc["footprint"]["params"] == 134_515_008  # smollm2-135m, the default model
    assert len(doc["comparison"]) == 2
    best = max(rows, key=lambda r: float(r["tok_s_per_device"]))
    assert doc["recommendation"]["point"] == best["point"]

    # nothing left to run: a rerun only re-analyses (new SLOs allowed), other settings are refused
    again = run_sweep(_cfg(tmp_path, goodput={"tpot": 0.001}))
    assert again.ran == 0 and again.skipped == 4 and again.recommendation.index is None
    with pytest.raises(ConfigError, match="output_len"):
        run_sweep(_cfg(tmp_path, output_len=7))


def test_killed_sweep_resumes_and_leaves_no_replicas(tmp_path):
    out = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "wattserve",
        "sweep",
        "--backend",
        "mock",
        "--replicas",
        "2",
        "--max-concurrency",
        "1,2",
        "--num-prompts",
        "24",
        "--output-len",
        "8",
        "--meter",
        "null",
        "--threads",
        "2",
        "--num-warmups",
        "0",
        "--result-dir",
        str(out),
    ]
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and len(read_rows(out)) < 1:
            time.sleep(0.1)
        assert len(read_rows(out)) >= 1, "no point finished within 60 s"
        replica_pids = [
            p
            for f in (out / "points").glob("*/replicas.json")
            for p in json.loads(f.read_text())["pids"]
        ]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    done_before = len(read_rows(out))
    # the orphaned replica servers notice their parent is gone and exit by themselves
    deadline = time.monotonic() + 10
    alive = replica_pids
    while alive and time.monotonic() < deadline:
        alive = [
            p
            for p in alive
            if Path(f"/proc/{p}").exists()
            and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]
        ]
        time.sleep(0.2)
    assert not alive, f"replica processes still running: {alive}"
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = read_rows(out)
    assert sorted(r["point"] for r in rows) == ["mock-r2-c1", "mock-r2-c2"]
    assert f"{2 - done_before} run, {done_before} resumed" in res.stdout
    assert "recommended:" in res.stdout


@pytest.mark.slow
def test_real_embedded_model_through_replica_processes(tmp_path):
    """Two llama.cpp replicas (1 thread each) serving the embedded SmolLM2-135M."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python not installed (wheel in ../shared/wheels)")
    cfg = _cfg(
        tmp_path,
        backends=["llama-cpp"],
        replicas=[2],
        max_concurrencies=[2],
        num_prompts=4,
        output_len=4,
        mock_token_s=0.0,
        timeout_s=120,
        ready_timeout_s=120,
    )
    res = run_sweep(cfg)
    (row,) = res.rows
    assert int(row["completed"]) == 4 and int(row["failed"]) == 0
    assert json.loads(row["replica_tokens"]) == {"replica-0": 8, "replica-1": 8}
    assert row["tok_s_per_device"] > 0 and row["j_per_token"] is not None
