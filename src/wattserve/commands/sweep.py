"""``wattserve sweep``: replicas per device x concurrency, frontier and recommendation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from wattserve.sweep.run import SweepResult


def register(app: typer.Typer) -> None:
    @app.command("sweep")
    def sweep_cmd(
        model: str = typer.Option("smollm2-135m", "--model", help="Model each replica serves."),
        backend: str = typer.Option(
            "auto",
            "--backend",
            help="Engine backend(s), comma-separated: auto, local, llama-cpp, mock; 'all' = every "
            "installed CPU engine.",
        ),
        replicas: str = typer.Option(
            "1,2", "--replicas", help="Replica counts per device, e.g. 1,2."
        ),
        max_concurrency: str = typer.Option(
            "1,2,4,8", "--max-concurrency", help="Concurrency bounds, e.g. 1,2,4,8."
        ),
        request_rate: str | None = typer.Option(
            None,
            "--request-rate",
            help="Request rates (req/s; 'inf' = as fast as allowed), e.g. 2,inf.",
        ),
        threads: int | None = typer.Option(
            None,
            "--threads",
            min=1,
            help="Total CPU threads split evenly over the replicas (default: all usable cores).",
        ),
        no_pin: bool = typer.Option(
            False, "--no-pin", help="Do not pin each replica to its own cores."
        ),
        omp_wait_policy: str = typer.Option(
            "passive",
            "--omp-wait-policy",
            help="OMP_WAIT_POLICY for replicas: passive (robust when cores are shared), active, "
            "or default (unset).",
        ),
        replica_command: str | None = typer.Option(
            None,
            "--replica-command",
            help="Launch each replica with this command (GPU servers), e.g. 'vllm serve {model} "
            "--port {port} --gpu-memory-utilization {memory_fraction}'.",
        ),
        gpu_memory_utilization: float = typer.Option(
            0.9,
            "--gpu-memory-utilization",
            min=0.01,
            max=1.0,
            help="Device memory shared by the replicas (each gets this / replicas).",
        ),
        device: str = typer.Option(
            "cpu",
            "--device",
            help="Embedded engine device: cpu or cuda[:i] (replicas share the GPU, each with "
            "--gpu-memory-utilization / replicas of its memory).",
        ),
        load_format: str = typer.Option(
            "auto",
            "--load-format",
            help="auto (the model's weights) or dummy (bundled config, random weights: speed "
            "and energy only; records say 'dummy weights').",
        ),
        input_len: int = typer.Option(32, "--input-len", min=1, help="Prompt tokens per request."),
        output_len: int = typer.Option(
            32, "--output-len", min=1, help="Output tokens per request."
        ),
        num_prompts: int = typer.Option(
            8, "--num-prompts", min=1, help="Requests per point (at least 2 x concurrency)."
        ),
        num_warmups: int = typer.Option(
            1, "--num-warmups", min=0, help="Warm-up requests per replica before each point."
        ),
        seed: int = typer.Option(0, "--seed"),
        endpoint: str = typer.Option("completions", "--endpoint", help="completions or chat."),
        goodput: list[str] | None = typer.Option(
            None, "--goodput", help="SLOs in ms, e.g. --goodput ttft:500 tpot:100."
        ),
        min_attainment: float = typer.Option(
            0.9,
            "--min-attainment",
            min=0.01,
            max=1.0,
            help="Fraction of requests that must meet the SLOs.",
        ),
        objective: str = typer.Option(
            "throughput",
            "--objective",
            help="throughput: max tok/s under the SLOs; energy: min J/token above "
            "--throughput-floor.",
        ),
        throughput_floor: float | None = typer.Option(
            None, "--throughput-floor", min=0.0, help="Minimum device tok/s for --objective energy."
        ),
        meter: str = typer.Option(
            "auto", "--meter", help="Energy meter: auto, modeled, rapl, nvml, null."
        ),
        timeout: float = typer.Option(
            300.0, "--timeout", min=1.0, help="Seconds before a request counts as failed."
        ),
        result_dir: str = typer.Option(
            "runs/sweep",
            "--result-dir",
            help="Sweep directory; rerunning with the same one resumes.",
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print the result as JSON (progress goes to stderr)."
        ),
    ) -> None:
        """Sweep replicas per device x concurrency, mark the Pareto frontier, recommend a setting.

        Each point runs through the bench runner (one run directory per point under
        RESULT_DIR/points); summary.csv gets one row per point. Rerun the same command to
        resume after an interruption: finished points are skipped.
        """
        import signal

        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        from wattserve.bench.config import parse_goodput, parse_list
        from wattserve.console import print_json, stdout_console
        from wattserve.errors import ConfigError
        from wattserve.readers import read_json
        from wattserve.sweep.config import SweepConfig
        from wattserve.sweep.run import available_backends, run_sweep

        def _term(*_: object) -> None:  # SIGTERM: stop replicas like Ctrl-C does
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _term)
        root = Path(result_dir)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"--result-dir {root}: not a directory")
        if (root / "sweep.json").is_file():  # resuming: the earlier record must be readable
            read_json(root / "sweep.json")
        kw: dict[str, Any] = {
            "model": model,
            "backends": [b.strip() for b in backend.split(",") if b.strip()],
            "replicas": parse_list(replicas, int, "--replicas"),
            "max_concurrencies": parse_list(max_concurrency, int, "--max-concurrency"),
            "request_rates": parse_list(request_rate, float, "--request-rate"),
            "pin_cores": not no_pin,
            "omp_wait_policy": omp_wait_policy,
            "command": replica_command,
            "memory_utilization": gpu_memory_utilization,
            "device": device,
            "load_format": load_format,
            "input_len": input_len,
            "output_len": output_len,
            "num_prompts": num_prompts,
            "num_warmups": num_warmups,
            "seed": seed,
            "endpoint": endpoint,
            "goodput": parse_goodput(goodput),
            "min_attainment": min_attainment,
            "objective": objective,
            "throughput_floor": throughput_floor,
            "meter": meter,
            "timeout_s": timeout,
            "result_dir": result_dir,
        }
        if threads is not None:
            kw["threads"] = threads
        cfg = SweepConfig.build(**kw)
        console = Console(stderr=True) if as_json else stdout_console()
        n_points = (
            len(available_backends(cfg.backends))
            * len(cfg.replicas)
            * len(cfg.max_concurrencies)
            * len(cfg.rates())
        )
        with Progress(
            TextColumn("[bold]sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task("starting replicas", total=n_points)

            def on_event(kind: str, msg: str) -> None:
                if kind in ("point", "skip"):
                    bar.advance(task)
                bar.console.print(f"  {msg}")
                bar.update(task, description=msg.split(":")[0])

            result = run_sweep(cfg, on_event)
        if as_json:
            print_json(result)
        else:
            print_result(console, result)


def print_result(console: Any, result: SweepResult) -> None:
    """Points with the frontier marked, the recommendation and the replica comparison."""
    from rich.table import Table

    def fmt(v: object, spec: str = ".1f") -> str:
        try:
            return format(float(v), spec)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return "-"

    rec = result.recommendation
    rows = result.rows
    t = Table(title=f"sweep points ({result.ran} run, {result.skipped} resumed from summary.csv)")
    t.add_column("point", no_wrap=True)
    for col in ("repl x thr", "conc", "tok/s dev", "tok/s user", "J/token", "TTFT p50", "frontier"):
        t.add_column(col, justify="right")
    for i, r in enumerate(rows):
        mark = ("*" if int(float(r.get("pareto") or 0)) else "") + (
            " best" if i == rec.index else ""
        )
        t.add_row(
            r["point"],
            f"{r['replicas']} x {r['threads_per_replica']}",
            str(r["max_concurrency"]),
            fmt(r.get("tok_s_per_device")),
            fmt(r.get("tok_s_per_user")),
            fmt(r.get("j_per_token"), ".4f"),
            fmt(r.get("ttft_p50_s"), ".3f"),
            mark,
        )
    console.print(t)
    if result.comparison:
        c = Table(title="replicas vs one replica with all threads (same concurrency)")
        for col in (
            "backend",
            "conc",
            "1 replica",
            "tok/s",
            "N replicas",
            "tok/s",
            "ratio",
            "J/tok ratio",
        ):
            c.add_column(
                col, justify="right", no_wrap=col in ("backend", "1 replica", "N replicas")
            )
        for r in result.comparison:
            c.add_row(
                r["backend"],
                str(r["max_concurrency"]),
                r["base"].replace(" threads", " thr"),
                fmt(r["base_tok_s"]),
                r["alt"].replace(" threads", " thr"),
                fmt(r["alt_tok_s"]),
                fmt(r["throughput_ratio"], ".2f") + "x",
                fmt(r["energy_ratio"], ".2f"),
            )
        console.print(c)
    what = rows[rec.index]["point"] if rec.index is not None else "none"
    console.print(
        f"[bold]recommended:[/bold] {what} - {rec.reason}"
        + ("" if rec.index is None else " (marked 'best'; * = on the Pareto frontier)")
    )
    console.print(
        f"frontier: {', '.join(rows[i]['point'] for i in rec.frontier)} "
        f"(over {', '.join(rec.objectives_used)})"
    )
    console.print(f"results: {result.result_dir}/summary.csv, sweep.json")
