"""Run a replica sweep: for each backend and replica count, launch the replicas once, then run
one benchmark point per (concurrency, request rate) through the bench runner and store. This
module orchestrates (which points to run, resume checks, the memory-fit check, sweep.json);
the point loop of one replica group is ``point.py``, the summary.csv rows ``rows.py`` (their
names stay importable from here).

Layout of ``<result-dir>``::

    summary.csv           one row per point (appended as points finish; frontier marked)
    sweep.json            config, footprint, frontier, recommendation, replica comparison
    points/<point>/       the bench run of that point (run.json, requests.jsonl, energy.csv,
                          summary.csv) plus replicas.json (which replica served each request)

Resumable: a point already in ``summary.csv`` is skipped; a point killed midway is rerun
from scratch (its partial directory is replaced).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattserve.bench import pareto
from wattserve.errors import ConfigError
from wattserve.sweep.config import SweepConfig
from wattserve.sweep.point import EventFn, engine_record, run_group, weights_note
from wattserve.sweep.replicas import plan_replicas
from wattserve.sweep.rows import (
    SUMMARY,
    compare_replicas,
    point_id,
    point_row,
    read_rows,
    rescore_slo,
    write_rows,
)

__all__ = [
    "MEASUREMENT_KEYS",
    "SUMMARY",
    "SWEEP_JSON",
    "EventFn",
    "SweepResult",
    "available_backends",
    "check_fit",
    "compare_replicas",
    "engine_record",
    "finish_sweep",
    "gpu_memory_bytes",
    "point_id",
    "point_row",
    "read_rows",
    "rescore_slo",
    "run_sweep",
    "weights_note",
    "write_rows",
]

SWEEP_JSON = "sweep.json"
# settings that change what a point measures: a resumed sweep must keep them (SLOs, objective,
# the lists of points may change)
MEASUREMENT_KEYS = (
    "model",
    "threads",
    "pin_cores",
    "omp_wait_policy",
    "command",
    "memory_utilization",
    "device",
    "load_format",
    "input_len",
    "output_len",
    "num_prompts",
    "num_warmups",
    "seed",
    "endpoint",
    "meter",
)


def available_backends(names: list[str]) -> list[str]:
    """Expand ``all`` into the installed CPU engines (transformers ``local``, ``llama-cpp``)."""
    if names != ["all"]:
        return names
    import importlib.util

    found = ["local"]
    if importlib.util.find_spec("llama_cpp") is not None:
        found.append("llama-cpp")
    return found


@dataclass
class SweepResult:
    result_dir: Path
    rows: list[dict[str, Any]]
    recommendation: pareto.Recommendation
    comparison: list[dict[str, Any]]
    ran: int
    skipped: int


def gpu_memory_bytes() -> float | None:
    """Total memory of GPU 0 from NVML, or None when there is no NVIDIA GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return float(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).total)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML, no GPU: nothing to check
        return None


def check_fit(cfg: SweepConfig, replicas: int, device_bytes: float | None) -> None:
    """Refuse a replica count whose memory share cannot hold the model's weights plus the KV cache
    of ``max(concurrency)`` sequences of ``input_len + output_len`` tokens (bf16, footprint)."""
    from wattserve.errors import WattserveError
    from wattserve.footprint import GIB, footprint

    if device_bytes is None:
        return
    try:
        fp = footprint(cfg.model)
    except WattserveError:
        return  # unknown config: the server will tell
    share = device_bytes * cfg.memory_utilization / replicas
    need = fp.replica_bytes(cfg.input_len + cfg.output_len, max(cfg.max_concurrencies))
    if need > share:
        raise ConfigError(
            f"{replicas} replicas of {cfg.model} do not fit: each needs {need / GIB:.2f} GiB "
            f"(weights + KV cache) but gets {share / GIB:.2f} GiB of the device; "
            f"fewer --replicas or a higher --gpu-memory-utilization"
        )


def run_sweep(cfg: SweepConfig, on_event: EventFn | None = None) -> SweepResult:
    result_dir = Path(cfg.result_dir)
    result_dir.mkdir(parents=True, exist_ok=True)
    prev = (
        json.loads((result_dir / SWEEP_JSON).read_text())
        if (result_dir / SWEEP_JSON).is_file()
        else None
    )
    if prev:
        before, now = prev.get("config", {}), cfg.model_dump(mode="json")
        changed = [k for k in MEASUREMENT_KEYS if k in before and before[k] != now[k]]
        if changed:
            raise ConfigError(
                f"{result_dir} holds a sweep measured with other settings "
                f"({', '.join(f'{k}: {before[k]!r} -> {now[k]!r}' for k in changed)}); "
                "resume with the same settings or use another --result-dir"
            )
    if prev is None:
        (result_dir / SWEEP_JSON).write_text(
            json.dumps(
                {
                    "kind": "wattserve-sweep",
                    "schema_version": 1,
                    "status": "running",
                    "config": cfg.model_dump(mode="json"),
                },
                indent=2,
            )
        )
    rows = read_rows(result_dir)
    done = {r["point"] for r in rows}
    backends = available_backends(cfg.backends)
    ran = skipped = 0
    for backend in backends:
        for n in cfg.replicas:
            on_gpu = bool(cfg.command) or cfg.device != "cpu"
            plan = plan_replicas(
                n,
                cfg.threads,
                cfg.pin_cores and cfg.command is None,
                cfg.memory_utilization if on_gpu else None,
            )
            if on_gpu:
                check_fit(cfg, n, gpu_memory_bytes())
            todo = []
            for conc in cfg.max_concurrencies:
                for rate in cfg.rates():
                    pid = point_id(backend, n, conc, rate)
                    if pid in done:
                        skipped += 1
                        if on_event:
                            on_event("skip", f"{pid}: already in {SUMMARY}")
                    else:
                        todo.append((pid, conc, rate))
            if todo:
                ran += asyncio.run(run_group(cfg, backend, plan, todo, result_dir, rows, on_event))
    return finish_sweep(cfg, result_dir, rows, ran, skipped)


def finish_sweep(
    cfg: SweepConfig, result_dir: Path, rows: list[dict[str, Any]], ran: int = 0, skipped: int = 0
) -> SweepResult:
    """Frontier, recommendation and replica comparison over ``rows``; writes sweep.json."""
    from wattserve.footprint import footprint_for_model

    if not rows:
        raise ConfigError(f"no sweep points in {result_dir}")
    if cfg.goodput:
        rescore_slo(result_dir, rows, cfg.goodput)
    write_rows(result_dir, rows)
    rec = pareto.recommend(
        rows, cfg.goodput or None, cfg.min_attainment, cfg.objective, cfg.throughput_floor
    )
    comparison = compare_replicas(rows)
    doc = {
        "kind": "wattserve-sweep",
        "schema_version": 1,
        "config": cfg.model_dump(mode="json"),
        "footprint": footprint_for_model(cfg.model),
        "points": len(rows),
        "frontier": [rows[i]["point"] for i in rec.frontier],
        "recommendation": rec.to_dict()
        | {"point": rows[rec.index]["point"] if rec.index is not None else None},
        "comparison": comparison,
        "updated": time.time(),
    }
    tmp = result_dir / (SWEEP_JSON + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    tmp.replace(result_dir / SWEEP_JSON)
    return SweepResult(result_dir, rows, rec, comparison, ran, skipped)
