"""One self-contained HTML file: inline CSS, a small inline script (table sorting), figures as
base64 PNG ``data:`` URLs. Opening it fetches nothing from the network."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from wattserve.report import plots
from wattserve.report.data import ReportData, load
from wattserve.report.markup import esc, fmt, img, kv_table, table
from wattserve.report.served_html import served_section

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;
  margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:0}
h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
.sub{color:#666;margin-top:4px}
table{border-collapse:collapse;font-size:12px;margin:8px 0;width:auto}
th,td{border:1px solid #ddd;padding:3px 5px;text-align:right;white-space:nowrap}
th{background:#f4f4f4;cursor:pointer;white-space:normal;vertical-align:bottom}
td:first-child,th:first-child{text-align:left}
tr.front td{background:#f3fbf3}tr.rec td{background:#fff3d6;font-weight:600}
.kv td{text-align:left;white-space:normal}.kv td:first-child{color:#555;width:220px}
img.plot{max-width:100%;border:1px solid #eee;margin:6px 0}.note{color:#8a5300}
.box{background:#fafafa;border:1px solid #eee;padding:8px 12px}
code{background:#f4f4f4;padding:1px 4px}.scroll{overflow-x:auto}
"""

SCRIPT = """
(function(){
  function val(td){
    var t=td.textContent.trim();var x=parseFloat(t.replace(/[^0-9eE+\\-.]/g,''));
    return isNaN(x)?t:x;
  }
  document.querySelectorAll('table.sortable').forEach(function(tab){
    tab.querySelectorAll('th').forEach(function(th,i){
      th.addEventListener('click',function(){
        var body=tab.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
        var asc=th.dataset.dir!=='asc';th.dataset.dir=asc?'asc':'desc';
        rows.sort(function(a,b){var x=val(a.cells[i]),y=val(b.cells[i]);
          if(typeof x===typeof y){return (x<y?-1:x>y?1:0)*(asc?1:-1);}
          return (typeof x==='number'?-1:1)*(asc?1:-1);});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  var n=document.querySelectorAll('img.plot').length;
  document.body.setAttribute('data-plots',String(n));
  document.body.setAttribute('data-ready','1');
})();
"""

MAX_PLAN_ROWS = 30
SUMMARY_COLUMNS = (
    ("point", "point", None),
    ("replicas", "replicas", "g"),
    ("threads_per_replica", "threads", "g"),
    ("max_concurrency", "concurrency", "g"),
    ("request_rate", "rate", "g"),
    ("completed", "ok", "g"),
    ("failed", "failed", "g"),
    ("tok_s_per_device", "tok/s/device", ".1f"),
    ("tok_s_per_user", "tok/s/user", ".1f"),
    ("j_per_token", "J/token", ".4g"),
    ("avg_power_w", "power W", ".1f"),
    ("ttft_p50_s", "TTFT p50 s", ".3f"),
    ("ttft_p99_s", "TTFT p99 s", ".3f"),
    ("tpot_p50_s", "TPOT p50 s", ".4f"),
    ("tpot_p99_s", "TPOT p99 s", ".4f"),
    ("e2e_p50_s", "E2E p50 s", ".3f"),
    ("e2e_p99_s", "E2E p99 s", ".3f"),
    ("slo_attainment", "SLO met", ".2f"),
    ("energy_source", "energy source", None),
)


def _summary_section(rd: ReportData) -> str:
    from wattserve.bench.pareto import pareto_mask

    cols = [c for c in SUMMARY_COLUMNS if any(r.get(c[0]) not in (None, "") for r in rd.rows)]
    mask = pareto_mask(rd.rows)
    rec = (rd.recommendation or {}).get("point")
    classes = [
        "rec" if r.get("point") == rec else ("front" if m else "")
        for r, m in zip(rd.rows, mask, strict=True)
    ]
    rows = [
        [fmt(r.get(k), spec) for k, _, spec in cols] + ["yes" if m else ""]
        for r, m in zip(rd.rows, mask, strict=True)
    ]
    return table([h for _, h, _ in cols] + ["on frontier"], rows, classes)


def _recommendation(rd: ReportData) -> str:
    rec = rd.recommendation or {}
    if not rec:
        return ""
    what = rec.get("point") or "none"
    front = [str(rd.rows[i].get("point")) for i in rec.get("frontier", []) if i < len(rd.rows)]
    return (
        f'<div class="box"><b>Recommended:</b> {esc(what)} &mdash; {esc(rec.get("reason"))}.<br>'
        f"Frontier over {esc(', '.join(rec.get('objectives_used', [])))}: "
        f"{esc(', '.join(front))}</div>"
    )


def _comparison(rd: ReportData) -> str:
    if not rd.comparison:
        return ""
    rows = [
        [
            esc(c["backend"]),
            esc(c["max_concurrency"]),
            esc(c["base"]),
            fmt(c["base_tok_s"], ".1f"),
            esc(c["alt"]),
            fmt(c["alt_tok_s"], ".1f"),
            fmt(c["throughput_ratio"], ".2f") + "x",
            fmt(c["base_j_per_token"], ".4g"),
            fmt(c["alt_j_per_token"], ".4g"),
            fmt(c["energy_ratio"], ".2f"),
        ]
        for c in rd.comparison
    ]
    return "<h2>Replicas against one replica with all threads</h2>" + table(
        [
            "backend",
            "concurrency",
            "one replica",
            "tok/s",
            "replicas",
            "tok/s",
            "throughput ratio",
            "J/token (1)",
            "J/token (N)",
            "J/token ratio",
        ],
        rows,
    )


def _plan_section(rd: ReportData) -> str:
    if not rd.plan:
        return ""
    content = rd.plan["content"]
    parts = [f"<h2>Plan ({esc(rd.plan['file'])})</h2>"]
    tables: list[tuple[str, list[dict[str, Any]]]] = []
    if isinstance(content, list) and all(isinstance(x, dict) for x in content):
        tables.append(("comparison", content))
    elif isinstance(content, dict):
        for k, v in content.items():
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                tables.append((k, v))
        scalars = {k: v for k, v in content.items() if not isinstance(v, (dict, list))}
        if scalars:
            parts.append(kv_table(scalars))
        for k, v in content.items():
            if (
                isinstance(v, dict)
                and v
                and all(not isinstance(x, (dict, list)) for x in v.values())
                and k != "assignment"
            ):
                parts.append(
                    f"<h3>{esc(k)}</h3>"
                    + table(["key", "value"], [[esc(a), fmt(b, ".4g")] for a, b in v.items()])
                )
        if isinstance(content.get("assignment"), dict):
            counts: dict[str, int] = {}
            for target in content["assignment"].values():
                counts[str(target)] = counts.get(str(target), 0) + 1
            parts.append(
                "<h3>queries per target</h3>"
                + table(
                    ["target", "queries"], [[esc(t), str(n)] for t, n in sorted(counts.items())]
                )
            )
    titles = {
        "baselines": "planner comparison: the plan against baselines",
        "queries": "per query",
        "sweep": "objective sweep",
    }
    tables.sort(key=lambda t: t[0] != "baselines")  # the comparison first
    for name, items in tables:
        keys: list[str] = []
        for it in items:
            keys += [k for k in it if k not in keys and not isinstance(it[k], (dict, list))]
        shown = items[:MAX_PLAN_ROWS]
        more = (
            f'<p class="note">{len(items)} rows; the first {MAX_PLAN_ROWS} shown.</p>'
            if len(items) > MAX_PLAN_ROWS
            else ""
        )
        parts.append(
            f"<h3>{esc(titles.get(name, name))}</h3>"
            + table(
                keys,
                [
                    [fmt(it.get(k), ".4g" if isinstance(it.get(k), float) else None) for k in keys]
                    for it in shown
                ],
            )
            + more
        )
    return "".join(parts)


def _fits_section(rd: ReportData) -> str:
    if not rd.fits:
        return ""
    rows = [
        [
            esc(f.model),
            esc(f.device),
            esc(f.quantity),
            esc(f.form),
            esc(", ".join(f"{p}={c:.4g}" for p, c in zip(f.params, f.coefficients, strict=True))),
            fmt(f.cv_r2, ".3f"),
            fmt(f.cv_mape, ".3f"),
            esc(f.n_rows),
        ]
        for f in rd.fits
    ]
    figs = "".join(img(png, f"fit: {name}") for name, png in plots.fit_figures(rd))
    return (
        "<h2>Fits (predicted vs measured)</h2>"
        + table(
            ["model", "device", "quantity", "form", "coefficients", "CV R²", "CV MAPE", "rows"],
            rows,
        )
        + (figs or '<p class="note">No request in this directory measured a fitted quantity.</p>')
    )


def _bench_sections(rd: ReportData) -> list[str]:
    """Summary, figures and records of a run or sweep directory."""
    fp = rd.footprint
    return [
        "<h2>Summary</h2>",
        _recommendation(rd),
        _summary_section(rd),
        served_section(rd),
        "<h2>Pareto frontier</h2>",
        img(plots.pareto_figure(rd), "Pareto plot"),
        _comparison(rd),
        "<h2>Latency distributions</h2>",
        img(plots.latency_figure(rd), "Latency distributions"),
        "<h2>Throughput and energy over time</h2>",
        img(plots.timeline_figure(rd), "Throughput and power over time"),
        _fits_section(rd),
        _plan_section(rd),
        "<h2>Configuration</h2>",
        kv_table(rd.config),
        "<h2>Model footprint</h2>" + kv_table(fp) if fp else "",
        "<h2>Energy meter</h2>",
        kv_table(rd.meter),
        "<h2>Environment</h2>",
        kv_table(dict(rd.environment)),
    ]


def render(rd: ReportData) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if rd.kind == "served":
        sub = f"request log <code>{esc(rd.source)}</code>, generated {now}."
        body = [served_section(rd), _fits_section(rd), _plan_section(rd)]
    else:
        sub = (
            f"{esc(rd.kind)} directory <code>{esc(rd.source)}</code>, generated {now}. "
            f"Model <b>{esc(rd.config.get('model'))}</b>, {len(rd.rows)} point(s)."
        )
        body = _bench_sections(rd)
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>wattserve report: {esc(rd.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>wattserve report: {esc(rd.title)}</h1>",
        f'<p class="sub">{sub}</p>',
        "".join(f'<p class="note">{esc(n)}</p>' for n in rd.notes),
        *body,
        f"<script>{SCRIPT}</script></body></html>",
    ]
    return "\n".join(p for p in parts if p)


def default_output(path: str | Path | None, served: str | Path | None = None) -> Path:
    """``<dir>/report.html`` for a directory; ``<log>.report.html`` beside a request log."""
    if path is not None and not Path(path).is_file():
        return Path(path) / "report.html"
    log = Path(path if path is not None else served or "served.jsonl")
    return log.with_name(log.stem + ".report.html")


def write_report(
    path: str | Path | None,
    out: str | Path | None = None,
    fits: str | Path | None = None,
    plan: str | Path | None = None,
    served: str | Path | None = None,
    simulated: str | Path | None = None,
    evaluation: str | Path | None = None,
) -> Path:
    """Render the report of a run or sweep directory or a request log (see ``load``).

    ``fits`` / ``plan`` default to ``fits.json`` / ``schedule.json`` inside the directory;
    the output defaults to ``default_output(path, served)``."""
    rd = load(path, fits, plan, served, simulated, evaluation)
    dest = Path(out) if out else default_output(path, served)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(render(rd), encoding="utf-8")
    return dest
