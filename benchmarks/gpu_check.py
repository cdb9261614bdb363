"""GPU check: replicas per GPU x concurrency for the bundled configs, dummy weights, NVML energy.

    python benchmarks/gpu_check.py --out "$OUT"            # on the GPU machine (device cuda)
    python benchmarks/gpu_check.py --device cpu --out DIR  # small grid, tiny model, CPU meter

For each model, ``wattserve sweep`` (embedded engine, ``--load-format dummy``) runs replica
counts 1, 2, 4, 8 sharing one GPU (each replica gets its share of the GPU memory) at a few
concurrencies, with the NVML meter. Results land in OUT as they are measured:

    OUT/sweeps/<model>/     the sweep of one model (summary.csv per point, sweep.json,
                            report.html when ``wattserve report`` can draw here)
    OUT/gpu_check.json      every point, frontier and recommendation per model, environment
    OUT/report.md           the tables (tok/s per GPU, tok/s per user, J/token) and verdicts
    OUT/figures/<model>.svg tok/s per GPU against J/token, one colour per replica count

A hard deadline (``--deadline-s``, default 450 s) bounds the whole run: a sweep still running
then is stopped, the report is written from the points that finished. Nothing is installed
from the internet; pure-Python packages missing on the machine may travel as wheels in
``benchmarks/wheels`` (installed with ``pip --no-index`` when the folder exists).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# modules the sweep (parent and replica processes) imports, and their pip names; the GPU
# machine has torch, transformers (numpy, pyyaml), aiohttp, typer, rich and nvidia-ml-py; the
# others must travel as wheels for its Python version (pydantic-core, msgspec, orjson,
# httptools and psutil are compiled)
NEEDED = {
    "torch": "torch",
    "transformers": "transformers",
    "numpy": "numpy",
    "yaml": "pyyaml",
    "aiohttp": "aiohttp",
    "typer": "typer",
    "rich": "rich",
    "pynvml": "nvidia-ml-py",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic-core",
    "annotated_types": "annotated-types",
    "typing_inspection": "typing-inspection",
    "msgspec": "msgspec",
    "orjson": "orjson",
    "httptools": "httptools",
    "psutil": "psutil",
}
GPU_MODELS = ("smollm2-135m", "gemma3-270m", "qwen2.5-0.5b", "llama3.2-1b")
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


def _env() -> dict[str, str]:
    src = str(ROOT / "src")
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=src + (os.pathsep + path if path else ""))


def missing_modules() -> list[str]:
    """Modules the sweep needs that this Python cannot import (after trying local wheels)."""
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    wheels = ROOT / "benchmarks" / "wheels"
    if missing and wheels.is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels)]
            + [NEEDED[m] for m in missing],
            check=False,
            stdout=subprocess.DEVNULL,
        )
        importlib.invalidate_caches()
        missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    return missing


def run_sweep(
    args: argparse.Namespace, model: str, replicas: int, out: Path, timeout_s: float
) -> str:
    """One `wattserve sweep` group (one replica count) in its own process group; returns a note."""
    cmd = [
        sys.executable,
        "-m",
        "wattserve",
        "sweep",
        "--model",
        model,
        "--backend",
        "local",
        "--device",
        args.device,
        "--load-format",
        "dummy",
        "--replicas",
        str(replicas),
        "--max-concurrency",
        args.concurrency,
        "--input-len",
        str(args.input_len),
        "--output-len",
        str(args.output_len),
        "--num-prompts",
        str(args.num_prompts),
        "--meter",
        args.meter,
        "--gpu-memory-utilization",
        str(args.memory_utilization),
        "--timeout",
        str(max(30.0, timeout_s)),
        "--result-dir",
        str(out),
        "--json",
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    log = out.parent / f"{out.name}.log"
    with open(log, "ab") as f:
        proc = subprocess.Popen(
            cmd, env=_env(), stdout=f, stderr=f, start_new_session=True, cwd=ROOT
        )
        try:
            rc = proc.wait(timeout=max(1.0, timeout_s))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            return f"{replicas} replica(s): stopped at the deadline"
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
        return f"{replicas} replica(s): sweep exited {rc}: {tail[0][:200]}"
    return f"{replicas} replica(s): done"


def read_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    path = sweep_dir / "summary.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [dict(r) for r in csv.DictReader(f)]


def num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def analyse(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Frontier and recommendation over the points (wattserve.bench.pareto, as `sweep` does)."""
    if not rows:
        return {"frontier": [], "recommendation": None}
    sys.path.insert(0, str(ROOT / "src"))
    from wattserve.bench import pareto

    rec = pareto.recommend(rows, None, 0.9, "throughput", None)
    best = rows[rec.index]["point"] if rec.index is not None else None
    return {
        "frontier": [rows[i]["point"] for i in rec.frontier],
        "recommendation": {"point": best, "reason": rec.reason},
    }


def svg(rows: list[dict[str, Any]], title: str) -> str:
    """tok/s per GPU (x) against J/token (y), one colour per replica count."""
    raw = [
        (num(r.get("tok_s_per_device")), num(r.get("j_per_token")), int(float(r["replicas"])))
        for r in rows
    ]
    pts = [(x, y, n) for x, y, n in raw if x is not None and y is not None]
    w, h, m = 520, 360, 50
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">',
        f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
        f'<line x1="{m}" y1="{h - m}" x2="{w - 10}" y2="{h - m}" stroke="black"/>',
        f'<line x1="{m}" y1="{h - m}" x2="{m}" y2="30" stroke="black"/>',
        f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle" font-size="12">tok/s per GPU</text>',
        f'<text x="12" y="{h / 2}" font-size="12" transform="rotate(-90 12 {h / 2})">'
        "J/token</text>",
    ]
    if pts:
        xmax = max(x for x, _, _ in pts) or 1.0
        ymax = max(y for _, y, _ in pts) or 1.0
        counts = sorted({n for _, _, n in pts})
        for x, y, n in pts:
            cx = m + (w - m - 20) * x / xmax
            cy = h - m - (h - m - 40) * y / ymax
            c = COLOURS[counts.index(n) % len(COLOURS)]
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{c}"/>')
        for i, n in enumerate(counts):
            c = COLOURS[i % len(COLOURS)]
            parts.append(
                f'<text x="{w - 110}" y="{45 + 15 * i}" font-size="12" fill="{c}">'
                f"{n} replica(s)</text>"
            )
        parts.append(
            f'<text x="{w - 10}" y="{h - m + 15}" font-size="10" text-anchor="end">'
            f"{xmax:.0f}</text>"
        )
        parts.append(f'<text x="{m - 4}" y="38" font-size="10" text-anchor="end">{ymax:.3g}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def table(rows: list[dict[str, Any]], best: str | None, frontier: list[str]) -> list[str]:
    lines = [
        "| replicas | concurrency | tok/s per GPU | tok/s per user | J/token | ok/failed | |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]

    def f(v: Any, spec: str) -> str:
        x = num(v)
        return "-" if x is None else format(x, spec)

    for r in sorted(
        rows, key=lambda r: (int(float(r["replicas"])), int(float(r["max_concurrency"])))
    ):
        mark = ("frontier" if r["point"] in frontier else "") + (
            " **best**" if r["point"] == best else ""
        )
        lines.append(
            f"| {r['replicas']} | {r['max_concurrency']} | {f(r.get('tok_s_per_device'), '.1f')} "
            f"| {f(r.get('tok_s_per_user'), '.1f')} | {f(r.get('j_per_token'), '.4g')} "
            f"| {f(r.get('completed'), '.0f')}/{f(r.get('failed'), '.0f')} | {mark.strip()} |"
        )
    return lines


def environment() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "src"))
    try:
        from wattserve.energy.nvml import probe_gpus

        gpus, driver, note = probe_gpus()
    except Exception as exc:  # noqa: BLE001 - the report must still be written
        gpus, driver, note = [], None, f"NVML probe failed: {exc}"
    return {"gpus": gpus, "gpu_driver": driver, "gpu_note": note, "python": sys.version.split()[0]}


def write_report(out: Path, args: argparse.Namespace, doc: dict[str, Any]) -> None:
    env = doc["environment"]
    gpu = (
        ", ".join(f"{g.get('name')} (power limit {g.get('power_limit_w')} W)" for g in env["gpus"])
        or "no NVIDIA GPU"
    )
    lines = [
        f"# GPU check ({args.device}, dummy weights)",
        "",
        f"GPU: {gpu}; driver {env['gpu_driver']}; meter {args.meter}; "
        f"{args.input_len} in / {args.output_len} out tokens, {args.num_prompts} requests per "
        "point (at least 2 x concurrency). Weights are random (`--load-format dummy`): the "
        "figures are speed and energy only. Elapsed: "
        f"{doc['elapsed_s']:.0f} s of a {args.deadline_s:.0f} s deadline.",
        "",
    ]
    for model, m in doc["models"].items():
        rec = m["analysis"]["recommendation"]
        best = rec["point"] if rec else None
        lines += [f"## {model}", ""]
        lines += table(m["rows"], best, m["analysis"]["frontier"])
        lines += [
            "",
            f"Frontier: {', '.join(m['analysis']['frontier']) or '-'}.",
            f"Recommendation: {best or 'none'}" + (f" ({rec['reason']})" if rec else "") + ".",
            f"Runs: {'; '.join(m['notes'])}.",
            "",
        ]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda[:i] or cpu")
    ap.add_argument("--out", default=os.environ.get("OUT") or "runs/gpu_check")
    ap.add_argument("--deadline-s", type=float, default=450.0)
    ap.add_argument("--models", default=None, help="comma-separated bundled configs")
    ap.add_argument("--replicas", default=None, help="default 1,2,4,8 (cuda) or 1,2 (cpu)")
    ap.add_argument("--concurrency", default=None, help="default 1,8,32 (cuda) or 1,4 (cpu)")
    ap.add_argument("--input-len", type=int, default=None)
    ap.add_argument("--output-len", type=int, default=None)
    ap.add_argument("--num-prompts", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="total CPU threads (default all)")
    ap.add_argument("--memory-utilization", type=float, default=0.8)
    ap.add_argument("--meter", default=None, help="default nvml (cuda) or auto (cpu)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    cpu = args.device == "cpu"
    args.models = args.models or ("tiny-llama" if cpu else ",".join(GPU_MODELS))
    args.replicas = args.replicas or ("1,2" if cpu else "1,2,4,8")
    args.concurrency = args.concurrency or ("1,4" if cpu else "1,8,32")
    args.input_len = args.input_len or (8 if cpu else 128)
    args.output_len = args.output_len or (8 if cpu else 128)
    args.num_prompts = args.num_prompts or (8 if cpu else 64)
    args.meter = args.meter or ("auto" if cpu else "nvml")
    out = Path(args.out)
    (out / "sweeps").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    missing = missing_modules()
    if missing:
        names = ", ".join(NEEDED[m] for m in missing)
        print(
            f"gpu_check: missing Python packages {names} (add wheels to benchmarks/wheels)",
            file=sys.stderr,
        )
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    counts = [int(x) for x in args.replicas.split(",")]
    doc: dict[str, Any] = {
        "kind": "wattserve-gpu-check",
        "weights": "dummy weights",
        "device": args.device,
        "settings": dict(vars(args).items()),
        "environment": environment(),
        "models": {},
    }
    for mi, model in enumerate(models):
        sweep_dir = out / "sweeps" / model
        notes: list[str] = []
        doc["models"][model] = {"rows": [], "analysis": analyse([]), "notes": notes}
        for ci, n in enumerate(counts):
            left = args.deadline_s - (time.monotonic() - t0)
            # the rest of the time is shared by the groups still to run (this model's, then others')
            share = left / ((len(counts) - ci) + (len(models) - mi - 1) * len(counts))
            if left < 15:
                notes.append(f"{n} replica(s): skipped, deadline")
                continue
            notes.append(run_sweep(args, model, n, sweep_dir, max(share, min(left, 60.0))))
            rows = read_rows(sweep_dir)
            doc["models"][model] = {"rows": rows, "analysis": analyse(rows), "notes": notes}
            doc["elapsed_s"] = time.monotonic() - t0
            (out / "gpu_check.json").write_text(json.dumps(doc, indent=2, default=str))
            (out / "figures" / f"{model}.svg").write_text(svg(rows, f"{model} ({args.device})"))
            write_report(out, args, doc)
        if args.deadline_s - (time.monotonic() - t0) > 20 and read_rows(sweep_dir):
            rep = subprocess.run(
                [sys.executable, "-m", "wattserve", "report", str(sweep_dir)],
                env=_env(),
                capture_output=True,
                timeout=60,
                check=False,
            )
            if rep.returncode != 0:
                notes.append("wattserve report failed: " + rep.stderr.decode()[-200:].strip())
    doc["elapsed_s"] = time.monotonic() - t0
    (out / "gpu_check.json").write_text(json.dumps(doc, indent=2, default=str))
    write_report(out, args, doc)
    print(f"gpu_check: {out / 'report.md'} ({doc['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
