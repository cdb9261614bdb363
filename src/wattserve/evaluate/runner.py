"""``run_eval`` / ``resume_eval``: models x task items -> records, summary, routing dataset.

For each model in turn: build the engine (``engines.factory.create_engine``, as ``bench``
does), start it, send one probe, then send the items it has not answered yet through the
benchmark's runner (``bench.runner.run_schedule``) in waves of ``max_concurrency``
requests: greedy (temperature 0), stopped at a newline, with the item's answer budget
(``TaskItem.max_tokens``; ``cfg.max_tokens`` overrides it, ``DEFAULT_MAX_TOKENS`` for
items without one). Around each
wave the energy sampler is read; the wave's joules are split over its requests by active
time (``energy.attribution``) and every request's record, with its correctness, is
appended to ``records.jsonl`` and flushed before the next wave starts. With the default
concurrency of 1 a wave is one request, so nothing is shared and nothing is lost.

Ctrl-C (or SIGTERM in the CLI) marks the run ``interrupted``; ``resume_eval(run_dir)``
runs only the (model, item) pairs without a good record.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattserve.bench.runner import run_async, run_schedule
from wattserve.engines.base import build_engine, start_engine
from wattserve.errors import EngineUnavailable
from wattserve.evaluate import store
from wattserve.evaluate.config import EvalConfig
from wattserve.evaluate.routing import write_routing
from wattserve.evaluate.summary import csv_rows, summarize
from wattserve.protocols import Engine
from wattserve.tasks import TaskItem, check, extract, read_tasks, write_tasks
from wattserve.types import Completion, Message, Request

ProgressFn = Callable[[str, int, int], None]  # (model, done, total)
METHOD = "active_time"
DEFAULT_MAX_TOKENS = 12


@dataclass
class EvalResult:
    run_dir: Path
    summary: dict[str, Any]
    routing: dict[str, Any]
    status: str


def select_items(items: Sequence[TaskItem], limit: int | None) -> list[TaskItem]:
    """The first ``limit`` items of each family, in file order (all items when None)."""
    if limit is None:
        return list(items)
    seen: dict[str, int] = {}
    out = []
    for it in items:
        if seen.get(it.family, 0) < limit:
            seen[it.family] = seen.get(it.family, 0) + 1
            out.append(it)
    return out


def budget(item: TaskItem, cfg: EvalConfig) -> int:
    """The ``max_tokens`` an item's request is sent with."""
    if cfg.max_tokens is not None:
        return cfg.max_tokens
    return item.max_tokens if item.max_tokens is not None else DEFAULT_MAX_TOKENS


def request_for(item: TaskItem, model: str, cfg: EvalConfig) -> Request:
    common: dict[str, Any] = {
        "id": item.id,
        "model": model,
        "max_tokens": budget(item, cfg),
        "temperature": 0.0,
        "stop": tuple(s for s in cfg.stop if s),
        "seed": cfg.seed,
        "endpoint": cfg.endpoint,
    }
    if cfg.endpoint == "chat":
        return Request(messages=(Message("user", item.prompt),), **common)
    return Request(prompt=item.prompt, **common)


def make_engine(cfg: EvalConfig, model: str, base_url: str | None) -> Engine:
    return build_engine(model, base_url=base_url, backend=cfg.backend, threads=cfg.threads)


async def _start_and_probe(engine: Engine, model: str, cfg: EvalConfig, url: str | None) -> None:
    from wattserve.engines.base import complete

    await start_engine(engine, f"engine {model!r}")
    probe = TaskItem("probe", "probe", 0, "Hello", "x", "exact")
    req = request_for(probe, model, cfg.model_copy(update={"max_tokens": 1}))
    c = await complete(engine, req, timeout_s=cfg.timeout_s)
    if not c.ok:
        where = f" at {url}" if url else ""
        raise EngineUnavailable(f"engine {model!r}{where} failed a probe request: {c.error}")


def _energy(comps: Sequence[Completion], sampler: Any) -> tuple[dict[str, float], str | None, Any]:
    """(joules per request id, source label, per-device joules) of one wave; empty if unmeasured."""
    if sampler is None or not comps:
        return {}, None, {}
    from wattserve.energy.attribution import attribute_requests

    t0 = min(c.sent_s for c in comps)
    t1 = max(c.end_s for c in comps)
    try:
        att = attribute_requests(comps, sampler, METHOD, window=(t0, t1), idle="spread")
    except Exception:  # noqa: BLE001 - a window the series does not cover: leave it unmeasured
        return {}, None, {}
    if not att.sources:
        return {}, None, {}
    source = "+".join(sorted(set(att.sources.values())))
    return dict(att.per_request_j), source, att.per_device_j


def record_for(
    item: TaskItem,
    c: Completion,
    joules: Mapping[str, float],
    source: str | None,
    max_tokens: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    j = joules.get(c.request_id)
    return {
        "model": c.model,
        "item_id": item.id,
        "family": item.family,
        "difficulty": item.difficulty,
        "checker": item.checker,
        "reference": item.answer,
        "answer": extract(item, c.text),
        "correct": bool(c.ok and check(item, c.text)),
        "output": c.text,
        "input_tokens": c.input_tokens,
        "output_tokens": c.output_tokens,
        "max_tokens": max_tokens,
        "token_source": c.token_source,
        "finish_reason": c.finish_reason,
        "latency_s": c.end_s - c.sent_s,
        "ttft_s": None if c.first_token_s is None else c.first_token_s - c.sent_s,
        "sent_s": c.sent_s,
        "end_s": c.end_s,
        "energy_j": j,
        "energy_source": source if j is not None else None,
        "energy_split": METHOD if j is not None else None,
        "error": c.error,
        **extra,
    }


async def _eval_model(
    cfg: EvalConfig,
    model: str,
    engine: Any,
    todo: Sequence[TaskItem],
    sampler: Any,
    log: Any,
    segment: int,
    on_progress: Callable[[int], None] | None,
) -> None:
    from wattserve.bench.engine import count_tokens_fn, tokenizer_of

    count = count_tokens_fn(tokenizer_of(engine))
    wave = cfg.max_concurrency
    engine_name = getattr(engine, "name", type(engine).__name__)
    for k in range(0, len(todo), wave):
        chunk = list(todo[k : k + wave])
        if sampler is not None:
            sampler.mark()
        run = await run_schedule(
            engine,
            [request_for(it, model, cfg) for it in chunk],
            [0.0] * len(chunk),
            wave,
            label=model,
            segment=segment,
            timeout_s=cfg.timeout_s,
            count_tokens=count,
            start_delay_s=0.0,
        )
        if sampler is not None:
            sampler.mark()
        joules, source, _ = _energy(run.completions, sampler)
        by_id = {it.id: it for it in chunk}
        for c in run.completions:
            log.write(
                record_for(
                    by_id[c.request_id],
                    c,
                    joules,
                    source,
                    budget(by_id[c.request_id], cfg),
                    segment=segment,
                    engine=engine_name,
                )
            )
        if on_progress is not None:
            on_progress(k + len(chunk))


def _open_meter(name: str) -> tuple[Any, dict[str, Any]]:
    from wattserve.bench.benchmark import open_meter

    return open_meter(name)


async def arun_eval(
    cfg: EvalConfig,
    engines: Mapping[str, Any] | None = None,
    meter: Any = None,
    run_dir: str | Path | None = None,
    on_progress: ProgressFn | None = None,
    *,
    resume: bool = False,
) -> EvalResult:
    """Run (or, with ``resume`` and ``run_dir``, finish) an evaluation; see the module doc.

    ``engines`` maps model names to engines built by the caller (not closed here); other
    models get an engine from ``create_engine``. ``meter`` overrides ``cfg.meter``.
    """
    if resume:
        assert run_dir is not None
        rdir = Path(run_dir)
        _, state = store.load_state(rdir)
        items = read_tasks(rdir / store.TASKS)
    else:
        items = select_items(read_tasks(cfg.tasks_path), cfg.limit)
        rdir = Path(run_dir) if run_dir is not None else store.create_dir(cfg)
        rdir.mkdir(parents=True, exist_ok=True)
        write_tasks(rdir / store.TASKS, items)
        state = {}
    if meter is None:
        meter, meter_desc = _open_meter(cfg.meter)
    else:
        meter_desc = {"type": type(meter).__name__, "reason": "given by the caller"}
    if not resume:
        state = store.new_state(cfg, rdir, meter_desc)
    state.setdefault("segments", []).append({"wall_start": time.time()})
    segment = len(state["segments"]) - 1
    state["status"] = "running"
    store.save_state(rdir, state)
    done = store.done_pairs(store.read_records(rdir))
    log = store.open_log(rdir)
    status = "interrupted"
    try:
        for model, url in zip(cfg.models, cfg.base_urls, strict=True):
            todo = [it for it in items if (model, it.id) not in done]
            if on_progress is not None:
                on_progress(model, len(items) - len(todo), len(items))
            if not todo:
                continue
            given = engines is not None and model in engines
            engine = (
                engines[model] if given and engines is not None else make_engine(cfg, model, url)
            )
            sampler = None
            try:
                t0 = time.perf_counter()
                await _start_and_probe(engine, model, cfg, url)
                state["engines"][model] = {
                    "engine": getattr(engine, "name", type(engine).__name__),
                    "base_url": url,
                    "start_probe_s": time.perf_counter() - t0,
                }
                store.save_state(rdir, state)
                if meter is not None:
                    from wattserve.energy.sampler import EnergySampler

                    sampler = EnergySampler(
                        meter, cfg.energy_interval_s, record_path=rdir / store.ENERGY
                    ).start()
                base = len(items) - len(todo)
                progress = (
                    (lambda d, m=model, b=base: on_progress(m, b + d, len(items)))
                    if on_progress is not None
                    else None
                )
                await _eval_model(cfg, model, engine, todo, sampler, log, segment, progress)
            finally:
                if sampler is not None:
                    sampler.stop()
                    if sampler.errors:
                        state.setdefault("energy_errors", []).extend(sampler.errors[:10])
                if not given:
                    await engine.aclose()
        status = "complete"
    finally:
        log.close()
        state["status"] = status
        state["segments"][-1]["wall_end"] = time.time()
        store.save_state(rdir, state)
    return finish(rdir, cfg, state, meter, meter_desc)


def finish(
    rdir: Path, cfg: EvalConfig, state: dict[str, Any], meter: Any = None, meter_desc: Any = None
) -> EvalResult:
    """Summary, summary.csv and the routing dataset from the records on disk."""
    items = read_tasks(rdir / store.TASKS)
    latest = store.latest_records(store.read_records(rdir))
    order = list(dict.fromkeys(it.family for it in items))
    summary = summarize(latest, cfg.models, cfg.bootstrap, cfg.seed, order)
    routing = write_routing(rdir, latest, cfg.models, {it.id: it.prompt for it in items})
    state["summary"] = summary
    state["routing"] = routing
    if not state.get("environment"):
        state["environment"] = _environment(meter, meter_desc)
    store.save_state(rdir, state)
    _write_csv(rdir / store.SUMMARY_CSV, csv_rows(summary))
    return EvalResult(rdir, summary, routing, str(state.get("status")))


def _environment(meter: Any, meter_desc: Any) -> dict[str, Any]:
    try:
        from wattserve.environment import collect_environment

        reason = meter_desc.get("reason") if isinstance(meter_desc, Mapping) else None
        return dict(collect_environment(meter, reason, probe_meter=False))
    except Exception as exc:  # noqa: BLE001 - the record must not fail for want of it
        return {"note": f"environment not collected: {exc}"}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        if rows:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    shutil.move(tmp, path)


def run_eval(
    cfg: EvalConfig,
    engines: Mapping[str, Any] | None = None,
    meter: Any = None,
    run_dir: str | Path | None = None,
    on_progress: ProgressFn | None = None,
) -> EvalResult:
    return run_async(arun_eval(cfg, engines, meter, run_dir, on_progress))


def resume_eval(
    run_dir: str | Path,
    engines: Mapping[str, Any] | None = None,
    meter: Any = None,
    on_progress: ProgressFn | None = None,
) -> EvalResult:
    cfg, _ = store.load_state(run_dir)
    return run_async(arun_eval(cfg, engines, meter, run_dir, on_progress, resume=True))
