"""``run_benchmark`` / ``resume_benchmark``: config -> run directory + ``RunRecord``.

The programmatic API the CLI and the sweep use:

    record = run_benchmark(BenchConfig(model="smollm2-135m", max_concurrencies=[1, 8]))

Sequence: engine start + one probe request (an unreachable server fails here, before any
load; ``bench.engine``) -> workload -> warm-ups (not recorded) -> for each point: run the
schedule with the energy sampler running, summarize, rewrite run.json / summary.csv /
catalog (``bench.point``, ``bench.session``). ``Ctrl-C`` marks the run ``interrupted``;
SIGKILL leaves it ``running``. Either way every finished request is in requests.jsonl and
``resume_benchmark(run_dir)`` completes the run.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from wattserve.bench import store, vllm_result
from wattserve.bench.config import BenchConfig, check_inputs
from wattserve.bench.engine import close_engine, make_engine, probe, start_engine, tokenizer_of
from wattserve.bench.loads import LoadPoint, make_points
from wattserve.bench.point import PointResult, ProgressFn, load_points, run_points
from wattserve.bench.runner import run_async, run_schedule
from wattserve.bench.session import BenchSession
from wattserve.bench.workloads import Workload, build_workload
from wattserve.errors import ConfigError
from wattserve.types import Request, RunRecord

__all__ = [
    "PointResult",
    "ProgressFn",
    "arun_benchmark",
    "environment",
    "load_points",
    "open_meter",
    "resume_benchmark",
    "resume_state",
    "run_benchmark",
]


def environment() -> dict[str, Any]:
    """The machine's environment record for run.json (a minimal one without its extras)."""
    try:
        from wattserve.environment import collect_environment

        return dict(collect_environment())
    except ImportError:
        return {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "note": "minimal",
        }


def open_meter(name: str) -> tuple[Any, dict[str, Any]]:
    """(meter or None, description for run.json)."""
    try:
        from wattserve.energy.meters import auto_meter, meter_info
    except ImportError as exc:  # energy package missing: run without energy
        return None, {"type": "none", "reason": f"energy meters unavailable ({exc})"}
    meter, reason = auto_meter(None if name == "auto" else name)
    return meter, meter_info(meter, reason)


def warmup_requests(wl: Workload, n: int) -> list[Request]:
    """``n`` copies of the workload's requests (cycled), all due at once; not recorded."""
    reqs = wl.requests
    return [replace(reqs[i % len(reqs)], id=f"warmup-{i}", arrival_s=0.0) for i in range(n)]


def _shape_workload(cfg: BenchConfig, tok: Any, input_len: int, output_len: int) -> Workload:
    """The random workload of one grid shape."""
    lens = {"input_len": input_len, "output_len": output_len}
    return build_workload(
        cfg.model_copy(update={**lens, "input_lens": None, "output_lens": None}), tok
    )


def _record(session: BenchSession, results: list[PointResult]) -> RunRecord:
    d = session.data
    meas = tuple(
        replace(m, window=f"{r.label}:{m.window}") for r in results for m in r.measurements
    )
    return RunRecord(
        run_id=d["run_id"],
        config=d["config"],
        environment=d["environment"],
        summary=results[-1].summary if results else None,
        measurements=meas,
        wall_start=d["wall_start"],
        status=d["status"],
    )


def _shape_runs(cfg: BenchConfig, tok: Any, wl: Workload) -> list[tuple[str, Workload]]:
    """(label prefix, workload) per grid shape; one shape is ``wl`` itself, unprefixed."""
    shapes = cfg.shapes()
    if len(shapes) == 1:
        return [("", wl)]
    return [(f"in{i}-out{o}-", _shape_workload(cfg, tok, i, o)) for i, o in shapes]


def _open_session(
    cfg: BenchConfig,
    meter_desc: dict[str, Any],
    run_dir: str | Path | None,
    resume: dict[str, Any] | None,
) -> BenchSession:
    """The run directory's session: the resumed one, ``run_dir``, or a new directory."""
    if resume is not None:
        rdir = Path(resume["run_dir"])
        return BenchSession(cfg, rdir, meter_desc, resume["run_json"], collect_env=environment)
    rdir = Path(run_dir) if run_dir else store.create_run_dir(cfg.result_dir, cfg.label, cfg.model)
    rdir.mkdir(parents=True, exist_ok=True)
    return BenchSession(cfg, rdir, meter_desc, collect_env=environment)


def _describe_run(session: BenchSession, cfg: BenchConfig, wl: Workload) -> None:
    """run.json's description of the workload, the shape grid and the joules' attribution."""
    shapes = cfg.shapes()
    session.data["workload"] = {"token_counting": wl.token_counting, "requests": len(wl.requests)}
    if len(shapes) > 1:
        session.data["grid"] = [{"input_len": i, "output_len": o} for i, o in shapes]
    session.data["energy_attribution"] = {
        "method": cfg.energy_attribution,
        "window": "whole",
        "idle": "spread",
        "phases": "prefill/decode at the first content chunk (active_time only)",
    }


async def _run_all(
    cfg: BenchConfig,
    session: BenchSession,
    engine: Any,
    wl: Workload,
    runs: list[tuple[str, Workload]],
    points: list[LoadPoint],
    sampler: Any,
    resume: dict[str, Any] | None,
    on_progress: ProgressFn | None,
) -> list[PointResult]:
    """Warm-ups (on ``wl``), then every point of every (label prefix, workload) of ``runs``."""
    if cfg.num_warmups:
        warm = warmup_requests(wl, cfg.num_warmups)
        conc = max(p.max_concurrency or len(warm) for p in points)
        await run_schedule(engine, warm, [0.0] * len(warm), conc, timeout_s=cfg.timeout_s)
    done_before = resume["done"] if resume else {}
    results: list[PointResult] = []
    for prefix, shape_wl in runs:
        results += await run_points(
            cfg, session, engine, shape_wl, points, sampler, done_before, on_progress, prefix
        )
    return results


async def arun_benchmark(
    cfg: BenchConfig,
    engine: Any = None,
    meter: Any = None,
    run_dir: str | Path | None = None,
    on_progress: ProgressFn | None = None,
    *,
    _resume: dict[str, Any] | None = None,
) -> RunRecord:
    """``run_benchmark`` on the running event loop."""
    # every input is checked before an engine starts (loading a model takes seconds)
    check_inputs(cfg)
    # dataset files are parsed now; custom and ShareGPT prompts need no tokenizer
    early_wl = build_workload(cfg, None) if cfg.dataset_name != "random" else None
    meter_desc: dict[str, Any]
    if meter is None:
        meter, meter_desc = open_meter(cfg.meter)
    else:
        meter_desc = {"type": type(meter).__name__, "reason": "given by the caller"}
    own_engine = engine is None
    if own_engine:
        engine = make_engine(cfg)
    try:
        await start_engine(engine, cfg)
        await probe(engine, cfg)
        tok = tokenizer_of(engine)
        wl = (
            early_wl
            if early_wl is not None and cfg.dataset_name in ("custom", "sharegpt")
            else build_workload(cfg, tok)
        )
        points = make_points(
            cfg.request_rates,
            cfg.max_concurrencies,
            cfg.burstiness,
            cfg.arrival,
            wl.arrivals_s if cfg.dataset_name == "trace" else None,
        )
        runs = _shape_runs(cfg, tok, wl)
        session = _open_session(cfg, meter_desc, run_dir, _resume)
        _describe_run(session, cfg, wl)
        session.save("running")
        sampler = None
        if meter is not None:
            from wattserve.energy.sampler import EnergySampler

            sampler = EnergySampler(
                meter, cfg.energy_interval_s, record_path=session.run_dir / store.ENERGY
            ).start()
        status = "interrupted"
        try:
            results = await _run_all(
                cfg, session, engine, wl, runs, points, sampler, _resume, on_progress
            )
            status = "complete"
            vllm_result.attach_results(
                cfg,
                session.run_dir,
                session.data,
                {r.label: r.summary for r in results},
                tokenizer_id=getattr(tok, "name_or_path", None) if tok is not None else None,
            )
        finally:
            if sampler is not None:
                sampler.stop()
                if sampler.errors:
                    session.data["energy_errors"] = sampler.errors[:10]
            session.save(status, wait_env_s=120.0)
            session.close()
        return _record(session, results)
    finally:
        if own_engine:
            await close_engine(engine)


def run_benchmark(
    config: BenchConfig,
    engine: Any = None,
    meter: Any = None,
    run_dir: str | Path | None = None,
    on_progress: ProgressFn | None = None,
) -> RunRecord:
    """Run every point of ``config``; returns the ``RunRecord`` (summary = last point's).

    Per-point summaries are in ``<run_dir>/run.json`` (``points``) and ``summary.csv``;
    ``load_points(run_dir)`` reads them back.
    """
    return run_async(arun_benchmark(config, engine, meter, run_dir, on_progress))


def resume_state(run_dir: str | Path) -> tuple[BenchConfig, dict[str, Any]]:
    """(the saved config, the state ``arun_benchmark(_resume=...)`` continues from)."""
    rdir = Path(run_dir)
    data = store.load_run_json(rdir)
    try:
        cfg = BenchConfig.model_validate(data["config"])
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{rdir / store.RUN_JSON}: config cannot be reloaded ({exc})") from None
    store.repair_jsonl(rdir / store.REQUESTS)
    done = store.latest_per_request(store.read_requests(rdir / store.REQUESTS))
    return cfg, {"run_dir": str(rdir), "run_json": data, "done": done}


def resume_benchmark(
    run_dir: str | Path,
    engine: Any = None,
    meter: Any = None,
    on_progress: ProgressFn | None = None,
) -> RunRecord:
    """Finish an interrupted run: skip requests that finished successfully, run the rest,
    recompute each point's summary from the union (no duplicates)."""
    cfg, state = resume_state(run_dir)
    return run_async(arun_benchmark(cfg, engine, meter, None, on_progress, _resume=state))
