"""The targets of ``gateway_overhead.py`` (and ``ray_overhead.py``), each started in its own
process on 127.0.0.1: the wattserve gateway in one of its ``MODES``, the floor (a bare uvicorn
+ aiohttp forwarder with no gateway logic) and LiteLLM proxy (installed on first use into
benchmarks/.peers/.venv, never into the project's environment); plus waiting for a target to
answer and stopping it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from wattserve.engines.launcher import free_port

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "benchmarks" / ".peers" / ".venv"
MASTER_KEY = "sk-bench-master-key"


async def wait_http(
    url: str, timeout_s: float, proc: subprocess.Popen | None = None, headers=None
) -> float:
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as s:
        while time.monotonic() - t0 < timeout_s:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process exited with code {proc.returncode}")
            try:
                async with s.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status < 500:
                        return time.monotonic() - t0
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s} s")


MODES = {  # --gateway-modes: target name, HTTP server, hot routes outside FastAPI's routing
    "granian": ("wattserve", "granian", True),
    "uvicorn": ("wattserve-uvicorn", "uvicorn", True),
    "fastapi": ("wattserve-fastapi", "granian", False),
}


def start_gateway(
    mock_url: str, server: str, fast_path: bool, tmp: Path
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cfg = tmp / f"gw-{port}.yaml"
    cfg.write_text(f"""host: 127.0.0.1
port: {port}
models:
  - name: mock
    replicas: [{{kind: url, url: "{mock_url}"}}]
cache: {{policy: gdsf, capacity_entries: 100000}}
energy: {{meter: modeled}}
auth: {{keys_env: null}}
fast_path: {str(fast_path).lower()}
server: {server}
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattserve", "serve", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    return proc, f"http://127.0.0.1:{port}"


# The floor: a bare forwarder (uvicorn + httptools + uvloop + one aiohttp session),
# no gateway logic.
FLOOR = r"""
import sys, aiohttp, uvicorn
from yarl import URL
UP, session = URL(sys.argv[1] + "/chat/completions"), None
async def app(scope, receive, send):
    global session
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                session = aiohttp.ClientSession(
                    cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
                )
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"}); return
    if scope["method"] == "GET":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"}); return
    body = b""
    while True:
        m = await receive(); body += m.get("body", b"")
        if not m.get("more_body"): break
    async with session.post(UP, data=body, headers={"Content-Type": "application/json"}) as r:
        data = await r.read()
    head = [(b"content-type", r.headers["Content-Type"].encode())]
    await send({"type": "http.response.start", "status": 200, "headers": head})
    await send({"type": "http.response.body", "body": data})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), loop="uvloop", http="httptools",
            log_level="warning", access_log=False, proxy_headers=False, server_header=False)
"""


def start_floor(mock_url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", FLOOR, mock_url, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


def ensure_litellm() -> Path | None:
    exe = PEERS / "bin" / "litellm"
    if exe.exists():
        return exe
    print("installing litellm[proxy] into benchmarks/.peers/.venv (first run only) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        subprocess.run(
            [str(PEERS / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
            check=True,
            timeout=1200,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"litellm skipped: cannot install litellm[proxy] ({exc})")
        return None
    return exe if exe.exists() else None


def start_litellm(mock_url: str, tmp: Path) -> tuple[subprocess.Popen, str] | None:
    exe = ensure_litellm()
    if exe is None:
        return None
    port = free_port()
    cfg = tmp / "litellm.yaml"
    cfg.write_text(f"""model_list:
  - model_name: mock
    litellm_params:
      model: openai/mock
      api_base: {mock_url}
      api_key: sk-unused
general_settings:
  master_key: {MASTER_KEY}
litellm_settings:
  drop_params: true
""")
    env = dict(
        os.environ,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_MASTER_KEY=MASTER_KEY,
        LITELLM_LOG="ERROR",
        NO_DOCS="True",
        DISABLE_ADMIN_UI="True",
    )
    proc = subprocess.Popen(
        [
            str(exe),
            "--config",
            str(cfg),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
