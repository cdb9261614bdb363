"""The load generator's peers: ``vllm bench serve`` and GuideLLM in ``benchmarks/.peers-venv``.

``install_peers()`` builds the venv from ``benchmarks/peers.txt`` (the one place their
versions are pinned; torch held at the CPU wheel by a constraints file), then checks each
peer's command. ``vllm_bench`` / ``guidellm_bench`` smoke-test their peer with one request
before timing it; a peer that cannot be installed or run is returned as ``{"skip": reason}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = HERE / ".peers-venv"
PEER_BIN = PEERS / "bin"
PEERS_TXT = HERE / "peers.txt"
OUT_TOKENS = 8
PROMPT = "benchmark the load generator " * 4  # ~16 words


def read_peers(path: Path = PEERS_TXT) -> dict[str, list[str]]:
    """``[section]`` -> requirement lines (comments and blanks dropped)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            out.setdefault(section, [])
        else:
            out.setdefault(section, []).append(line)
    return out


def _one_line(p: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in (p.stderr or p.stdout or "").strip().splitlines() if ln.strip()]
    return f"exit {p.returncode}: {lines[-1][:240] if lines else 'no output'}"


def install_peers() -> dict[str, str | None]:
    """Create/refresh the peers venv; peer name -> None when its command works, else why not."""
    spec = read_peers()
    if not PEERS.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
    cons = PEERS / "constraints.txt"
    cons.write_text("\n".join(spec.get("constraints", [])) + "\n")
    pip = [str(PEER_BIN / "pip"), "install", "-q", "-c", str(cons)]
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu"}

    def pip_run(args: list[str]) -> str | None:
        p = subprocess.run(pip + args, capture_output=True, text=True, env=env)
        return None if p.returncode == 0 else f"pip install {' '.join(args)[:80]}: {_one_line(p)}"

    status: dict[str, str | None] = {}
    err = pip_run(spec.get("constraints", []))
    err = err or pip_run(["--no-deps", *spec.get("vllm-no-deps", [])])
    err = err or pip_run(spec.get("vllm", []))
    status["vllm bench serve"] = err or _check(["vllm", "bench", "serve", "--help"])
    # GuideLLM shares the venv; the vLLM pins join the constraints so it never moves them.
    cons.write_text("\n".join(spec.get("constraints", []) + spec.get("vllm", [])) + "\n")
    err = pip_run(spec.get("guidellm", []))
    status["guidellm"] = err or _check(["guidellm", "--help"])
    for name, why in status.items():
        print(f"peer {name}: {'installed' if why is None else 'NOT installed: ' + why}")
    return status


def _check(cmd: list[str]) -> str | None:
    exe = PEER_BIN / cmd[0]
    if not exe.exists():
        return f"{exe} missing after install"
    p = subprocess.run(
        [str(exe), *cmd[1:]], capture_output=True, text=True, env=_peer_env(), timeout=600
    )
    return None if p.returncode == 0 else f"`{' '.join(cmd)}` failed, {_one_line(p)}"


# ----------------------------------------------------------------------------- tokenizer
def tokenizer_dir(tmp: Path) -> Path:
    """A real tokenizer folder for the peers (they need one; no hub): the embedded model's
    when it is installed, else a byte-level BPE trained here."""
    try:
        from wattserve.engines.models import ensure_hf_dir, resolve_model

        d = Path(ensure_hf_dir(resolve_model("smollm2-135m")))
        if (d / "tokenizer.json").is_file() or (d / "tokenizer_config.json").is_file():
            return d
    except Exception as exc:  # noqa: BLE001
        print(f"(embedded model tokenizer unavailable: {exc}; training a small BPE)")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        [PROMPT * 3] * 50,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<eos>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    out = tmp / "tok"
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(out)
    return out


# ----------------------------------------------------------------------------- peers
def _peer_env() -> dict:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_TARGET_DEVICE": "cpu",
        "PYTHONWARNINGS": "ignore",
        "VIRTUAL_ENV": str(PEERS),
        "PATH": f"{PEER_BIN}:{os.environ['PATH']}",
    }


def vllm_bench(
    base: str,
    tok: Path,
    n: int,
    concurrency: int,
    rate: float,
    rate_n: int,
    tmp: Path,
    timeout: float,
) -> dict:
    exe = PEER_BIN / "vllm"
    if not exe.exists():
        return {"skip": "not installed (run with --install-peers)"}

    def run(num: int, req_rate: str, name: str) -> dict:
        cmd = [
            str(exe),
            "bench",
            "serve",
            "--backend",
            "openai",
            "--base-url",
            base,
            "--endpoint",
            "/v1/completions",
            "--model",
            "mock",
            "--tokenizer",
            str(tok),
            "--dataset-name",
            "random",
            "--random-input-len",
            "16",
            "--random-output-len",
            str(OUT_TOKENS),
            "--ignore-eos",
            "--num-prompts",
            str(num),
            "--request-rate",
            req_rate,
            "--max-concurrency",
            str(concurrency),
            "--disable-tqdm",
            "--num-warmups",
            "0",
            "--save-result",
            "--result-dir",
            str(tmp),
            "--result-filename",
            name,
        ]
        if req_rate != "inf":
            cmd += ["--burstiness", "1000"]  # near-constant arrivals
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_peer_env())
        f = tmp / name
        if not f.exists():  # (vLLM on CPU may exit non-zero on nanobind leak warnings after saving)
            tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"exit {p.returncode}: {' | '.join(tail)}")
        return json.loads(f.read_text())

    try:
        sm = run(1, "inf", "vllm-smoke.json")
        if sm.get("completed") != 1:
            return {"skip": f"smoke run of one request completed {sm.get('completed')}"}
        mx = run(n, "inf", "vllm-max.json")
        out = {"rate": mx["request_throughput"], "errors": n - mx.get("completed", n)}
        fx = run(rate_n, str(rate), "vllm-rate.json")
        out["achieved_rate"] = fx["request_throughput"]
        return out
    except (RuntimeError, subprocess.TimeoutExpired, KeyError) as exc:
        return {"skip": f"failed: {str(exc)[:300]}"}


def guidellm_bench(
    base: str,
    tok: Path,
    n: int,
    concurrency: int,
    rate: float,
    rate_n: int,
    tmp: Path,
    timeout: float,
) -> dict:
    exe = PEER_BIN / "guidellm"
    if not exe.exists():
        return {"skip": "not installed (run with --install-peers)"}

    def run(profile: str, constraint: str, name: str) -> dict:
        cmd = [
            str(exe),
            "run",
            "--backend",
            f"kind=openai_http,target={base}",
            "--profile",
            profile,
            "--constraint",
            constraint,
            "--data",
            f"kind=synthetic_text,prompt_tokens=16,output_tokens={OUT_TOKENS}",
            "--tokenizer",
            f"kind=hf_auto,model={tok}",
            "--output",
            f"kind=json,path={tmp / name}",
            "--disable-console",
        ]
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=_peer_env(), cwd=tmp
        )
        f = tmp / name
        if p.returncode != 0 or not f.exists():
            tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"exit {p.returncode}: {' | '.join(tail)}")
        return json.loads(f.read_text())

    try:
        rep = run("kind=synchronous", "kind=max_requests,count=1", "guidellm-smoke.json")
        ok = rep["benchmarks"][-1]["metrics"]["request_totals"]["successful"]
        if ok != 1:
            return {"skip": f"smoke run of one request: {ok} successful"}
        rep = run(
            f"kind=throughput,max_concurrency={concurrency}",
            f"kind=max_requests,count={n}",
            "guidellm-max.json",
        )
        out: dict[str, Any] = {"rate": _guidellm_rate(rep), "errors": None}
        rep = run(
            f"kind=constant,rate={rate}", f"kind=max_requests,count={rate_n}", "guidellm-rate.json"
        )
        out["achieved_rate"] = _guidellm_rate(rep)
        err = _guidellm_send_err(rep)
        if err:
            out["send_err_ms"] = err
        return out
    except (RuntimeError, subprocess.TimeoutExpired, KeyError, ValueError) as exc:
        return {"skip": f"failed: {str(exc)[:300]}"}


def _find(obj, key):
    """Every value under ``key`` anywhere in a nested JSON object."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            yield from _find(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from _find(v, key)


def _guidellm_rate(report: dict) -> float:
    """Successful requests / benchmark duration from a GuideLLM JSON report."""
    b = report["benchmarks"][-1]
    return float(b["metrics"]["request_totals"]["successful"]) / float(b["duration"])


def _guidellm_send_err(report: dict) -> dict | None:
    import numpy as np

    errs = []
    for reqs in _find(report, "successful"):
        if isinstance(reqs, list):
            for r in reqs:
                info = r.get("info") or r.get("scheduler_info") or {}
                timings = info.get("timings") or info
                t_sched = timings.get("targeted_start")
                t_sent = timings.get("request_start")
                if isinstance(t_sched, (int, float)) and isinstance(t_sent, (int, float)):
                    errs.append((t_sent - t_sched) * 1000)
    if not errs:
        return None
    a = np.asarray(errs)
    return {
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }
