"""``wattserve simulate``: replay a request trace through the cache and the multiplexer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from wattserve.commands.lists import names, numbers
from wattserve.commands.simulate_fitted import fmt, print_fitted, run_fitted
from wattserve.errors import ConfigError

PRESETS = ("zhu-synthetic",)


def _print_tables(rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from wattserve.console import stdout_console

    console = stdout_console()
    selectors = sorted({r["selector"] for r in rows}, key=lambda s: (not s.startswith("model"), s))
    table = Table(title="total cost (mean over seeds) per cache policy x model selector")
    for col in ("alpha", "ratio", "variant", "policy", *selectors):
        table.add_column(col, justify="right")
    idx = {
        (r["alpha"], r["ratio"], r["variant"], r["policy"], r["selector"]): r["mean_cost"]
        for r in rows
    }
    keys = []
    for r in rows:
        k = (r["alpha"], r["ratio"], r["variant"], r["policy"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        table.add_row(*[fmt(v) for v in k], *[fmt(idx.get((*k, s))) for s in selectors])
    console.print(table)
    if summary:
        t2 = Table(title="best combination vs the baseline (LFU, always model 1)")
        for col in (
            "alpha",
            "ratio",
            "variant",
            "acc",
            "baseline",
            "best",
            "best combo",
            "improvement",
            "LEC+mux",
            "vs cache alone",
            "vs mux alone (LFU)",
        ):
            t2.add_column(col, justify="right")
        for s in summary:
            t2.add_row(
                fmt(s["alpha"]),
                fmt(s["ratio"]),
                s["variant"],
                fmt(s["accuracy"]),
                fmt(s["baseline_lfu_model1"]),
                fmt(s["best"]),
                f"{s['best_policy']}+{s['best_selector']}",
                f"{s['improvement']:.2f}x",
                fmt(s["lec_mux"]),
                f"{s['lec_mux_vs_cache_alone']:.2f}x",
                f"{s['lec_mux_vs_mux_alone']:.2f}x",
            )
        console.print(t2)


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate(
        preset: str | None = typer.Option(
            None, help="built-in setting: zhu-synthetic (Zhu et al. 2306.02003)"
        ),
        trace: Path | None = typer.Option(
            None,
            help="trace CSV/JSONL: a 'query' column and cost_<model> columns; with --fits a "
            "request trace (prompt/messages + input_tokens/output_tokens per row, a served "
            "run's request log or a run directory)",
        ),
        fits: Path | None = typer.Option(
            None, help="fits.json: each answer costs its model's fitted joules (energy_j)"
        ),
        router_file: Path | None = typer.Option(
            None, "--router", help="a router saved by 'route train': picks each model"
        ),
        router_costs: str = typer.Option(
            "training", help="what the router ranks by: training (its file's costs) or fits"
        ),
        prompts: Path | None = typer.Option(
            None, help="JSONL of request_id + prompt/messages for a trace without prompts"
        ),
        route_all: bool = typer.Option(
            False, "--route-all", help="route every request, whatever its model field"
        ),
        device: str | None = typer.Option(None, help="use the fits of this device"),
        capacity_bytes: int | None = typer.Option(
            None, help="cache capacity in bytes (with --fits; as the gateway's cache)"
        ),
        policy: list[str] = typer.Option(
            ["lfu,lru,gdsf,lec,lec-lcb"], help="cache policies (comma list)"
        ),
        alpha_opt: list[str] = typer.Option(
            ["0.5,0.8"], "--alpha", help="power-law alpha of the synthetic trace (comma list)"
        ),
        ratio_opt: list[str] = typer.Option(
            ["1.5,100"], "--ratio", help="cost ratio: a model costs 1 or 1+ratio (comma list)"
        ),
        accuracy_opt: list[str] = typer.Option(
            ["0.8,1.0"], "--accuracy", help="multiplexer (selector) accuracy (comma list)"
        ),
        variant: list[str] = typer.Option(
            ["offline,online"], help="offline (known frequencies/costs) or online (comma list)"
        ),
        selector: list[str] = typer.Option(
            [],
            help="selectors beside model1 and model2 (comma list): learned (Zhu et al.'s online "
            "selector; the oracle mux@1 runs beside it), cascade, oracle, mux@ACCURACY; "
            "default: mux@ACCURACY for each --accuracy",
        ),
        popularity: str = typer.Option(
            "power", help="synthetic popularity: power (the paper's code) or notebook"
        ),
        small_share: float = typer.Option(
            0.5, help="with --popularity notebook: share of queries the small model is cheap for"
        ),
        rng: str = typer.Option(
            "numpy",
            help="synthetic draws: numpy (default_rng per seed) or paper (the paper's code: "
            "numpy's legacy generator seeded with SEED + s, its draws in its order)",
        ),
        capacity: int = typer.Option(8, help="cache capacity in entries"),
        num_prompts: int = typer.Option(
            10_000, "--num-prompts", help="requests per synthetic trace"
        ),
        num_queries: int = typer.Option(20, help="distinct queries in the synthetic trace"),
        seeds: int = typer.Option(100, help="seeds to average over (synthetic)"),
        seed: int = typer.Option(0, help="base random seed"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        as_json: bool = typer.Option(False, "--json", help="same as --format json"),
        output: Path | None = typer.Option(
            None, help="write the result here (json with --format json)"
        ),
    ) -> None:
        """Total cost of each {LFU, LRU, GDSF, LEC} x {model 1, model 2, multiplexer} pairing."""
        from rich.progress import Progress

        from wattserve.sim.selectors import Selector, parse_selector
        from wattserve.sim.zhu import POLICIES, ZhuConfig, run_zhu, summarise, summarise_learned

        if fmt not in ("table", "json"):
            raise ConfigError("--format must be table or json")
        if as_json:
            fmt = "json"
        alpha = numbers(alpha_opt, "--alpha")
        ratio = numbers(ratio_opt, "--ratio")
        accuracy = numbers(accuracy_opt, "--accuracy")
        policy, variant, selector = names(policy), names(variant), names(selector)
        if (preset is None) == (trace is None):
            raise ConfigError("give exactly one of --preset zhu-synthetic or --trace FILE")
        pols = [p.lower() for p in policy]
        bad = [p for p in pols if p not in POLICIES]
        if bad:
            raise ConfigError(f"unknown policy {bad[0]!r}: choose from {', '.join(POLICIES)}")
        bad_v = [v for v in variant if v not in ("offline", "online")]
        if bad_v:
            raise ConfigError(f"unknown variant {bad_v[0]!r}: offline or online")
        if rng not in ("numpy", "paper"):
            raise ConfigError(f"unknown --rng {rng!r}: numpy or paper")
        if rng == "paper" and popularity != "power":
            raise ConfigError("--rng paper draws the power popularity only")
        if capacity < 1 or seeds < 1 or num_prompts < 1 or num_queries < 1:
            raise ConfigError("capacity, seeds, --num-prompts and --num-queries must be positive")
        if fits is not None or router_file is not None:
            if fits is None or trace is None:
                raise ConfigError("--router replays a --trace with --fits (the joules)")
            result = run_fitted(
                trace,
                fits,
                router_file,
                router_costs,
                prompts,
                route_all,
                device,
                pols,
                capacity,
                capacity_bytes,
            )
            text = json.dumps(result, indent=2)
            if output is not None:
                output.write_text(text)
            if fmt == "json":
                if output is None:
                    typer.echo(text)
                return
            print_fitted(result)
            return
        if any(not 0 <= a <= 1 for a in accuracy):
            raise ConfigError("--accuracy must be in [0, 1]")
        sel_labels = [parse_selector(x).label for x in selector] or None
        if sel_labels is not None and "learned" in sel_labels and "mux@1" not in sel_labels:
            sel_labels.append("mux@1")  # the oracle's figure beside the learned selector
        with Progress(transient=True) as bar:
            if preset is not None:
                if preset != "zhu-synthetic":
                    raise ConfigError(
                        f"unknown preset {preset!r}: choose from {', '.join(PRESETS)}"
                    )
                if any(a <= 0 for a in alpha):
                    raise ConfigError("--alpha must be positive")
                cfg = ZhuConfig(
                    alphas=tuple(alpha),
                    ratios=tuple(ratio),
                    accuracies=tuple(accuracy),
                    variants=tuple(variant),
                    policies=tuple(pols),
                    n_queries=num_queries,
                    n_requests=num_prompts,
                    capacity=capacity,
                    seeds=seeds,
                    base_seed=seed,
                    selectors=sel_labels,
                    popularity=popularity,
                    small_share=small_share,
                    rng=rng,
                )
                task = bar.add_task("simulating", total=1.0)
                rows = run_zhu(cfg, progress=lambda n: bar.advance(task, n))
                config = {"preset": preset, **{k: v for k, v in vars(cfg).items() if k != "extra"}}
            else:
                from wattserve.sim.replay import replay_table
                from wattserve.sim.trace import load_trace

                assert trace is not None  # exactly one of --preset and --trace, checked above
                scen, models = load_trace(trace, seed=seed)
                sels = [Selector("model", i) for i in range(len(models))]
                sels += [Selector("mux", accuracy=a) for a in accuracy] if len(models) > 1 else []
                task = bar.add_task("simulating", total=1.0)
                rows = replay_table(
                    scen, sels, pols, variant, capacity, progress=lambda n: bar.advance(task, n)
                )
                config = {
                    "trace": str(trace),
                    "models": models,
                    "capacity": capacity,
                    "policies": pols,
                    "variants": list(variant),
                    "accuracies": list(accuracy),
                }
        summary = summarise(rows, accuracy) if "lfu" in pols and sel_labels is None else []
        learned = summarise_learned(rows) if "lfu" in pols else []
        if fmt == "json":
            text = json.dumps(
                {"config": config, "rows": rows, "summary": summary, "learned": learned},
                indent=2,
                default=list,
            )
            if output is not None:
                output.write_text(text)
            else:
                typer.echo(text)
            return
        _print_tables(rows, summary)
        _print_learned(learned)
        if output is not None:
            output.write_text(
                json.dumps(
                    {"config": config, "rows": rows, "summary": summary}, indent=2, default=list
                )
            )


def _learned_cell(r: dict[str, Any], c: str) -> str:
    """Mean cost, then the improvement as ratio of means / mean of per-seed ratios /
    median per-seed ratio."""
    if not r[c]:
        return "-"
    avg = [r.get(c + k) for k in ("_improvement", "_mean_ratio", "_median_ratio")]
    return f"{fmt(r[c])} (" + " / ".join("-" if x is None else f"{x:.1f}x" for x in avg) + ")"


def _print_learned(learned: list[dict[str, Any]]) -> None:
    if not learned:
        return
    from rich.table import Table

    from wattserve.console import stdout_console

    t = Table(
        title="Zhu et al.'s online algorithm vs the baseline (LFU, always model 1): mean cost "
        "(improvement: ratio of mean costs / mean of per-seed ratios / median per-seed ratio)"
    )
    for col in ("alpha", "ratio", "variant", "baseline"):
        t.add_column(col, justify="right")
    combos = ("lec-lcb+learned", "lec-lcb+mux@1", "lec+learned", "lec+mux@1")
    for c in combos:
        t.add_column(c, justify="right")
    for r in learned:
        cells = [_learned_cell(r, c) for c in combos]
        t.add_row(
            fmt(r["alpha"]),
            fmt(r["ratio"]),
            r["variant"],
            fmt(r["baseline_lfu_model1"]),
            *cells,
        )
    stdout_console().print(t)
