"""``wattserve mlenergy``: ML.ENERGY leaderboard v2 configurations as sweep points.

``wattserve mlenergy view CSV`` reproduces the leaderboard's default view; ``points CSV``
writes every configuration as a sweep-style ``summary.csv`` with ``pareto`` marking the
frontier of each (task, model, GPU) group.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    ml_app = typer.Typer(
        no_args_is_help=True,
        help="ML.ENERGY leaderboard v2 configurations: `view CSV` (the default view), "
        "`points CSV -o DIR` (sweep-style points with the Pareto frontier).",
    )
    app.add_typer(ml_app, name="mlenergy")

    @ml_app.command("view")
    def view(
        csv_path: Path = typer.Argument(..., help="mlenergy_v2_configs.csv (one row per config)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
        tpot_max_s: float = typer.Option(
            0.2, "--tpot-max", min=0.0, help="Average TPOT limit in seconds (after rounding)."
        ),
    ) -> None:
        """Per task, model and GPU: the lowest energy per request with average TPOT <= limit."""
        from wattserve.mlenergy import default_view, excluded_groups, read_configs

        points = read_configs(csv_path)
        rows = default_view(points, tpot_max_s)
        left_out = excluded_groups(points, tpot_max_s)
        if as_json:
            doc = {
                "tpot_max_s": tpot_max_s,
                "rows": rows,
                "no_config_within_limit": [list(k) for k in left_out],
            }
            typer.echo(json.dumps(doc, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"ML.ENERGY v2 default view (avg TPOT <= {tpot_max_s:g} s)")
        for col in ("task", "GPU", "model", "max_num_seqs", "tp", "J/request", "TPOT s", "J/tok"):
            t.add_column(col, justify="left" if col in ("task", "GPU", "model") else "right")
        for r in rows:
            t.add_row(
                r["task"],
                r["device"],
                r["model"],
                str(r["max_concurrency"]),
                str(r["tp"]),
                f"{r['energy_per_req_j']:.2f}",
                f"{r['tpot_mean_s']:.2f}",
                f"{r['j_per_token']:.4f}",
            )
        console = Console()
        console.print(t)
        for task, model, gpu in left_out:
            console.print(f"[dim]{task} {model} @ {gpu}: no configuration within the limit[/dim]")

    @ml_app.command("points")
    def points_cmd(
        csv_path: Path = typer.Argument(..., help="mlenergy_v2_configs.csv (one row per config)."),
        output: Path = typer.Option(..., "--output", "-o", help="Directory for summary.csv."),
    ) -> None:
        """Write every configuration as a sweep point (summary.csv; `pareto` per group)."""
        from wattserve.bench.store import write_summary_csv
        from wattserve.mlenergy import mark_frontier, read_configs

        points = mark_frontier(read_configs(csv_path))
        output.mkdir(parents=True, exist_ok=True)
        write_summary_csv(output / "summary.csv", points)
        front = sum(int(p["pareto"]) for p in points)
        typer.echo(f"{len(points)} points ({front} on the Pareto frontier) -> {output}/summary.csv")
