"""The gateway's log levels: routine lines (start-up, a replica back in) are INFO, trouble (a
replica taken out) is WARNING, and `wattserve serve` shows its own INFO lines by default."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from scripted_replica import ScriptedReplica
from test_serve_health import CHAT, cfg_for, running
from wattserve.commands.serve import configure_logging
from wattserve.errors import ConfigError


@pytest.fixture
def restore_logging():
    root, ours = logging.getLogger(), logging.getLogger("wattserve")
    saved = root.level, list(root.handlers), ours.level
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    ours.setLevel(saved[2])


@pytest.mark.parametrize(
    ("level", "ours", "others", "server"),
    [
        ("info", logging.INFO, logging.WARNING, "warning"),
        ("WARNING", logging.WARNING, logging.WARNING, "warning"),
        ("error", logging.ERROR, logging.ERROR, "error"),
        ("debug", logging.DEBUG, logging.DEBUG, "debug"),
    ],
)
def test_configure_logging_levels(restore_logging, level, ours, others, server):
    logging.getLogger().handlers.clear()  # basicConfig only acts on a root without handlers
    assert configure_logging(level) == server
    assert logging.getLogger("wattserve.serve").getEffectiveLevel() == ours
    assert logging.getLogger("httpx").getEffectiveLevel() == others


def test_a_bad_log_level_is_one_line():
    with pytest.raises(ConfigError, match="--log-level must be one of debug, info"):
        configure_logging("loud")


async def test_routine_lines_are_info_and_trouble_is_warning(caplog):
    caplog.set_level(logging.DEBUG, logger="wattserve")
    async with ScriptedReplica("500") as bad, ScriptedReplica("ok") as good:
        cfg = cfg_for([bad, good], interval_s=0.1, retry_after_s=0.2, max_retry_after_s=0.2)
        async with running(cfg) as gw:
            async with aiohttp.ClientSession() as s:
                for _ in range(20):  # three failures take the bad replica out
                    async with s.post(gw.url + "/v1/chat/completions", json=CHAT) as r:
                        assert r.status == 200
                    if any("taken out" in r.getMessage() for r in caplog.records):
                        break
                bad.post = "ok"
                end = time.monotonic() + 10
                while not any("passed its trial" in r.getMessage() for r in caplog.records):
                    assert time.monotonic() < end, "the replica never passed its trial"
                    await asyncio.sleep(0.05)

    def level_of(text: str) -> int:
        return next(r.levelno for r in caplog.records if text in r.getMessage())

    assert level_of("gateway ready") == logging.INFO
    assert level_of("passed its trial request: back in") == logging.INFO
    assert level_of("taken out") == logging.WARNING


def test_wattserve_serve_prints_its_info_lines(tmp_path: Path):
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(
        "port: 0\nmodels: [{name: m, replicas: [{kind: mock}]}]\n"
        "energy: {meter: modeled}\nauth: {keys_env: null}\ngrace_s: 1\n",
        encoding="utf-8",
    )
    exe = Path(sys.executable).with_name("wattserve")
    proc = subprocess.Popen(
        [str(exe), "serve", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    start = proc.stdout.readline()  # "starting wattserve gateway on http://HOST:PORT/v1 ..."
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))
    reader.start()
    try:
        end = time.monotonic() + 60
        while not any("listening on" in line for line in lines) and proc.poll() is None:
            assert time.monotonic() < end, "".join(lines)
            time.sleep(0.05)
        # port 0 in the config: the start line names the port actually served
        base = start.split(" on ", 1)[1].split()[0]
        assert not base.endswith(":0/v1"), start
        # "listening on" comes once the socket accepts ("gateway ready" is logged before the
        # server binds): the URL answers at once
        with urllib.request.urlopen(base + "/models", timeout=10) as resp:
            assert resp.status == 200 and b'"m"' in resp.read()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        reader.join(5)
    ready = [line for line in lines if "gateway ready" in line]
    assert ready and " INFO wattserve.serve: " in ready[0], "".join(lines)
    listening = [line for line in lines if "listening on" in line]
    assert listening and base in listening[0] and " INFO " in listening[0], "".join(lines)
    assert not any(" WARNING " in line for line in lines), "".join(lines)
