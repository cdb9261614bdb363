"""``wattserve runs list|show``: the catalog of benchmark runs (SQLite) and one run's details."""

from __future__ import annotations

import math
import os
from pathlib import Path

import typer

from wattserve.console import print_json, stdout_console
from wattserve.errors import ConfigError

runs_app = typer.Typer(help="List and show benchmark runs.", no_args_is_help=True)


def _check_result_dir(result_dir: str) -> None:
    """The catalog's folder must be a folder that exists: listing never creates one."""
    root = Path(os.environ.get("WATTSERVE_HOME") or result_dir)
    if not root.exists():
        raise ConfigError(
            f"{root}: no such result directory (run `wattserve bench` first, or pass --result-dir)"
        )
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory (--result-dir names the folder of runs)")


def _fmt(v: object, spec: str = ".3g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


@runs_app.command(
    "list", help="List runs in the catalog (<result-dir>/catalog.sqlite or $WATTSERVE_HOME)."
)
def list_runs(
    result_dir: str = typer.Option("runs", "--result-dir", help="Where runs and the catalog are."),
    as_json: bool = typer.Option(False, "--json", help="Print the catalog rows as JSON."),
) -> None:
    from rich.table import Table

    from wattserve.bench import store

    _check_result_dir(result_dir)
    rows = store.catalog_list(result_dir)
    if as_json:
        print_json(rows)
        return
    con = stdout_console()
    if not rows:
        con.print(f"no runs in {store.catalog_path(result_dir)}")
        return
    t = Table(title=f"runs ({store.catalog_path(result_dir)})")
    for col in (
        "run",
        "created (UTC)",
        "model",
        "backend",
        "status",
        "points",
        "ok/fail",
        "best out tok/s",
        "min J/token",
    ):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["run_id"],
            r["created_utc"],
            _fmt(r["model"]),
            _fmt(r["backend"]),
            _fmt(r["status"]),
            _fmt(r["points"], "d"),
            f"{r['completed']}/{r['failed']}",
            _fmt(r["output_tok_s"], ".1f"),
            f"{_fmt(r['j_per_token'], '.4g')} {r['energy_source'] or ''}".strip(),
        )
    con.print(t)


@runs_app.command("show", help="Show one run: config, environment, meter and a table per point.")
def show_run(
    run: str = typer.Argument(..., help="Run directory, run id, or a unique id prefix."),
    result_dir: str = typer.Option("runs", "--result-dir", help="Where runs and the catalog are."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the run record (run.json) and its path as JSON."
    ),
) -> None:
    from rich.table import Table

    from wattserve.bench import store
    from wattserve.bench.benchmark import load_points
    from wattserve.commands.bench import summary_table

    if not (Path(run) / store.RUN_JSON).is_file():
        _check_result_dir(result_dir)
    path = store.find_run(run, result_dir)
    data = store.load_run_json(path)
    if as_json:
        print_json({"path": path, **data})
        return
    con = stdout_console()
    info = Table(title=f"run {data.get('run_id')}", show_header=False)
    info.add_column("key")
    info.add_column("value")
    cfg = data.get("config", {})
    info.add_row("path", str(path))
    info.add_row("status", str(data.get("status")))
    for k in (
        "model",
        "backend",
        "base_url",
        "dataset_name",
        "num_prompts",
        "input_len",
        "output_len",
        "max_concurrencies",
        "request_rates",
        "seed",
    ):
        info.add_row(k, _fmt(cfg.get(k), ""))
    meter = data.get("meter_info") or {}
    info.add_row("meter", f"{meter.get('type', '-')}: {meter.get('reason', '')}")
    env = data.get("environment") or {}
    for k in list(env)[:8]:
        info.add_row(f"env.{k}", str(env[k])[:100])
    n_lines = len(store.read_requests(path / store.REQUESTS))
    info.add_row("requests.jsonl", f"{n_lines} lines")
    con.print(info)
    points = load_points(path)
    if points:
        con.print(summary_table(points, "points"))


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
