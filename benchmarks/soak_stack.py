"""The processes of the gateway soak (``benchmarks/gateway_soak.py``): two ``wattserve
mock-server`` replicas and ``wattserve serve --config`` in front of them, each its own
process on a free 127.0.0.1 port, and what is read from them (RSS, cache hits, log errors).
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from wattserve.engines.launcher import free_port

ROOT = Path(__file__).resolve().parents[1]
TOKENS = 8  # output tokens a mock replica answers


def raise_fd_limit(need: int) -> int:
    """Raise this process's open-file limit (and its children's) to ``need`` or the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                if what != "the gateway":
                    return
                s.sendall(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not get ready within {timeout_s:g} s")


class Stack:
    """Two mock replicas and the gateway in front of them, each its own process (``with``)."""

    def __init__(self, token_delay_ms: float = 0.0, workdir: Path | None = None) -> None:
        self.token_delay_ms = token_delay_ms
        self.own_dir = workdir is None  # removed on stop
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="wattserve-soak-"))
        self.replicas: list[subprocess.Popen[bytes]] = []
        self.gateway: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.dir / log, "wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "wattserve", *args],
                stdout=subprocess.DEVNULL,
                stderr=out,
                cwd=ROOT,
            )

    def start(self) -> Stack:
        """Spawn the replicas and the gateway at once (each takes seconds to import), then
        wait until the replicas listen and the gateway's ``/ready`` answers 200."""
        ports = [free_port() for _ in range(2)]
        for i, port in enumerate(ports):
            args = ["mock-server", "--port", str(port), "--output-len", str(TOKENS)]
            args += ["--token-delay-ms", str(self.token_delay_ms)]
            self.replicas.append(self._spawn(args, f"replica{i}.log"))
        urls = [f"http://127.0.0.1:{port}/v1" for port in ports]
        self.port = free_port()
        cfg = {
            "host": "127.0.0.1",
            "port": self.port,
            "models": [{"name": "mock", "replicas": [{"kind": "url", "url": u} for u in urls]}],
            "energy": {"meter": "modeled"},
            "auth": {"keys_env": None},
            "health": {"interval_s": 0.5},  # a replica not yet listening is seen up soon
            "timeouts": {"connect_s": 2.0, "first_token_s": 10.0, "total_s": 15.0},
        }
        path = self.dir / "gateway.yaml"
        path.write_text(json.dumps(cfg))  # JSON is YAML
        self.gateway = self._spawn(["serve", "--config", str(path)], "gateway.log")
        for i, (port, proc) in enumerate(zip(ports, self.replicas, strict=True)):
            _wait_port(port, proc, f"replica {i}", 60)
        _wait_port(self.port, self.gateway, "the gateway", 60)
        return self

    def kill_replica(self, i: int) -> None:
        """SIGKILL replica ``i``: its connections drop with no goodbye, like a crashed server."""
        self.replicas[i].send_signal(signal.SIGKILL)

    def gateway_log(self, lines: int = 20) -> str:
        text = (self.dir / "gateway.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def log_errors(self) -> int:
        """Lines of the gateway's log that report an error or a traceback (expected: none)."""
        text = (self.dir / "gateway.log").read_text(errors="replace")
        return sum(" ERROR " in ln or ln.startswith("Traceback") for ln in text.splitlines())

    def stop(self) -> None:
        for p in [self.gateway, *self.replicas]:
            if p is not None and p.poll() is None:
                p.terminate()
        for p in [self.gateway, *self.replicas]:
            if p is None:
                continue
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def gateway_rss_mb(stack: Stack) -> float:
    import psutil

    assert stack.gateway is not None
    return float(psutil.Process(stack.gateway.pid).memory_info().rss) / 2**20


def cache_hits(stack: Stack) -> int:
    """Requests the gateway answered from its cache (``/stats``)."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as s:
        s.sendall(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    stats = orjson.loads(data.split(b"\r\n\r\n", 1)[1])
    return int(sum(m["hits"] for m in stats["models"].values()))
