"""``wattserve cache``: inspect or clear a persistent response-cache store."""

from __future__ import annotations

import json

import typer

from wattserve.errors import ConfigError


def register(app: typer.Typer) -> None:
    cache_app = typer.Typer(
        help="Inspect or clear a persistent response cache (SQLite or Redis).", no_args_is_help=True
    )
    app.add_typer(cache_app, name="cache")

    def _open(store: str):
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
    ) -> None:
        """Entries, bytes, stored recompute cost and the most requested entries of a store."""
        s = _open(store)
        rows = list(s.load_all())
        s.close()
        summary = {
            "entries": len(rows),
            "bytes": int(sum(r[3] for r in rows)),
            "stored_cost": float(sum(r[2] for r in rows)),
            "requests": int(sum(r[4] for r in rows)),
            "saved_cost_so_far": float(sum(r[2] * max(r[4] - 1, 0) for r in rows)),
            "top": [
                {"key": k[:16], "frequency": f, "cost": c, "size": z}
                for k, _, c, z, f in sorted(rows, key=lambda r: -r[4])[:top]
            ],
        }
        if fmt == "json":
            typer.echo(json.dumps(summary, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"cache store {store}")
        t.add_column("metric")
        t.add_column("value", justify="right")
        for k in ("entries", "bytes", "stored_cost", "requests", "saved_cost_so_far"):
            t.add_row(
                k, f"{summary[k]:,.6g}" if isinstance(summary[k], float) else f"{summary[k]:,}"
            )
        Console().print(t)
        if summary["top"]:
            t2 = Table(title="most requested")
            for col in ("key", "frequency", "cost", "size"):
                t2.add_column(col, justify="right")
            for e in summary["top"]:
                t2.add_row(e["key"], str(e["frequency"]), f"{e['cost']:.4g}", str(e["size"]))
            Console().print(t2)

    @cache_app.command("semantic-eval")
    def semantic_eval(
        data: str = typer.Option(
            "../shared/data/routing/mmlu", help="CSV or folder of CSVs with a prompt column"
        ),
        embedder: str = typer.Option("minilm", help="minilm (offline package) or hashing"),
        n_stored: int = typer.Option(800, help="distinct prompts stored in the index"),
        n_edited: int = typer.Option(400, help="stored prompts re-asked with surface edits"),
        threshold: list[float] = typer.Option(
            [0.8, 0.85, 0.9, 0.95], help="similarity thresholds (repeat)"
        ),
        seed: int = typer.Option(0),
    ) -> None:
        """False-hit rate of semantic lookup on distinct real prompts, true-hit rate on edited ones."""
        from pathlib import Path

        from rich.console import Console
        from rich.table import Table

        from wattserve.cache.semantic import HashingEmbedder, MiniLMEmbedder, false_hit_report
        from wattserve.route.data import load_labelled_csvs

        if embedder not in ("minilm", "hashing"):
            raise ConfigError("--embedder must be minilm or hashing")
        if not Path(data).exists():
            raise ConfigError(f"prompt data not found: {data}")
        texts = load_labelled_csvs(data).texts
        emb = MiniLMEmbedder() if embedder == "minilm" else HashingEmbedder()
        rows = false_hit_report(texts, emb, threshold, n_stored, n_edited, seed)
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
        Console().print(t)

    @cache_app.command("clear")
    def clear(
        store: str = typer.Argument(..., help="sqlite:PATH, PATH.sqlite or redis://HOST:PORT/DB"),
    ) -> None:
        """Delete every entry of a store."""
        s = _open(store)
        s.clear()
        s.close()
        typer.echo(f"cleared {store}")
