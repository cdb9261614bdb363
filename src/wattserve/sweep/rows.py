"""Result rows of a replica sweep: one ``summary.csv`` row per point (read, written with the
frontier marked, built from a finished bench run), re-scored under other SLOs, and the
comparison of each replica count against one replica.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from wattserve.bench import pareto

SUMMARY = "summary.csv"


def point_id(backend: str, replicas: int, concurrency: int, rate: float) -> str:
    tail = "" if math.isinf(rate) else f"-rate{rate:g}"
    return f"{backend}-r{replicas}-c{concurrency}{tail}"


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
