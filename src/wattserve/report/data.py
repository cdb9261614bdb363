"""Read a bench run directory or a sweep directory into one ``ReportData`` for the report.

Run directory: ``run.json`` (+ ``requests.jsonl``, ``energy.csv``); one row per load point.
Sweep directory: ``sweep.json`` / ``summary.csv`` and ``points/<point>/`` run directories.
Either may hold ``fits.json`` (``wattserve fit``) and ``schedule.json`` / ``plan.json``
(``wattserve plan``); both are optional.
Served: the gateway's request log, alone or beside a run/sweep directory, with the
``wattserve simulate --fits`` result of its replay and an eval summary (``served.py``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattserve.bench.pareto import _num
from wattserve.errors import ConfigError
from wattserve.report.served import (
    ServedLog,
    SimulatedResult,
    load_eval,
    load_served,
    load_simulated,
)

PLAN_FILES = ("schedule.json", "plan.json", "plan_comparison.json", "comparison.json")


@dataclass
class ReportData:
    kind: str  # "run" | "sweep" | "served" (a request log alone)
    source: Path
    title: str
    config: dict[str, Any]
    environment: dict[str, Any]
    meter: dict[str, Any]
    footprint: dict[str, Any] | None
    rows: list[
        dict[str, Any]
    ]  # one per point, with tok_s_per_user / tok_s_per_device / j_per_token
    requests: dict[str, list[dict[str, Any]]]  # point -> request records (ok and failed)
    energy: dict[str, list[tuple[float, str, float]]]  # point -> (t_s, device, cumulative J)
    recommendation: dict[str, Any] | None = None
    comparison: list[dict[str, Any]] = field(default_factory=list)
    fits: list[Any] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    served: ServedLog | None = None
    simulated: SimulatedResult | None = None
    evaluation: list[dict[str, Any]] = field(default_factory=list)  # eval summary, family all


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from wattserve.bench.store import read_requests

    return read_requests(path)


def _read_energy(path: Path) -> list[tuple[float, str, float]]:
    if not path.is_file():
        return []
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            t, j = _num(r.get("t_s")), _num(r.get("joules"))
            if t is not None and j is not None:
                out.append((t, str(r.get("device", "device")), j))
    return out


def _objectives(row: dict[str, Any], summary: dict[str, Any]) -> None:
    tpot = _num((summary.get("latency") or {}).get("tpot_s", {}).get("mean"))
    row.setdefault("tok_s_per_user", 1.0 / tpot if tpot else None)
    row.setdefault("tok_s_per_device", _num(summary.get("output_throughput")))
    row.setdefault("j_per_token", _num(summary.get("energy_per_output_token_j")))


def load_run(run_dir: Path) -> ReportData:
    from wattserve.bench import store

    data = store.load_run_json(run_dir)
    rows = []
    for p in data.get("points", []):
        row = store.summary_row(p, _summary(p["summary"]))
        _objectives(row, p["summary"])
        rows.append(row)
    reqs: dict[str, list[dict[str, Any]]] = {}
    for rec in store.latest_per_request(_read_jsonl(run_dir / store.REQUESTS)).values():
        reqs.setdefault(str(rec.get("point", "")), []).append(rec)
    cfg = data.get("config", {})
    return ReportData(
        kind="run",
        source=run_dir,
        title=f"run {data.get('run_id', run_dir.name)}",
        config=cfg,
        environment=data.get("environment", {}),
        meter=data.get("meter_info") or {"type": data.get("meter")},
        footprint=data.get("footprint") or _footprint(cfg.get("model")),
        rows=rows,
        requests=reqs,
        energy={"run": _read_energy(run_dir / store.ENERGY)},
        notes=[f"status: {data.get('status')}"],
    )


def _summary(d: dict[str, Any]) -> Any:
    from wattserve.bench.metrics import summary_from_dict

    return summary_from_dict(d)


def _footprint(model: Any) -> dict[str, Any] | None:
    if not model:
        return None
    from wattserve.footprint import footprint_for_model

    return footprint_for_model(str(model))


def load_sweep(sweep_dir: Path) -> ReportData:
    from wattserve.sweep.run import read_rows

    doc = (
        json.loads((sweep_dir / "sweep.json").read_text())
        if (sweep_dir / "sweep.json").is_file()
        else {}
    )
    rows = read_rows(sweep_dir)
    if not rows:
        raise ConfigError(f"{sweep_dir}: summary.csv has no sweep points yet")
    for r in rows:
        for k, v in list(r.items()):
            x = _num(v)
            r[k] = (
                x
                if x is not None and k not in ("point", "backend", "run_dir")
                else (v if v != "" else None)
            )
    reqs, energy = {}, {}
    env: dict[str, Any] = {}
    meter: dict[str, Any] = {}
    for r in rows:
        pdir = sweep_dir / str(r.get("run_dir") or f"points/{r['point']}")
        reqs[r["point"]] = _read_jsonl(pdir / "requests.jsonl")
        energy[r["point"]] = _read_energy(pdir / "energy.csv")
        if not env and (pdir / "run.json").is_file():
            run = json.loads((pdir / "run.json").read_text())
            env, meter = run.get("environment", {}), run.get("meter_info") or {}
    cfg = doc.get("config", {})
    return ReportData(
        kind="sweep",
        source=sweep_dir,
        title=f"replica sweep {sweep_dir.name}",
        config=cfg,
        environment=env,
        meter=meter,
        footprint=doc.get("footprint") or _footprint(cfg.get("model")),
        rows=rows,
        requests=reqs,
        energy=energy,
        recommendation=doc.get("recommendation"),
        comparison=doc.get("comparison", []),
    )


def _load_extras(
    rd: ReportData, fits_path: Path | None = None, plan_path: Path | None = None
) -> None:
    for given in (fits_path, plan_path):
        if given is not None and not given.is_file():
            raise ConfigError(f"{given}: no such file")
    fits_path = fits_path or rd.source / "fits.json"
    if fits_path.is_file():
        try:
            from wattserve.fit import load_fits

            rd.fits = load_fits(fits_path)
        except Exception as exc:  # noqa: BLE001 - a bad optional file is reported, not fatal
            rd.notes.append(f"fits.json not shown: {exc}")
    for p in [plan_path] if plan_path else [rd.source / name for name in PLAN_FILES]:
        name = p.name
        if p.is_file():
            try:
                rd.plan = {"file": name, "content": json.loads(p.read_text())}
            except json.JSONDecodeError as exc:
                rd.notes.append(f"{name} not shown: invalid JSON ({exc.msg})")
            break


def load_served_only(log: Path) -> ReportData:
    """A report of a request log alone (no bench run or sweep beside it)."""
    return ReportData(
        kind="served",
        source=log,
        title=f"served {log.name}",
        config={},
        environment={},
        meter={},
        footprint=None,
        rows=[],
        requests={},
        energy={},
    )


def load(
    path: str | Path | None,
    fits: str | Path | None = None,
    plan: str | Path | None = None,
    served: str | Path | None = None,
    simulated: str | Path | None = None,
    evaluation: str | Path | None = None,
) -> ReportData:
    """A run or sweep directory (or a gateway request log file) as ``ReportData``.

    ``served`` (a request log), ``simulated`` (its ``wattserve simulate --fits`` result) and
    ``evaluation`` (an eval directory) add the served-vs-simulated section; with a request
    log as ``path`` (or ``path`` None and ``served`` given) the report is of that log."""
    if path is not None and Path(path).is_file():
        if served is not None:
            raise ConfigError(f"{path} is a file: give the request log once (PATH or --served)")
        path, served = None, path
    if path is None:
        if served is None:
            raise ConfigError("give a run or sweep directory, or a request log (--served)")
        rd = load_served_only(Path(served))
        _load_extras(rd, Path(fits) if fits else None, Path(plan) if plan else None)
    else:
        rd = _load_dir(Path(path), fits, plan)
    if served is not None:
        rd.served = load_served(served)
        if rd.served.torn_last_line:
            rd.notes.append(f"{served}: an unfinished last line was left out")
    elif simulated is not None:
        raise ConfigError("--simulated is compared with a served request log: give --served")
    if simulated is not None:
        rd.simulated = load_simulated(simulated)
    if evaluation is not None:
        rd.evaluation = load_eval(evaluation)
    return rd


def _load_dir(p: Path, fits: str | Path | None, plan: str | Path | None) -> ReportData:
    if (p / "sweep.json").is_file() or ((p / "summary.csv").is_file() and (p / "points").is_dir()):
        rd = load_sweep(p)
    elif (p / "run.json").is_file():
        rd = load_run(p)
    else:
        raise ConfigError(
            f"{p}: not a run directory (run.json), a sweep directory (sweep.json, summary.csv) "
            "or a request log file"
        )
    if rd.recommendation is None and rd.rows:
        from wattserve.bench.pareto import recommend

        rec = recommend(rd.rows, rd.config.get("goodput") or None)
        rd.recommendation = rec.to_dict() | {
            "point": rd.rows[rec.index].get("point") if rec.index is not None else None
        }
    _load_extras(rd, Path(fits) if fits else None, Path(plan) if plan else None)
    return rd
