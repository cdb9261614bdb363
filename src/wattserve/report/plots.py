"""Matplotlib figures for the report, each returned as PNG bytes (embedded as base64)."""

from __future__ import annotations

import io
import math
from typing import Any

from wattserve.report.data import ReportData
from wattserve.report.served import FITTED, ServedLog, SimulatedResult


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _ok(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("error") is None]


def latency_samples(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """TTFT, TPOT and E2E in ms per successful request (definitions as in docs/conventions.md)."""
    out: dict[str, list[float]] = {"TTFT": [], "TPOT": [], "E2E": []}
    for r in _ok(records):
        sent, first, end, n = (
            r.get("sent_s"),
            r.get("first_token_s"),
            r.get("end_s"),
            r.get("output_tokens") or 0,
        )
        if sent is None or end is None:
            continue
        out["E2E"].append((end - sent) * 1000)
        if first is not None:
            out["TTFT"].append((first - sent) * 1000)
            if n >= 2:
                out["TPOT"].append((end - first) / (n - 1) * 1000)
    return out


def latency_figure(rd: ReportData) -> bytes | None:
    points = [p for p in rd.requests if _ok(rd.requests[p])]
    if not points:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8 + 0.12 * len(points)))
    samples = {p: latency_samples(rd.requests[p]) for p in points}
    for ax, metric in zip(axes, ("TTFT", "TPOT", "E2E"), strict=True):
        data = [samples[p][metric] or [math.nan] for p in points]
        ax.boxplot(data, vert=False, showfliers=True, flierprops={"markersize": 3})
        ax.set_yticks(
            range(1, len(points) + 1), points if ax is axes[0] else [""] * len(points), fontsize=8
        )
        ax.set_xlabel(f"{metric} (ms)")
        ax.set_title(f"{metric} per request")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        "Latency distributions (successful requests; box = quartiles, whiskers = 1.5 IQR)",
        fontsize=10,
    )
    fig.tight_layout()
    return _png(fig)


def _token_times(records: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(time, tokens) events: each request's output tokens spread over its content chunks."""
    ev = []
    for r in _ok(records):
        ts = r.get("chunk_t") or ([r["end_s"]] if r.get("end_s") is not None else [])
        n = r.get("output_tokens") or len(ts)
        for t in ts:
            ev.append((float(t), n / len(ts)))
    return ev


def timeline_figure(rd: ReportData) -> bytes | None:
    """Output tokens/s and device power (W, from cumulative joules) over time, point by point."""
    import numpy as np

    groups = []
    for p, recs in rd.requests.items():
        ev = _token_times(recs)
        if not ev:
            continue
        sent = [r["sent_s"] for r in _ok(recs) if r.get("sent_s") is not None]
        t0 = min(sent + [t for t, _ in ev])
        t1 = max(t for t, _ in ev)
        energy = rd.energy.get(p) if rd.kind == "sweep" else rd.energy.get("run")
        groups.append((p, t0, t1, ev, [e for e in (energy or []) if t0 - 1 <= e[0] <= t1 + 1]))
    if not groups:
        return None
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(13, 5.5), sharex=True)
    ax3 = ax2.twinx()
    offset = 0.0
    for k, (p, t0, t1, ev, energy) in enumerate(groups):
        span = max(t1 - t0, 1e-3)
        width = max(span / 40, 0.05)
        edges = np.arange(0, span + width, width)
        tt = np.array([t - t0 for t, _ in ev])
        ww = np.array([w for _, w in ev])
        hist, _ = np.histogram(tt, bins=edges, weights=ww)
        color = f"C{k % 10}"
        ax1.step(offset + edges[:-1], hist / width, where="post", color=color, label=p)
        by_dev: dict[str, list[tuple[float, float]]] = {}
        for t, dev, j in sorted(energy):
            by_dev.setdefault(dev, []).append((t, j))
        for series in by_dev.values():
            if len(series) < 2:
                continue
            ts = np.array([s[0] for s in series])
            js = np.array([s[1] for s in series])
            watts = np.diff(js) / np.maximum(np.diff(ts), 1e-9)
            ax2.plot(offset + ts[1:] - t0, watts, color=color, lw=1)
            ax3.plot(offset + ts - t0, js - js[0], color=color, lw=1, ls="--")
        ax1.axvline(offset, color="grey", lw=0.5)
        ax1.text(
            offset,
            1.0,
            f" {p}",
            transform=ax1.get_xaxis_transform(),
            fontsize=7,
            va="bottom",
            rotation=20,
        )
        offset += span * 1.08
    ax1.set_ylabel("output tokens/s")
    ax1.set_title("Throughput over time (points laid end to end)", fontsize=10, pad=26)
    ax2.set_ylabel("device power (W)")
    ax3.set_ylabel("energy since point start (J, dashed)")
    ax2.set_xlabel("seconds")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    if not any(g[4] for g in groups):
        ax2.text(0.5, 0.5, "no energy series recorded", transform=ax2.transAxes, ha="center")
    fig.tight_layout()
    return _png(fig)


def pareto_figure(rd: ReportData) -> bytes | None:
    from wattserve.bench.pareto import pareto_mask

    rows = [
        r
        for r in rd.rows
        if r.get("tok_s_per_device") is not None and r.get("tok_s_per_user") is not None
    ]
    if not rows:
        return None
    plt = _plt()
    mask = pareto_mask(rows)
    rec_point = (rd.recommendation or {}).get("point")
    x = [float(r["tok_s_per_device"]) for r in rows]
    y = [float(r["tok_s_per_user"]) for r in rows]
    j = [float(r["j_per_token"]) for r in rows if r.get("j_per_token") is not None]
    have_j = len(j) == len(rows)
    fig, axes = plt.subplots(1, 2 if have_j else 1, figsize=(13 if have_j else 7, 5))
    axes = list(axes) if have_j else [axes]
    ax = axes[0]
    color = {"c": j, "cmap": "viridis_r"} if have_j else {"c": "C0"}
    sc = ax.scatter(
        x,
        y,
        **color,
        s=60,
        edgecolors=["k" if m else "none" for m in mask],
        linewidths=1.5,
        zorder=3,
    )
    if have_j:
        fig.colorbar(sc, ax=ax, label="J per output token")
    front = sorted((xi, yi) for xi, yi, m in zip(x, y, mask, strict=True) if m)
    if len(front) > 1:
        ax.plot(
            [f[0] for f in front],
            [f[1] for f in front],
            "k--",
            lw=0.8,
            zorder=2,
            label="frontier (outlined)",
        )
    for r, xi, yi in zip(rows, x, y, strict=True):
        ax.annotate(
            str(r.get("point")), (xi, yi), fontsize=7, xytext=(4, 3), textcoords="offset points"
        )
        if r.get("point") == rec_point:
            ax.scatter(
                [xi],
                [yi],
                marker="*",
                s=420,
                facecolors="none",
                edgecolors="red",
                linewidths=2,
                zorder=4,
                label=f"recommended: {rec_point}",
            )
    ax.set_xlabel("output tokens/s per device")
    ax.set_ylabel("output tokens/s per user (1 / mean TPOT)")
    ax.set_title("Pareto frontier: per-user vs per-device throughput", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if have_j:
        ax2 = axes[1]
        ax2.scatter(x, j, c=["C3" if m else "C7" for m in mask], s=50, zorder=3)
        for r, xi, ji in zip(rows, x, j, strict=True):
            ax2.annotate(
                str(r.get("point")),
                (xi, ji),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
            if r.get("point") == rec_point:
                ax2.scatter(
                    [xi],
                    [ji],
                    marker="*",
                    s=420,
                    facecolors="none",
                    edgecolors="red",
                    linewidths=2,
                )
        ax2.set_xlabel("output tokens/s per device")
        ax2.set_ylabel("J per output token")
        ax2.set_title("Energy per token vs device throughput (red: on the frontier)", fontsize=10)
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def fit_figures(rd: ReportData) -> list[tuple[str, bytes]]:
    """Predicted vs measured, for each fit whose quantity the requests measured."""
    if not rd.fits:
        return []
    import warnings

    from wattserve.fit import predict

    recs = [r for rs in rd.requests.values() for r in _ok(rs)]
    out = []
    for fit in rd.fits:
        key = "e2e" if fit.quantity == "runtime_s" else "energy_j"
        pts = []
        for r in recs:
            meas = (r["end_s"] - r["sent_s"]) if key == "e2e" else r.get("energy_j")
            if meas is not None and r.get("input_tokens") is not None and r.get("output_tokens"):
                pts.append((r["input_tokens"], r["output_tokens"], float(meas)))
        if not pts:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pred = [float(predict(fit, i, o)) for i, o, _ in pts]
        except (KeyError, ValueError) as exc:  # an unknown form or malformed fit: skip its plot
            rd.notes.append(f"fit {fit.model} @ {fit.device} {fit.quantity} not plotted: {exc}")
            continue
        meas = [m for _, _, m in pts]
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.scatter(meas, pred, s=14, alpha=0.7)
        lim = [0, max(max(meas), max(pred)) * 1.05 or 1]
        ax.plot(lim, lim, "k--", lw=0.8, label="predicted = measured")
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        unit = "s" if fit.quantity == "runtime_s" else "J"
        ax.set_xlabel(f"measured {fit.quantity} ({unit})")
        ax.set_ylabel(f"predicted ({fit.form})")
        r2 = f"CV R² {fit.cv_r2:.3f}" if fit.cv_r2 is not None else ""
        ax.set_title(f"{fit.model} @ {fit.device}: {fit.quantity} {r2}", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        out.append((f"{fit.model} @ {fit.device} {fit.quantity}", _png(fig)))
    return out


def served_figure(served: ServedLog | None, simulated: SimulatedResult | None) -> bytes | None:
    """Total joules, served (metered and fitted stacked) beside each simulated policy."""
    bars: list[tuple[str, float, float]] = []  # label, metered J, fitted J
    if served is not None:
        bars.append(("served", served.metered_j, served.fitted_j))
    for r in simulated.rows if simulated is not None else []:
        bars.append((f"simulated ({r['policy']})", 0.0, float(r["total_j"])))
    if not bars or not any(m + f for _, m, f in bars):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.45 * len(bars)))
    ys = list(range(len(bars)))[::-1]
    metered = [m for _, m, _ in bars]
    ax.barh(ys, metered, color="C0", label="metered")
    ax.barh(ys, [f for _, _, f in bars], left=metered, color="C1", label=FITTED)
    for y, (_, m, f) in zip(ys, bars, strict=True):
        ax.text(m + f, y, f" {m + f:.4g} J", va="center", fontsize=8)
    ax.set_yticks(ys, [b[0] for b in bars], fontsize=8)
    ax.set_xlabel("total joules of the answers computed")
    ax.set_xlim(0, 1.18 * max(m + f for _, m, f in bars))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)
