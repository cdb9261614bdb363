"""``wattserve generate`` and ``wattserve mock-server`` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

from typer.testing import CliRunner

from wattserve.cli import build_app, main


def test_help_of_engine_commands():
    runner = CliRunner()
    app = build_app()
    for cmd in ("generate", "mock-server"):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0 and "--help" in r.output
    assert "--token-delay-ms" in runner.invoke(app, ["mock-server", "--help"]).output


def test_generate_against_mock_server(mock_server, capsys):
    import pytest

    with pytest.raises(SystemExit) as e:  # typer exits 0 on success
        main(
            ["generate", "hello", "--base-url", mock_server, "--model", "mock", "--max-tokens", "5"]
        )
    assert e.value.code in (0, None)
    out = capsys.readouterr()
    assert out.out.strip() == "tok tok tok tok tok"
    assert "5 output tokens (usage)" in out.err


def test_generate_errors_are_one_line(free_port, capsys):
    import pytest

    with pytest.raises(SystemExit) as e:
        main(["generate", "hi", "--model", "no-such-model"])
    err = capsys.readouterr().err
    assert e.value.code == 3 and err.startswith("error: unknown model") and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        main(["generate", "hi", "--base-url", f"http://127.0.0.1:{free_port}/v1"])
    err = capsys.readouterr().err
    assert e.value.code == 3 and "cannot reach" in err and len(err.strip().splitlines()) == 1


def test_mock_server_command_serves(free_port):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wattserve",
            "mock-server",
            "--port",
            str(free_port),
            "--output-len",
            "3",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{free_port}/health", timeout=1) as r:
                    assert json.load(r) == {"status": "ok"}
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        req = urllib.request.Request(
            f"http://127.0.0.1:{free_port}/v1/completions",
            data=json.dumps({"prompt": "a b", "max_tokens": 10}).encode(),
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            body = json.load(r)
        assert body["choices"][0]["text"] == " tok" * 3 and body["usage"]["completion_tokens"] == 3
    finally:
        proc.terminate()
        proc.wait(10)
