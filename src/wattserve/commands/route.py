"""``wattserve route``: train a model router, evaluate it on held-out prompts, route a prompt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import typer

from wattserve.errors import ConfigError

DEFAULT_DATA = Path("../shared/data/routing/mmlu")


def _costs(specs: list[str], models: tuple[str, ...]) -> dict[str, float]:
    """``NAME=COST`` pairs; models not named get 10**i in column order (cheapest first)."""
    out = {m: float(10**i) for i, m in enumerate(models)}
    for spec in specs:
        name, sep, value = spec.rpartition("=")
        if not sep or name not in models:
            raise ConfigError(
                f"--cost {spec!r}: use MODEL=COST with MODEL one of {', '.join(models)}"
            )
        try:
            out[name] = float(value)
        except ValueError:
            raise ConfigError(f"--cost {spec!r}: the cost must be a number") from None
        if out[name] < 0:
            raise ConfigError("costs must be non-negative")
    return out


def _objective(value: str) -> Literal["gain", "threshold"]:
    if value == "gain":
        return "gain"
    if value == "threshold":
        return "threshold"
    raise ConfigError(f"--objective must be gain or threshold, not {value!r}")


def _load(data: Path) -> Any:
    from wattserve.route.data import load_labelled_csvs

    if not data.exists():
        raise ConfigError(f"routing data not found: {data} (pass --data DIR_OR_CSV)")
    return load_labelled_csvs(data)


def _scorer(name: str, C: float) -> Any:
    from wattserve.route.scorers import make_scorer

    return make_scorer(name) if name == "prior" else make_scorer(name, C=C)


def register(app: typer.Typer) -> None:
    route_app = typer.Typer(
        help="Train, evaluate and apply a model router (multiplexer).", no_args_is_help=True
    )
    app.add_typer(route_app, name="route")

    @route_app.command("train")
    def train(
        data: Path = typer.Option(
            DEFAULT_DATA, help="CSV or folder of CSVs: prompt + one label column per model"
        ),
        output: Path = typer.Option(Path("router.pkl"), help="where to save the trained router"),
        scorer: str = typer.Option(
            "tfidf", help="tfidf, embed (needs the 'semantic' extra) or prior"
        ),
        cost: list[str] = typer.Option([], help="MODEL=COST (J, FLOPs or money; repeat)"),
        threshold: float | None = typer.Option(None, help="fixed quality threshold"),
        target_share: float | None = typer.Option(
            None, help="calibrate: share of calls to the most expensive model"
        ),
        target_quality: float | None = typer.Option(
            None, help="calibrate: mean quality to reach (on the data)"
        ),
        c: float = typer.Option(
            1.0, "--C", help="inverse regularisation of the logistic regressions"
        ),
        name: str = typer.Option("tfidf", help="router name used in router-<name>-<threshold>"),
        objective: str = typer.Option(
            "gain",
            help="gain (quality gain worth its cost) or threshold "
            "(cheapest model meeting a quality threshold)",
        ),
    ) -> None:
        """Train a scorer on labelled prompts, calibrate the threshold, save the router."""
        from wattserve.route import Router, threshold_for_quality, threshold_for_share

        if sum(x is not None for x in (threshold, target_share, target_quality)) > 1:
            raise ConfigError("give at most one of --threshold, --target-share, --target-quality")
        rule = _objective(objective)
        for flag, value in (("--target-share", target_share), ("--target-quality", target_quality)):
            if value is not None and not 0 <= value <= 1:
                raise ConfigError(f"{flag} must be in [0, 1]")
        if c <= 0:
            raise ConfigError("--C must be positive")
        d = _load(data)
        sc = _scorer(scorer, c).fit(d.texts, d.labels, d.models)
        router = Router(
            d.models,
            _costs(cost, d.models),
            sc,
            threshold=0.5 if rule == "threshold" else 0.1,
            name=name,
            objective=rule,
        )
        if target_share is not None:
            router.threshold = threshold_for_share(router, list(d.texts), target_share)
        elif target_quality is not None:
            router.threshold = threshold_for_quality(
                router, list(d.texts), d.labels, target_quality
            )
        elif threshold is not None:
            router.threshold = threshold
        router.save(output)
        typer.echo(
            f"trained {scorer} router on {len(d)} prompts for {', '.join(d.models)}; "
            f"threshold {router.threshold:.4f}; saved to {output}"
        )

    @route_app.command("eval")
    def evaluate(
        data: Path = typer.Option(
            DEFAULT_DATA, help="CSV or folder of CSVs: prompt + one label column per model"
        ),
        split: str = typer.Option("random", help="random, or subject (whole subjects held out)"),
        test_fraction: float = typer.Option(
            0.3, help="share of prompts (or subjects' prompts) held out"
        ),
        seed: int = typer.Option(0, help="split seed (the first one with --seeds)"),
        seeds: int = typer.Option(1, help="repeat over this many split seeds and report the mean"),
        scorer: str = typer.Option(
            "tfidf", help="tfidf, tfidf-words (no shape features), embed or prior"
        ),
        cost: list[str] = typer.Option([], help="MODEL=COST (repeat)"),
        c: float = typer.Option(1.0, "--C", help="inverse regularisation"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        as_json: bool = typer.Option(False, "--json", help="same as --format json"),
        output: Path | None = typer.Option(
            None, help="write the full result (with curves) as JSON"
        ),
        plot: Path | None = typer.Option(None, help="save the cost-quality curve as an image"),
        objective: str = typer.Option(
            "gain", help="gain or threshold (the rule whose knob is swept)"
        ),
    ) -> None:
        """Cost-quality curve on a held-out split beside random routing and the oracle."""
        from wattserve.route import Router, evaluate_router, group_split, random_split

        if split not in ("random", "subject"):
            raise ConfigError("--split must be random or subject")
        if not 0 < test_fraction < 1:
            raise ConfigError("--test-fraction must be between 0 and 1")
        rule = _objective(objective)
        if fmt not in ("table", "json"):
            raise ConfigError(f"--format must be table or json, not {fmt!r}")
        if c <= 0:
            raise ConfigError("--C must be positive")
        if seeds < 1:
            raise ConfigError("--seeds must be at least 1")
        d = _load(data)
        runs = []
        for s in range(seed, seed + seeds):
            train_set, test_set = (random_split if split == "random" else group_split)(
                d, test_fraction, s
            )
            if len(train_set) < 10 or len(test_set) < 10:
                raise ConfigError("too few prompts on one side of the split")
            sc = _scorer(scorer, c).fit(train_set.texts, train_set.labels, d.models)
            router = Router(d.models, _costs(cost, d.models), sc, objective=rule)
            r = evaluate_router(router, list(test_set.texts), test_set.labels)
            r.update(
                split=split,
                seed=s,
                scorer=scorer,
                objective=objective,
                n_train=len(train_set),
                test_groups=sorted(set(test_set.groups)) if split == "subject" else None,
            )
            runs.append(r)
        res = runs[0] if seeds == 1 else _mean(runs)
        if output is not None:
            output.write_text(json.dumps(res, indent=2))
        if plot is not None:
            _plot(res, plot)
        if fmt == "json" or as_json:
            typer.echo(json.dumps({k: v for k, v in res.items() if k != "curve"}, indent=2))
            return
        _print(res)

    @route_app.command("decide")
    def decide(
        router_file: Path = typer.Option(..., "--router", help="a router saved by 'route train'"),
        prompt: str = typer.Option(..., help="the prompt to route"),
        threshold: float | None = typer.Option(None, help="override the saved threshold"),
    ) -> None:
        """Route one prompt and print the decision with its reason and scores."""
        from wattserve.route import Router
        from wattserve.types import Request

        r = Router.load(router_file)
        if threshold is not None:
            r = r.with_threshold(threshold)
        d = r.route(Request(id="cli", prompt=prompt))
        typer.echo(
            json.dumps(
                {
                    "model": d.model,
                    "reason": d.reason,
                    "scores": dict(d.scores),
                    "costs": dict(d.costs),
                    "cost_source": r.cost_source,
                },
                indent=2,
            )
        )


def _mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of the numeric metrics over seeds (curves averaged point-wise), plus the worst
    seed's share of the curve above random."""
    import numpy as np

    out = dict(runs[0])
    for k, v in runs[0].items():
        if isinstance(v, float) and all(isinstance(r.get(k), float) for r in runs):
            out[k] = float(np.mean([r[k] for r in runs]))
        elif isinstance(v, float) or v is None:
            vals = [r.get(k) for r in runs]
            nums = [float(x) for x in vals if x is not None]
            out[k] = None if len(nums) < len(vals) else float(np.mean(nums))
    out["curve"] = {
        c: np.mean([r["curve"][c] for r in runs], axis=0).tolist() for c in runs[0]["curve"]
    }
    out["above_random_fraction_min"] = float(min(r["above_random_fraction"] for r in runs))
    out["seeds"] = [r["seed"] for r in runs]
    out["per_seed"] = [{k: v for k, v in r.items() if k != "curve"} for r in runs]
    return out


def _print(res: dict[str, Any]) -> None:
    from rich.table import Table

    from wattserve.console import stdout_console

    seeds = f"mean of seeds {res['seeds']}, " if "seeds" in res else ""
    t = Table(
        title=f"router evaluation ({res['split']} split, {seeds}{res['n']} held-out prompts, "
        f"weak {res['weak']} {res['weak_quality']:.3f}, "
        f"strong {res['strong']} {res['strong_quality']:.3f})"
    )
    for col in ("metric", "router", "random", "oracle"):
        t.add_column(col, justify="right")

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    t.add_row(
        "area under cost-quality curve", f(res["auc"]), f(res["auc_random"]), f(res["auc_oracle"])
    )
    t.add_row("APGR (gap recovered, avg)", f(res["apgr"]), "0.500", "-")
    for p in (50, 80, 95):
        t.add_row(
            f"cost to recover {p}% of the gap", f(res[f"cpt{p}"]), f(res[f"cpt{p}_random"]), "-"
        )
    t.add_row(
        "cost to reach 95% of strong quality",
        f(res["cost_to_95pct_strong"]),
        f(res["cost_to_95pct_strong_random"]),
        "-",
    )
    t.add_row("share of curve above random", f(res["above_random_fraction"]), "-", "-")
    if "above_random_fraction_min" in res:
        t.add_row("  worst seed", f(res["above_random_fraction_min"]), "-", "-")
    t.add_row(
        "oracle: cost / quality",
        "-",
        "-",
        f"{res['oracle_cost']:.3f} / {res['oracle_quality']:.3f}",
    )
    console = stdout_console()
    console.print(t)
    console.print(
        "cost is normalised: 0 = always the cheapest model, 1 = always the most expensive"
    )


def _plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cv = res["curve"]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(cv["x"], cv["router"], label=f"router (AUC {res['auc']:.3f})")
    ax.plot(cv["x"], cv["random"], "--", label=f"random (AUC {res['auc_random']:.3f})")
    ax.plot(cv["x"], cv["oracle"], ":", label=f"oracle (AUC {res['auc_oracle']:.3f})")
    ax.set_xlabel("normalised cost (share of strong-model calls)")
    ax.set_ylabel("quality (accuracy)")
    ax.set_title(f"{res['split']} split")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
