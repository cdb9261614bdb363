"""``wattserve eval``: accuracy and joules per correct answer of models on a task file."""

from __future__ import annotations

import json
import math
from typing import Any

import typer

from wattserve.commands.lists import names
from wattserve.errors import ConfigError

HELP = (
    "Run models over checkable task items (wattserve tasks make) and record per item and "
    "model: correct, output tokens, latency, joules. Prints accuracy, J/request and J per "
    "correct answer with bootstrap 95% intervals; writes a routing dataset for route train."
)


def _stop(spec: str) -> list[str]:
    """``\\n`` (the default) or a comma list; escapes as in Python strings; '' for none."""
    if spec == "":
        return []
    return [s.encode().decode("unicode_escape") for s in spec.split(",")]


def _json_safe(o: Any) -> Any:
    if isinstance(o, float) and (math.isinf(o) or math.isnan(o)):
        return None if math.isnan(o) else ("inf" if o > 0 else "-inf")
    if isinstance(o, dict):
        return {k: _json_safe(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_json_safe(v) for v in o]
    return o


def register(app: typer.Typer) -> None:
    @app.command("eval", help=HELP)
    def evaluate(
        tasks: str | None = typer.Option(
            None, "--tasks", help="Task JSONL (wattserve tasks make)."
        ),
        model: list[str] = typer.Option(
            [], "--model", help="Model names (registry name, .gguf, or served id), comma list."
        ),
        base_url: list[str] = typer.Option(
            [],
            "--base-url",
            help="OpenAI-compatible server(s), comma list: one for all, or one per --model.",
        ),
        backend: str = typer.Option(
            "auto", "--backend", help="auto|local|llama-cpp|openai|simulated."
        ),
        endpoint: str = typer.Option("completions", "--endpoint", help="completions|chat."),
        threads: int = typer.Option(1, "--threads", help="CPU threads for in-process engines."),
        max_tokens: int | None = typer.Option(
            None,
            "--max-tokens",
            help="Output tokens per answer (default: each item's budget, its family's; 12).",
        ),
        stop: str = typer.Option("\\n", "--stop", help="Stop strings, comma list ('' for none)."),
        max_concurrency: int = typer.Option(
            1, "--max-concurrency", help="Requests in flight (energy split by active time)."
        ),
        meter: str = typer.Option("auto", "--meter", help="auto|modeled|rapl|nvml|null (a+b)."),
        timeout: float = typer.Option(120.0, "--timeout", help="Per-request timeout, seconds."),
        limit: int | None = typer.Option(None, "--limit", help="At most N items per family."),
        bootstrap: int = typer.Option(2000, "--bootstrap", help="Bootstrap resamples."),
        seed: int = typer.Option(0, "--seed", help="Request and bootstrap seed."),
        result_dir: str = typer.Option("runs", "--result-dir", help="Where eval dirs go."),
        label: str | None = typer.Option(None, "--label", help="Eval dir name prefix."),
        resume: str | None = typer.Option(
            None, "--resume", help="DIR of an interrupted eval: run only missing pairs."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        import os
        import signal

        from wattserve.evaluate import EvalConfig

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        cfg = None
        if resume is None:
            if not tasks:
                raise ConfigError("--tasks is required (or --resume DIR)")
            model, base_url = names(model), names(base_url)
            if not model:
                raise ConfigError("give at least one --model (or --resume DIR)")
            cfg = EvalConfig.build(
                tasks_path=tasks,
                models=model,
                base_urls=base_url,
                backend=backend,
                endpoint=endpoint,
                threads=threads,
                max_tokens=max_tokens,
                stop=_stop(stop),
                max_concurrency=max_concurrency,
                meter=meter,
                timeout_s=timeout,
                limit=limit,
                bootstrap=bootstrap,
                seed=seed,
                result_dir=result_dir,
                label=label,
            )

        def _terminate(signum: int, frame: Any) -> None:  # SIGTERM: stop like Ctrl-C
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _terminate)
        result = _run(cfg, resume, quiet=as_json)
        if as_json:
            out = {
                "run_dir": str(result.run_dir),
                "status": result.status,
                "summary": result.summary,
                "routing": result.routing,
            }
            typer.echo(json.dumps(_json_safe(out), indent=2))
            return
        _print(result)


def _run(cfg: Any, resume: str | None, quiet: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from wattserve.evaluate import resume_eval, run_eval

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )
    bars: dict[str, Any] = {}

    def on_progress(model: str, done: int, total: int) -> None:
        if model not in bars:
            bars[model] = progress.add_task(model, total=total)
        progress.update(bars[model], completed=done, total=total)

    with progress:
        if resume is not None:
            return resume_eval(resume, on_progress=on_progress)
        return run_eval(cfg, on_progress=on_progress)


def _print(result: Any) -> None:
    import os

    from rich.console import Console
    from rich.table import Table

    from wattserve.evaluate.summary import table_rows

    out = Console()
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(width=160)
    t = Table(title=f"eval {result.run_dir.name} ({result.status}); 95% bootstrap intervals")
    for col in (
        "model",
        "family",
        "n",
        "accuracy [95% CI]",
        "J/request",
        "J/correct [95% CI]",
        "energy",
    ):
        t.add_column(col, justify="left" if col in ("model", "family", "energy") else "right")
    for row in table_rows(result.summary):
        t.add_row(*row)
    out.print(t)
    for d in result.summary.get("differences", []):
        if d.get("delta") is None:
            continue
        lo, hi = d["delta_ci"]
        mark = "differs" if d["separated"] else "within noise"
        out.print(
            f"{d['family']}: {d['model']} - {d['baseline']} accuracy {d['delta']:+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}] on {d['n']} shared items ({mark})"
        )
    for r in result.summary.get("rows", []):
        levels = r.get("by_difficulty") or {}
        if r["family"] != "all" and levels:
            cells = "  ".join(f"{k}: {v['accuracy']:.2f} ({v['n']})" for k, v in levels.items())
            out.print(f"[dim]{r['model']} {r['family']} accuracy by difficulty  {cells}[/dim]")
    routing = result.routing
    out.print(f"routing dataset: {routing['items']} items; train with: {routing['route_train']}")
    out.print(f"results: {result.run_dir}")
