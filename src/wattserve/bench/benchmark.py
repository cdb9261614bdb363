"""``run_benchmark`` / ``resume_benchmark``: config -> run directory + ``RunRecord``.

The programmatic API the CLI and the sweep use:

    record = run_benchmark(BenchConfig(model="smollm2-135m", max_concurrencies=[1, 8]))

Sequence: engine start + one probe request (an unreachable server fails here, before any
load) -> workload -> warm-ups (not recorded) -> for each point: run the schedule with the
energy sampler running, summarize, rewrite run.json / summary.csv / catalog. ``Ctrl-C``
marks the run ``interrupted``; SIGKILL leaves it ``running``. Either way every finished
request is in requests.jsonl and ``resume_benchmark(run_dir)`` completes the run.
"""

from __future__ import annotations

import asyncio
import platform
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from wattserve.bench import metrics, store, vllm_result
from wattserve.bench.config import BenchConfig, check_inputs
from wattserve.bench.energy import attribute_point
from wattserve.bench.loads import Concurrent, LoadPoint, make_points, ramp_count
from wattserve.bench.runner import record_windows, run_async, run_schedule, send_error_stats_ms
from wattserve.bench.workloads import Workload, build_workload
from wattserve.errors import ConfigError, EngineUnavailable, WattserveError
from wattserve.types import Measurement, Request, RunRecord, RunSummary

# on_progress(point_label, done, total) — called with done=0 when a point starts
ProgressFn = Callable[[str, int, int], None]


@dataclass
class PointResult:
    label: str
    max_concurrency: int | None
    request_rate: float
    summary: RunSummary
    measurements: list[Measurement] = field(default_factory=list)
    send_error_ms: dict[str, float] = field(default_factory=dict)
    energy_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "max_concurrency": self.max_concurrency,
            "request_rate": self.request_rate,
            "summary": self.summary.to_dict(),
            "measurements": [m.to_dict() for m in self.measurements],
            "send_error_ms": self.send_error_ms,
            "energy_note": self.energy_note,
        }


def environment() -> dict[str, Any]:
    try:
        from wattserve.environment import collect_environment

        return dict(collect_environment())
    except ImportError:
        return {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "note": "minimal",
        }


def _footprint(model: str) -> dict[str, Any] | None:
    """The model's memory footprint (wattserve.footprint); None when its config is unknown."""
    from wattserve.footprint import footprint_for_model

    return footprint_for_model(model)


def open_meter(name: str) -> tuple[Any, dict[str, Any]]:
    """(meter or None, description for run.json)."""
    try:
        from wattserve.energy.meters import auto_meter, meter_info
    except ImportError as exc:  # energy package missing: run without energy
        return None, {"type": "none", "reason": f"energy meters unavailable ({exc})"}
    meter, reason = auto_meter(None if name == "auto" else name)
    return meter, meter_info(meter, reason)


def make_engine(cfg: BenchConfig) -> Any:
    from wattserve.engines.factory import create_engine

    try:
        return create_engine(
            cfg.model, base_url=cfg.base_url, backend=cfg.backend, threads=cfg.threads
        )
    except WattserveError:
        raise
    except Exception as exc:  # noqa: BLE001 - any other failure to build the engine
        raise EngineUnavailable(
            f"cannot create engine for {cfg.model!r}: {type(exc).__name__}: {exc}"
        ) from None


async def _maybe_await(x: Any) -> Any:
    return await x if asyncio.iscoroutine(x) or isinstance(x, asyncio.Future) else x


def tokenizer_of(engine: Any) -> Any:
    tok = getattr(engine, "tokenizer", None)
    return tok if tok is not None and hasattr(tok, "encode") and hasattr(tok, "decode") else None


def count_tokens_fn(tok: Any) -> Callable[[str], int] | None:
    if tok is None:
        return None
    return lambda text: len(tok.encode(text, add_special_tokens=False))


async def probe(engine: Any, cfg: BenchConfig) -> None:
    """Before any load: the server's model list (when the engine can ask for it), then one
    1-token request; an unreachable server or unknown model fails here with one message."""
    from wattserve.engines.base import complete

    served: list[str] = []
    if hasattr(engine, "check"):
        served = list(await _maybe_await(engine.check()) or [])

    req = Request(
        id="probe",
        model=cfg.model,
        prompt="Hello",
        max_tokens=1,
        endpoint=cfg.endpoint,
        messages=None,
    )
    if cfg.endpoint == "chat":
        from wattserve.types import Message

        req = replace(req, prompt=None, messages=(Message("user", "Hello"),))
    c = await complete(engine, req, timeout_s=cfg.timeout_s or 120.0)
    if not c.ok:
        where = f" at {cfg.base_url}" if cfg.base_url else ""
        hint = (
            f" (the server lists: {', '.join(served[:10])})"
            if served and cfg.model not in served
            else ""
        )
        raise EngineUnavailable(
            f"engine {cfg.model!r}{where} failed a probe request: {c.error}{hint}"
        )


def warmup_requests(wl: Workload, n: int) -> list[Request]:
    reqs = wl.requests
    return [replace(reqs[i % len(reqs)], id=f"warmup-{i}", arrival_s=0.0) for i in range(n)]


class BenchSession:
    """One run directory being written: run.json, requests.jsonl, catalog."""

    def __init__(
        self,
        cfg: BenchConfig,
        run_dir: Path,
        meter_desc: dict[str, Any],
        run_json: dict | None = None,
    ):
        self.cfg = cfg
        self.run_dir = run_dir
        self.log = store.RequestLog(run_dir / store.REQUESTS)
        self.data = run_json or {
            "schema_version": store.SCHEMA_VERSION,
            "run_id": run_dir.name,
            "config": cfg.model_dump(mode="json"),
            "environment": {},
            "footprint": _footprint(cfg.model),
            "meter": meter_desc.get("type"),
            "meter_info": meter_desc,
            "wall_start": time.time(),
            "status": "running",
            "points": [],
            "segments": [],
        }
        self.data.setdefault("segments", []).append(
            {"wall_start": time.time(), "perf_start": time.perf_counter()}
        )
        # collecting the environment imports torch (seconds): do it beside engine start-up and
        # the first requests; every save after it finishes includes it
        self._env: dict[str, Any] = {}
        self._env_thread: threading.Thread | None = None
        if not self.data.get("environment"):
            self._env_thread = threading.Thread(
                target=lambda: self._env.update(environment()),
                name="collect-environment",
                daemon=True,
            )
            self._env_thread.start()

    @property
    def segment(self) -> int:
        return len(self.data["segments"]) - 1

    def save(self, status: str | None = None, wait_env_s: float = 0.0) -> None:
        if status:
            self.data["status"] = status
        if self._env_thread is not None:
            self._env_thread.join(wait_env_s)
            if not self._env_thread.is_alive():
                self.data["environment"] = dict(self._env)
                self._env_thread = None
        store.write_json_atomic(self.run_dir / store.RUN_JSON, self.data)
        rows = [
            store.summary_row(p, metrics.summary_from_dict(p["summary"]))
            for p in self.data["points"]
        ]
        store.write_summary_csv(self.run_dir / store.SUMMARY, rows)
        try:
            store.catalog_upsert(self.cfg.result_dir, self.run_dir, self.data)
        except Exception as exc:  # noqa: BLE001 - a locked or unwritable catalog must not lose the run
            self.data["catalog_error"] = str(exc)

    def set_point(self, result: PointResult) -> None:
        pts = [p for p in self.data["points"] if p["label"] != result.label]
        self.data["points"] = pts + [result.to_dict()]

    def close(self) -> None:
        self.log.close()


def _point_summary(
    cfg: BenchConfig, records: list[dict[str, Any]], meas: list[Measurement]
) -> RunSummary:
    comps = [store.completion_of(r) for r in records]
    seg = {str(r["request_id"]): int(r.get("segment", 0)) for r in records}
    return metrics.summarize(
        comps, meas, cfg.metric_percentiles, cfg.percentile_metrics, cfg.goodput or None, seg
    )


def _redo(rec: dict[str, Any], metered: bool) -> bool:
    """Whether a resumed run sends a finished request again: it failed, or it was metered
    but the run stopped before its joules were attributed."""
    return rec.get("error", "x") is not None or (metered and rec.get("energy_j") is None)


async def _run_points(
    cfg: BenchConfig,
    session: BenchSession,
    engine: Any,
    wl: Workload,
    points: list[LoadPoint],
    sampler: Any,
    done_before: dict[tuple[str, str], dict[str, Any]],
    on_progress: ProgressFn | None,
    prefix: str = "",
) -> list[PointResult]:
    tok = tokenizer_of(engine)
    results = []
    last = sampler.series()[-1:] if sampler is not None else []
    metered = any(src != "null" for r in last for src in r.sources.values())
    for point in points:
        label = prefix + point.label
        fixed = isinstance(point.pattern, Concurrent)
        offsets_all = (
            wl.arrivals_s
            if wl.arrivals_s is not None
            else point.pattern.offsets(len(wl.requests), cfg.seed)
        )
        todo = [
            (r, o)
            for r, o in zip(wl.requests, offsets_all, strict=True)
            if _redo(done_before.get((label, r.id), {}), metered)
        ]
        prev = [r for (lbl, _), r in done_before.items() if lbl == label and not _redo(r, metered)]
        if not todo:
            saved = next((p for p in session.data["points"] if p["label"] == label), None)
            results.append(
                PointResult(**_from_saved(saved))
                if saved
                else _result(cfg, point, label, prev, [], None)
            )
            continue
        base = min((o for _, o in todo), default=0.0)
        if on_progress:
            on_progress(label, len(prev), len(prev) + len(todo))
        run = await run_schedule(
            engine,
            [r for r, _ in todo],
            [o - base for _, o in todo],
            point.max_concurrency,
            label=label,
            segment=session.segment,
            on_record=session.log.write,
            on_progress=_offset_progress(on_progress, label, len(prev)),
            timeout_s=cfg.timeout_s,
            count_tokens=count_tokens_fn(tok),
            ramp_requests=0 if fixed else ramp_count(len(todo)),
        )
        meas = record_windows(run, sampler, fixed)
        energy_note = attribute_point(
            run.completions, run.records, sampler, meas, cfg.energy_attribution
        )
        if energy_note is None and metered:
            session.log.amend(run.records)
        note = "; ".join(n for n in (run.energy_note, energy_note) if n) or None
        union = list(store.latest_per_request(prev + run.records).values())
        send_err = {} if fixed else send_error_stats_ms(run.send_error_s)
        res = _result(cfg, point, label, union, meas, note, send_err)
        session.set_point(res)
        session.save()
        results.append(res)
    return results


def _shape_workload(cfg: BenchConfig, tok: Any, input_len: int, output_len: int) -> Workload:
    """The random workload of one grid shape."""
    lens = {"input_len": input_len, "output_len": output_len}
    return build_workload(
        cfg.model_copy(update={**lens, "input_lens": None, "output_lens": None}), tok
    )


def _offset_progress(
    on_progress: ProgressFn | None, label: str, done_before: int
) -> Callable[[int, int], None] | None:
    """A point's progress callback counting the requests a resumed run already finished."""
    if on_progress is None:
        return None
    return lambda d, n: on_progress(label, done_before + d, done_before + n)


def _from_saved(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "label": p["label"],
        "max_concurrency": p.get("max_concurrency"),
        "request_rate": p.get("request_rate")
        if p.get("request_rate") is not None
        else float("inf"),
        "summary": metrics.summary_from_dict(p["summary"]),
        "measurements": [
            Measurement(m["window"], m["start_s"], m["end_s"], m["energy_j"], m["sources"])
            for m in p.get("measurements", [])
        ],
        "send_error_ms": p.get("send_error_ms", {}),
        "energy_note": p.get("energy_note"),
    }


def _result(
    cfg: BenchConfig,
    point: LoadPoint,
    label: str,
    records: list[dict[str, Any]],
    meas: list[Measurement],
    note: str | None,
    send_err: dict[str, float] | None = None,
) -> PointResult:
    return PointResult(
        label,
        point.max_concurrency,
        point.request_rate,
        _point_summary(cfg, records, meas),
        meas,
        send_err or {},
        note,
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


async def arun_benchmark(
    cfg: BenchConfig,
    engine: Any = None,
    meter: Any = None,
    run_dir: str | Path | None = None,
    on_progress: ProgressFn | None = None,
    *,
    _resume: dict[str, Any] | None = None,
) -> RunRecord:
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
        try:
            if hasattr(engine, "start"):
                await _maybe_await(engine.start())
        except WattserveError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise EngineUnavailable(
                f"engine {cfg.model!r} failed to start: {type(exc).__name__}: {exc}"
            ) from None
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
        if _resume is not None:
            rdir = Path(_resume["run_dir"])
            session = BenchSession(cfg, rdir, meter_desc, _resume["run_json"])
        else:
            rdir = (
                Path(run_dir)
                if run_dir
                else store.create_run_dir(cfg.result_dir, cfg.label, cfg.model)
            )
            rdir.mkdir(parents=True, exist_ok=True)
            session = BenchSession(cfg, rdir, meter_desc)
        shapes = cfg.shapes()
        runs = (
            [(f"in{i}-out{o}-", _shape_workload(cfg, tok, i, o)) for i, o in shapes]
            if len(shapes) > 1
            else [("", wl)]
        )
        session.data["workload"] = {
            "token_counting": wl.token_counting,
            "requests": len(wl.requests),
        }
        if len(shapes) > 1:
            session.data["grid"] = [{"input_len": i, "output_len": o} for i, o in shapes]
        session.data["energy_attribution"] = {
            "method": cfg.energy_attribution,
            "window": "whole",
            "idle": "spread",
            "phases": "prefill/decode at the first content chunk (active_time only)",
        }
        session.save("running")
        sampler = None
        if meter is not None:
            from wattserve.energy.sampler import EnergySampler

            sampler = EnergySampler(
                meter, cfg.energy_interval_s, record_path=rdir / store.ENERGY
            ).start()
        status = "interrupted"
        try:
            if cfg.num_warmups:
                warm = warmup_requests(wl, cfg.num_warmups)
                conc = max(p.max_concurrency or len(warm) for p in points)
                await run_schedule(engine, warm, [0.0] * len(warm), conc, timeout_s=cfg.timeout_s)
            done_before = _resume["done"] if _resume else {}
            results = []
            for prefix, shape_wl in runs:
                results += await _run_points(
                    cfg,
                    session,
                    engine,
                    shape_wl,
                    points,
                    sampler,
                    done_before,
                    on_progress,
                    prefix,
                )
            status = "complete"
            vllm_result.attach_results(
                cfg,
                rdir,
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
        if own_engine and hasattr(engine, "aclose"):
            await _maybe_await(engine.aclose())


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


def load_points(run_dir: str | Path) -> list[PointResult]:
    return [PointResult(**_from_saved(p)) for p in store.load_run_json(run_dir).get("points", [])]
