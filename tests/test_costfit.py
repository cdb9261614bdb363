"""Per-request router costs fitted on an eval's item joules (``route train --cost-from items``):
the router sends each request to the model that is cheaper for it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wattserve.errors import ConfigError
from wattserve.evaluate.costfit import (
    ItemCost,
    fit_request_costs,
    item_requests,
    read_item_costs,
    request_cost_fits,
)
from wattserve.route import Router
from wattserve.tasks import TaskItem, write_tasks
from wattserve.types import Request

MODELS = ("wide", "lean")  # wide: cheap prefill, dear decode; lean: the other way round
WORDS = ("apple", "river", "stone", "cloud", "maple", "tiger", "piano", "lemon")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_router.py"


def _joules(budget: int) -> dict[str, float]:
    return {"wide": 1.0, "lean": 1.5} if budget == 12 else {"wide": 4.0, "lean": 2.0}


def _rows(n: int = 40) -> list[ItemCost]:
    out = []
    for fam, budget in (("short", 12), ("long", 48)):
        for i in range(n):
            prompt = f"{fam} question about the {WORDS[i % len(WORDS)]} number {i}:"
            out.append(ItemCost(f"{fam}-{i}", fam, prompt, budget, _joules(budget)))
    return out


class EqualScorer:
    """Both models predicted equally good on every prompt."""

    models = MODELS

    def predict_quality(self, texts):
        return np.full((len(texts), 2), 0.8)


def test_fitted_router_picks_the_cheaper_model_per_request():
    fits = fit_request_costs(_rows(), MODELS)
    router = Router(MODELS, fits, EqualScorer(), threshold=0.1, objective="gain")
    short = Request(id="s", prompt="short question about the apple number 3:", max_tokens=12)
    long = Request(id="l", prompt="long question about the apple number 3:", max_tokens=48)
    assert router.pick(short) == "wide" and router.pick(long) == "lean"
    d = router.route(long)
    assert d.costs["lean"] == pytest.approx(2.0, rel=0.05)
    assert d.costs["wide"] == pytest.approx(4.0, rel=0.05)
    flat = Router(MODELS, {"wide": 2.5, "lean": 1.75}, EqualScorer(), objective="gain")
    assert flat.pick(short) == flat.pick(long) == "lean"  # one mean cost: one answer


def _routing_dir(tmp_path: Path, per_family: int = 40) -> Path:
    """An eval directory: both models right on every item; ``wide`` cheaper on short
    answers (1.0 J vs 1.5 J), ``lean`` on long ones (2.0 J vs 4.0 J)."""
    run = tmp_path / "eval"
    routing = run / "routing"
    routing.mkdir(parents=True)
    rows, items = _rows(per_family), []
    for fam in ("short", "long"):
        with open(routing / f"{fam}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["prompt", *MODELS])
            w.writerows([r.prompt, 1.0, 1.0] for r in rows if r.family == fam)
    with open(routing / "item_costs.jsonl", "w") as f:
        for r in rows:
            items.append(TaskItem(r.item_id, r.family, 1, r.prompt, "x", "exact"))
            row = {"id": r.item_id, "family": r.family, "prompt": r.prompt}
            f.write(json.dumps({**row, "joules": r.joules, "max_tokens": r.max_tokens}) + "\n")
    write_tasks(run / "tasks.jsonl", items)
    return run


def test_item_costs_round_trip_and_training_side_filter(tmp_path):
    routing = _routing_dir(tmp_path) / "routing"
    rows = read_item_costs(routing)
    assert len(rows) == 80 and {r.max_tokens for r in rows} == {12, 48}
    short_only = [r.prompt for r in rows if r.family == "short"]
    fits = request_cost_fits(routing, MODELS, short_only)
    assert all(f.n_rows == 40 for f in fits.values())
    reqs = item_requests(routing, [rows[0].prompt, rows[-1].prompt, "unknown prompt"])
    assert [r.max_tokens for r in reqs] == [12, 48, 12]
    with pytest.raises(ConfigError, match="item_costs"):
        read_item_costs(tmp_path)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "wattserve", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_route_train_cost_from_items(tmp_path):
    routing = _routing_dir(tmp_path) / "routing"
    out = tmp_path / "router.pkl"
    r = _cli("route", "train", "--data", str(routing), "--cost-from", "items", "--output", str(out))
    assert r.returncode == 0, r.stderr
    router = Router.load(out)
    assert all(hasattr(router.cost_specs[m], "coefficients") for m in MODELS)
    rows = read_item_costs(routing)
    picks = [router.pick(Request(id="x", prompt=x.prompt, max_tokens=x.max_tokens)) for x in rows]
    assert picks == ["wide" if x.max_tokens == 12 else "lean" for x in rows]
    bad = _cli("route", "train", "--data", str(routing), "--cost-from", "items", "--cost", "a=1")
    assert bad.returncode != 0 and "error:" in bad.stderr and "Traceback" not in bad.stderr
    bad = _cli("route", "train", "--data", str(routing), "--cost-from", "nope")
    assert bad.returncode != 0 and "--cost-from" in bad.stderr


def test_eval_router_per_request_costs_beat_both_single_models(tmp_path):
    res_path = tmp_path / "res.json"
    cmd = [sys.executable, str(SCRIPT), str(_routing_dir(tmp_path)), "--seeds", "2"]
    r = subprocess.run([*cmd, "--json", str(res_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "cost at quality" in r.stdout
    res = json.loads(res_path.read_text())
    rows = {x["strategy"]: x for x in res["held_out_items"]["rows"]}
    singles = max(rows[f"always {m}"]["correct_per_j"] for m in MODELS)
    aware = max(v["correct_per_j"] for k, v in rows.items() if "per-request" in k)
    flat = max(v["correct_per_j"] for k, v in rows.items() if "mean cost" in k)
    assert aware == pytest.approx(1 / 1.5, rel=0.02)  # 1.0 J short + 2.0 J long, all right
    assert aware > 1.1 * singles and flat <= singles + 1e-9
