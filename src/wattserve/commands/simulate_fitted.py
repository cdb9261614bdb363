"""``wattserve simulate --trace LOG --fits FITS``: a gateway request log replayed with fitted
joules (and the trained router), once per cache policy, beside the joules the log metered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wattserve.errors import ConfigError


def fmt(x: Any) -> str:
    """A number for the simulate tables: thousands separated from 100 up, else 3 digits."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.3g}"
    return str(x)


def run_fitted(
    trace: Path,
    fits: Path,
    router_file: Path | None,
    router_costs: str,
    prompts: Path | None,
    route_all: bool,
    device: str | None,
    policies: list[str],
    capacity: int,
    capacity_bytes: int | None,
) -> dict[str, Any]:
    """Replay a request trace with fitted joules and the trained router, once per policy."""
    from wattserve.fit import load_fits
    from wattserve.route.costs import describe_router, fitted_joules, router_with_costs
    from wattserve.sim.fitted import FittedReplay, energy_fits
    from wattserve.sim.request_trace import is_request_trace, load_request_trace

    if router_costs not in ("training", "fits"):
        raise ConfigError(f"--router-costs must be training or fits, not {router_costs!r}")
    if capacity_bytes is not None and capacity_bytes < 1:
        raise ConfigError("--capacity-bytes must be positive")
    if not trace.exists():
        raise ConfigError(f"trace not found: {trace}")
    if not is_request_trace(trace):
        raise ConfigError(
            f"{trace}: --fits replays a request trace (prompt + token counts per row), "
            "not query + cost_<model> columns"
        )
    by_model = energy_fits(load_fits(fits), device)
    router = (
        router_with_costs(router_file, router_costs, by_model) if router_file is not None else None
    )
    if route_all and router is None:
        raise ConfigError("--route-all needs --router")
    requests = load_request_trace(trace, prompts)
    replay = FittedReplay(fitted_joules(by_model), router, route_all)
    runs = [replay.run(requests, p, capacity, capacity_bytes).to_dict() for p in policies]
    return {
        "config": {
            "trace": str(trace),
            "fits": str(fits),
            "router": describe_router(router) if router is not None else None,
            "router_costs": router_costs if router is not None else None,
            "fits_by_model": {m: f"{f.form} @ {f.device}" for m, f in by_model.items()},
            "capacity": capacity,
            "capacity_bytes": capacity_bytes,
            "policies": policies,
            "requests": len(requests),
        },
        "rows": runs,
    }


def print_fitted(result: dict[str, Any]) -> None:
    from rich.table import Table

    from wattserve.console import stdout_console

    cfg = result["config"]
    console = stdout_console()
    table = Table(title=f"fitted replay of {cfg['trace']} ({cfg['requests']} requests)")
    for col in ("policy", "hits", "misses", "hit rate", "simulated J", "saved J", "answers"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        looked_up = r["hits"] + r["misses"]
        table.add_row(
            r["policy"],
            str(r["hits"]),
            str(r["misses"]),
            f"{r['hits'] / looked_up:.3f}" if looked_up else "-",
            fmt(r["total_j"]),
            fmt(r["saved_j"]),
            ", ".join(f"{m} {n}" for m, n in sorted(r["answers"].items())),
        )
    console.print(table)
    if cfg["router"]:
        console.print(cfg["router"])
    traced = result["rows"][0]["traced_j"] if result["rows"] else None
    if traced is not None:
        vs = ", ".join(
            f"{r['policy']} {(r['total_j'] - traced) / traced:+.1%}"
            for r in result["rows"]
            if traced > 0
        )
        console.print(
            f"metered joules in the trace: {fmt(traced)}"
            + (f" (simulated vs it: {vs})" if vs else "")
        )
