"""ML.ENERGY leaderboard (v2) configuration records as sweep points, and the leaderboard's
default view.

A configuration row (one ``task``, ``gpu``, ``model``, ``max_num_seqs``, ``tp``, ``pp`` run of
vLLM) becomes the same point mapping a replica sweep writes to ``summary.csv``, so
``wattserve.bench.pareto`` (frontier, ``recommend``) works on it unchanged:

* ``tok_s_per_user``   = 1 / ``avg_tpot_s``
* ``tok_s_per_device`` = ``token_tput_tok_s`` (output tokens/s of all ``num_gpus`` GPUs)
* ``j_per_token``      = ``energy_per_output_token_j``
* ``max_concurrency``  = ``max_num_seqs``; ``tpot_mean_s`` = ``avg_tpot_s``;
  ``energy_per_req_j``, ``output_tokens`` (average per request), ``avg_batch_size`` and the
  parallelism (``tp``, ``pp``, ``num_gpus``) are carried along.

The default view (``default_view``): per (task, model, GPU), among configurations whose
average TPOT rounded to 2 decimals is at most 0.2 s, the one with the lowest energy per
request (ties: the smaller ``max_num_seqs``, then file order).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wattserve.errors import ConfigError

REQUIRED = (
    "task",
    "gpu",
    "model",
    "max_num_seqs",
    "tp",
    "pp",
    "num_gpus",
    "energy_per_req_j",
    "avg_tpot_s",
    "token_tput_tok_s",
    "avg_output_tokens",
    "energy_per_output_token_j",
)
TPOT_MAX_S = 0.2
TPOT_DECIMALS = 2

Point = dict[str, Any]


def _number(row: Mapping[str, str], col: str, line: int, path: Path) -> float:
    try:
        x = float(row[col])
    except (TypeError, ValueError):
        raise ConfigError(f"{path}:{line}: column {col!r} is not a number ({row[col]!r})") from None
    if not math.isfinite(x) or x < 0:
        raise ConfigError(f"{path}:{line}: column {col!r} must be a finite number >= 0, not {x}")
    return x


def point_from_row(row: Mapping[str, str], line: int = 0, path: Path = Path("-")) -> Point:
    """One sweep-style point from one configuration row (see the module docstring)."""
    num = {c: _number(row, c, line, path) for c in REQUIRED[3:]}
    if num["avg_tpot_s"] <= 0:
        raise ConfigError(f"{path}:{line}: avg_tpot_s must be > 0")
    bs, tp, pp = (int(num[c]) for c in ("max_num_seqs", "tp", "pp"))
    return {
        "point": f"{row['task']}/{row['gpu']}/{row['model']}/bs{bs}+tp{tp}+pp{pp}",
        "backend": "vllm",
        "task": row["task"],
        "model": row["model"],
        "device": row["gpu"],
        "max_concurrency": bs,
        "tp": tp,
        "pp": pp,
        "num_gpus": int(num["num_gpus"]),
        "tok_s_per_user": 1.0 / num["avg_tpot_s"],
        "tok_s_per_device": num["token_tput_tok_s"],
        "j_per_token": num["energy_per_output_token_j"],
        "tpot_mean_s": num["avg_tpot_s"],
        "energy_per_req_j": num["energy_per_req_j"],
        "output_tokens": num["avg_output_tokens"],
        "avg_batch_size": _optional(row.get("avg_batch_size")),
        "source": row.get("file") or None,
    }


def _optional(v: str | None) -> float | None:
    try:
        x = float(v) if v not in (None, "") else None
    except ValueError:
        return None
    return x if x is not None and math.isfinite(x) else None


def read_configs(path: str | Path) -> list[Point]:
    """Every configuration row of an ML.ENERGY v2 CSV as a point; one clear error if malformed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(
                    f"{path}: missing columns {', '.join(missing)} (an ML.ENERGY v2 "
                    f"configuration CSV has {', '.join(REQUIRED)})"
                )
            points = [point_from_row(r, n, path) for n, r in enumerate(reader, 2)]
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 CSV file") from None
    except csv.Error as exc:
        raise ConfigError(f"{path}: cannot read as CSV ({exc})") from None
    if not points:
        raise ConfigError(f"{path}: no configuration rows")
    return points


def mark_frontier(points: Sequence[Point]) -> list[Point]:
    """Set ``pareto`` (1/0) on every point: on the frontier of its own (task, model, device)
    group, by ``wattserve.bench.pareto`` over TPOT, device throughput and J/token."""
    from wattserve.bench.pareto import pareto_mask

    groups: dict[tuple[str, str, str], list[Point]] = {}
    for p in points:
        groups.setdefault((str(p["task"]), str(p["model"]), str(p["device"])), []).append(p)
    for members in groups.values():
        for p, on in zip(members, pareto_mask(members), strict=True):
            p["pareto"] = int(on)
    return list(points)


def default_view(
    points: Sequence[Mapping[str, Any]],
    tpot_max_s: float = TPOT_MAX_S,
    decimals: int = TPOT_DECIMALS,
) -> list[Point]:
    """Per (task, model, device): the lowest-energy-per-request point whose average TPOT,
    rounded to ``decimals``, is at most ``tpot_max_s``. Groups with no such point are left out;
    rows are sorted by task, device, then energy per request."""
    best: dict[tuple[str, str, str], tuple[tuple[float, int, int], Mapping[str, Any]]] = {}
    for n, p in enumerate(points):
        if round(float(p["tpot_mean_s"]), decimals) > tpot_max_s:
            continue
        key = (str(p["task"]), str(p["model"]), str(p["device"]))
        rank = (float(p["energy_per_req_j"]), int(p["max_concurrency"]), n)
        if key not in best or rank < best[key][0]:
            best[key] = (rank, p)
    rows = [dict(p) for _, p in best.values()]
    return sorted(rows, key=lambda r: (r["task"], r["device"], r["energy_per_req_j"]))


def excluded_groups(
    points: Sequence[Mapping[str, Any]],
    tpot_max_s: float = TPOT_MAX_S,
    decimals: int = TPOT_DECIMALS,
) -> list[tuple[str, str, str]]:
    """(task, model, device) groups none of whose configurations meets the TPOT limit."""
    kept = {
        (r["task"], r["model"], r["device"]) for r in default_view(points, tpot_max_s, decimals)
    }
    every = {(str(p["task"]), str(p["model"]), str(p["device"])) for p in points}
    return sorted(every - kept)
