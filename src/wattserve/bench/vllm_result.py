"""The result file of ``vllm bench serve --save-result``: its keys, its units, its file name.

Scripts written for vLLM's result JSON read ours: ``date``, ``backend``, ``model_id``,
``num_prompts``, ``request_rate``, ``max_concurrency``, ``duration`` (s), ``completed``,
token totals, throughputs, ``request_goodput`` (null without ``--goodput``), and for every
``--percentile-metrics`` metric ``mean_/median_/std_<m>_ms`` plus ``p<P>_<m>_ms`` for every
``--metric-percentiles`` value, in milliseconds. ``--save-detailed`` adds the per-request
lists (``input_lens``, ``output_lens``, ``ttfts``, ``itls``, ``latencies``, ``start_times``
in seconds as vLLM writes them, ``generated_texts``, ``errors``). A metric without samples
is null (vLLM writes 0). Figures vLLM has no key for (energy, SLO attainment, the run
directory) sit under ``wattserve``.

One file per sweep point, named as vLLM names it
(``{label}-{rate}qps[-concurrency{c}]-{model}-{date}.json``); ``--result-filename`` names
it instead, with ``-<point>`` before the suffix when the run has several points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from wattserve.bench import metrics, store
from wattserve.bench.config import BenchConfig
from wattserve.types import Completion, RunSummary

DETAILED_KEYS = (
    "input_lens",
    "output_lens",
    "ttfts",
    "itls",
    "latencies",
    "start_times",
    "generated_texts",
    "errors",
)
WATTSERVE_KEYS = (
    "energy_j",
    "energy_per_output_token_j",
    "energy_per_request_j",
    "avg_power_w",
    "energy_source",
    "energy_window",
    "slo_attainment",
)


def date_stamp(now: datetime | None = None) -> str:
    """vLLM's ``date``: local time, ``%Y%m%d-%H%M%S``."""
    return (now or datetime.now()).strftime("%Y%m%d-%H%M%S")


def backend_name(cfg: BenchConfig) -> str:
    """The backend actually used (``auto`` resolved as ``create_engine`` resolves it)."""
    if cfg.backend != "auto":
        return cfg.backend
    return "openai" if cfg.base_url else "local"


def percentile_word(p: float) -> str:
    """vLLM's key spelling: 99 -> '99', 99.9 -> '99.9'."""
    return str(int(p)) if int(p) == p else str(p)


def _ms(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else v * 1000.0


def latency_keys(
    summary: RunSummary, metric_names: Sequence[str], percentiles: Sequence[float]
) -> dict[str, float | None]:
    """``mean_ttft_ms``, ``median_ttft_ms``, ``std_ttft_ms``, ``p99_ttft_ms``, ... of a summary."""
    out: dict[str, float | None] = {}
    for m in metric_names:
        stats = summary.latency.get(metrics.METRIC_KEYS[m]) or {}
        for stat in ("mean", "median", "std"):
            out[f"{stat}_{m}_ms"] = _ms(stats.get(stat))
        for p in percentiles:
            out[f"p{percentile_word(p)}_{m}_ms"] = _ms(stats.get(metrics.percentile_key(p)))
    return out


def peak_figures(completions: Iterable[Completion]) -> tuple[float, int]:
    """(most content chunks in one second since the first send, peak requests in flight),
    over successful requests, as vLLM's ``max_output_tokens_per_s`` and
    ``max_concurrent_requests``."""
    ok = [c for c in completions if c.ok]
    if not ok:
        return 0.0, 0
    t0 = min(c.sent_s for c in ok)
    chunks = np.asarray([t for c in ok for t in c.chunk_t], dtype=float)
    peak_tok = 0.0
    if chunks.size:
        peak_tok = float(np.bincount(np.floor(chunks - t0).astype(int).clip(min=0)).max())
    # half-open [sent, end): an end at the same instant as a send comes first
    events = sorted([(c.sent_s, 1) for c in ok] + [(c.end_s, -1) for c in ok])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak_tok, peak


def detailed_lists(completions: Sequence[Completion]) -> dict[str, list[Any]]:
    """vLLM's per-request lists, in request order; a failed request has 0 lengths and
    latencies and its error text."""
    return {
        "input_lens": [c.input_tokens for c in completions],
        "output_lens": [c.output_tokens if c.ok else 0 for c in completions],
        "ttfts": [(c.ttft_s or 0.0) for c in completions],
        "itls": [list(c.itl_s) for c in completions],
        "latencies": [c.e2e_s if c.ok else 0.0 for c in completions],
        "start_times": [c.sent_s for c in completions],
        "generated_texts": [c.text for c in completions],
        "errors": [c.error or "" for c in completions],
    }


def result_json(
    cfg: BenchConfig,
    point: Mapping[str, Any],
    summary: RunSummary,
    completions: Sequence[Completion],
    *,
    date: str,
    tokenizer_id: str | None = None,
    detailed: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One point's result, key for key as ``vllm bench serve`` writes it."""
    rate = point.get("request_rate")
    rate_f = math.inf if rate is None else float(rate)
    backend = backend_name(cfg)
    max_tok_s, max_conc = peak_figures(completions)
    out: dict[str, Any] = {
        "date": date,
        "endpoint_type": backend,
        "backend": backend,
        "label": cfg.label,
        "model_id": cfg.model,
        "tokenizer_id": tokenizer_id,
        "num_prompts": cfg.num_prompts,
        "request_rate": rate_f if math.isfinite(rate_f) else "inf",
        "burstiness": cfg.burstiness,
        "max_concurrency": point.get("max_concurrency"),
        "duration": summary.duration_s,
        "completed": summary.completed,
        "failed": summary.failed,
        "total_input_tokens": summary.input_tokens,
        "total_output_tokens": summary.output_tokens,
        "request_throughput": summary.request_throughput,
        "request_goodput": summary.goodput_rps if cfg.goodput else None,
        "output_throughput": summary.output_throughput,
        "total_token_throughput": summary.total_token_throughput,
    }
    if detailed:
        out.update(detailed_lists(completions))
    out.update(
        max_output_tokens_per_s=max_tok_s,
        max_concurrent_requests=max_conc,
        rtfx=0.0,
    )
    out.update(latency_keys(summary, cfg.percentile_metrics, cfg.metric_percentiles))
    own = {k: getattr(summary, k) for k in WATTSERVE_KEYS}
    out["wattserve"] = {"point": point.get("label"), **own, **(extra or {})}
    return out


def result_filename(
    cfg: BenchConfig, point: Mapping[str, Any], date: str, several_points: bool
) -> Path:
    """Where ``--save-result`` writes one point: ``--result-dir`` / vLLM's default name, or
    ``--result-filename`` (with ``-<point>`` before its suffix when there are several)."""
    root = Path(cfg.result_dir).expanduser()
    if cfg.result_filename:
        name = Path(cfg.result_filename).expanduser()
        if several_points:
            name = name.with_name(f"{name.stem}-{point.get('label')}{name.suffix or '.json'}")
        return root / name
    rate = point.get("request_rate")
    rate_s = str(math.inf if rate is None else float(rate))
    conc = point.get("max_concurrency")
    conc_s = f"-concurrency{conc}" if conc is not None else ""
    label = cfg.label or backend_name(cfg)
    model = cfg.model.rstrip("/").split("/")[-1]
    return root / f"{label}-{rate_s}qps{conc_s}-{model}-{date}.json"


def _request_order(request_id: str) -> tuple[int, str]:
    head, _, num = request_id.rpartition("-")
    return (int(num), head) if num.isdigit() else (1 << 62, request_id)


def point_completions(run_dir: Path) -> dict[str, list[Completion]]:
    """Point label -> its requests (the successful record of each when it was retried), in
    request order, from ``requests.jsonl``."""
    best = store.latest_per_request(store.read_requests(run_dir / store.REQUESTS))
    by_point: dict[str, list[Completion]] = {}
    for (label, _rid), rec in sorted(best.items(), key=lambda kv: _request_order(kv[0][1])):
        by_point.setdefault(label, []).append(store.completion_of(rec))
    return by_point


def attach_results(
    cfg: BenchConfig,
    run_dir: Path,
    data: dict[str, Any],
    summaries: Mapping[str, RunSummary],
    tokenizer_id: str | None = None,
    now: datetime | None = None,
) -> list[Path]:
    """Add each point's vLLM keys to run.json's ``data`` (``points[i]["vllm"]``, without the
    per-request lists) and, with ``--save-result``, write the result files; their paths go
    to ``data["result_files"]`` and are returned."""
    date = date_stamp(now)
    comps = point_completions(run_dir)
    points = data.get("points", [])
    extra = {"run_id": data.get("run_id"), "run_dir": str(run_dir)}
    written: list[Path] = []
    for p in points:
        label = str(p.get("label"))
        summary = summaries.get(label) or metrics.summary_from_dict(p["summary"])
        c = comps.get(label, [])
        kw: dict[str, Any] = {"date": date, "tokenizer_id": tokenizer_id, "extra": extra}
        p["vllm"] = result_json(cfg, p, summary, c, **kw)
        if cfg.save_result:
            res = (
                result_json(cfg, p, summary, c, detailed=True, **kw)
                if cfg.save_detailed
                else p["vllm"]
            )
            path = result_filename(cfg, p, date, several_points=len(points) > 1)
            path.parent.mkdir(parents=True, exist_ok=True)
            store.write_json_atomic(path, res)
            written.append(path)
    if written:
        data["result_files"] = [str(p) for p in written]
    return written
