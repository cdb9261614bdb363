"""``wattserve plan``: energy-optimal, quality-aware offline assignment of queries to targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from wattserve.commands.fit import DefaultGroup


def register(app: typer.Typer) -> None:
    plan_app = typer.Typer(
        cls=DefaultGroup,
        no_args_is_help=True,
        help="Plan a query batch across (model, device) targets at least energy: "
        "`wattserve plan --queries Q --targets T` (same as `plan run`); "
        "`wattserve plan queries` makes a query set.",
    )
    app.add_typer(plan_app, name="plan")

    @plan_app.command("run")
    def plan_run(
        queries: Path = typer.Option(
            ...,
            "--queries",
            help="JSONL/CSV: id, input_tokens, output_tokens [, deadline_s, quality:<target>].",
        ),
        targets: Path = typer.Option(
            ...,
            "--targets",
            help="YAML/JSON: fits file and targets (model, device, quality, slots, capacity_s, "
            "idle_power_w, min_share, gpus_per_instance).",
        ),
        fits: Path | None = typer.Option(
            None, "--fits", help="Fits JSON (overrides the one named in the targets file)."
        ),
        quality_target: float | None = typer.Option(
            None, "--quality-target", help="Mean quality the plan must reach."
        ),
        makespan_s: float | None = typer.Option(
            None,
            "--makespan-s",
            min=0.0,
            help="All queries done within this many seconds (capacity = slots x makespan).",
        ),
        objective: str = typer.Option(
            "energy",
            "--objective",
            help="'energy' (min energy s.t. quality) or 'weighted' "
            "(zeta*energy_norm - (1-zeta)*quality_norm).",
        ),
        zeta: str = typer.Option(
            "0,0.25,0.5,0.75,1",
            "--zeta",
            help="Zeta values swept by --objective weighted: comma-separated, or START:STOP:STEP "
            "(0:1:0.1 is the thesis sweep).",
        ),
        normalise: str = typer.Option(
            "global",
            "--normalise",
            help="Weighted objective: 'global' min-max over all (query, target) pairs (the thesis; "
            "a weighted sum of total energy and quality) or 'per-query' (each query's maximum).",
        ),
        accuracy_weighting: str = typer.Option(
            "none",
            "--accuracy-weighting",
            help="'none' (quality as given) or 'tokens': A_K x (input + output tokens), so mean "
            "quality is the token-weighted accuracy.",
        ),
        min_share: float | None = typer.Option(
            None,
            "--min-share",
            min=0.0,
            max=1.0,
            help="Least fraction of the queries every target serves (a target's min_share in the "
            "targets file takes precedence).",
        ),
        gpu_budget: str | None = typer.Option(
            None,
            "--gpu-budget",
            help="GPUs for model instances (gpus_per_instance per target): N over all targets, or "
            "DEVICE=N[,DEVICE=N] per device. Instances per target become plan decisions (MILP).",
        ),
        solver: str = typer.Option(
            "auto", "--solver", help="auto, milp, lp-round, lagrange, greedy."
        ),
        time_limit_s: float = typer.Option(
            60.0, "--time-limit", min=1.0, help="Solver time limit in seconds."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the random baseline."),
        output: Path = typer.Option(
            Path("schedule.json"), "--output", "-o", help="Where to write the Schedule JSON."
        ),
        export_requests: Path | None = typer.Option(
            None,
            "--export-requests",
            help="Also write one trace JSONL per target here "
            "(replay each with `wattserve bench --dataset-name trace`).",
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print the written JSON to stdout (tables and notes on stderr)."
        ),
    ) -> None:
        """Solve the plan, compare it with the baselines, write the Schedule JSON."""
        import warnings

        import numpy as np
        from rich.console import Console
        from rich.table import Table

        from wattserve.console import print_json, stdout_console
        from wattserve.errors import ConfigError
        from wattserve.fit import ExtrapolationWarning
        from wattserve.plan import baselines, build_problem, compare, solve
        from wattserve.plan.io import parse_gpu_budget, quality_matrix, read_queries, read_targets
        from wattserve.plan.problem import NORMALISE, WEIGHTING
        from wattserve.readers import read_json

        console = Console(stderr=True) if as_json else stdout_console()
        if normalise not in NORMALISE:
            raise ConfigError(
                f"--normalise must be one of {', '.join(NORMALISE)}, not {normalise!r}"
            )
        if accuracy_weighting not in WEIGHTING:
            raise ConfigError(
                f"--accuracy-weighting must be one of {', '.join(WEIGHTING)}, "
                f"not {accuracy_weighting!r}"
            )
        if objective not in ("energy", "weighted"):
            raise ConfigError(f"unknown objective {objective!r}; use 'energy' or 'weighted'")
        budget = parse_gpu_budget(gpu_budget)
        zetas = _zetas(zeta) if objective == "weighted" else []
        qs = read_queries(queries)
        tgs = read_targets(targets, fits)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ExtrapolationWarning)
            p = build_problem(
                qs.input_tokens,
                qs.output_tokens,
                tgs,
                query_ids=qs.ids,
                deadline_s=qs.deadline_s,
                quality=quality_matrix(qs, tgs),
                quality_target=quality_target,
                makespan_s=makespan_s,
                normalise=normalise,
                accuracy_weighting=accuracy_weighting,
                min_share=min_share,
                gpu_budget=budget,
            )
        for w in caught[:3]:
            console.print(f"[yellow]warning:[/yellow] {w.message}")
        if objective == "weighted":
            _sweep(p, zetas, solver, time_limit_s, seed, output, console)
            if as_json:
                print_json(read_json(output))
            return
        sched = solve(p, solver, time_limit_s=time_limit_s)
        assign = np.array([p.target_names.index(sched.assignment[q]) for q in p.query_ids])
        rows = compare(p, {f"plan ({sched.solver})": assign, **baselines(p, seed)})
        t = Table(title=f"{p.n} queries x {p.T} targets: {sched.objective}")
        checks = ["meets_quality", "meets_capacity", "meets_deadlines"]
        checks += ["meets_min_share"] if p.has_min_share else []
        checks += ["meets_gpu_budget"] if p.budgets else []
        for c in ("plan", "energy J", "x plan", "mean quality", "makespan s"):
            t.add_column(c, justify="left" if c == "plan" else "right")
        for chk in checks:
            t.add_column(chk.removeprefix("meets_").replace("_", " "), justify="right")
        for r in rows:
            t.add_row(
                r["plan"],
                f"{r['energy_j']:.4g}",
                f"{r['energy_vs_plan']:.2f}",
                f"{r['mean_quality']:.4f}",
                f"{r['makespan_s']:.4g}",
                *("ok" if r[chk] else "[red]no[/red]" for chk in checks),
            )
        console.print(t)
        gap = "-" if sched.optimality_gap is None else f"{sched.optimality_gap:.2e}"
        console.print(
            f"solver {sched.solver}: {sched.solve_time_s:.2f} s, gap {gap}; "
            f"load s: " + ", ".join(f"{k} {v:.4g}" for k, v in sched.target_load_s.items())
        )
        output.parent.mkdir(parents=True, exist_ok=True)
        k = np.arange(p.n)
        per_query = [
            {
                "id": q,
                "target": p.target_names[t],
                "energy_j": float(e),
                "runtime_s": float(r),
                "quality": float(ql),
            }
            for q, t, e, r, ql in zip(
                p.query_ids,
                assign,
                p.energy_j[k, assign],
                p.runtime_s[k, assign],
                p.quality[k, assign],
                strict=True,
            )
        ]
        output.write_text(
            json.dumps(
                {
                    **sched.to_dict(),
                    **p.describe(assign),
                    "baselines": rows,
                    "queries": per_query,
                },
                indent=1,
            )
            + "\n"
        )
        console.print(f"schedule -> {output}")
        if export_requests is not None:
            export_requests.mkdir(parents=True, exist_ok=True)
            for t_idx, name in enumerate(p.target_names):
                sel = np.flatnonzero(assign == t_idx)
                # a `wattserve bench --dataset-name trace` file: all queued at t=0, the runner's
                # --max-concurrency (= the target's slots) bounds how many run at once
                lines = [
                    json.dumps(
                        {
                            "id": p.query_ids[i],
                            "timestamp": 0.0,
                            "model": tgs[t_idx].model,
                            "input_tokens": int(qs.input_tokens[i]),
                            "max_tokens": int(qs.output_tokens[i]),
                            "target": name,
                        }
                    )
                    for i in sel
                ]
                safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
                path = export_requests / f"{safe}.jsonl"
                path.write_text("\n".join(lines) + ("\n" if lines else ""))
                if lines:
                    console.print(
                        f"replay {name}: wattserve bench --model '{tgs[t_idx].model}' "
                        f"--base-url URL --dataset-name trace --dataset-path {path} "
                        f"--max-concurrency {tgs[t_idx].slots}"
                    )
            console.print(f"requests per target -> {export_requests}")
        if as_json:
            print_json(read_json(output))

    @plan_app.command("queries")
    def plan_queries(
        source: Path = typer.Argument(
            ..., help="A sweeps CSV with input_tokens and output_tokens (e.g. wilkins_sweeps.csv)."
        ),
        num_prompts: int = typer.Option(
            5000, "--num-prompts", "-n", min=1, help="How many queries."
        ),
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        output: Path = typer.Option(Path("queries.csv"), "--output", "-o", help="CSV to write."),
    ) -> None:
        """Draw a mixed query set over the token ranges of a sweeps file (log-uniform)."""
        from wattserve.errors import ConfigError
        from wattserve.plan.io import synth_queries

        if not source.is_file():
            raise ConfigError(f"{source}: no such file")
        df = synth_queries(source, num_prompts, seed)
        output.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(output, index=False)
        print(f"{len(df)} queries -> {output}")


def _zetas(text: str) -> list[float]:
    """``0,0.5,1`` or ``START:STOP:STEP`` (inclusive of STOP); every value within [0, 1]."""
    from wattserve.errors import ConfigError

    bad = ConfigError(f"--zeta must be comma-separated numbers or START:STOP:STEP, not {text!r}")
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if step <= 0 or stop < start:
                raise bad
            k = int(round((stop - start) / step))
            values = [round(start + j * step, 12) for j in range(k + 1)]
        else:
            values = [float(z) for z in text.split(",") if z.strip()]
    except ValueError:
        raise bad from None
    if not values or any(not 0.0 <= z <= 1.0 for z in values):
        raise ConfigError(f"--zeta values must lie in [0, 1], got {text!r}")
    return values


def _sweep(
    p: Any,
    zetas: list[float],
    solver: str,
    time_limit_s: float,
    seed: int,
    output: Path,
    console: Any,
) -> None:
    """Solve the weighted objective at each zeta; write every plan with its assignment."""
    from rich.table import Table

    from wattserve.plan import baselines, compare, solve

    t = Table(
        title=f"weighted objective sweep ({p.normalise} normalisation): "
        "zeta*energy_norm - (1-zeta)*quality_norm"
    )
    for c in ("zeta", "energy J", "mean quality", "share per target", "solver", "gap"):
        t.add_column(c, justify="left" if c == "share per target" else "right")
    sweep = []
    for z in zetas:
        q = p.with_objective("weighted", z, quality_target=None)
        s = solve(q, solver, time_limit_s=time_limit_s)
        assign = [p.target_names.index(s.assignment[i]) for i in p.query_ids]
        info = q.describe(assign)
        sweep.append({"zeta": z, **s.to_dict(), **info})
        shares = ", ".join(f"{k} {v:.0%}" for k, v in info["share"].items() if v > 0)
        t.add_row(
            f"{z:g}",
            f"{s.energy_j:.4g}",
            f"{s.mean_quality:.4f}",
            shares,
            s.solver,
            "-" if s.optimality_gap is None else f"{s.optimality_gap:.2e}",
        )
    console.print(t)
    base_rows = compare(p, baselines(p, seed))
    for r in base_rows:
        if r["plan"] in ("round-robin", "random"):
            console.print(
                f"{r['plan']}: {r['energy_j']:.4g} J, mean quality {r['mean_quality']:.4f}"
            )
    output.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "objective": "weighted",
        "normalise": p.normalise,
        "accuracy_weighting": p.weighting,
        "sweep": sweep,
        "baselines": base_rows,
    }
    output.write_text(json.dumps(doc, indent=1) + "\n")
    console.print(f"sweep -> {output}")
