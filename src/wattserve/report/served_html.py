"""The report's "Served vs simulated" section: the gateway's request log beside the fitted
replay of it (``wattserve simulate --fits``), and J per correct answer from an eval summary."""

from __future__ import annotations

import math
from typing import Any

from wattserve.report import plots
from wattserve.report.data import ReportData
from wattserve.report.markup import esc, fmt, img, table
from wattserve.report.served import (
    FITTED,
    ServedLog,
    SimulatedResult,
    expected_correct,
    relative_difference,
)

HEADERS = (
    "",
    "requests",
    "cache hits",
    "answers computed",
    "answers by model",
    "total J",
    "metered J",
    "fitted J",
    "vs served",
)


def _by_model(counts: dict[str, int]) -> str:
    return esc(", ".join(f"{m} {n}" for m, n in sorted(counts.items())) or "-")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.2f}%"


def _metered(s: ServedLog) -> str:
    sources = sorted(k for k in s.joules_by_source if k != FITTED)
    if not sources:
        return "-"
    names = ", ".join(f"{k} {s.answers_by_source[k]}" for k in sources)
    return f"{s.metered_j:.4g} ({esc(names)})"


def _fitted(s: ServedLog) -> str:
    if FITTED not in s.joules_by_source:
        return "-"
    return f"{s.fitted_j:.4g} ({s.answers_by_source[FITTED]})"


def _served_row(s: ServedLog) -> list[str]:
    return [
        "served (request log)",
        str(s.requests),
        str(s.cache_hits),
        str(sum(s.answers.values())),
        _by_model(s.answers),
        f"{s.total_j:.4g}",
        _metered(s),
        _fitted(s),
        "",
    ]


def _simulated_row(r: dict[str, Any], served: ServedLog | None) -> list[str]:
    total = float(r["total_j"])
    answers = {str(k): int(v) for k, v in (r.get("answers") or {}).items()}
    diff = relative_difference(total, served.total_j) if served is not None else None
    return [
        f"simulated ({esc(r['policy'])})",
        fmt(r.get("requests"), "g"),
        fmt(r["hits"], "g"),
        str(sum(answers.values())),
        _by_model(answers),
        f"{total:.4g}",
        "-",
        f"{total:.4g}",
        _pct(diff),
    ]


def _checks(s: ServedLog | None, sim: SimulatedResult | None) -> list[str]:
    """Notes on what keeps the two totals from being like for like."""
    notes = []
    if s is not None and s.errors:
        notes.append(f"{s.errors} errored request(s) in the log are left out, as the replay does.")
    if s is not None and s.unmetered:
        notes.append(
            f"{s.unmetered} answer(s) in the log carry no joules (no meter, no fit): "
            "the served total leaves them out."
        )
    if s is not None and sim is not None:
        for r in sim.rows:
            n = r.get("requests")
            if isinstance(n, int) and n != s.requests:
                notes.append(
                    f"the replay ({r['policy']}) read {n} requests, the log holds {s.requests}: "
                    "was it run on this log?"
                )
                break
    return notes


def _summary_line(s: ServedLog | None, sim: SimulatedResult | None) -> str:
    if s is None:
        return ""
    text = (
        f"<b>Served:</b> {s.requests} requests, {s.cache_hits} cache hits, "
        f"{s.total_j:.4g} J (metered {s.metered_j:.4g} J, fitted {s.fitted_j:.4g} J) "
        f"from <code>{esc(s.path)}</code>."
    )
    if sim is not None:
        parts = [
            f"{esc(r['policy'])}: {float(r['total_j']):.4g} J, {r['hits']} hits "
            f"({_pct(relative_difference(float(r['total_j']), s.total_j))})"
            for r in sim.rows
        ]
        fits = sim.config.get("fits")
        text += (
            f"<br><b>Simulated</b> from <code>{esc(sim.path)}</code>"
            + (f" (fits <code>{esc(fits)}</code>)" if fits else "")
            + f": {'; '.join(parts)}."
        )
    return f'<div class="box">{text}</div>'


def _eval_part(rd: ReportData) -> str:
    if not rd.evaluation:
        return ""
    rows = [
        [
            esc(r.get("model")),
            fmt(r.get("n"), "g"),
            fmt(r.get("accuracy"), ".3f"),
            fmt(r.get("j_per_request"), ".4g"),
            "inf" if r.get("j_per_correct") == math.inf else fmt(r.get("j_per_correct"), ".4g"),
            esc(r.get("energy_source") or "-"),
        ]
        for r in rd.evaluation
    ]
    line = ""
    s = rd.served
    if s is not None:
        correct = expected_correct(s, rd.evaluation)
        if correct:
            line = (
                f'<p class="box"><b>J per correct answer, served:</b> {s.total_j / correct:.4g} J '
                f"({s.total_j:.4g} J over {correct:.1f} expected correct answers: each answer "
                "sent, cache hits included, counts its model's eval accuracy)</p>"
            )
        else:
            line = (
                '<p class="note">J per correct answer, served: not computed (a model that '
                "answered has no accuracy in the eval summary).</p>"
            )
    return (
        "<h3>J per correct answer (eval summary, all families)</h3>"
        + line
        + table(["model", "items", "accuracy", "J/request", "J/correct", "energy source"], rows)
    )


def served_section(rd: ReportData) -> str:
    """Empty when the report was given neither a request log, a replay nor an eval summary."""
    s, sim = rd.served, rd.simulated
    if s is None and sim is None and not rd.evaluation:
        return ""
    parts = ["<h2>Served vs simulated</h2>", _summary_line(s, sim)]
    rows = ([_served_row(s)] if s is not None else []) + [
        _simulated_row(r, s) for r in (sim.rows if sim is not None else [])
    ]
    if rows:
        parts.append(table(HEADERS, rows, sortable=False))
        parts += [f'<p class="note">{esc(n)}</p>' for n in _checks(s, sim)]
        parts.append(img(plots.served_figure(s, sim), "Served vs simulated joules"))
    parts.append(_eval_part(rd))
    return "".join(parts)
