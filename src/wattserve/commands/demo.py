"""``wattserve demo-energy``: energy per correct answer with two models, end to end."""

from __future__ import annotations

from pathlib import Path

import typer

from wattserve.errors import ConfigError

HELP = (
    "Evaluate two models on a small task set, train the router on their results, serve both "
    "behind the gateway (model=auto, the config's cache) and print accuracy and J per correct "
    "answer for always-small, always-large, router only, cache (LFU) + large and cache (LEC) + "
    "router (replayed over the measured results, and live through the gateway)."
)


def register(app: typer.Typer) -> None:
    @app.command("demo-energy", help=HELP)
    def demo_energy(
        config: Path = typer.Option(
            Path("examples/serve-energy.yaml"),
            "--config",
            "-c",
            help="gateway config (both models)",
        ),
        run_dir: Path = typer.Option(Path("runs/demo/energy"), "--run-dir", help="outputs"),
        small: str = typer.Option("smollm2-135m", "--small", help="the cheaper model"),
        large: str = typer.Option("gemma3-270m", "--large", help="the stronger model"),
        backend: str = typer.Option("llama-cpp", "--backend", help="engine for the eval"),
        meter: str = typer.Option("modeled:process", "--meter", help="the eval's meter"),
        requests: int = typer.Option(240, "--requests", help="requests in the workload"),
        alpha: float = typer.Option(0.8, "--alpha", help="power-law popularity exponent"),
        capacity: int = typer.Option(15, "--capacity", help="cache entries"),
        seed: int = typer.Option(0, "--seed", help="task, trace and eval seed"),
        eval_dir: Path | None = typer.Option(
            None, "--eval-dir", help="reuse this eval run (its models are --small/--large)"
        ),
        no_live: bool = typer.Option(False, "--no-live", help="replay only, no gateway"),
        as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
    ) -> None:
        from rich.console import Console

        from wattserve.console import print_json, stdout_console
        from wattserve.evaluate.demo import DemoSettings, print_table, run_energy_demo, table_rows

        if requests < 1 or capacity < 1 or alpha < 0:
            raise ConfigError("--requests and --capacity must be at least 1, --alpha >= 0")
        if not config.is_file():
            raise ConfigError(f"config file not found: {config}")
        if eval_dir is not None and not eval_dir.is_dir():
            raise ConfigError(f"--eval-dir {eval_dir} is not a directory")
        console = Console(stderr=True) if as_json else stdout_console()
        settings = DemoSettings(
            config=str(config),
            run_dir=str(run_dir),
            small=small,
            large=large,
            backend=backend,
            meter=meter,
            requests=requests,
            alpha=alpha,
            capacity=capacity,
            seed=seed,
            eval_dir=str(eval_dir) if eval_dir is not None else None,
        )
        result = run_energy_demo(
            settings, log=lambda m: console.print(f"[dim]{m}[/dim]"), live=not no_live
        )
        if as_json:
            cmp = result.comparison.as_dict() if result.comparison is not None else None
            print_json(
                {
                    "eval_dir": str(result.eval_dir),
                    "rows": table_rows(result),
                    "live_vs_replay": cmp,
                }
            )
        else:
            print_table(result, console)
