"""``wattserve env``: which energy meter is used here and why, plus machine facts."""

from __future__ import annotations

from typing import Any

import typer


def _gib(n: Any) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def render(env: dict[str, Any], power: dict[str, float] | None = None) -> Any:
    """A rich table of an environment record (and measured watts when given)."""
    from rich.table import Table

    table = Table(title="wattserve environment", show_header=False, title_justify="left")
    table.add_column("fact", style="bold")
    table.add_column("value", overflow="fold")
    meter = env.get("meter") or {}
    table.add_row("meter", str(meter.get("type")))
    table.add_row("why", str(meter.get("reason", "")))
    if meter.get("devices"):
        table.add_row("metered devices", ", ".join(meter["devices"]))
    for device, watts in (power or {}).items():
        table.add_row(f"power {device}", f"{watts:.2f} W")
    cpu = env.get("cpu", {})
    table.add_row("CPU", f"{cpu.get('model')} ({cpu.get('arch')})")
    table.add_row(
        "cores",
        f"{cpu.get('cores_logical')} logical, {cpu.get('cores_physical')} physical, "
        f"{cpu.get('cores_usable')} usable",
    )
    mem = env.get("memory", {})
    table.add_row(
        "memory",
        f"{_gib(mem.get('total_bytes'))} total, {_gib(mem.get('available_bytes'))} available",
    )
    gpus = env.get("gpus") or []
    if gpus:
        for g in gpus:
            limit = g.get("power_limit_w")
            table.add_row(
                g["device"],
                f"{g.get('name')}, {_gib(g.get('memory_total_bytes'))}, power limit "
                f"{'?' if limit is None else f'{limit:.0f} W'}, {g.get('energy_mode')}",
            )
        table.add_row("GPU driver", str(env.get("gpu_driver")))
    else:
        table.add_row("GPUs", f"none ({env.get('gpu_note')})")
    torch = env.get("torch")
    if torch:
        threads = (
            f"{torch['threads']} (interop {torch['interop_threads']}), "
            f"CUDA build {torch['cuda_build']}"
        )
        table.add_row("torch threads", threads)
    table.add_row("python", f"{env.get('python')} ({env.get('platform')})")
    git = env.get("git")
    table.add_row(
        "git",
        "not a git work tree"
        if not git
        else f"{git['sha'][:12]}{' (dirty)' if git.get('dirty') else ''}",
    )
    for name, version in env.get("packages", {}).items():
        table.add_row(name, version or "not installed")
    return table


def measure_power(meter: Any, seconds: float) -> dict[str, float]:
    """Average watts per device over ``seconds`` of sampling, with a progress bar."""
    import time

    from rich.progress import Progress

    from wattserve.energy.sampler import EnergySampler

    sampler = EnergySampler(meter, interval_s=min(0.2, seconds / 2)).start()
    try:
        with Progress(transient=True) as progress:
            task = progress.add_task("measuring power", total=seconds)
            t0 = time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < seconds:
                progress.update(task, completed=elapsed)
                time.sleep(min(0.1, seconds - elapsed))
    finally:
        sampler.stop()
    series = sampler.series()
    m = sampler.window("probe", series[0].t_s, series[-1].t_s)
    return {d: j / m.duration_s for d, j in m.energy_j.items()} if m.duration_s > 0 else {}


def env(
    json_out: bool = typer.Option(
        False, "--json", help="Print the environment record as JSON (for scripts)."
    ),
    meter: str = typer.Option(
        "auto",
        "--meter",
        help="Energy meter: auto, nvml, rapl, modeled (modeled:system, modeled:process, "
        "modeled:cgroup), "
        "null, replay:PATH; join with + (nvml+rapl).",
    ),
    measure_s: float = typer.Option(
        0.0,
        "--measure-s",
        min=0.0,
        max=600.0,
        help="Also sample the meter for this many seconds and show average watts.",
    ),
) -> None:
    """Show the energy meter picked here (and why) and the machine facts recorded in run.json."""
    import json

    from wattserve.console import stdout_console
    from wattserve.energy.meters import auto_meter
    from wattserve.environment import collect_environment

    picked, reason = auto_meter(None if meter == "auto" else meter)
    try:
        power = measure_power(picked, measure_s) if measure_s > 0 else None
        record = collect_environment(meter=picked, meter_reason=reason, torch_threads=True)
    finally:
        close = getattr(picked, "close", None)
        if close is not None:
            close()
    if power is not None:
        record["power_w"] = power
    if json_out:
        typer.echo(json.dumps(record, indent=2, default=str))
    else:
        stdout_console().print(render(record, power))


def register(app: typer.Typer) -> None:
    app.command("env")(env)
