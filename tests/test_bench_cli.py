"""``wattserve bench`` end to end in subprocesses: SIGKILL mid-run, ``--resume``, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from wattserve.bench import store

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WATTSERVE_METER": "null"}


@pytest.fixture
def wattserve(monkeypatch, capsys):
    """Run the real CLI entry point in process: (exit code, stdout, stderr)."""
    from wattserve.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("WATTSERVE_METER", "null")
    monkeypatch.delenv("WATTSERVE_HOME", raising=False)
    # collect_environment imports torch (seconds); run.json only stores what it returns
    monkeypatch.setattr("wattserve.bench.benchmark.environment", lambda: {"python": "test"})

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


@pytest.fixture(scope="module")
def slow_server():
    """Mock OpenAI server (own thread and event loop): 40 tokens, 10 ms apart (~0.4 s a request)."""
    from wattserve.engines.mock_server import MockServer

    with MockServer(output_len=40, token_delay_ms=10.0, follow_max_tokens=True) as srv:
        yield srv


def test_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path, slow_server, wattserve):
    n = 40
    cmd = [
        sys.executable,
        "-m",
        "wattserve",
        "bench",
        "--backend",
        "openai",
        "--base-url",
        slow_server.url,
        "--model",
        "mock",
        "--num-prompts",
        str(n),
        "--input-len",
        "8",
        "--output-len",
        "40",
        "--max-concurrency",
        "4",
        "--meter",
        "null",
        "--result-dir",
        str(tmp_path),
        "--label",
        "kill",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.monotonic() + 90
        jsonl = None
        while time.monotonic() < deadline:  # wait until a few requests have finished, then kill
            runs = list(tmp_path.glob("kill-*/requests.jsonl"))
            if runs and len(runs[0].read_text().splitlines()) >= 6:
                jsonl = runs[0]
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        assert jsonl is not None, "benchmark did not start writing requests in time"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = store.read_requests(jsonl)
    assert 6 <= len(before) < n  # killed mid-run
    assert json.loads((jsonl.parent / "run.json").read_text())["status"] == "running"

    r = wattserve("bench", "--resume", str(jsonl.parent))
    assert r.returncode == 0, r.stderr
    lines = jsonl.read_text().splitlines()
    ids = [json.loads(line)["request_id"] for line in lines]
    assert len(lines) == n and len(set(ids)) == n  # no request lost, none duplicated
    assert set(ids) == {f"req-{i}" for i in range(n)}
    assert {r["request_id"] for r in before} <= set(ids)
    kept = {json.loads(line)["request_id"]: line for line in lines}
    assert all(
        kept[r["request_id"]] == json.dumps(r) or json.loads(kept[r["request_id"]]) == r
        for r in before
    )
    data = json.loads((jsonl.parent / "run.json").read_text())
    assert data["status"] == "complete" and len(data["segments"]) == 2
    assert data["points"][0]["summary"]["completed"] == n
    assert "c4" in r.stdout and "kill-" in r.stdout


def test_runs_list_and_show(tmp_path, slow_server, wattserve):
    r = wattserve(
        "bench",
        "--backend",
        "openai",
        "--base-url",
        slow_server.url,
        "--model",
        "mock",
        "--num-prompts",
        "6",
        "--output-len",
        "3",
        "--request-rate",
        "50,100",
        "--arrival",
        "constant",
        "--meter",
        "null",
        "--result-dir",
        str(tmp_path),
        "--goodput",
        "ttft:1000 e2el:5000",
    )
    assert r.returncode == 0, r.stderr
    assert "r50" in r.stdout and "r100" in r.stdout and "SLO attainment 100.0%" in r.stdout
    [run] = list(tmp_path.glob("mock-*"))
    assert len((run / "summary.csv").read_text().splitlines()) == 3
    r = wattserve("runs", "list", "--result-dir", str(tmp_path))
    assert r.returncode == 0 and run.name in r.stdout and "complete" in r.stdout
    r = wattserve("runs", "show", run.name, "--result-dir", str(tmp_path))
    assert r.returncode == 0 and "r100" in r.stdout and "12 lines" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-concurrency", "0"], "--max-concurrency: "),
        (["--request-rate", "-2"], "request rate must be > 0"),
        (["--dataset-name", "custom"], "needs --dataset-path"),
        (["--base-url", "http://127.0.0.1:9/v1"], "cannot reach"),
    ],
)
def test_bad_input_one_line_no_traceback(args, message, wattserve):
    base = [
        "bench",
        "--backend",
        "openai",
        "--model",
        "mock",
        "--meter",
        "null",
        "--num-prompts",
        "2",
    ]
    if "--base-url" not in args:
        base += ["--base-url", "http://127.0.0.1:9/v1"]
    r = wattserve(*base, *args)
    assert r.returncode != 0
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_malformed_dataset_names_its_line(tmp_path, slow_server, wattserve):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "a"}\n{"prompt": \n')
    r = wattserve(
        "bench",
        "--backend",
        "openai",
        "--base-url",
        slow_server.url,
        "--model",
        "mock",
        "--dataset-name",
        "custom",
        "--dataset-path",
        str(bad),
        "--meter",
        "null",
        "--result-dir",
        str(tmp_path),
    )
    assert (
        r.returncode == 2 and f"{bad}:2: invalid JSON" in r.stderr and "Traceback" not in r.stderr
    )


def test_unknown_model_is_one_clear_line(wattserve, tmp_path):
    r = wattserve(
        "bench",
        "--backend",
        "local",
        "--model",
        "no-such-model-xyz",
        "--meter",
        "null",
        "--result-dir",
        str(tmp_path),
    )
    assert r.returncode == 3 and "unknown model 'no-such-model-xyz'" in r.stderr
    assert "Traceback" not in r.stderr and not list(tmp_path.glob("*/run.json"))
