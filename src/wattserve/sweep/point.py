"""The point loop of a replica sweep: launch one replica group, run each of its (concurrency,
rate) points as a bench run through a round-robin client, and append each point's row to
``summary.csv`` as it finishes.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wattserve.sweep.config import SweepConfig
from wattserve.sweep.replicas import ReplicaSet, RoundRobinEngine, client_engine
from wattserve.sweep.rows import point_row, write_rows

# on_event(kind, message): "group" when replicas start, "point" after each point, "skip"
EventFn = Callable[[str, str], None]


def _with_settings(row: dict[str, Any], cfg: SweepConfig) -> dict[str, Any]:
    row.update(omp_wait_policy=cfg.omp_wait_policy, pinned=cfg.pin_cores and cfg.command is None)
    row.update(device=cfg.device, weights=weights_note(cfg))
    return row


def weights_note(cfg: SweepConfig) -> str:
    return "dummy weights" if cfg.load_format == "dummy" else "checkpoint"


def engine_record(cfg: SweepConfig, plan: Any) -> dict[str, Any]:
    """What each replica runs, for the point's run.json (``weights`` says ``dummy weights``)."""
    return {
        "model": cfg.model,
        "device": cfg.device,
        "load_format": cfg.load_format,
        "weights": weights_note(cfg),
        "replicas": plan.replicas,
        "memory_fraction": plan.memory_fraction,
        "threads_per_replica": plan.threads_per_replica,
    }


def _stamp_run(run_dir: Path, engine: dict[str, Any]) -> None:
    """Add the engine description to the point's run.json (config and environment)."""
    path = run_dir / "run.json"
    if not path.is_file():
        return
    data = json.loads(path.read_text())
    data.setdefault("config", {})["engine"] = engine
    data.setdefault("environment", {})["weights"] = engine["weights"]
    tmp = path.with_name("run.json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def _bench_config(
    cfg: SweepConfig, pid: str, conc: int, rate: float, replicas: int, url: str, result_dir: Path
) -> Any:
    from wattserve.bench.config import BenchConfig

    return BenchConfig.build(
        model=cfg.model,
        backend="openai",
        base_url=url,
        endpoint=cfg.endpoint,
        input_len=cfg.input_len,
        output_len=cfg.output_len,
        num_prompts=cfg.prompts_for(conc),
        ignore_eos=True,
        max_concurrencies=[conc],
        request_rates=None if math.isinf(rate) else [rate],
        num_warmups=cfg.num_warmups * replicas,
        seed=cfg.seed,
        timeout_s=cfg.timeout_s,
        goodput=cfg.goodput,
        meter=cfg.meter,
        result_dir=str(result_dir),
        label=pid,
    )


async def run_group(
    cfg: SweepConfig,
    backend: str,
    plan: Any,
    todo: list[tuple[str, int, float]],
    result_dir: Path,
    rows: list[dict[str, Any]],
    on_event: EventFn | None,
) -> int:
    from wattserve.bench.benchmark import arun_benchmark

    server_backend = backend if backend != "auto" else "auto"
    replicas = ReplicaSet(
        cfg.model,
        plan,
        server_backend,
        cfg.command,
        cfg.ready_timeout_s,
        cfg.mock_token_s,
        omp_wait_policy=cfg.omp_wait_policy,
        device=cfg.device,
        load_format=cfg.load_format,
    )
    t0 = time.perf_counter()
    urls = await replicas.start()
    if on_event:
        on_event("group", f"{backend}: {plan.describe()} ready in {time.perf_counter() - t0:.1f} s")
    ran = 0
    try:
        for pid, conc, rate in todo:
            engine = RoundRobinEngine(
                [client_engine(u, cfg.model) for u in urls],
                [f"replica-{i}" for i in range(len(urls))],
            )
            run_dir = result_dir / "points" / pid
            if run_dir.exists():
                shutil.rmtree(run_dir)  # a point killed midway: rerun it whole
            run_dir.mkdir(parents=True)
            try:
                await arun_benchmark(
                    _bench_config(cfg, pid, conc, rate, plan.replicas, urls[0], result_dir),
                    engine=engine,
                    run_dir=run_dir,
                )
            finally:
                await engine.aclose()
            _stamp_run(run_dir, engine_record(cfg, plan))
            (run_dir / "replicas.json").write_text(
                json.dumps(
                    {
                        "plan": plan.describe(),
                        "urls": urls,
                        "pids": replicas.pids,
                        "assignments": engine.assignments,
                    }
                )
            )
            row = _with_settings(
                point_row(pid, backend, plan, conc, rate, run_dir, result_dir, engine.assignments),
                cfg,
            )
            rows.append(row)
            write_rows(result_dir, rows)
            ran += 1
            if on_event:
                jpt = (
                    f"{row['j_per_token']:.4g} J/token"
                    if row["j_per_token"] is not None
                    else "no energy figure"
                )
                on_event(
                    "point",
                    f"{pid}: {row['tok_s_per_device'] or 0:.1f} tok/s/device, "
                    f"{row['tok_s_per_user'] or 0:.1f} tok/s/user, {jpt}, "
                    f"{int(row['completed'])} ok / {int(row['failed'])} failed",
                )
    finally:
        await replicas.stop()
    return ran
