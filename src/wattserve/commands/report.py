"""``wattserve report``: one self-contained HTML file for a run or sweep directory, or for
the gateway's request log beside its simulated replay."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        path: str | None = typer.Argument(
            None,
            help="A run directory (run.json), a sweep directory (sweep.json, summary.csv) or "
            "the gateway's request log (a file: the same as --served). Optional with --served.",
        ),
        output: str | None = typer.Option(
            None,
            "--output",
            "-o",
            help="HTML file to write (default: PATH/report.html; for a request log "
            "LOG.report.html beside it).",
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
        served: str | None = typer.Option(
            None,
            "--served",
            help="The gateway's request log (serve config `request_log: FILE`): requests, cache "
            "hits and joules served per energy source (metered/fitted).",
        ),
        simulated: str | None = typer.Option(
            None,
            "--simulated",
            help="The replay of that log: `wattserve simulate --fits FITS --trace LOG "
            "--format json --output SIM.json`; shown beside the served totals with the relative "
            "difference.",
        ),
        evaluation: str | None = typer.Option(
            None,
            "--eval",
            help="A `wattserve eval` directory (or its eval.json): accuracy and J per correct "
            "answer per model, and the served joules per expected correct answer.",
        ),
    ) -> None:
        """Write an HTML report: configuration, summary tables, latency, throughput and energy over
        time, the Pareto plot with the recommended point, fits and plans when present. The file is
        self-contained (figures embedded), so it opens offline.

        With --served LOG (or a log as PATH) and --simulated SIM.json:
        what the gateway served (requests, cache hits, joules metered
        and fitted) beside its simulated replay, and the difference."""
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
            dest = write_report(path, output, fits, plan, served, simulated, evaluation)
        console.print(f"report: {dest} ({dest.stat().st_size / 1024:.0f} KiB)")
