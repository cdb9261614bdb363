"""Completions + energy measurements -> ``RunSummary``: pure functions, see docs/conventions.md.

- TTFT: sent -> first content chunk; E2E: sent -> last chunk.
- TPOT per request: ``(e2e - ttft) / (output_tokens - 1)`` (excludes the first token).
- ITL: every gap between consecutive content chunks, pooled over all requests.
- Percentiles from raw samples (``numpy.percentile``, linear interpolation), never buckets.
- Errored requests are counted (``failed``) and kept out of every latency and token figure.
  Truncated ones (a stream cut short: no finish reason, no ``[DONE]``, or ``length`` before
  ``max_tokens`` with ``ignore_eos``) are errors of their own kind (``truncated``, a part of
  ``failed``): their tokens count neither in throughput nor in goodput.
- Energy per output token uses the steady-state window: energy in the window divided by
  the output tokens produced in it, tokens placed in time by their chunk timestamps.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from wattserve.types import Completion, Measurement, Request, RunSummary

TRUNCATED = "truncated"  # error kind, and the prefix of such a completion's error text
_TRUNCATED_EXCEPTION = "StreamTruncatedError"  # the HTTP client's exception name

# CLI names (as in ``vllm bench serve``) -> summary keys
METRIC_KEYS = {"ttft": "ttft_s", "tpot": "tpot_s", "itl": "itl_s", "e2el": "e2e_s"}
DEFAULT_METRICS = ("ttft", "tpot", "itl", "e2el")
DEFAULT_PERCENTILES = (50.0, 90.0, 99.0)


def error_kind(c: Completion) -> str | None:
    """None for a completed request, ``truncated`` for one cut short, else ``error``."""
    if c.error is None:
        return None
    return TRUNCATED if c.error.startswith(TRUNCATED + ":") else "error"


def mark_truncation(c: Completion, request: Request) -> Completion:
    """``c`` with a truncated stream's error as ``truncated: ...``.

    A stream error raised by the HTTP client as truncation is relabelled; an otherwise
    successful completion that stopped for ``length`` with fewer than ``max_tokens`` counted
    tokens while ``ignore_eos`` was set becomes truncated too (estimated counts are not
    trusted for this).
    """
    if c.error is not None:
        if c.error.startswith(_TRUNCATED_EXCEPTION + ":"):
            rest = c.error.removeprefix(_TRUNCATED_EXCEPTION + ":").strip()
            return dataclasses.replace(c, error=f"{TRUNCATED}: {rest}")
        return c
    short = c.output_tokens < request.max_tokens and c.token_source != "estimated"
    if request.ignore_eos and c.finish_reason == "length" and short:
        why = f"'length' after {c.output_tokens} of {request.max_tokens} tokens with ignore_eos"
        return dataclasses.replace(c, error=f"{TRUNCATED}: {why}")
    return c


def latency_samples(completions: Iterable[Completion]) -> dict[str, np.ndarray]:
    """Raw per-request samples (ITL pooled per chunk gap) of the successful completions."""
    ttft: list[float] = []
    tpot: list[float] = []
    itl: list[float] = []
    e2e: list[float] = []
    for c in completions:
        if not c.ok:
            continue
        if c.ttft_s is not None:
            ttft.append(c.ttft_s)
        if c.tpot_s is not None:
            tpot.append(c.tpot_s)
        itl.extend(c.itl_s)
        e2e.append(c.e2e_s)
    return {
        "ttft_s": np.asarray(ttft, dtype=float),
        "tpot_s": np.asarray(tpot, dtype=float),
        "itl_s": np.asarray(itl, dtype=float),
        "e2e_s": np.asarray(e2e, dtype=float),
    }


def percentile_key(p: float) -> str:
    """50 -> 'p50', 99.9 -> 'p99.9'."""
    return f"p{p:g}"


def distribution(
    samples: Sequence[float] | np.ndarray, percentiles: Sequence[float]
) -> dict[str, float]:
    """mean, median, std and the requested percentiles of raw samples (NaN when empty)."""
    a = np.asarray(samples, dtype=float)
    if a.size == 0:
        out = {"mean": math.nan, "median": math.nan, "std": math.nan}
        out.update({percentile_key(p): math.nan for p in percentiles})
        return out
    out = {"mean": float(a.mean()), "median": float(np.median(a)), "std": float(a.std())}
    for p in percentiles:
        out[percentile_key(p)] = float(np.percentile(a, p))
    return out


def duration_s(
    completions: Sequence[Completion], segment_of: Mapping[str, int] | None = None
) -> float:
    """Wall time of a point: first send to last end; the sum over segments for resumed runs.

    ``segment_of`` maps request id -> segment number (a resumed run adds a segment); the
    gap between an interruption and the resume is not counted.
    """
    if not completions:
        return 0.0
    groups: dict[int, list[Completion]] = {}
    for c in completions:
        groups.setdefault((segment_of or {}).get(c.request_id, 0), []).append(c)
    return float(sum(max(c.end_s for c in g) - min(c.sent_s for c in g) for g in groups.values()))


def meets_slo(c: Completion, slo_ms: Mapping[str, float]) -> bool:
    """Whether a successful completion meets every SLO given (keys ttft/tpot/e2el, in ms).

    A request with fewer than two output tokens has no TPOT and passes the TPOT SLO.
    """
    if not c.ok:
        return False
    values = {"ttft": c.ttft_s, "tpot": c.tpot_s, "e2el": c.e2e_s}
    for name, limit_ms in slo_ms.items():
        v = values[name]
        if v is None:
            if name == "ttft":
                return False
            continue
        if v * 1000.0 > limit_ms:
            return False
    return True


def goodput(
    completions: Sequence[Completion], slo_ms: Mapping[str, float], duration: float
) -> tuple[float, float]:
    """(goodput in requests/s, SLO attainment as a fraction of all requests, failed included)."""
    if not completions:
        return 0.0, math.nan
    good = sum(1 for c in completions if meets_slo(c, slo_ms))
    rps = good / duration if duration > 0 else 0.0
    return rps, good / len(completions)


def tokens_in_window(completions: Iterable[Completion], start_s: float, end_s: float) -> float:
    """Output tokens produced in [start_s, end_s], each completion's tokens spread over its chunks.

    When a chunk carries one token this is an exact count; when the server bundles tokens,
    each chunk is credited ``output_tokens / chunks`` tokens.
    """
    total = 0.0
    for c in completions:
        if not c.ok or not c.chunk_t or c.output_tokens <= 0:
            continue
        t = np.asarray(c.chunk_t, dtype=float)
        inside = int(np.count_nonzero((t >= start_s) & (t <= end_s)))
        total += c.output_tokens * inside / len(t)
    return total


def source_label(m: Measurement) -> str:
    """'modeled', 'rapl+nvml', ... from a measurement's per-device sources."""
    return "+".join(sorted(set(m.sources.values()))) or "null"


def energy_figures(
    completions: Sequence[Completion],
    measurements: Sequence[Measurement],
    per_token_window: str = "steady",
) -> dict[str, object]:
    """Energy fields of a ``RunSummary`` from the ``whole`` window and the per-token window.

    Falls back to ``whole`` when the requested window is absent; ``energy_window`` names the
    window actually used for J/token.
    """
    by_name = {m.window: m for m in measurements}
    whole = by_name.get("whole")
    if whole is None or all(s == "null" for s in whole.sources.values()) or not whole.energy_j:
        return {}
    ok = [c for c in completions if c.ok]
    win = by_name.get(per_token_window)
    label = per_token_window
    if win is None:
        win, label = whole, f"whole ({per_token_window} window too short or absent)"
    toks = tokens_in_window(ok, win.start_s, win.end_s)
    # requests run inside the whole window (a resumed point's earlier segments lie outside it)
    n_whole = sum(
        1 for c in ok if c.sent_s >= whole.start_s - 1e-6 and c.end_s <= whole.end_s + 1e-6
    )
    return {
        "energy_j": whole.total_j,
        "energy_per_output_token_j": win.total_j / toks if toks > 0 else None,
        "energy_per_request_j": whole.total_j / n_whole if n_whole else None,
        "avg_power_w": whole.avg_power_w,
        "energy_source": source_label(whole),
        "energy_window": label,
    }


def summarize(
    completions: Sequence[Completion],
    measurements: Sequence[Measurement] = (),
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    metrics: Sequence[str] = DEFAULT_METRICS,
    goodput_slo_ms: Mapping[str, float] | None = None,
    segment_of: Mapping[str, int] | None = None,
    per_token_window: str = "steady",
) -> RunSummary:
    """One point's ``RunSummary``; failed requests counted apart, not in any latency figure."""
    ok = [c for c in completions if c.ok]
    failed = len(completions) - len(ok)
    dur = duration_s(completions, segment_of)
    samples = latency_samples(ok)
    latency = {METRIC_KEYS[m]: distribution(samples[METRIC_KEYS[m]], percentiles) for m in metrics}
    in_tok = int(sum(c.input_tokens for c in ok))
    out_tok = int(sum(c.output_tokens for c in ok))
    good_rps = attainment = None
    if goodput_slo_ms:
        good_rps, attainment = goodput(completions, goodput_slo_ms, dur)
    return RunSummary(
        completed=len(ok),
        failed=failed,
        duration_s=dur,
        request_throughput=len(ok) / dur if dur > 0 else 0.0,
        output_throughput=out_tok / dur if dur > 0 else 0.0,
        total_token_throughput=(in_tok + out_tok) / dur if dur > 0 else 0.0,
        input_tokens=in_tok,
        output_tokens=out_tok,
        latency=latency,
        goodput_rps=good_rps,
        slo_attainment=attainment,
        truncated=sum(1 for c in completions if error_kind(c) == TRUNCATED),
        **energy_figures(ok, measurements, per_token_window),  # type: ignore[arg-type]
    )


def summary_from_dict(d: Mapping[str, object]) -> RunSummary:
    names = RunSummary.__dataclass_fields__.keys()
    return RunSummary(**{k: v for k, v in d.items() if k in names})  # type: ignore[arg-type]
