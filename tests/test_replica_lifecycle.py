"""The one replica lifecycle (``wattserve.engines.launcher``) as ``serve`` and ``sweep`` use it:
server processes that fail explain themselves, chatty ones never block, a sweep replica set
that cannot start leaves nothing running, and the sweep's engine spreads with the gateway's
round-robin balancer."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from wattserve.engines.base import EngineBase
from wattserve.engines.launcher import Launcher, free_port, interrupts_streams
from wattserve.errors import EngineUnavailable
from wattserve.sweep.replicas import ReplicaSet, RoundRobinEngine, plan_replicas
from wattserve.types import Chunk, Request

# An HTTP server on argv[1] that first writes 256 KB to stderr (four times a pipe's buffer).
CHATTY = textwrap.dedent(
    """
    import http.server, sys
    sys.stderr.write("x" * 262144 + "\\n"); sys.stderr.flush()
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler
        ).serve_forever()
    """
)


async def test_a_replica_that_exits_early_names_its_last_stderr_line():
    launcher = Launcher()
    args = [sys.executable, "-c", "import sys; sys.stderr.write('no such model: m\\n'); exit(2)"]
    with pytest.raises(EngineUnavailable, match="exited with code 2.*: no such model: m"):
        await launcher.spawn(args, free_port(), "/", 10, name="m/0", model="m")
    await launcher.stop(grace_s=2)
    assert launcher.launched == []


async def test_a_chatty_replica_becomes_ready_and_is_stopped():
    launcher = Launcher()
    port = free_port()
    item = await launcher.spawn(
        [sys.executable, "-c", CHATTY, str(port)], port, "/", 20, name="m/0", model="m"
    )
    assert item.url == f"http://127.0.0.1:{port}/v1" and launcher.pids == [item.process.pid]
    proc = item.process
    await launcher.stop(grace_s=5)
    assert proc.poll() is not None and launcher.pids == []


async def test_a_sweep_replica_set_that_cannot_start_stops_every_replica(tmp_path):
    marker = tmp_path / "pids"
    # replica 0 serves; replica 1 records its pid and exits, so the set must fail and stop 0
    script = tmp_path / "replica.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            port, index = sys.argv[1], sys.argv[2]
            with open({str(marker)!r}, "a") as f:
                f.write(str(os.getpid()) + "\\n")
            if index == "1":
                sys.exit("replica 1 refuses")
            import http.server
            http.server.HTTPServer(
                ("127.0.0.1", int(port)), http.server.SimpleHTTPRequestHandler
            ).serve_forever()
            """
        )
    )
    rs = ReplicaSet(
        "m",
        plan_replicas(2, 2, pin=False),
        command=f"{sys.executable} {script} {{port}} {{index}}",
        ready_timeout_s=20,
    )
    with pytest.raises(EngineUnavailable, match="replica 1 refuses"):
        await rs.start()
    assert rs.pids == []
    for pid in map(int, marker.read_text().split()):
        with pytest.raises(ProcessLookupError):  # every replica process is gone
            os.kill(pid, 0)


class Named(EngineBase):
    def __init__(self, name: str) -> None:
        self.name = name
        self.started = self.closed = 0

    async def start(self) -> None:
        self.started += 1

    async def aclose(self) -> None:
        self.closed += 1

    async def stream(self, request: Request):
        yield Chunk(text=self.name, t_s=0.0, tokens=1)


async def test_round_robin_engine_spreads_evenly_and_runs_each_lifecycle():
    engines = [Named("a"), Named("b"), Named("c")]
    rr = RoundRobinEngine(engines, ["ra", "rb", "rc"])
    await rr.start()
    texts = []
    for i in range(9):
        async for chunk in rr.stream(Request(id=f"r{i}", model="m", prompt="hi")):
            texts.append(chunk.text)
    assert sorted(texts) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert sorted(rr.assignments.values()) == ["ra"] * 3 + ["rb"] * 3 + ["rc"] * 3
    assert rr.healthy()
    await rr.aclose()
    assert [(e.started, e.closed) for e in engines] == [(1, 1)] * 3


def test_llama_cpp_python_server_without_interrupt_requests_false_is_named():
    base = [sys.executable, "-m", "llama_cpp.server", "--model", "m.gguf", "--port", "9"]
    assert interrupts_streams(base)
    assert not interrupts_streams([*base, "--interrupt_requests", "False"])
    assert not interrupts_streams(["llama-server", "-m", "m.gguf"])  # llama.cpp's own server
