"""One load point of a run: ``PointResult`` and ``run_points``, the loop over the points.

For each point: the requests still to send (all of them, or on resume those that failed or
were left without joules), the arrival schedule run with the energy sampler going, the
window's joules attributed to the requests, the summary of the union of old and new
records, and run.json rewritten. ``load_points(run_dir)`` reads the points back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattserve.bench import metrics, store
from wattserve.bench.config import BenchConfig
from wattserve.bench.energy import attribute_point
from wattserve.bench.engine import count_tokens_fn, tokenizer_of
from wattserve.bench.loads import Concurrent, LoadPoint, ramp_count
from wattserve.bench.runner import record_windows, run_schedule, send_error_stats_ms
from wattserve.bench.session import BenchSession
from wattserve.bench.workloads import Workload
from wattserve.types import Measurement, RunSummary

# on_progress(point_label, done, total) — called with done=0 when a point starts
ProgressFn = Callable[[str, int, int], None]


@dataclass
class PointResult:
    """One point's summary, its energy windows, the send-time error of a paced load (ms)
    and a note on how its joules were attributed (None when nothing is to be said)."""

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

    @classmethod
    def from_dict(cls, p: dict[str, Any]) -> PointResult:
        """The point as run.json's ``points`` holds it (``to_dict``'s output)."""
        rate = p.get("request_rate")
        return cls(
            label=p["label"],
            max_concurrency=p.get("max_concurrency"),
            request_rate=float("inf") if rate is None else rate,
            summary=metrics.summary_from_dict(p["summary"]),
            measurements=[
                Measurement(m["window"], m["start_s"], m["end_s"], m["energy_j"], m["sources"])
                for m in p.get("measurements", [])
            ],
            send_error_ms=p.get("send_error_ms", {}),
            energy_note=p.get("energy_note"),
        )


def load_points(run_dir: str | Path) -> list[PointResult]:
    """Every point saved in ``run_dir``'s run.json, in run order."""
    return [PointResult.from_dict(p) for p in store.load_run_json(run_dir).get("points", [])]


def _point_summary(
    cfg: BenchConfig, records: list[dict[str, Any]], meas: list[Measurement]
) -> RunSummary:
    comps = [store.completion_of(r) for r in records]
    seg = {str(r["request_id"]): int(r.get("segment", 0)) for r in records}
    return metrics.summarize(
        comps, meas, cfg.metric_percentiles, cfg.percentile_metrics, cfg.goodput or None, seg
    )


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


def _redo(rec: dict[str, Any], metered: bool) -> bool:
    """Whether a resumed run sends a finished request again: it failed, or it was metered
    but the run stopped before its joules were attributed."""
    return rec.get("error", "x") is not None or (metered and rec.get("energy_j") is None)


def _offset_progress(
    on_progress: ProgressFn | None, label: str, done_before: int
) -> Callable[[int, int], None] | None:
    """A point's progress callback counting the requests a resumed run already finished."""
    if on_progress is None:
        return None
    return lambda d, n: on_progress(label, done_before + d, done_before + n)


async def run_points(
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
    """Run ``wl`` at each of ``points`` (labels ``prefix + point.label``); ``done_before``
    holds a resumed run's latest record per (label, request id)."""
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
            saved = session.saved_point(label)
            results.append(
                PointResult.from_dict(saved)
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
