"""An evaluation directory: ``eval.json``, ``tasks.jsonl``, ``records.jsonl`` and outputs.

``records.jsonl`` gets one line per (model, item) as soon as the item's energy is
attributed (``bench.store.RequestLog``: whole lines, unbuffered), so a killed run keeps
every finished item; ``latest_records`` keeps the last record of each pair, and
``done_pairs`` the pairs answered without error (resume runs the others).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from wattserve.bench.store import RequestLog, read_requests, run_dir_name, write_json_atomic
from wattserve.errors import ConfigError
from wattserve.evaluate.config import EvalConfig

SCHEMA_VERSION = 1
EVAL_JSON = "eval.json"
TASKS = "tasks.jsonl"
RECORDS = "records.jsonl"
ENERGY = "energy.csv"
SUMMARY_CSV = "summary.csv"
ROUTING = "routing"


def create_dir(cfg: EvalConfig) -> Path:
    base = Path(cfg.result_dir)
    label = cfg.label or "eval-" + "-".join(m.rsplit("/", 1)[-1] for m in cfg.models)
    path = base / run_dir_name(label, "eval")
    k = 1
    while path.exists():
        k += 1
        path = base / f"{run_dir_name(label, 'eval')}-{k}"
    path.mkdir(parents=True)
    return path


def new_state(cfg: EvalConfig, run_dir: Path, meter_info: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "eval",
        "run_id": run_dir.name,
        "config": cfg.model_dump(mode="json"),
        "meter_info": dict(meter_info),
        "wall_start": time.time(),
        "status": "running",
        "segments": [],
        "engines": {},
        "summary": None,
    }


def save_state(run_dir: Path, state: Mapping[str, Any]) -> None:
    write_json_atomic(run_dir / EVAL_JSON, state)


def load_state(run_dir: str | Path) -> tuple[EvalConfig, dict[str, Any]]:
    path = Path(run_dir) / EVAL_JSON
    if not path.is_file():
        raise ConfigError(f"not an eval directory (no {EVAL_JSON}): {run_dir}")
    try:
        state = json.loads(path.read_text())
        cfg = EvalConfig.model_validate(state["config"])
    except Exception as exc:  # noqa: BLE001 - any damage: one clear line
        raise ConfigError(f"{path}: cannot be reloaded ({type(exc).__name__}: {exc})") from None
    return cfg, state


def open_log(run_dir: Path) -> RequestLog:
    return RequestLog(run_dir / RECORDS)


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    return read_requests(run_dir / RECORDS)


def latest_records(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The last record of each (model, item id); an answered one beats a later error."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        key = (str(r["model"]), str(r["item_id"]))
        prev = out.get(key)
        if prev is None or r.get("error") is None or prev.get("error") is not None:
            out[key] = dict(r)
    return out


def done_pairs(records: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    return {k for k, r in latest_records(records).items() if r.get("error") is None}
