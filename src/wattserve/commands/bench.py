"""``wattserve bench``: benchmark an engine (flags follow ``vllm bench serve``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from wattserve.errors import ConfigError

HELP = (
    "Benchmark a model: send a workload at a load (fixed concurrency or a request rate), "
    "record every request, energy and a summary per point. Lists sweep: --max-concurrency 1,8."
)


def join_goodput(args: list[str]) -> list[str]:
    """``--goodput ttft:200 tpot:50`` (vLLM's ``nargs="+"``) -> ``--goodput 'ttft:200 tpot:50'``.

    The values after ``--goodput`` up to the next option (or ``--``) become its one value;
    ``--goodput`` given several times still adds up.
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        out.append(a)
        i += 1
        if a == "--goodput" or a.startswith("--goodput="):
            values = [a.partition("=")[2]] if "=" in a else []
            while i < len(args) and not args[i].startswith("-"):
                values.append(args[i])
                i += 1
            if values:
                out[-1] = "--goodput"
                out.append(" ".join(values))
        elif a == "--":
            out.extend(args[i:])
            break
    return out


class BenchCommand(TyperCommand):
    """``bench``'s command: takes vLLM's variadic ``--goodput`` (see ``join_goodput``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, join_goodput(list(args)))


def summary_table(points: list[Any], title: str) -> Any:
    """A rich table, one row per point."""
    from rich.table import Table

    def ms(stats: dict[str, float] | None, key: str) -> str:
        v = (stats or {}).get(key)
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 1000:.1f}"

    t = Table(title=title)
    for col in (
        "point",
        "conc",
        "rate",
        "ok/fail/trunc",
        "out tok/s",
        "req/s",
        "TTFT p50/p99 ms",
        "TPOT p50/p99 ms",
        "ITL p50 ms",
        "E2E p50/p99 ms",
        "J/token",
    ):
        t.add_column(col, justify="right" if col != "point" else "left")
    for p in points:
        s = p.summary
        lat = s.latency
        rate = (
            "inf" if p.request_rate is None or math.isinf(p.request_rate) else f"{p.request_rate:g}"
        )
        if s.energy_per_output_token_j is not None:
            win = "" if s.energy_window == "steady" else ", whole"
            jpt = f"{s.energy_per_output_token_j:.4g} ({s.energy_source}{win})"
        else:
            jpt = "-"
        t.add_row(
            p.label,
            str(p.max_concurrency or "-"),
            rate,
            f"{s.completed}/{s.failed}/{s.truncated}",
            f"{s.output_throughput:.1f}",
            f"{s.request_throughput:.2f}",
            f"{ms(lat.get('ttft_s'), 'p50')}/{ms(lat.get('ttft_s'), 'p99')}",
            f"{ms(lat.get('tpot_s'), 'p50')}/{ms(lat.get('tpot_s'), 'p99')}",
            ms(lat.get("itl_s"), "p50"),
            f"{ms(lat.get('e2e_s'), 'p50')}/{ms(lat.get('e2e_s'), 'p99')}",
            jpt,
        )
    return t


def register(app: typer.Typer) -> None:
    @app.command("bench", help=HELP, cls=BenchCommand)
    def bench(
        model: str | None = typer.Option(
            None, "--model", help="Model name (e.g. smollm2-135m) or served model id."
        ),
        backend: str = typer.Option(
            "auto",
            "--backend",
            help="auto|local|llama-cpp|openai|simulated; vLLM's vllm and openai-chat (chat "
            "endpoint) mean openai.",
        ),
        base_url: str | None = typer.Option(
            None, "--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."
        ),
        endpoint: str = typer.Option(
            "completions",
            "--endpoint",
            help="completions|chat (or /v1/completions, /v1/chat/completions).",
        ),
        threads: int = typer.Option(1, "--threads", help="CPU threads for in-process engines."),
        dataset_name: str = typer.Option(
            "random", "--dataset-name", help="random|custom|trace|sharegpt."
        ),
        dataset_path: str | None = typer.Option(
            None, "--dataset-path", help="JSONL/CSV (custom, trace) or ShareGPT JSON."
        ),
        input_len: str = typer.Option(
            "64",
            "--random-input-len",
            "--input-len",
            help="Random dataset: prompt tokens; a comma list makes a grid with --output-len.",
        ),
        output_len: str = typer.Option(
            "32",
            "--random-output-len",
            "--output-len",
            help="Output tokens (ignore_eos for random); a comma list makes a grid.",
        ),
        random_range_ratio: float = typer.Option(
            0.0,
            "--random-range-ratio",
            help="Lengths uniform in [floor(L*(1-r)), ceil(L*(1+r))], 0 <= r < 1.",
        ),
        num_prompts: int = typer.Option(100, "--num-prompts", help="Requests per point."),
        request_rate: str | None = typer.Option(
            None, "--request-rate", help="Requests/s, comma list to sweep (default inf)."
        ),
        burstiness: float = typer.Option(
            1.0, "--burstiness", help="Gamma shape of inter-arrivals (1 = Poisson)."
        ),
        arrival: str = typer.Option(
            "poisson", "--arrival", help="poisson (gamma with --burstiness) or constant."
        ),
        max_concurrency: str | None = typer.Option(
            None, "--max-concurrency", help="In-flight bound, comma list to sweep."
        ),
        num_warmups: int = typer.Option(
            0, "--num-warmups", help="Warm-up requests, excluded from metrics."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed for prompts and arrival schedules."),
        percentile_metrics: str = typer.Option(
            "ttft,tpot,itl,e2el", "--percentile-metrics", help="Metrics to report."
        ),
        metric_percentiles: str = typer.Option(
            "50,90,99", "--metric-percentiles", help="Percentiles to report."
        ),
        goodput: list[str] | None = typer.Option(
            None, "--goodput", help="SLOs in ms: --goodput ttft:200 tpot:50 (ttft, tpot, e2el)."
        ),
        meter: str = typer.Option("auto", "--meter", help="auto|modeled|rapl|nvml|null."),
        energy_attribution: str = typer.Option(
            "active_time",
            "--energy-attribution",
            help="Per-request joules: active_time (split among requests in flight), tokens "
            "or total_tokens.",
        ),
        timeout: float | None = typer.Option(
            None, "--timeout", help="Per-request timeout, seconds."
        ),
        result_dir: str = typer.Option(
            "runs",
            "--result-dir",
            help="Where run directories, the catalog and --save-result files go.",
        ),
        save_result: bool = typer.Option(
            False, "--save-result", help="Also write vLLM's result JSON (one per point)."
        ),
        save_detailed: bool = typer.Option(
            False, "--save-detailed", help="With --save-result: per-request lists too."
        ),
        result_filename: str | None = typer.Option(
            None,
            "--result-filename",
            help="Result JSON name in --result-dir (default: vLLM's naming).",
        ),
        label: str | None = typer.Option(
            None, "--label", help="Run name prefix (default: the model)."
        ),
        resume: str | None = typer.Option(
            None, "--resume", help="RUN_DIR of an interrupted run to finish."
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print the per-point summaries as JSON (progress on stderr)."
        ),
    ) -> None:
        import os

        from rich.console import Console

        from wattserve.bench.config import BenchConfig, parse_goodput, parse_list

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        console = Console(stderr=True)
        if resume is None:
            if not model:
                raise ConfigError("--model is required (or --resume RUN_DIR)")
            rates = parse_list(request_rate, float, "--request-rate")
            ins = parse_list(input_len, int, "--input-len") or [64]
            outs = parse_list(output_len, int, "--output-len") or [32]
            if rates and all(math.isinf(r) for r in rates):
                rates = None
            cfg = BenchConfig.build(
                model=model,
                backend=backend,
                base_url=base_url,
                endpoint=endpoint,
                threads=threads,
                dataset_name=dataset_name,
                dataset_path=dataset_path,
                input_len=ins[0],
                output_len=outs[0],
                input_lens=ins if len(ins) > 1 else None,
                output_lens=outs if len(outs) > 1 else None,
                random_range_ratio=random_range_ratio,
                num_prompts=num_prompts,
                request_rates=rates,
                max_concurrencies=parse_list(max_concurrency, int, "--max-concurrency"),
                burstiness=burstiness,
                arrival=arrival,
                num_warmups=num_warmups,
                seed=seed,
                percentile_metrics=[m.strip() for m in percentile_metrics.split(",") if m.strip()],
                metric_percentiles=parse_list(metric_percentiles, float, "--metric-percentiles")
                or [50, 90, 99],
                goodput=parse_goodput(goodput),
                meter=meter,
                energy_attribution=energy_attribution,
                timeout_s=timeout,
                result_dir=result_dir,
                label=label,
                save_result=save_result,
                save_detailed=save_detailed,
                result_filename=result_filename,
            )
        run_dir = _run(cfg if resume is None else None, resume, console)
        _report(run_dir, as_json)


def _run(cfg: Any, resume: str | None, console: Any) -> str:
    """Run (or resume) the benchmark with a progress bar per point on ``console``; returns
    the run directory. The bars start with the first point, so an error before any load
    is the only line on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from wattserve.bench import benchmark as bm

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def on_progress(label: str, done: int, total: int) -> None:
        if not tasks:
            progress.start()
        if label not in tasks:
            tasks[label] = progress.add_task(f"point {label}", total=total)
        progress.update(tasks[label], completed=done, total=total)

    import signal

    def _terminate(
        signum: int, frame: Any
    ) -> None:  # SIGTERM: stop like Ctrl-C (run marked interrupted)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        if resume is not None:
            bm.resume_benchmark(resume, on_progress=on_progress)
            return resume
        record = bm.run_benchmark(cfg, on_progress=on_progress)
        return str(Path(cfg.result_dir) / record.run_id)
    finally:
        if tasks:  # a progress that never started prints nothing (stop() would print a line)
            progress.stop()


def _report(run_dir: str, as_json: bool) -> None:
    """The run's points: a table (and notes) on stdout, or one JSON document."""
    from wattserve.bench import store
    from wattserve.bench.point import load_points
    from wattserve.console import print_json, stdout_console

    data = store.load_run_json(run_dir)
    points = load_points(run_dir)
    files = data.get("result_files", [])
    if as_json:
        print_json(
            {
                "run_dir": run_dir,
                "run_id": data.get("run_id"),
                "model": data.get("config", {}).get("model"),
                "status": data.get("status"),
                "points": [p.to_dict() for p in points],
                "result_files": files,
            }
        )
        return
    out = stdout_console()
    title = f"{data.get('config', {}).get('model')} — run {data.get('run_id')}"
    out.print(summary_table(points, title))
    for p in points:
        if p.energy_note:
            out.print(f"[dim]{p.label}: {p.energy_note}[/dim]")
        s = p.summary
        if s.goodput_rps is not None:
            slo = f"{s.slo_attainment:.1%}" if s.slo_attainment is not None else "-"
            out.print(f"{p.label}: goodput {s.goodput_rps:.2f} req/s, SLO attainment {slo}")
    out.print(f"results: {run_dir}")
    for f in files:
        out.print(f"result file: {f}")
