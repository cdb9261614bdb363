"""Records -> a table per model x family: accuracy, J/request, J/correct with 95% intervals.

Errored requests are counted (``failed``) and kept out of the figures; ``resume`` reruns
them. Each family also gets a row ``all`` over every family, accuracy per difficulty
level, and, for every model after the first, the paired accuracy difference to the first
model on the items both answered.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from wattserve.evaluate.stats import item_stats, paired_difference

ALL = "all"


def _seed(seed: int, *parts: str) -> int:
    return zlib.crc32(":".join([str(seed), *parts]).encode())


def _rows_for(records: list[Mapping[str, Any]], n_boot: int, seed: int, *key: str) -> dict:
    ok = [r for r in records if r.get("error") is None]
    correct = np.array([bool(r.get("correct")) for r in ok], dtype=float)
    joules_raw = [r.get("energy_j") for r in ok]
    joules = (
        None
        if any(j is None for j in joules_raw)
        else np.asarray([float(j or 0.0) for j in joules_raw], dtype=np.float64)
    )
    row = item_stats(correct, joules, n_boot, _seed(seed, *key))
    row["failed"] = len(records) - len(ok)
    sources = sorted({str(r["energy_source"]) for r in ok if r.get("energy_source")})
    row["energy_source"] = "+".join(sources) or None
    toks = [int(r.get("output_tokens") or 0) for r in ok]
    lat = [float(r["latency_s"]) for r in ok if r.get("latency_s") is not None]
    row["mean_output_tokens"] = float(np.mean(toks)) if toks else None
    row["latency_p50_s"] = float(np.percentile(lat, 50)) if lat else None
    levels: dict[str, list[float]] = {}
    for r in ok:
        levels.setdefault(str(r.get("difficulty")), []).append(float(bool(r.get("correct"))))
    row["by_difficulty"] = {
        k: {"n": len(v), "accuracy": float(np.mean(v))}
        for k, v in sorted(levels.items(), key=lambda kv: kv[0])
    }
    return row


def summarize(
    records: Mapping[tuple[str, str], Mapping[str, Any]],
    models: Sequence[str],
    n_boot: int = 2000,
    seed: int = 0,
    family_order: Sequence[str] = (),
) -> dict[str, Any]:
    """``{"rows": [...], "differences": [...]}`` from the latest record of each pair.

    Families come in ``family_order`` (e.g. the task file's), then any others as found.
    """
    by: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    present = {str(r["family"]) for r in records.values()}
    families: list[str] = [f for f in dict.fromkeys(family_order) if f in present]
    for (model, _), r in sorted(records.items()):
        fam = str(r["family"])
        if fam not in families:
            families.append(fam)
        by.setdefault((model, fam), []).append(r)
        by.setdefault((model, ALL), []).append(r)
    rows = []
    for m in models:
        for fam in [*families, ALL]:
            recs = by.get((m, fam), [])
            if recs:
                rows.append({"model": m, "family": fam} | _rows_for(recs, n_boot, seed, m, fam))
    diffs = []
    for m in models[1:]:
        for fam in [*families, ALL]:
            base = {
                str(r["item_id"]): bool(r.get("correct"))
                for r in by.get((models[0], fam), [])
                if r.get("error") is None
            }
            other = {
                str(r["item_id"]): bool(r.get("correct"))
                for r in by.get((m, fam), [])
                if r.get("error") is None
            }
            shared = sorted(set(base) & set(other))
            if not shared:
                continue
            d = paired_difference(
                np.array([base[i] for i in shared]),
                np.array([other[i] for i in shared]),
                n_boot,
                _seed(seed, "diff", m, fam),
            )
            diffs.append({"model": m, "baseline": models[0], "family": fam} | d)
    return {"rows": rows, "differences": diffs, "families": families, "models": list(models)}


def _ci(ci: Sequence[float] | None, fmt: str) -> str:
    if not ci:
        return "-"
    return "[" + ", ".join("inf" if math.isinf(x) else format(x, fmt) for x in ci) + "]"


def table_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    """Printable cells: model, family, n, accuracy [CI], J/request, J/correct [CI], source."""
    out = []
    for r in summary["rows"]:
        acc = r.get("accuracy")
        jpr, jpc = r.get("j_per_request"), r.get("j_per_correct")
        out.append(
            [
                r["model"],
                r["family"],
                f"{r['n']}" + (f" (+{r['failed']} failed)" if r.get("failed") else ""),
                "-" if acc is None else f"{acc:.3f} {_ci(r.get('accuracy_ci'), '.3f')}",
                "-" if jpr is None else f"{jpr:.4g}",
                "-"
                if jpc is None
                else ("inf" if math.isinf(jpc) else f"{jpc:.4g}")
                + f" {_ci(r.get('j_per_correct_ci'), '.4g')}",
                r.get("energy_source") or "-",
            ]
        )
    return out


def csv_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in summary["rows"]:
        acc_ci = r.get("accuracy_ci") or [None, None]
        jpc_ci = r.get("j_per_correct_ci") or [None, None]
        rows.append(
            {
                "model": r["model"],
                "family": r["family"],
                "n": r["n"],
                "failed": r.get("failed", 0),
                "correct": r["correct"],
                "accuracy": r.get("accuracy"),
                "accuracy_lo": acc_ci[0],
                "accuracy_hi": acc_ci[1],
                "j_per_request": r.get("j_per_request"),
                "j_per_correct": r.get("j_per_correct"),
                "j_per_correct_lo": jpc_ci[0],
                "j_per_correct_hi": jpc_ci[1],
                "energy_source": r.get("energy_source"),
                "mean_output_tokens": r.get("mean_output_tokens"),
                "latency_p50_s": r.get("latency_p50_s"),
            }
        )
    return rows
