"""``wattserve footprint``: parameters, weight and KV-cache bytes, replicas per device."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("footprint")
    def footprint_cmd(
        model: str | None = typer.Argument(
            None,
            help="config.json, model directory, .gguf file, or a bundled example name "
            "(see --list).",
        ),
        dtype: str = typer.Option(
            "bf16",
            "--dtype",
            help="Weight format: fp32, bf16, fp16, fp8, int8, int4, q8_0, q4_0, q4_1.",
        ),
        kv_dtype: str = typer.Option(
            "bf16", "--kv-dtype", help="KV-cache element type: fp32, bf16, fp16, fp8, int8."
        ),
        context: int = typer.Option(
            4096, "--context", min=1, help="Tokens per sequence held in the KV cache."
        ),
        concurrency: int = typer.Option(
            1, "--max-concurrency", "--concurrency", min=1, help="Sequences per replica."
        ),
        device_memory_gib: float = typer.Option(
            80.0, "--device-memory-gib", min=0.0, help="Device memory in GiB."
        ),
        reserve: float = typer.Option(
            0.1, "--reserve", min=0.0, max=0.99, help="Fraction of device memory kept free."
        ),
        overhead_gib: float = typer.Option(
            0.0,
            "--overhead-gib",
            min=0.0,
            help="Runtime overhead per replica (GiB), e.g. CUDA context and activations.",
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print one JSON object instead of a table."
        ),
        list_bundled: bool = typer.Option(
            False, "--list", help="List the bundled example configs and exit."
        ),
    ) -> None:
        """Memory footprint of a model and how many replicas fit a device (offline, no hub)."""
        from rich.table import Table

        from wattserve.console import stdout_console
        from wattserve.errors import ConfigError
        from wattserve.footprint import GIB, bundled_configs, footprint

        console = stdout_console()
        if list_bundled:
            for name in bundled_configs():
                console.print(name)
            return
        if model is None:
            raise ConfigError(
                "give a model config (path, directory, .gguf or bundled name); "
                "--list shows bundled names"
            )
        f = footprint(model, dtype=dtype, kv_dtype=kv_dtype)
        device_bytes = device_memory_gib * GIB
        overhead = overhead_gib * GIB
        kv = f.kv_bytes(context, concurrency)
        fit = f.replicas_fit(device_bytes, context, concurrency, reserve, overhead)
        result = f.to_dict() | {
            "context_tokens": context,
            "concurrency": concurrency,
            "kv_bytes": kv,
            "replica_bytes": f.replica_bytes(context, concurrency, overhead),
            "device_memory_gib": device_memory_gib,
            "reserve_fraction": reserve,
            "overhead_gib": overhead_gib,
            "replicas_fit": fit,
        }
        if as_json:
            print(json.dumps(result, indent=2))
            return
        t = Table(title=f"{f.model} ({f.source})", show_header=False)
        t.add_row("architecture", f"{f.model_type}, {f.num_layers} layers, hidden {f.hidden_size}")
        t.add_row(
            "attention",
            f"{f.attention.upper()}: {f.num_heads} query heads, {f.num_kv_heads} KV heads, "
            f"head dim {f.head_dim}",
        )
        t.add_row(
            "parameters",
            f"{f.params:,}"
            + (f" ({f.active_params:,} active per token)" if f.active_params != f.params else ""),
        )
        t.add_row("weights", f"{f.weight_bytes / GIB:.3f} GiB at {f.weight_dtype}")
        t.add_row(
            "KV cache / token",
            f"{f.kv_bytes_per_token / 1024:.1f} KiB at {f.kv_dtype}"
            + (
                f" ({f.windowed_layers} layers windowed at {f.sliding_window})"
                if f.windowed_layers
                else ""
            ),
        )
        t.add_row("KV cache", f"{kv / GIB:.3f} GiB for {concurrency} x {context} tokens")
        t.add_row(
            "per replica",
            f"{result['replica_bytes'] / GIB:.3f} GiB (incl. {overhead_gib:g} GiB overhead)",
        )
        t.add_row(
            "replicas that fit", f"{fit} on {device_memory_gib:g} GiB with {reserve:.0%} reserved"
        )
        for note in f.notes:
            t.add_row("note", note)
        console.print(t)
