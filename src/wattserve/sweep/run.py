"""Run a replica sweep: for each backend and replica count, launch the replicas once, then run
one benchmark point per (concurrency, request rate) through the bench runner and store.

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
import csv
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattserve.bench import pareto
from wattserve.errors import ConfigError
from wattserve.sweep.config import SweepConfig
from wattserve.sweep.replicas import ReplicaSet, RoundRobinEngine, client_engine, plan_replicas

SUMMARY = "summary.csv"
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
# on_event(kind, message): "group" when replicas start, "point" after each point, "skip"
EventFn = Callable[[str, str], None]


def point_id(backend: str, replicas: int, concurrency: int, rate: float) -> str:
    tail = "" if math.isinf(rate) else f"-rate{rate:g}"
    return f"{backend}-r{replicas}-c{concurrency}{tail}"


def available_backends(names: list[str]) -> list[str]:
    """Expand ``all`` into the installed CPU engines (transformers ``local``, ``llama-cpp``)."""
    if names != ["all"]:
        return names
    import importlib.util

    found = ["local"]
    if importlib.util.find_spec("llama_cpp") is not None:
        found.append("llama-cpp")
    return found


def read_rows(result_dir: Path) -> list[dict[str, Any]]:
    path = result_dir / SUMMARY
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [dict(r) for r in csv.DictReader(f)]


def write_rows(result_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite summary.csv atomically with the frontier recomputed over all rows."""
    for r, on in zip(rows, pareto.pareto_mask(rows), strict=True):
        r["pareto"] = int(on)
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    tmp = result_dir / (SUMMARY + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(result_dir / SUMMARY)


def _f(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def point_row(
    pid: str,
    backend: str,
    plan: Any,
    conc: int,
    rate: float,
    run_dir: Path,
    result_dir: Path,
    assignments: dict[str, str],
) -> dict[str, Any]:
    """One summary.csv row from a finished bench run of a point."""
    from wattserve.bench import store

    data = store.load_run_json(run_dir)
    point = data["points"][-1]
    s = point["summary"]
    base = store.summary_row(point, _summary(s))
    tpot = _f((s.get("latency") or {}).get("tpot_s", {}).get("mean"))
    energy = _f(s.get("energy_j"))
    # per-replica energy: the device's joules split by each replica's share of output tokens
    tokens: dict[str, int] = {}
    for rec in store.latest_per_request(store.read_requests(run_dir / store.REQUESTS)).values():
        if rec.get("error") is None:
            name = assignments.get(str(rec["request_id"]), "?")
            tokens[name] = tokens.get(name, 0) + int(rec.get("output_tokens") or 0)
    total_tok = sum(tokens.values())
    per_replica = {
        k: (energy * v / total_tok if energy is not None and total_tok else None)
        for k, v in sorted(tokens.items())
    }
    row = {
        "point": pid,
        "backend": backend,
        "replicas": plan.replicas,
        "threads_per_replica": plan.threads_per_replica,
        "memory_fraction": plan.memory_fraction,
        "max_concurrency": conc,
        "request_rate": None if math.isinf(rate) else rate,
        "tok_s_per_user": (1.0 / tpot) if tpot else None,
        "tok_s_per_device": _f(s.get("output_throughput")),
        "j_per_token": _f(s.get("energy_per_output_token_j")),
    }
    row.update({k: v for k, v in base.items() if k not in row and k != "point"})
    row.update(
        replica_tokens=json.dumps(tokens),
        replica_energy_j=json.dumps(per_replica),
        replica_energy_split="device energy x replica share of output tokens",
        meter=data.get("meter"),
        run_dir=str(run_dir.relative_to(result_dir)),
    )
    return row


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


def _summary(d: dict[str, Any]) -> Any:
    from wattserve.bench.metrics import summary_from_dict

    return summary_from_dict(d)


def compare_replicas(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For every (backend, concurrency, rate): each replica count against 1 replica."""
    out = []
    groups: dict[tuple, dict[int, dict[str, Any]]] = {}
    for r in rows:
        key = (r["backend"], int(float(r["max_concurrency"])), r.get("request_rate") or "")
        groups.setdefault(key, {})[int(float(r["replicas"]))] = r
    for (backend, conc, rate), by_n in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], str(kv[0][2]))
    ):
        one = by_n.get(1)
        for n, r in sorted(by_n.items()):
            if n == 1 or one is None:
                continue
            a, b = _f(one.get("tok_s_per_device")), _f(r.get("tok_s_per_device"))
            ja, jb = _f(one.get("j_per_token")), _f(r.get("j_per_token"))
            out.append(
                {
                    "backend": backend,
                    "max_concurrency": conc,
                    "request_rate": rate or "inf",
                    "base": f"1 x {one['threads_per_replica']} threads",
                    "alt": f"{n} x {r['threads_per_replica']} threads",
                    "base_tok_s": a,
                    "alt_tok_s": b,
                    "throughput_ratio": (b / a) if a and b else None,
                    "base_j_per_token": ja,
                    "alt_j_per_token": jb,
                    "energy_ratio": (jb / ja) if ja and jb else None,
                }
            )
    return out


@dataclass
class SweepResult:
    result_dir: Path
    rows: list[dict[str, Any]]
    recommendation: pareto.Recommendation
    comparison: list[dict[str, Any]]
    ran: int
    skipped: int


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


async def _run_group(
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
                ran += asyncio.run(_run_group(cfg, backend, plan, todo, result_dir, rows, on_event))
    return finish_sweep(cfg, result_dir, rows, ran, skipped)


def rescore_slo(result_dir: Path, rows: list[dict[str, Any]], slo_ms: dict[str, float]) -> None:
    """Goodput and SLO attainment of every row under ``slo_ms``, from its raw requests (so a
    rerun with other SLOs re-analyses without measuring again)."""
    from wattserve.bench import metrics, store

    for r in rows:
        recs = store.read_requests(
            result_dir / str(r.get("run_dir") or f"points/{r['point']}") / store.REQUESTS
        )
        comps = [store.completion_of(x) for x in store.latest_per_request(recs).values()]
        dur = _f(r.get("duration_s")) or metrics.duration_s(comps)
        if comps:
            r["goodput_rps"], r["slo_attainment"] = metrics.goodput(comps, slo_ms, dur)
    for r in rows:
        r["slo"] = json.dumps(slo_ms)


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
