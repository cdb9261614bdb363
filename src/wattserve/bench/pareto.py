"""Pareto frontier over sweep points and the recommended configuration.

A point is a mapping (a ``summary.csv`` row of a sweep) with at least the objective columns:

* ``tok_s_per_user``   output tokens/s one user sees (1 / mean TPOT) - maximise;
* ``tok_s_per_device`` output tokens/s of the whole device - maximise;
* ``j_per_token``      joules per output token (device energy / output tokens) - minimise.

A point is dominated when another point is at least as good on every objective and strictly
better on one. Objectives missing (``None``/NaN) on some point are left out of the comparison
for all points, and the result says which objectives were used.

``recommend`` picks, among points that meet the SLOs, either the highest device throughput
(``objective="throughput"``, ties broken by lower J/token) or the lowest J/token with device
throughput at or above a floor (``objective="energy"``). A point meets the SLOs when its
measured ``slo_attainment`` (fraction of requests meeting every SLO, as in ``--goodput``) is at
least ``min_attainment``; rows without it are judged by their ``p{100*min_attainment}``
latency columns instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wattserve.errors import ConfigError

OBJECTIVES: dict[str, str] = {
    "tok_s_per_user": "max",
    "tok_s_per_device": "max",
    "j_per_token": "min",
}
SLO_COLUMNS = {"ttft": "ttft", "tpot": "tpot", "e2el": "e2e"}


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def usable_objectives(
    points: Sequence[Mapping[str, Any]], objectives: Mapping[str, str] = OBJECTIVES
) -> dict[str, str]:
    """The objectives every point has a finite value for."""
    return {
        k: s
        for k, s in objectives.items()
        if points and all(_num(p.get(k)) is not None for p in points)
    }


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` (both oriented so larger is better)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True)
    )


def pareto_mask(
    points: Sequence[Mapping[str, Any]], objectives: Mapping[str, str] = OBJECTIVES
) -> list[bool]:
    """True for points on the frontier (not dominated by any other point)."""
    used = usable_objectives(points, objectives)
    if not used:
        return [True] * len(points)
    # every used objective is finite on every point (usable_objectives)
    vecs = [[float(p[k]) * (1 if s == "max" else -1) for k, s in used.items()] for p in points]
    return [
        not any(dominates(o, v) for j, o in enumerate(vecs) if j != i) for i, v in enumerate(vecs)
    ]


@dataclass(frozen=True)
class Recommendation:
    index: int | None  # into the points given; None when no point qualifies
    objective: str
    reason: str
    feasible: tuple[int, ...] = ()
    objectives_used: tuple[str, ...] = ()
    frontier: tuple[int, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "objective": self.objective,
            "reason": self.reason,
            "feasible": list(self.feasible),
            "objectives_used": list(self.objectives_used),
            "frontier": list(self.frontier),
        }


def meets_slo(
    point: Mapping[str, Any], slo_ms: Mapping[str, float] | None, min_attainment: float = 0.9
) -> bool:
    """Whether a point meets every SLO (``{"ttft": ms, "tpot": ms, "e2el": ms}``)."""
    if not slo_ms:
        return True
    att = _num(point.get("slo_attainment"))
    if att is not None:
        return att >= min_attainment
    pct = f"p{min_attainment * 100:g}"
    for name, ms in slo_ms.items():
        col = SLO_COLUMNS.get(name)
        if col is None:
            raise ConfigError(f"unknown SLO {name!r}; use ttft, tpot or e2el")
        v = _num(point.get(f"{col}_{pct}_s"))
        if v is None or v * 1000.0 > ms:
            return False
    return True


def recommend(
    points: Sequence[Mapping[str, Any]],
    slo_ms: Mapping[str, float] | None = None,
    min_attainment: float = 0.9,
    objective: str = "throughput",
    throughput_floor: float | None = None,
) -> Recommendation:
    """The configuration to run: see the module docstring."""
    if objective not in ("throughput", "energy"):
        raise ConfigError(f"objective must be 'throughput' or 'energy', got {objective!r}")
    used = tuple(usable_objectives(points))
    front = tuple(i for i, on in enumerate(pareto_mask(points)) if on)
    ok = [
        i
        for i, p in enumerate(points)
        if (_num(p.get("completed")) or 1) > 0 and meets_slo(p, slo_ms, min_attainment)
    ]
    slo_txt = (
        (
            " meeting "
            + ", ".join(f"{k}<={v:g} ms" for k, v in slo_ms.items())
            + f" for >= {min_attainment:.0%} of requests"
        )
        if slo_ms
        else ""
    )

    def tput(i: int) -> float:
        return _num(points[i].get("tok_s_per_device")) or 0.0

    def joules(i: int) -> float:
        j = _num(points[i].get("j_per_token"))
        return math.inf if j is None else j

    if objective == "energy":
        floor = throughput_floor or 0.0
        ok = [i for i in ok if tput(i) >= floor and joules(i) < math.inf]
        if not ok:
            return Recommendation(
                None,
                objective,
                f"no point{slo_txt} reaches {floor:g} tok/s with an energy figure",
                (),
                used,
                front,
            )
        best = min(ok, key=lambda i: (joules(i), -tput(i)))
        why = (
            f"lowest energy per output token ({joules(best):.4g} J) among {len(ok)} point(s) "
            f"with >= {floor:g} tok/s per device{slo_txt}"
        )
    else:
        if not ok:
            return Recommendation(None, objective, f"no point{slo_txt}", (), used, front)
        best = max(ok, key=lambda i: (tput(i), -joules(i)))
        why = (
            f"highest device throughput ({tput(best):.4g} tok/s) among {len(ok)} point(s){slo_txt}"
        )
    return Recommendation(best, objective, why, tuple(ok), used, front)
