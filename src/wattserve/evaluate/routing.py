"""The routing dataset ``wattserve route train`` reads, from an evaluation's records.

``routing/<family>.csv``: a ``prompt`` column and one column per model (1.0 correct,
0.0 wrong) for every item that all models answered without error; ``route train --data
routing/`` reads the folder (the family is each row's group, so ``route eval --split
subject`` holds whole families out). ``route train`` takes costs as ``--cost MODEL=J``,
so the per-model cost goes beside the labels, not in a CSV column: ``routing/costs.json``
holds each model's mean joules per request (and the matching ``--cost`` arguments) and
``routing/item_costs.jsonl`` the joules of every item and model, with the request's
shape: its answer budget (``max_tokens``) and each model's input and output tokens.
``route train --cost-from items`` fits each model's joules per request on those rows
(``wattserve.evaluate.costfit``), so the router ranks models per request.
"""

from __future__ import annotations

import csv
import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wattserve.bench.store import write_json_atomic
from wattserve.evaluate.store import ROUTING

COSTS = "costs.json"
ITEM_COSTS = "item_costs.jsonl"


def write_routing(
    run_dir: Path,
    records: Mapping[tuple[str, str], Mapping[str, Any]],
    models: Sequence[str],
    prompts: Mapping[str, str],
) -> dict[str, Any]:
    """Write ``run_dir/routing``; returns a description (files, items, costs, command)."""
    out = run_dir / ROUTING
    out.mkdir(exist_ok=True)
    for old in out.glob("*.csv"):
        old.unlink()
    per_item: dict[str, dict[str, Mapping[str, Any]]] = {}
    for (model, item_id), r in records.items():
        if r.get("error") is None and model in models:
            per_item.setdefault(item_id, {})[model] = r
    complete = [(i, rs) for i, rs in sorted(per_item.items()) if len(rs) == len(models)]
    by_family: dict[str, list[tuple[str, dict[str, Mapping[str, Any]]]]] = {}
    for item_id, rs in complete:
        by_family.setdefault(str(next(iter(rs.values()))["family"]), []).append((item_id, rs))
    files = []
    for fam, items in sorted(by_family.items()):
        path = out / f"{fam}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["prompt", *models])
            for item_id, rs in items:
                w.writerow(
                    [prompts[item_id], *(f"{float(bool(rs[m]['correct'])):.1f}" for m in models)]
                )
        files.append(path.name)
    sums = dict.fromkeys(models, 0.0)
    measured = True
    with open(out / ITEM_COSTS, "w", encoding="utf-8") as f:
        for item_id, rs in complete:
            joules = {m: rs[m].get("energy_j") for m in models}
            measured = measured and all(j is not None for j in joules.values())
            for m, j in joules.items():
                sums[m] += float(j or 0.0)
            first = next(iter(rs.values()))
            row = {
                "id": item_id,
                "family": first["family"],
                "prompt": prompts[item_id],
                "joules": joules,
                "max_tokens": first.get("max_tokens"),
                "input_tokens": {m: rs[m].get("input_tokens") for m in models},
                "output_tokens": {m: rs[m].get("output_tokens") for m in models},
            }
            f.write(json.dumps(row) + "\n")
    mean = {m: (sums[m] / len(complete) if complete and measured else None) for m in models}
    sources = sorted(
        {
            str(r["energy_source"])
            for _, rs in complete
            for r in rs.values()
            if r.get("energy_source")
        }
    )
    cost_args = [f"--cost {shlex.quote(f'{m}={v:.6g}')}" for m, v in mean.items() if v is not None]
    command = " ".join(["wattserve route train --data", shlex.quote(str(out)), *cost_args])
    per_request = " ".join(
        ["wattserve route train --data", shlex.quote(str(out)), "--cost-from items"]
    )
    info = {
        "unit": "J",
        "energy_source": "+".join(sources) or None,
        "models": list(models),
        "items": len(complete),
        "files": files,
        "mean_j_per_request": mean,
        "route_train": command,
        "route_train_per_request": per_request if complete and measured else None,
    }
    write_json_atomic(out / COSTS, info)
    return info
