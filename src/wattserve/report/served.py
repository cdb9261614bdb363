"""What the gateway served beside what the simulator replayed, for the report.

- ``load_served``: the gateway's request log (``request_log: FILE``, one row per answered
  request, ``wattserve.serve.request_log``) summed up: requests, errors, cache hits, the
  answers computed per model, and their joules per energy source (a meter's name such as
  ``nvml``/``rapl``/``replay``: metered; ``fitted``: an unmetered replica charged its fit;
  ``cache``: a hit, 0 J). Errored rows are counted and kept out of the joules, as the
  simulator leaves them out of its replay.
- ``load_simulated``: the JSON of ``wattserve simulate --fits FITS --trace LOG --format json
  --output FILE`` (one row per cache policy: hits, fitted total joules, answers per model).
- ``load_eval``: the summary of a ``wattserve eval`` directory (``eval.json``): accuracy and
  J per correct answer per model over all families.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattserve.errors import ConfigError

FITTED = "fitted"
CACHE = "cache"
LOG_FIELDS = ("input_tokens", "output_tokens", "energy_j", "cache_hit")


@dataclass
class ServedLog:
    """The sums of one request log."""

    path: Path
    rows: int = 0  # every row, errored ones included
    errors: int = 0
    cache_hits: int = 0
    answers: dict[str, int] = field(default_factory=dict)  # answers computed per model
    delivered: dict[str, int] = field(default_factory=dict)  # answers sent per model, hits too
    joules_by_source: dict[str, float] = field(default_factory=dict)  # answered rows only
    answers_by_source: dict[str, int] = field(default_factory=dict)
    unmetered: int = 0  # answers computed without joules (no meter, no fit)
    torn_last_line: bool = False

    @property
    def requests(self) -> int:
        """Requests answered without error: what the simulator replays."""
        return self.rows - self.errors

    @property
    def total_j(self) -> float:
        return float(sum(self.joules_by_source.values()))

    @property
    def metered_j(self) -> float:
        return float(sum(j for s, j in self.joules_by_source.items() if s != FITTED))

    @property
    def fitted_j(self) -> float:
        return float(self.joules_by_source.get(FITTED, 0.0))


@dataclass
class SimulatedResult:
    """A fitted replay: its configuration and one row per cache policy."""

    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]


def _log_rows(path: Path) -> tuple[list[dict[str, Any]], bool]:
    if not path.is_file():
        raise ConfigError(
            f"request log {'is not a file' if path.exists() else 'not found'}: {path}"
        )
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    lines = text.splitlines()
    unfinished = bool(text) and not text.endswith("\n")
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if unfinished and n == len(lines):  # a crash mid-write: a partial last line
                return rows, True
            raise ConfigError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{n}: a request log row must be a JSON object")
        rows.append(row)
    return rows, False


def load_served(path: str | Path) -> ServedLog:
    """Sum up a gateway request log; a ConfigError names what is wrong with it."""
    p = Path(path)
    rows, torn = _log_rows(p)
    if not rows:
        raise ConfigError(f"{p}: the request log has no rows")
    if not any(any(k in r for k in LOG_FIELDS) for r in rows):
        raise ConfigError(
            f"{p}: not a request log (rows need {', '.join(LOG_FIELDS)}: "
            "the gateway's request_log file)"
        )
    out = ServedLog(p, rows=len(rows), torn_last_line=torn)
    for r in rows:
        if r.get("error") not in (None, "", False):
            out.errors += 1
            continue
        model = str(r.get("served_model") or r.get("model") or "?")
        out.delivered[model] = out.delivered.get(model, 0) + 1
        if r.get("cache_hit"):
            out.cache_hits += 1
            continue
        out.answers[model] = out.answers.get(model, 0) + 1
        energy = r.get("energy_j")
        if isinstance(energy, bool) or not isinstance(energy, (int, float)):
            out.unmetered += 1
            continue
        source = str(r.get("energy_source") or "metered")
        out.joules_by_source[source] = out.joules_by_source.get(source, 0.0) + float(energy)
        out.answers_by_source[source] = out.answers_by_source.get(source, 0) + 1
    return out


def _read_doc(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None


def load_simulated(path: str | Path) -> SimulatedResult:
    """A ``wattserve simulate --fits ... --format json`` result."""
    p = Path(path)
    doc = _read_doc(p, "simulate result")
    doc = doc if isinstance(doc, dict) else {}
    rows = doc.get("rows")
    if (
        not isinstance(rows, list)
        or not rows
        or not all(isinstance(r, dict) and {"policy", "hits", "total_j"} <= r.keys() for r in rows)
    ):
        raise ConfigError(
            f"{p}: not a fitted replay (wattserve simulate --fits FITS --trace LOG "
            "--format json --output FILE writes rows of policy, hits and total_j)"
        )
    config = doc.get("config")
    return SimulatedResult(p, config if isinstance(config, dict) else {}, rows)


def load_eval(path: str | Path) -> list[dict[str, Any]]:
    """The ``all``-family rows of an eval directory's summary (or of its ``eval.json``)."""
    p = Path(path)
    doc = _read_doc(p / "eval.json" if p.is_dir() else p, "eval summary (eval.json)")
    summary = doc.get("summary") if isinstance(doc, dict) else None
    rows = summary.get("rows") if isinstance(summary, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(
            f"{p}: no eval summary (eval.json of a finished `wattserve eval` run holds one)"
        )
    picked = [r for r in rows if r.get("family") == "all"]
    if not picked:
        raise ConfigError(f"{p}: the eval summary has no 'all' rows")
    return picked


def expected_correct(served: ServedLog, evaluation: list[dict[str, Any]]) -> float | None:
    """Answers sent times their model's eval accuracy (a cache hit counts for the model that
    computed it); None when a model that answered has no accuracy in the eval."""
    acc = {str(r.get("model")): r.get("accuracy") for r in evaluation}
    total = 0.0
    for model, n in served.delivered.items():
        a = acc.get(model)
        if not isinstance(a, (int, float)):
            return None
        total += n * float(a)
    return total


def relative_difference(simulated: float, served: float) -> float | None:
    """(simulated - served) / served; None when nothing was served."""
    return (simulated - served) / served if served else None
