"""``wattserve plan``: energy-optimal, quality-aware offline assignment of queries to targets."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from wattserve.commands.fit import DefaultGroup


def register(app: typer.Typer) -> None:
    plan_app = typer.Typer(
        cls=DefaultGroup,
        no_args_is_help=True,
        help="Plan a query batch across (model, device) targets at least energy: `wattserve plan --queries Q "
        "--targets T` (same as `plan run`); `wattserve plan queries` makes a query set.",
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
            help="YAML/JSON: fits file and targets (model, device, quality, slots, capacity_s, idle_power_w).",
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
            help="'energy' (min energy s.t. quality) or 'weighted' (zeta*energy_norm - (1-zeta)*quality_norm).",
        ),
        zeta: str = typer.Option(
            "0,0.25,0.5,0.75,1",
            "--zeta",
            help="Comma-separated zeta values swept by --objective weighted.",
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
            help="Also write one trace JSONL per target here (replay each with `wattserve bench --dataset-name trace`).",
        ),
    ) -> None:
        """Solve the plan, compare it with the baselines, write the Schedule JSON."""
        import warnings

        import numpy as np
        from rich.console import Console
        from rich.table import Table

        from wattserve.errors import ConfigError
        from wattserve.fit import ExtrapolationWarning
        from wattserve.plan import baselines, build_problem, compare, solve
        from wattserve.plan.io import quality_matrix, read_queries, read_targets

        console = Console()
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
            )
        for w in caught[:3]:
            console.print(f"[yellow]warning:[/yellow] {w.message}")
        if objective == "weighted":
            try:
                zetas = [float(z) for z in zeta.split(",") if z.strip()]
            except ValueError:
                raise ConfigError(f"--zeta must be comma-separated numbers, not {zeta!r}") from None
            t = Table(title="weighted objective sweep: zeta*energy_norm - (1-zeta)*quality_norm")
            for c in ("zeta", "energy J", "mean quality", "makespan s", "solver", "gap"):
                t.add_column(c, justify="right")
            sweep = []
            for z in zetas:
                s = solve(
                    p.with_objective("weighted", z, quality_target=None),
                    solver,
                    time_limit_s=time_limit_s,
                )
                sweep.append({"zeta": z, **s.to_dict(), "assignment": None})
                t.add_row(
                    f"{z:g}",
                    f"{s.energy_j:.4g}",
                    f"{s.mean_quality:.4f}",
                    f"{s.makespan_s:.4g}",
                    s.solver,
                    "-" if s.optimality_gap is None else f"{s.optimality_gap:.2e}",
                )
            console.print(t)
            output.write_text(
                json.dumps({"objective": "weighted", "sweep": sweep}, indent=2) + "\n"
            )
            console.print(f"sweep -> {output}")
            return
        if objective != "energy":
            raise ConfigError(f"unknown objective {objective!r}; use 'energy' or 'weighted'")
        sched = solve(p, solver, time_limit_s=time_limit_s)
        assign = np.array([p.target_names.index(sched.assignment[q]) for q in p.query_ids])
        rows = compare(p, {f"plan ({sched.solver})": assign, **baselines(p, seed)})
        t = Table(title=f"{p.n} queries x {p.T} targets: {sched.objective}")
        for c in (
            "plan",
            "energy J",
            "x plan",
            "mean quality",
            "makespan s",
            "quality",
            "capacity",
            "deadlines",
        ):
            t.add_column(c, justify="left" if c == "plan" else "right")
        for r in rows:
            t.add_row(
                r["plan"],
                f"{r['energy_j']:.4g}",
                f"{r['energy_vs_plan']:.2f}",
                f"{r['mean_quality']:.4f}",
                f"{r['makespan_s']:.4g}",
                *(
                    "ok" if r[k] else "[red]no[/red]"
                    for k in ("meets_quality", "meets_capacity", "meets_deadlines")
                ),
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
            )
        ]
        output.write_text(
            json.dumps({**sched.to_dict(), "baselines": rows, "queries": per_query}, indent=1)
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
                        f"replay {name}: wattserve bench --model '{tgs[t_idx].model}' --base-url URL "
                        f"--dataset-name trace --dataset-path {path} --max-concurrency {tgs[t_idx].slots}"
                    )
            console.print(f"requests per target -> {export_requests}")

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
