"""Run directories and the run catalog.

A run directory ``<result-dir>/<label-or-model>-<utc timestamp>/`` holds:
- ``run.json``: schema version, config, environment, meter, per-point summaries and
  measurements, status (running / complete / interrupted), rewritten atomically;
- ``requests.jsonl``: one line per finished request, written and flushed as it finishes;
- ``energy.csv``: the energy sampler's series, appended periodically;
- ``summary.csv``: one row per sweep point.
The catalog is SQLite: ``<result-dir>/catalog.sqlite`` (or ``$WATTSERVE_HOME/catalog.sqlite``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wattserve.errors import ConfigError
from wattserve.types import SCHEMA_VERSION, Completion, RunSummary

RUN_JSON = "run.json"
REQUESTS = "requests.jsonl"
ENERGY = "energy.csv"
SUMMARY = "summary.csv"


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)


def _clean(o: Any) -> Any:
    """NaN/inf -> None so run.json is strict JSON."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, Mapping):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_clean(data), f, indent=2, default=_json_default)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run_dir_name(label: str | None, model: str, now: float | None = None) -> str:
    stamp = datetime.fromtimestamp(now or time.time(), tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", (label or model).strip()).strip("_") or "run"
    return f"{base}-{stamp}"


def create_run_dir(result_dir: str | Path, label: str | None, model: str) -> Path:
    root = Path(result_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = run_dir_name(label, model)
    path, k = root / name, 1
    while path.exists():
        k += 1
        path = root / f"{name}-{k}"
    path.mkdir()
    return path


def _dumps_line(record: Mapping[str, Any]) -> bytes:
    try:
        import orjson

        return orjson.dumps(
            record,
            option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY,
            default=_json_default,
        )
    except ImportError:  # pragma: no cover - orjson is a dependency; keep a plain fallback
        return (json.dumps(_clean(record), default=_json_default) + "\n").encode()
    except TypeError:  # orjson refuses something exotic (e.g. an int over 64 bits)
        return (json.dumps(_clean(record), default=_json_default) + "\n").encode()


class RequestLog:
    """Append-only JSONL of finished requests; each line reaches the file in one unbuffered write.

    Opening it drops a trailing partial line (a process killed mid-write) so lines stay whole.
    NaN/inf become null.
    """

    def __init__(self, path: Path):
        self.path = path
        repair_jsonl(path)
        self._f = open(path, "ab", buffering=0)

    def write(self, record: Mapping[str, Any]) -> None:
        self._f.write(_dumps_line(record))

    def amend(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Replace the lines of ``records`` (same point, request id and segment) with them.

        The file is rewritten to a temporary file and swapped in atomically, so a kill
        leaves either the old or the new file; returns how many lines were replaced.
        """
        updates = {_line_key(r): r for r in records}
        if not updates:
            return 0
        self._f.close()
        try:
            replaced = 0
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            with open(self.path, "rb") as src, open(tmp, "wb") as dst:
                for line in src:
                    try:
                        key = _line_key(json.loads(line))
                    except (json.JSONDecodeError, KeyError, TypeError):
                        key = None
                    new = updates.get(key) if key is not None else None
                    dst.write(line if new is None else _dumps_line(new))
                    replaced += new is not None
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, self.path)
        finally:
            self._f = open(self.path, "ab", buffering=0)
        return replaced

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> RequestLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _line_key(record: Mapping[str, Any]) -> tuple[str, str, int]:
    return (str(record.get("point", "")), str(record["request_id"]), int(record.get("segment", 0)))


def repair_jsonl(path: Path) -> None:
    """Truncate a file to its last complete line (newline-terminated)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return
        data = path.read_bytes()
        f.truncate(data.rfind(b"\n") + 1)


def read_requests(path: Path) -> list[dict[str, Any]]:
    """All whole, parseable lines of a requests.jsonl (a torn last line is ignored)."""
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def completion_of(record: Mapping[str, Any]) -> Completion:
    return Completion.from_dict(record)


def latest_per_request(
    records: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str], dict[str, Any]]:
    """(point, request id) -> the record to use: a successful one if any, else the latest."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        key = (str(r.get("point", "")), str(r["request_id"]))
        cur = best.get(key)
        if cur is None or r.get("error") is None or cur.get("error") is not None:
            best[key] = dict(r)
    return best


class EnergyLog:
    """energy.csv: rows appended as the sampler produces them (header written once)."""

    def __init__(self, path: Path):
        self.path = path
        self._fields: list[str] | None = None
        if path.exists() and path.stat().st_size:
            with open(path, encoding="utf-8") as f:
                self._fields = next(csv.reader(f), None)

    def append(self, rows: Iterable[Mapping[str, Any]]) -> int:
        rows = list(rows)
        if not rows:
            return 0
        new = self._fields is None
        fields = self._fields = list(rows[0].keys()) if self._fields is None else self._fields
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerows(rows)
        return len(rows)


def summary_row(point: Mapping[str, Any], s: RunSummary) -> dict[str, Any]:
    row: dict[str, Any] = {
        "point": point.get("label"),
        "max_concurrency": point.get("max_concurrency"),
        "request_rate": point.get("request_rate"),
    }
    d = s.to_dict()
    lat = d.pop("latency")
    row.update(d)
    for metric, stats in lat.items():
        for k, v in stats.items():
            row[f"{metric.removesuffix('_s')}_{k}_s"] = v
    return row


def write_summary_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(_clean(rows))
    os.replace(tmp, path)


def load_run_json(run_dir: str | Path) -> dict[str, Any]:
    p = Path(run_dir) / RUN_JSON
    if not p.is_file():
        raise ConfigError(f"not a run directory (no {RUN_JSON}): {run_dir}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: unreadable ({exc.msg})") from None
    if data.get("schema_version", 0) > SCHEMA_VERSION:
        raise ConfigError(
            f"{p}: schema version {data['schema_version']} is newer than this wattserve"
        )
    return data


# --- catalog -----------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, path TEXT NOT NULL, label TEXT, model TEXT, backend TEXT,
  created_utc TEXT, status TEXT, points INTEGER, completed INTEGER, failed INTEGER,
  output_tok_s REAL, j_per_token REAL, energy_source TEXT, meter TEXT
)"""


def catalog_path(result_dir: str | Path) -> Path:
    home = os.environ.get("WATTSERVE_HOME")
    root = Path(home) if home else Path(result_dir)
    root.mkdir(parents=True, exist_ok=True)
    return root / "catalog.sqlite"


def _connect(result_dir: str | Path) -> sqlite3.Connection:
    con = sqlite3.connect(catalog_path(result_dir), timeout=10)
    con.execute(_SCHEMA)
    return con


def catalog_upsert(result_dir: str | Path, run_dir: Path, run: Mapping[str, Any]) -> None:
    cfg = run.get("config", {})
    points = run.get("points", [])
    sums = [p.get("summary") or {} for p in points]
    best = max(sums, key=lambda s: s.get("output_throughput") or 0, default={})
    jpt: list[float] = [
        float(s["energy_per_output_token_j"]) for s in sums if s.get("energy_per_output_token_j")
    ]
    row = (
        run["run_id"],
        str(run_dir.resolve()),
        cfg.get("label"),
        cfg.get("model"),
        cfg.get("backend"),
        datetime.fromtimestamp(run.get("wall_start", 0), tz=UTC).strftime("%Y-%m-%d %H:%M:%S"),
        run.get("status"),
        len(points),
        sum(s.get("completed", 0) for s in sums),
        sum(s.get("failed", 0) for s in sums),
        best.get("output_throughput"),
        min(jpt) if jpt else None,
        best.get("energy_source"),
        run.get("meter"),
    )
    with closing(_connect(result_dir)) as con, con:
        con.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)


def catalog_list(result_dir: str | Path) -> list[dict[str, Any]]:
    with closing(_connect(result_dir)) as con:
        con.row_factory = sqlite3.Row
        return [
            dict(r)
            for r in con.execute("SELECT * FROM runs ORDER BY created_utc DESC, run_id DESC")
        ]


def find_run(run: str, result_dir: str | Path) -> Path:
    """A run directory from a path, a run id or a unique id prefix in the catalog."""
    p = Path(run)
    if (p / RUN_JSON).is_file():
        return p
    if (Path(result_dir) / run / RUN_JSON).is_file():
        return Path(result_dir) / run
    matches = [
        r for r in catalog_list(result_dir) if r["run_id"] == run or r["run_id"].startswith(run)
    ]
    exact = [r for r in matches if r["run_id"] == run]
    if exact or len(matches) == 1:
        return Path((exact or matches)[0]["path"])
    if matches:
        raise ConfigError(
            f"run {run!r} is ambiguous: {', '.join(r['run_id'] for r in matches[:5])}"
        )
    raise ConfigError(
        f"no run {run!r} in {catalog_path(result_dir)} (give a run directory or an id)"
    )
