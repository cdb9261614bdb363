"""benchmarks/eval_router.py on a small eval directory whose right routing is known."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from wattserve.tasks import TaskItem, write_tasks

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_router.py"
MODELS = ("small", "large")
WORDS = ("apple", "river", "stone", "cloud", "maple", "tiger", "piano", "lemon", "ocean", "grape")


def _run_dir(tmp_path: Path, per_family: int = 40) -> Path:
    """Two families: the small model (1 J) is right on 'easy' and wrong on 'hard'; the
    large model (2 J) is right on both. Always-small and always-large both get 0.5
    correct answers per joule; sending easy to small and hard to large gets 0.667."""
    run = tmp_path / "eval"
    (run / "routing").mkdir(parents=True)
    items, costs = [], []
    for fam, small_ok in (("easy", 1.0), ("hard", 0.0)):
        rows = []
        for i in range(per_family):
            word = WORDS[i % len(WORDS)]
            prompt = f"{fam} {fam}-task {word} number {i}:"
            item_id = f"{fam}-{i:03d}"
            items.append(TaskItem(item_id, fam, 1, prompt, "x", "exact"))
            rows.append([prompt, small_ok, 1.0])
            costs.append({"id": item_id, "family": fam, "joules": {"small": 1.0, "large": 2.0}})
        with open(run / "routing" / f"{fam}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["prompt", *MODELS])
            w.writerows(rows)
    write_tasks(run / "tasks.jsonl", items)
    with open(run / "routing" / "item_costs.jsonl", "w") as f:
        f.writelines(json.dumps(c) + "\n" for c in costs)
    return run


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_router_beats_both_single_models_per_joule_on_held_out_items(tmp_path):
    out = tmp_path / "res.json"
    r = _script(str(_run_dir(tmp_path)), "--seeds", "2", "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "held-out items" in r.stdout and "APGR" in r.stdout and "| 0.5 |" in r.stdout
    res = json.loads(out.read_text())
    rows = {x["strategy"]: x for x in res["held_out_items"]["rows"]}
    small, large = rows["always small"], rows["always large"]
    assert abs(small["correct_per_j"] - 0.5) < 1e-9 and abs(large["correct_per_j"] - 0.5) < 1e-9
    best = max(x["correct_per_j"] for k, x in rows.items() if k.startswith("router"))
    assert best > 0.6  # easy -> small, hard -> large: 1.0 accuracy at 1.5 J
    assert res["held_out_items"]["metrics"]["apgr"] > 0.7  # random 0.5; the oracle 0.75 here
    assert set(res["held_out_family"]) == {"easy", "hard"}
    for r_ in res["held_out_family"]["hard"]["rows"]:  # random at the same share, beside it
        if r_["strategy"].startswith("router"):
            assert 0.0 <= r_["random_accuracy"] <= 1.0


def test_bad_run_dir_is_one_line(tmp_path):
    r = _script(str(tmp_path / "missing"))
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
