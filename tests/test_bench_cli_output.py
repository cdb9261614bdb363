"""``wattserve bench`` output: an error is exactly one stderr line, ``--json`` is one JSON
document on stdout, the table is never cut off a terminal, and a CSV dataset whose quote
never closes is an error naming its line (not one prompt holding the rest of the file)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wattserve.bench.workloads import custom_workload
from wattserve.errors import ConfigError

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def wattserve(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """The real CLI entry point in process: (exit code, stdout, stderr)."""
    from wattserve.cli import main

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setenv("WATTSERVE_METER", "null")
    monkeypatch.delenv("WATTSERVE_HOME", raising=False)
    # collect_environment imports torch (seconds); run.json only stores what it returns
    monkeypatch.setattr("wattserve.bench.benchmark.environment", lambda: {"python": "test"})

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """Mock OpenAI server: 4 tokens, 2 ms apart."""
    from wattserve.engines.mock_server import MockServer

    with MockServer(output_len=4, token_delay_ms=2.0, follow_max_tokens=True) as srv:
        yield srv.url


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _bench(url: str, result_dir: Path, *extra: str) -> list[str]:
    return [
        "bench",
        "--backend",
        "openai",
        "--base-url",
        url,
        "--model",
        "mock",
        "--meter",
        "null",
        "--num-prompts",
        "3",
        "--output-len",
        "4",
        "--result-dir",
        str(result_dir),
        *extra,
    ]


def test_error_is_exactly_one_stderr_line(wattserve: Run, tmp_path: Path) -> None:
    code, out, err = wattserve(*_bench(_closed_url(), tmp_path))
    assert code != 0 and out == ""
    assert err.startswith("error: cannot reach ") and err.count("\n") == 1, repr(err)


def test_unterminated_csv_quote_is_one_error_line(wattserve: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text('prompt,output_len\nfine,2\n"never closed,3\nx,1\ny,1\n')
    code, out, err = wattserve(
        *_bench(_closed_url(), tmp_path / "runs", "--dataset-name", "custom"),
        "--dataset-path",
        str(bad),
    )
    assert code == 2 and out == "", err
    assert err == f"error: {bad}:3: a quoted field never closes (no matching '\"' before the end)\n"
    assert not (tmp_path / "runs").exists()  # failed before any run directory


def test_csv_reader_keeps_quoted_line_breaks_and_rejects_stray_quotes(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text('prompt,output_len\n"two\nlines, one prompt",5\nplain,2\n')
    wl = custom_workload(good, None, 8)
    assert [r.prompt for r in wl.requests] == ["two\nlines, one prompt", "plain"]
    assert [r.max_tokens for r in wl.requests] == [5, 2]
    stray = tmp_path / "stray.csv"
    stray.write_text('prompt\nok\n"quoted"tail\n')
    with pytest.raises(ConfigError, match=r"stray\.csv:3: not valid CSV"):
        custom_workload(stray, None, 8)


def test_json_prints_the_points_and_nothing_else(
    wattserve: Run, server: str, tmp_path: Path
) -> None:
    code, out, err = wattserve(*_bench(server, tmp_path, "--max-concurrency", "1,2", "--json"))
    assert code == 0, err
    doc = json.loads(out)  # stdout is the JSON document alone
    assert doc["status"] == "complete" and doc["model"] == "mock"
    assert Path(doc["run_dir"]).name == doc["run_id"] and Path(doc["run_dir"]).is_dir()
    assert [p["label"] for p in doc["points"]] == ["c1", "c2"]
    assert [p["max_concurrency"] for p in doc["points"]] == [1, 2]
    for p in doc["points"]:
        assert p["summary"]["completed"] == 3 and p["summary"]["failed"] == 0
        assert p["summary"]["output_tokens"] == 12
        assert p["request_rate"] is None  # inf as JSON null
    saved = json.loads((Path(doc["run_dir"]) / "run.json").read_text())
    assert [p["summary"]["completed"] for p in saved["points"]] == [3, 3]


def test_table_is_not_cut_off_a_terminal(wattserve: Run, server: str, tmp_path: Path) -> None:
    code, out, err = wattserve(*_bench(server, tmp_path, "--label", "a-rather-long-run-label"))
    assert code == 0, err
    assert "…" not in out
    header = next(line for line in out.splitlines() if "TTFT p50/p99 ms" in line)
    assert "E2E p50/p99 ms" in header and "J/token" in header
    assert max(len(line) for line in out.splitlines()) > 80
