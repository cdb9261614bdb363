"""``wattserve route eval``'s work: routers per split seed (trained here, or read from files
that ``route train`` wrote), RouteLLM's metrics per seed, their mean, the table and the plot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from wattserve.errors import ConfigError

SPLITS = ("none", "random", "subject")


def split_sides(data: Any, split: str, test_fraction: float, seed: int) -> tuple[Any, Any]:
    """(train side, held-out side) of ``data``; ``none`` holds out everything."""
    from wattserve.route import group_split, random_split

    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    if split == "none":
        return data.subset([]), data
    if not 0 < test_fraction < 1:
        raise ConfigError("--test-fraction must be between 0 and 1")
    return (random_split if split == "random" else group_split)(data, test_fraction, seed)


def router_path(template: Path, seed: int, seeds: int) -> Path:
    """The router file for a seed: ``{seed}`` in the name is replaced by the seed."""
    if "{seed}" in str(template):
        return Path(str(template).replace("{seed}", str(seed)))
    if seeds > 1:
        raise ConfigError(
            "one --router file for several seeds: put {seed} in its name "
            "(e.g. --router 'router-{seed}.pkl'), one file trained per split seed"
        )
    return template


def run_seeds(
    data: Any,
    split: str,
    test_fraction: float,
    seeds: list[int],
    make_router: Callable[[Any, int], Any],
    num_results: int | None,
) -> list[dict[str, Any]]:
    """Evaluate ``make_router(train side, seed)`` on each seed's held-out side."""
    from wattserve.route import evaluate_router

    runs = []
    for s in seeds:
        train_set, test_set = split_sides(data, split, test_fraction, s)
        if len(test_set) < 10:
            raise ConfigError("too few prompts held out to evaluate on (need 10)")
        router = make_router(train_set, s)
        labels = test_set.labels[:, [data.models.index(m) for m in router.models]]
        r = evaluate_router(router, list(test_set.texts), labels, num_results)
        r.update(
            split=split,
            seed=s,
            objective=router.objective,
            n_train=len(train_set),
            test_groups=sorted(set(test_set.groups)) if split == "subject" else None,
        )
        runs.append(r)
    return runs


def mean_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of the numeric metrics over seeds (curves averaged point-wise), the worst seed's
    share of the curve above random and its CPT(95%), and every seed's figures."""
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[0])
    out.pop("points", None)
    for k, v in runs[0].items():
        if isinstance(v, float) or (v is None and k.startswith(("cpt", "cost_to"))):
            vals = [r.get(k) for r in runs]
            nums = [float(x) for x in vals if x is not None]
            out[k] = None if len(nums) < len(vals) else float(np.mean(nums))
    out["n"] = int(sum(r["n"] for r in runs))
    out["curve"] = {
        c: np.mean([r["curve"][c] for r in runs], axis=0).tolist() for c in runs[0]["curve"]
    }
    out["above_random_fraction_min"] = float(min(r["above_random_fraction"] for r in runs))
    cpts = [r["cpt95"] for r in runs]
    out["cpt95_max"] = None if any(x is None for x in cpts) else float(max(cpts))
    out["seeds"] = [r["seed"] for r in runs]
    out["per_seed"] = [{k: v for k, v in r.items() if k not in ("curve", "points")} for r in runs]
    return out


def summary(res: dict[str, Any]) -> dict[str, Any]:
    """The result without its curves and points (what ``--format json`` prints)."""
    return {k: v for k, v in res.items() if k not in ("curve", "points")}


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def print_result(res: dict[str, Any]) -> None:
    from rich.table import Table

    from wattserve.console import stdout_console

    seeds = f"mean of seeds {res['seeds']}, " if "seeds" in res else ""
    held = "all prompts" if res["split"] == "none" else f"{res['split']} split"
    t = Table(
        title=f"router evaluation ({held}, {seeds}{res['n']} held-out prompts, "
        f"weak {res['weak']} {res['weak_quality']:.3f}, "
        f"strong {res['strong']} {res['strong_quality']:.3f})"
    )
    for col in ("metric", "router", "random", "oracle"):
        t.add_column(col, justify="right")
    t.add_row(
        "area under cost-quality curve",
        _f(res["auc"]),
        _f(res["auc_random"]),
        _f(res["auc_oracle"]),
    )
    t.add_row("APGR (gap recovered, avg)", _f(res["apgr"]), "0.500", "-")
    for p in (20, 50, 80, 95):
        t.add_row(
            f"CPT({p}%): strong calls for {p}% of the gap",
            _f(res[f"cpt{p}"]),
            _f(res[f"cpt{p}_random"]),
            "-",
        )
    t.add_row(
        "cost to reach 95% of strong quality",
        _f(res["cost_to_95pct_strong"]),
        _f(res["cost_to_95pct_strong_random"]),
        "-",
    )
    t.add_row("share of curve above random", _f(res["above_random_fraction"]), "-", "-")
    if "above_random_fraction_min" in res:
        t.add_row("  worst seed", _f(res["above_random_fraction_min"]), "-", "-")
    t.add_row(
        "oracle: cost / quality",
        "-",
        "-",
        f"{res['oracle_cost']:.3f} / {res['oracle_quality']:.3f}",
    )
    console = stdout_console()
    console.print(t)
    if "per_seed" in res:
        per = Table(title="per seed")
        for col in ("seed", "held out", "APGR", "CPT(50%)", "CPT(80%)", "CPT(95%)", "above"):
            per.add_column(col, justify="right")
        for r in res["per_seed"]:
            per.add_row(
                str(r["seed"]),
                str(r["n"]),
                _f(r["apgr"]),
                _f(r["cpt50"]),
                _f(r["cpt80"]),
                _f(r["cpt95"]),
                _f(r["above_random_fraction"]),
            )
        console.print(per)
    axis = (
        "strong-call share (0 = always the weak model, 1 = always the strong one)"
        if res.get("x_axis") == "strong_share"
        else "normalised cost (0 = always the cheapest model, 1 = always the most expensive)"
    )
    console.print(f"x axis: {axis}; CPT by linear interpolation, APGR by the trapezoid rule")


def plot_result(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cv = res["curve"]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(cv["x"], cv["router"], label=f"router (APGR {res['apgr']:.3f})")
    ax.plot(cv["x"], cv["random"], "--", label=f"random (AUC {res['auc_random']:.3f})")
    ax.plot(cv["x"], cv["oracle"], ":", label=f"oracle (AUC {res['auc_oracle']:.3f})")
    ax.set_xlabel(
        "share of strong-model calls" if res.get("x_axis") == "strong_share" else "normalised cost"
    )
    ax.set_ylabel("quality")
    ax.set_title(f"{res['split']} split")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
