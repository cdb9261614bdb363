"""Route between the evaluated models on held-out items and held-out families.

    python benchmarks/eval_router.py RUN_DIR [--seeds 3] [--test-fraction 0.3] [--json OUT]

RUN_DIR is a ``wattserve eval`` directory with two models: its ``routing/<family>.csv``
files give each item's correctness per model and ``routing/item_costs.jsonl`` each item's
measured joules per model and its answer budget. Two routers, both as ``wattserve route
train`` builds them (tfidf scorer, ``gain`` rule), fitted on the training side only:

- **mean cost**: one cost per model, the mean joules per request (``--cost M=J``);
- **per-request cost**: per model a fit of joules per request in prompt length and
  ``max_tokens`` (``--cost-from items``), so the cheaper model can differ per request.

Both are scored on the held-out side as ``wattserve route eval --router FILE`` scores a
router (``evaluate_router``: APGR, CPT and the cost-quality curve beside random routing,
on the mean-cost router: RouteLLM's metrics rank prompts by predicted gain and do not see
per-request costs). Two settings:

- **held-out items**: ``route train --split random``'s split (``test_fraction`` of the items
  held out), repeated over ``--seeds`` split seeds, figures averaged;
- **held-out family**: each family in turn is left out of training and the router is
  scored on that family alone (``--split subject`` holds whole families out the same way).

Per strategy on the held-out side: accuracy, mean J per request, accuracy per joule
(correct answers per J: total correct / total joules), the share of requests sent to the
model dearer on average, and random routing at the same share (its expected accuracy and
joules); an oracle that sends each item to the cheaper of the models that answer it right
bounds them. The router rows use thresholds calibrated on the training side only: a share
of calls to the dearer model (``route train --target-share``), the best model's training
accuracy (``--target-quality``) and the most correct answers per joule on the training
side. Each request is charged the joules its chosen model used on that item in the eval;
the router's own scoring cost (a tfidf transform) is not metered. Last, the per-request
router's cost at quality: its thresholds swept on the held-out side, the fewest J/request
that reach each accuracy, beside random routing's straight line between the two models.

The equivalent commands for one held-out-items split (seed 0)::

    wattserve route train --data RUN_DIR/routing --split random --seed 0 \\
        --cost-from items --target-share 0.5 --output router-0.pkl
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
from wattserve.evaluate.costfit import LEGACY_MAX_TOKENS, ItemCost, fit_request_costs
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
from wattserve.types import Request

SHARES = (0.25, 0.5, 0.75)  # router thresholds: these strong-call shares on the training side
CURVE_X = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def load_run(run_dir: Path) -> tuple[LabelledPrompts, np.ndarray, np.ndarray]:
    """The routing labels, a (n, n_models) matrix of each item's joules per model and each
    item's answer budget (``max_tokens``)."""
    routing = run_dir / "routing"
    if not (routing / "item_costs.jsonl").is_file():
        raise ConfigError(f"{run_dir}: no routing/item_costs.jsonl (not a finished eval dir?)")
    data = load_labelled_csvs(routing)
    prompts = {it.id: it.prompt for it in read_tasks(run_dir / "tasks.jsonl")}
    joules: dict[tuple[str, str], list[float]] = {}  # (family, prompt) -> joules per model
    budgets: dict[tuple[str, str], int] = {}
    with open(routing / "item_costs.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            js = row["joules"]
            if any(js.get(m) is None for m in data.models):
                raise ConfigError(f"{row['id']}: no measured joules for every model")
            key = (str(row["family"]), prompts[row["id"]])
            joules[key] = [float(js[m]) for m in data.models]
            budgets[key] = int(row.get("max_tokens") or LEGACY_MAX_TOKENS)
    keys = list(zip(data.groups, data.texts, strict=True))
    try:
        costs = np.array([joules[k] for k in keys])
    except KeyError as exc:
        raise ConfigError(f"a routing prompt has no item_costs row: {exc}") from None
    return data, costs, np.array([budgets[k] for k in keys])


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices of ``route.random_split`` (``route train --split random``)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


Side = tuple[LabelledPrompts, np.ndarray, np.ndarray]  # labels, joules, budgets


def _index(data: LabelledPrompts, idx: np.ndarray, costs: np.ndarray, budgets: np.ndarray) -> Side:
    return data.subset(idx), costs[idx], budgets[idx]


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


def requests_for(side: LabelledPrompts, budgets: np.ndarray) -> list[Request]:
    """The requests a router sees for these prompts: each with its item's ``max_tokens``."""
    return [
        Request(id=str(i), prompt=t, max_tokens=int(b))
        for i, (t, b) in enumerate(zip(side.texts, budgets, strict=True))
    ]


def per_request_fits(side: LabelledPrompts, costs: np.ndarray, budgets: np.ndarray) -> dict:
    """``route train --cost-from items``'s fits, on one side's items."""
    rows = [
        ItemCost(str(i), g, t, int(b), dict(zip(side.models, map(float, c), strict=True)))
        for i, (g, t, b, c) in enumerate(zip(side.groups, side.texts, budgets, costs, strict=True))
    ]
    return fit_request_costs(rows, side.models)


def cost_at_quality(
    points: Sequence[tuple[float, float]], singles: Sequence[tuple[float, float]], n: int = 6
) -> list[dict[str, float | None]]:
    """At ``n`` accuracy levels between the two single models' (and up to the router's
    best): the fewest J/request a router threshold needs to reach it, beside random
    routing's (the straight line between the two single models). ``points`` and
    ``singles``: (accuracy, J/request)."""
    (a0, j0), (a1, j1) = sorted(singles)
    top = max(a1, max(a for a, _ in points))
    out = []
    for q in np.linspace(a0, top, n):
        reach = [j for a, j in points if a >= q - 1e-12]
        rand = j0 + (q - a0) / (a1 - a0) * (j1 - j0) if a1 > a0 and q <= a1 + 1e-12 else None
        if a1 <= a0:
            rand = min(j0, j1) if q <= a0 + 1e-12 else None
        out.append(
            {"accuracy": float(q), "router_j": min(reach) if reach else None, "random_j": rand}
        )
    return out


def best_per_joule(router: Router, train: Side, reqs: list[Request] | None) -> float:
    """The threshold with the most correct answers per measured joule on the training side
    (its own predicted quality, its own costs: what ``route train`` calibrates on)."""
    tr, joules, _ = train
    q = router.quality(tr.texts)
    c = router.costs_for(reqs) if reqs is not None else router.costs_for(n=len(tr))
    rows = np.arange(len(tr))
    best_t, best = 0.1, -1.0
    for t in np.linspace(-1, 1, 201):
        pick = router.choose(q, c, threshold=float(t))
        value = float(tr.labels[rows, pick].sum() / max(joules[rows, pick].sum(), 1e-12))
        if value > best + 1e-12:
            best_t, best = float(t), value
    return best_t


def score_split(train: Side, test: Side) -> dict[str, Any]:
    """Train on one side, score every strategy and the RouteLLM metrics on the other."""
    tr, tr_costs, tr_budgets = train
    te, te_costs, te_budgets = test
    mean_cost = tr_costs.mean(axis=0)
    scorer = make_scorer("tfidf", C=1.0).fit(tr.texts, tr.labels, tr.models)
    flat = Router(
        tr.models, dict(zip(tr.models, mean_cost.tolist(), strict=True)), scorer,
        threshold=0.1, objective="gain", name="tfidf",
    )  # fmt: skip
    aware = Router(
        tr.models, per_request_fits(tr, tr_costs, tr_budgets), scorer,
        threshold=0.1, objective="gain", name="tfidf",
    )  # fmt: skip
    weak, strong = int(np.argmin(mean_cost)), int(np.argmax(mean_cost))
    rows = [
        _strategy(f"always {m}", te.labels[:, j], te_costs[:, j], float(j == strong))
        for j, m in enumerate(te.models)
    ]
    n = np.arange(len(te))
    oracle = np.where(
        te.labels[:, weak] >= te.labels[:, strong],
        np.where(te.labels[:, weak] == te.labels[:, strong],
                 np.argmin(te_costs, axis=1), weak),
        strong,
    )  # fmt: skip
    row = _strategy("oracle (cheaper of the right ones)", te.labels[n, oracle],
                    te_costs[n, oracle], float((oracle == strong).mean()))  # fmt: skip
    rows.append(row)
    tr_req, te_req = requests_for(tr, tr_budgets), requests_for(te, te_budgets)
    target = float(tr.labels.mean(axis=0).max())
    q = flat.quality(te.texts)
    points: list[tuple[float, float]] = []
    for kind, router, reqs in (("mean cost", flat, None), ("per-request cost", aware, tr_req)):
        thresholds = [
            (f"router, {kind}, share {s:.2f}", threshold_for_share(router, tr.texts, s, reqs))
            for s in SHARES
        ]
        thresholds.append(
            (
                f"router, {kind}, quality=best",
                threshold_for_quality(router, tr.texts, tr.labels, target, reqs),
            )
        )
        thresholds.append((f"router, {kind}, max correct/J", best_per_joule(router, train, reqs)))
        c = router.costs_for(te_req) if reqs is not None else np.tile(mean_cost, (len(te), 1))
        for name, t in thresholds:
            pick = router.choose(q, c, threshold=t)
            share = float((pick == strong).mean())
            row = _strategy(name, te.labels[n, pick], te_costs[n, pick], share)
            row["threshold"] = float(t)
            acc_r = _mix(te.labels, weak, strong, share)
            j_r = _mix(te_costs, weak, strong, share)
            row["random_accuracy"] = acc_r
            row["random_correct_per_j"] = acc_r / j_r if j_r > 0 else None
            rows.append(row)
        if reqs is not None:  # the per-request router's whole threshold sweep on this side
            for t in np.unique(
                np.concatenate([np.linspace(-1, 1, 81), [r["threshold"] for r in rows[-5:]]])
            ):
                pick = router.choose(q, c, threshold=float(t))
                points.append((float(te.labels[n, pick].mean()), float(te_costs[n, pick].mean())))
    singles = [(float(te.labels[:, j].mean()), float(te_costs[:, j].mean())) for j in (0, 1)]
    ev = evaluate_router(flat, te.texts, te.labels)
    grid = np.asarray(ev["curve"]["x"])
    at = [int(np.argmin(np.abs(grid - x))) for x in CURVE_X]
    curve = {k: [ev["curve"][k][i] for i in at] for k in ("router", "random", "oracle")}
    cj = te_costs.mean(axis=0)
    curve["j_per_request"] = [float((1 - x) * cj[weak] + x * cj[strong]) for x in CURVE_X]
    metrics = {k: ev[k] for k in ev if k.startswith(("apgr", "cpt", "auc", "cost_to"))}
    aware_share = float(
        (np.argmin(aware.costs_for(te_req), axis=1) == weak).mean()
    )  # requests whose fitted cost has the (on average) cheaper model cheaper
    return {
        "n_train": len(tr),
        "n_test": len(te),
        "weak": tr.models[weak],
        "strong": tr.models[strong],
        "weak_cheaper_share": aware_share,
        "rows": rows,
        "metrics": metrics,
        "curve": {"x": list(CURVE_X), **curve},
        "cost_at_quality": cost_at_quality(points, singles),
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
    out["weak_cheaper_share"] = float(np.mean([r["weak_cheaper_share"] for r in results]))
    for i, row in enumerate(out["cost_at_quality"]):
        for k in row:
            vals = [r["cost_at_quality"][i][k] for r in results]
            row[k] = None if any(v is None for v in vals) else float(np.mean(vals))
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
    lines += [
        "",
        f"per-request costs: {res['weak_cheaper_share']:.0%} of the test requests have "
        f"{res['weak']} the cheaper model by the fits, the rest {res['strong']}",
        "",
        "cost at quality (per-request router, its thresholds swept on this side, vs random "
        "routing between the two models):",
        "",
        "| accuracy | router J/request | random J/request |",
        "|---:|---:|---:|",
    ]
    for r in res["cost_at_quality"]:
        lines.append(
            f"| {r['accuracy']:.3f} | {_fmt(r['router_j'], '.3f')} | {_fmt(r['random_j'], '.3f')} |"
        )
    return "\n".join(lines)


def run(run_dir: Path, seeds: int, test_fraction: float) -> dict[str, Any]:
    data, costs, budgets = load_run(run_dir)
    if len(data.models) != 2:
        raise ConfigError(f"{run_dir}: this comparison needs exactly two models")
    out: dict[str, Any] = {"run_dir": str(run_dir), "models": list(data.models)}
    items = []
    for seed in range(seeds):
        tr, te = split_indices(len(data), test_fraction, seed)
        train, test = _index(data, tr, costs, budgets), _index(data, te, costs, budgets)
        assert test[0].texts == random_split(data, test_fraction, seed)[1].texts
        items.append(score_split(train, test))
    out["held_out_items"] = _mean(items)
    out["held_out_family"] = {}
    groups = np.array(data.groups)
    for fam in sorted(set(data.groups)):
        tr, te = np.flatnonzero(groups != fam), np.flatnonzero(groups == fam)
        if tr.size == 0:
            continue
        train, test = _index(data, tr, costs, budgets), _index(data, te, costs, budgets)
        out["held_out_family"][fam] = score_split(train, test)
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
