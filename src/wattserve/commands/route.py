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


def _load(data: Path, label_range: str | None = None) -> Any:
    from wattserve.route.data import load_labelled_csvs, parse_label_range

    rng = parse_label_range(label_range) if label_range is not None else None
    if not data.exists():
        raise ConfigError(f"routing data not found: {data} (pass --data DIR_OR_CSV)")
    return load_labelled_csvs(data, rng)


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
            "tfidf",
            help="tfidf, tfidf-embed (TF-IDF blended with prompt and answer-option "
            "embeddings), embed-options, embed (the embed ones need the 'semantic' extra; "
            "WATTSERVE_EMBED_CACHE=DIR keeps embeddings on disk) or prior",
        ),
        cost: list[str] = typer.Option([], help="MODEL=COST (J, FLOPs or money; repeat)"),
        cost_from: str = typer.Option(
            "flag",
            "--cost-from",
            help="flag: one cost per model (--cost); items: per-request costs, a fit of "
            "each model's joules per item (routing/item_costs.jsonl beside --data, written "
            "by wattserve eval) in prompt length and max_tokens, on the training side",
        ),
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
        split: str = typer.Option(
            "none",
            help="train on all the data (none) or on the training side of a random or "
            "subject split ('route eval --router FILE --split ...' scores the other side)",
        ),
        test_fraction: float = typer.Option(0.3, help="share held out with --split"),
        seed: int = typer.Option(0, help="split seed with --split"),
        label_range: str | None = typer.Option(
            None, help="LO:HI of graded labels, scaled to [0, 1] (MT-Bench judge scores: 1:10)"
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
        from wattserve.commands.route_eval import split_sides

        if cost_from not in ("flag", "items"):
            raise ConfigError(f"--cost-from must be flag or items, not {cost_from!r}")
        if cost_from == "items" and cost:
            raise ConfigError("--cost-from items fits the costs: leave out --cost")
        d = _load(data, label_range)
        if split != "none":
            d = split_sides(d, split, test_fraction, seed)[0]
        costs: dict[str, Any] = _costs(cost, d.models)
        requests = None
        if cost_from == "items":
            from wattserve.evaluate.costfit import item_requests, request_cost_fits

            costs = request_cost_fits(data, d.models, set(d.texts))
            requests = item_requests(data, d.texts)
        sc = _scorer(scorer, c).fit(d.texts, d.labels, d.models)
        router = Router(
            d.models,
            costs,
            sc,
            threshold=0.5 if rule == "threshold" else 0.1,
            name=name,
            objective=rule,
        )
        if target_share is not None:
            router.threshold = threshold_for_share(
                router, list(d.texts), target_share, requests=requests
            )
        elif target_quality is not None:
            router.threshold = threshold_for_quality(
                router, list(d.texts), d.labels, target_quality, requests=requests
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
        router_file: Path | None = typer.Option(
            None,
            "--router",
            help="evaluate this trained router ('route train' output) instead of training one; "
            "{seed} in the name is replaced by each split seed",
        ),
        split: str | None = typer.Option(
            None,
            help="random, subject (whole subjects held out) or none (all the data; with "
            "--router only). Default: random, or none with --router",
        ),
        test_fraction: float = typer.Option(
            0.3, help="share of prompts (or subjects' prompts) held out"
        ),
        seed: int = typer.Option(0, help="split seed (the first one with --seeds)"),
        seeds: int = typer.Option(1, help="repeat over this many split seeds and report the mean"),
        scorer: str = typer.Option(
            "tfidf",
            help="tfidf, tfidf-words (no shape features), tfidf-embed, embed-options, embed "
            "or prior (no --router)",
        ),
        cost: list[str] = typer.Option([], help="MODEL=COST (repeat; no --router)"),
        c: float = typer.Option(1.0, "--C", help="inverse regularisation (no --router)"),
        label_range: str | None = typer.Option(
            None, help="LO:HI of graded labels, scaled to [0, 1] (MT-Bench judge scores: 1:10)"
        ),
        num_results: int | None = typer.Option(
            None,
            help="RouteLLM's quantile thresholds (k bins); default: every distinct score",
        ),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        as_json: bool = typer.Option(False, "--json", help="same as --format json"),
        output: Path | None = typer.Option(
            None, help="write the full result (with curves) as JSON"
        ),
        plot: Path | None = typer.Option(None, help="save the cost-quality curve as an image"),
        objective: str = typer.Option(
            "gain", help="gain or threshold (the rule whose knob is swept; no --router)"
        ),
    ) -> None:
        """RouteLLM's cost-quality evaluation (APGR, CPT) on held-out prompts beside random
        routing and the oracle, for a router trained here or read with --router."""
        from wattserve.commands import route_eval as ev
        from wattserve.route import Router

        split = split or ("none" if router_file is not None else "random")
        if split not in ev.SPLITS:
            raise ConfigError(f"--split must be one of {', '.join(ev.SPLITS)}, not {split!r}")
        if split == "none" and router_file is None:
            raise ConfigError("--split none evaluates a trained router: pass --router FILE")
        if router_file is not None and cost:
            raise ConfigError("--cost applies when training here; a --router file has its costs")
        if not 0 < test_fraction < 1:
            raise ConfigError("--test-fraction must be between 0 and 1")
        rule = _objective(objective)
        if fmt not in ("table", "json"):
            raise ConfigError(f"--format must be table or json, not {fmt!r}")
        if c <= 0:
            raise ConfigError("--C must be positive")
        if seeds < 1:
            raise ConfigError("--seeds must be at least 1")
        if num_results is not None and num_results < 1:
            raise ConfigError("--num-results must be at least 1")
        if router_file is not None:  # every file must exist before any work starts
            for s in range(seed, seed + seeds):
                p = ev.router_path(router_file, s, seeds)
                if not p.is_file():
                    raise ConfigError(f"router file not found: {p}")
        d = _load(data, label_range)

        def make_router(train_set: Any, s: int) -> Any:
            if router_file is not None:
                r = Router.load(ev.router_path(router_file, s, seeds))
                missing = [m for m in r.models if m not in d.models]
                if missing:
                    raise ConfigError(
                        f"the router routes to {', '.join(missing)}, which the data has no "
                        f"labels for (it labels {', '.join(d.models)})"
                    )
                return r
            if len(train_set) < 10:
                raise ConfigError("too few prompts on the training side of the split")
            sc = _scorer(scorer, c).fit(train_set.texts, train_set.labels, d.models)
            return Router(d.models, _costs(cost, d.models), sc, objective=rule)

        runs = ev.run_seeds(
            d, split, test_fraction, list(range(seed, seed + seeds)), make_router, num_results
        )
        for r in runs:
            r.update(
                router=None
                if router_file is None
                else str(ev.router_path(router_file, r["seed"], seeds)),
                scorer=scorer if router_file is None else None,
            )
        res = ev.mean_runs(runs)
        if output is not None:
            output.write_text(json.dumps(res, indent=2))
        if plot is not None:
            ev.plot_result(res, plot)
        if fmt == "json" or as_json:
            typer.echo(json.dumps(ev.summary(res), indent=2))
            return
        ev.print_result(res)

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
