"""``wattserve report``: one self-contained HTML file for a run or sweep directory."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        path: str = typer.Argument(
            ..., help="A run directory (run.json) or a sweep directory (sweep.json, summary.csv)."
        ),
        output: str | None = typer.Option(
            None, "--output", "-o", help="HTML file to write (default: PATH/report.html)."
        ),
        fits: str | None = typer.Option(
            None,
            "--fits",
            help="ModelFit JSON from `wattserve fit` (default: PATH/fits.json if present).",
        ),
        plan: str | None = typer.Option(
            None,
            "--plan",
            help="Schedule JSON from `wattserve plan` (default: PATH/schedule.json if present).",
        ),
    ) -> None:
        """Write an HTML report: configuration, summary tables, latency, throughput and energy over
        time, the Pareto plot with the recommended point, fits and plans when present. The file is
        self-contained (figures embedded), so it opens offline."""
        from rich.console import Console
        from rich.status import Status

        from wattserve.fit import load_fits
        from wattserve.readers import read_json
        from wattserve.report.html import write_report

        # files named on the command line must load: the report only skips defaults it finds
        if fits is not None:
            load_fits(fits)
        if plan is not None:
            read_json(plan)
        console = Console(stderr=True)
        with Status("rendering report", console=console):
            dest = write_report(path, output, fits, plan)
        console.print(f"report: {dest} ({dest.stat().st_size / 1024:.0f} KiB)")
