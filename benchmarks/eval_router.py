"""Route between the evaluated models on held-out items and held-out families.

    python benchmarks/eval_router.py RUN_DIR [--seeds 3] [--test-fraction 0.3] [--json OUT]

RUN_DIR is a ``wattserve eval`` directory with two models: its ``routing/<family>.csv``
files give each item's correctness per model and ``routing/item_costs.jsonl`` each item's
measured joules per model. The router is the one ``wattserve route train`` builds (tfidf
scorer, ``gain`` rule, per-model cost = the mean joules per request of the training side)
and is scored as ``wattserve route eval --router FILE`` scores it (``evaluate_router``:
APGR, CPT, the cost-quality curve beside random routing). Two settings:

- **held-out items**: ``route train --split random``'s split (``test_fraction`` of the items
  held out), repeated over ``--seeds`` split seeds, figures averaged;
- **held-out family**: each family in turn is left out of training and the router is
  scored on that family alone (``--split subject`` holds whole families out the same way).

Per strategy on the held-out side: accuracy, mean J per request, accuracy per joule
(correct answers per J: total correct / total joules), the share of requests sent to the
dearer model, and random routing at the same share (its expected accuracy and joules). The
router rows use thresholds calibrated on the training side only: a share of strong calls
(``route train --target-share``) and the strong model's training accuracy
(``--target-quality``). Each request is charged the joules its chosen model used on that
item in the eval; the router's own scoring cost (a tfidf transform) is not metered.

The equivalent commands for one held-out-items split (seed 0)::

    wattserve route train --data RUN_DIR/routing --split random --seed 0 \\
        --cost MODEL_A=J_A --cost MODEL_B=J_B --target-share 0.5 --output router-0.pkl
    wattserve route eval --data RUN_DIR/routing --router router-0.pkl --split random --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wattserve.errors import ConfigError
from wattserve.route import (
    LabelledPrompts,
    Router,
    evaluate_router,
    load_labelled_csvs,
    make_scorer,
    random_split,
    threshold_for_quality,
    threshold_for_share,
)
from wattserve.tasks import read_tasks

SHARES = (0.25, 0.5, 0.75)  # router thresholds: these strong-call shares on the training side
CURVE_X = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def load_run(run_dir: Path) -> tuple[LabelledPrompts, np.ndarray]:
    """The routing labels and a (n, n_models) matrix of each item's joules per model."""
    routing = run_dir / "routing"
    if not (routing / "item_costs.jsonl").is_file():
        raise ConfigError(f"{run_dir}: no routing/item_costs.jsonl (not a finished eval dir?)")
    data = load_labelled_csvs(routing)
    prompts = {it.id: it.prompt for it in read_tasks(run_dir / "tasks.jsonl")}
    joules: dict[tuple[str, str], list[float]] = {}  # (family, prompt) -> joules per model
    with open(routing / "item_costs.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            js = row["joules"]
            if any(js.get(m) is None for m in data.models):
                raise ConfigError(f"{row['id']}: no measured joules for every model")
            key = (str(row["family"]), prompts[row["id"]])
            joules[key] = [float(js[m]) for m in data.models]
    try:
        costs = np.array([joules[(g, t)] for g, t in zip(data.groups, data.texts, strict=True)])
    except KeyError as exc:
        raise ConfigError(f"a routing prompt has no item_costs row: {exc}") from None
    return data, costs


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices of ``route.random_split`` (``route train --split random``)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _index(data: LabelledPrompts, idx: np.ndarray, costs: np.ndarray) -> tuple[Any, np.ndarray]:
    return data.subset(idx), costs[idx]


def _strategy(name: str, correct: np.ndarray, joules: np.ndarray, share: float) -> dict[str, Any]:
    total = float(joules.sum())
    return {
        "strategy": name,
        "accuracy": float(correct.mean()),
        "j_per_request": float(joules.mean()),
        "correct_per_j": float(correct.sum()) / total if total > 0 else None,
        "strong_share": share,
    }


def _mix(values: np.ndarray, weak: int, strong: int, share: float) -> float:
    """Expected mean of random routing that sends ``share`` of requests to ``strong``."""
    return float((1 - share) * values[:, weak].mean() + share * values[:, strong].mean())


def score_split(
    train: LabelledPrompts,
    train_costs: np.ndarray,
    test: LabelledPrompts,
    test_costs: np.ndarray,
) -> dict[str, Any]:
    """Train on one side, score every strategy and the RouteLLM metrics on the other."""
    mean_cost = train_costs.mean(axis=0)
    scorer = make_scorer("tfidf", C=1.0).fit(train.texts, train.labels, train.models)
    router = Router(
        train.models, dict(zip(train.models, mean_cost.tolist(), strict=True)), scorer,
        threshold=0.1, objective="gain", name="tfidf",
    )  # fmt: skip
    weak, strong = int(np.argmin(mean_cost)), int(np.argmax(mean_cost))
    rows = [
        _strategy(f"always {m}", test.labels[:, j], test_costs[:, j], float(j == strong))
        for j, m in enumerate(test.models)
    ]
    thresholds = [
        (f"router share {s:.2f}", threshold_for_share(router, train.texts, s)) for s in SHARES
    ]
    target = float(train.labels[:, strong].mean())
    thresholds.append(
        ("router quality=strong", threshold_for_quality(router, train.texts, train.labels, target))
    )
    q = router.quality(test.texts)
    c = np.tile(mean_cost, (len(test), 1))
    n = np.arange(len(test))
    for name, t in thresholds:
        pick = router.choose(q, c, threshold=t)
        share = float((pick == strong).mean())
        row = _strategy(name, test.labels[n, pick], test_costs[n, pick], share)
        row["threshold"] = float(t)
        acc_r = _mix(test.labels, weak, strong, share)
        j_r = _mix(test_costs, weak, strong, share)
        row["random_accuracy"] = acc_r
        row["random_correct_per_j"] = acc_r / j_r if j_r > 0 else None
        rows.append(row)
    ev = evaluate_router(router, test.texts, test.labels)
    grid = np.asarray(ev["curve"]["x"])
    at = [int(np.argmin(np.abs(grid - x))) for x in CURVE_X]
    curve = {k: [ev["curve"][k][i] for i in at] for k in ("router", "random", "oracle")}
    cj = test_costs.mean(axis=0)
    curve["j_per_request"] = [float((1 - x) * cj[weak] + x * cj[strong]) for x in CURVE_X]
    metrics = {k: ev[k] for k in ev if k.startswith(("apgr", "cpt", "auc", "cost_to"))}
    return {
        "n_train": len(train),
        "n_test": len(test),
        "weak": train.models[weak],
        "strong": train.models[strong],
        "rows": rows,
        "metrics": metrics,
        "curve": {"x": list(CURVE_X), **curve},
    }


def _mean(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Average the figures of several splits (rows matched by strategy name)."""
    out = json.loads(json.dumps(results[0]))
    for key in ("n_train", "n_test"):
        out[key] = float(np.mean([r[key] for r in results]))
    for i, row in enumerate(out["rows"]):
        for k, v in row.items():
            if isinstance(v, float):
                vals = [r["rows"][i][k] for r in results if r["rows"][i][k] is not None]
                row[k] = float(np.mean(vals)) if vals else None
    for k in out["metrics"]:
        vals = [r["metrics"][k] for r in results if r["metrics"][k] is not None]
        out["metrics"][k] = float(np.mean(vals)) if vals else None
    for k in ("router", "random", "oracle", "j_per_request"):
        out["curve"][k] = np.mean([r["curve"][k] for r in results], axis=0).tolist()
    return out


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def render(title: str, res: dict[str, Any]) -> str:
    lines = [
        f"## {title}: train {res['n_train']:.0f} items, test {res['n_test']:.0f} items "
        f"(weak {res['weak']}, strong {res['strong']})",
        "",
        "| strategy | accuracy | J/request | correct/J | strong share | random: accuracy "
        "| random: correct/J |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['strategy']} | {r['accuracy']:.3f} | {r['j_per_request']:.3f} | "
            f"{_fmt(r['correct_per_j'], '.4f')} | {r['strong_share']:.2f} | "
            f"{_fmt(r.get('random_accuracy'), '.3f')} | "
            f"{_fmt(r.get('random_correct_per_j'), '.4f')} |"
        )
    m = res["metrics"]
    by_name = {r["strategy"]: r for r in res["rows"]}
    if (
        by_name[f"always {res['strong']}"]["accuracy"]
        <= by_name[f"always {res['weak']}"]["accuracy"]
    ):
        lines += [
            "",
            f"note: the dearer model ({res['strong']}) is not the more accurate one here, so "
            "APGR and CPT (RouteLLM's, which assume it is) do not measure routing quality; "
            "compare the router's curve with random routing's instead.",
        ]
    lines += [
        "",
        f"APGR {_fmt(m.get('apgr'), '.3f')} (random 0.5); CPT(50%) "
        f"{_fmt(m.get('cpt50'), '.2f')} vs random {_fmt(m.get('cpt50_random'), '.2f')}; "
        f"CPT(80%) {_fmt(m.get('cpt80'), '.2f')} vs random {_fmt(m.get('cpt80_random'), '.2f')}",
        "",
        "cost-quality curve (x = share of strong calls):",
        "",
        "| x | J/request | router | random | oracle |",
        "|---:|---:|---:|---:|---:|",
    ]
    cv = res["curve"]
    for i, x in enumerate(cv["x"]):
        lines.append(
            f"| {x:.1f} | {cv['j_per_request'][i]:.3f} | {cv['router'][i]:.3f} | "
            f"{cv['random'][i]:.3f} | {cv['oracle'][i]:.3f} |"
        )
    return "\n".join(lines)


def run(run_dir: Path, seeds: int, test_fraction: float) -> dict[str, Any]:
    data, costs = load_run(run_dir)
    if len(data.models) != 2:
        raise ConfigError(f"{run_dir}: this comparison needs exactly two models")
    out: dict[str, Any] = {"run_dir": str(run_dir), "models": list(data.models)}
    items = []
    for seed in range(seeds):
        tr, te = split_indices(len(data), test_fraction, seed)
        (train, ctr), (test, cte) = _index(data, tr, costs), _index(data, te, costs)
        assert test.texts == random_split(data, test_fraction, seed)[1].texts
        items.append(score_split(train, ctr, test, cte))
    out["held_out_items"] = _mean(items)
    out["held_out_family"] = {}
    groups = np.array(data.groups)
    for fam in sorted(set(data.groups)):
        tr, te = np.flatnonzero(groups != fam), np.flatnonzero(groups == fam)
        if tr.size == 0:
            continue
        (train, ctr), (test, cte) = _index(data, tr, costs), _index(data, te, costs)
        out["held_out_family"][fam] = score_split(train, ctr, test, cte)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path, help="a wattserve eval directory with two models")
    ap.add_argument("--seeds", type=int, default=3, help="random splits for held-out items")
    ap.add_argument("--test-fraction", type=float, default=0.3)
    ap.add_argument("--json", type=Path, help="also write every figure as JSON here")
    a = ap.parse_args(argv)
    try:
        if a.seeds < 1 or not 0 < a.test_fraction < 1:
            raise ConfigError("--seeds must be >= 1 and --test-fraction in (0, 1)")
        res = run(a.run_dir, a.seeds, a.test_fraction)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(f"held-out items ({a.seeds} random splits, mean)", res["held_out_items"]))
    for fam, r in res["held_out_family"].items():
        print()
        print(render(f"held-out family {fam}", r))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
