"""``wattserve cache``: inspect or clear a persistent response-cache store."""

from __future__ import annotations

import json
from typing import Any

import typer

from wattserve.commands.lists import numbers
from wattserve.errors import ConfigError


def register(app: typer.Typer) -> None:
    cache_app = typer.Typer(
        help="Inspect or clear a persistent response cache (SQLite or Redis).", no_args_is_help=True
    )
    app.add_typer(cache_app, name="cache")

    def _open(store: str) -> Any:
        from wattserve.cache import open_store

        if store.startswith("sqlite:") or store.endswith((".sqlite", ".sqlite3", ".db")):
            from pathlib import Path

            path = Path(store.removeprefix("sqlite:"))
            if not path.is_file():  # never create an empty store by inspecting it
                raise ConfigError(f"no cache store at {path}")
        s = open_store(store)
        if s is None:
            raise ConfigError(
                "give a persistent store: sqlite:PATH, PATH.sqlite or redis://HOST:PORT/DB"
            )
        return s

    @cache_app.command("stats")
    def stats(
        store: str = typer.Argument(..., help="sqlite:PATH, PATH.sqlite or redis://HOST:PORT/DB"),
        top: int = typer.Option(5, help="show the N most requested entries"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        as_json: bool = typer.Option(False, "--json", help="same as --format json"),
    ) -> None:
        """Entries, bytes, stored recompute cost and the most requested entries of a store."""
        if fmt not in ("table", "json"):
            raise ConfigError(f"--format must be table or json, not {fmt!r}")
        if top < 0:
            raise ConfigError("--top must be 0 or more")
        s = _open(store)
        rows = list(s.load_all())
        s.close()
        top_rows = [
            {"key": k[:16], "frequency": f, "cost": c, "size": z}
            for k, _, c, z, f in sorted(rows, key=lambda r: -r[4])[:top]
        ]
        summary: dict[str, Any] = {
            "entries": len(rows),
            "bytes": int(sum(r[3] for r in rows)),
            "stored_cost": float(sum(r[2] for r in rows)),
            "requests": int(sum(r[4] for r in rows)),
            "saved_cost_so_far": float(sum(r[2] * max(r[4] - 1, 0) for r in rows)),
            "top": top_rows,
        }
        if fmt == "json" or as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        from rich.table import Table

        from wattserve.console import stdout_console

        console = stdout_console()

        t = Table(title=f"cache store {store}")
        t.add_column("metric")
        t.add_column("value", justify="right")
        for k in ("entries", "bytes", "stored_cost", "requests", "saved_cost_so_far"):
            t.add_row(
                k, f"{summary[k]:,.6g}" if isinstance(summary[k], float) else f"{summary[k]:,}"
            )
        console.print(t)
        if top_rows:
            t2 = Table(title="most requested")
            for col in ("key", "frequency", "cost", "size"):
                t2.add_column(col, justify="right")
            for e in top_rows:
                t2.add_row(e["key"], str(e["frequency"]), f"{e['cost']:.4g}", str(e["size"]))
            console.print(t2)

    @cache_app.command("semantic-eval")
    def semantic_eval(
        data: str = typer.Option(
            "../shared/data/routing/mmlu", help="CSV or folder of CSVs with a prompt column"
        ),
        embedder: str = typer.Option("minilm", help="minilm (offline package) or hashing"),
        n_stored: int = typer.Option(800, help="distinct prompts stored in the index"),
        n_edited: int = typer.Option(400, help="stored prompts re-asked with surface edits"),
        threshold_opt: list[str] = typer.Option(
            ["0.8,0.85,0.9,0.95"], "--threshold", help="similarity thresholds (comma list)"
        ),
        seed: int = typer.Option(0),
        as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
    ) -> None:
        """False-hit rate of semantic lookup on distinct real prompts; true hits on edited ones."""
        from pathlib import Path

        from rich.table import Table

        from wattserve.cache.semantic import HashingEmbedder, MiniLMEmbedder, false_hit_report
        from wattserve.console import print_json, stdout_console
        from wattserve.route.data import load_labelled_csvs

        if embedder not in ("minilm", "hashing"):
            raise ConfigError("--embedder must be minilm or hashing")
        threshold = numbers(threshold_opt, "--threshold")
        if n_stored < 1 or n_edited < 0:
            raise ConfigError("--n-stored must be at least 1 and --n-edited at least 0")
        if not threshold or any(not 0 <= x <= 1 for x in threshold):
            raise ConfigError("each --threshold must be in [0, 1]")
        if not Path(data).exists():
            raise ConfigError(f"prompt data not found: {data}")
        texts = load_labelled_csvs(data).texts
        emb = MiniLMEmbedder() if embedder == "minilm" else HashingEmbedder()
        rows = false_hit_report(texts, emb, threshold, n_stored, n_edited, seed)
        if as_json:
            print_json({"embedder": emb.name, "rows": rows})
            return
        t = Table(
            title=f"semantic lookup with {emb.name}: {rows[0]['n_stored']} stored, "
            f"{rows[0]['n_negative']} distinct negatives, {rows[0]['n_positive']} edited positives"
        )
        for col in ("threshold", "false-hit rate", "true-hit rate"):
            t.add_column(col, justify="right")
        for r in rows:
            t.add_row(
                f"{r['threshold']:.2f}", f"{r['false_hit_rate']:.4f}", f"{r['true_hit_rate']:.4f}"
            )
        stdout_console().print(t)

    @cache_app.command("clear")
    def clear(
        store: str = typer.Argument(..., help="sqlite:PATH, PATH.sqlite or redis://HOST:PORT/DB"),
    ) -> None:
        """Delete every entry of a store."""
        s = _open(store)
        s.clear()
        s.close()
        typer.echo(f"cleared {store}")
