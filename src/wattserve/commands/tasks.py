"""``wattserve tasks``: generate checkable task items (few-shot prompts with reference answers)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from wattserve.commands import lists
from wattserve.errors import ConfigError


def _levels(spec: str | None) -> list[int] | None:
    if not spec:
        return None
    try:
        return [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--difficulty {spec!r}: give integers, e.g. 1,2,3") from None


def register(app: typer.Typer) -> None:
    tasks_app = typer.Typer(
        help="Generate checkable tasks (seeded, from tables the package ships).",
        no_args_is_help=True,
    )
    app.add_typer(tasks_app, name="tasks")

    @tasks_app.command("make")
    def make(
        family: list[str] = typer.Option(
            ...,
            "--family",
            help="Task family (repeat or comma list; 'all' for every family with the levels).",
        ),
        n: int = typer.Option(100, "--n", help="Items per family."),
        seed: int = typer.Option(0, "--seed", help="Generation seed."),
        difficulty: str | None = typer.Option(
            None, "--difficulty", help="Only these levels, e.g. 1,2 (default: all)."
        ),
        output: Path = typer.Option(Path("tasks.jsonl"), "-o", "--output", help="JSONL to write."),
    ) -> None:
        """Write N items per family: id, family, difficulty, prompt, answer, checker."""
        from wattserve.tasks import FAMILIES, make_tasks, write_tasks

        names = lists.names(family)
        if names == ["all"]:  # with --difficulty: every family that has those levels
            want = set(_levels(difficulty) or ())
            names = [f.name for f in FAMILIES.values() if want <= set(f.levels)]
            if not names:
                raise ConfigError(f"no task family has difficulty levels {difficulty}")
        if len(set(names)) != len(names):
            raise ConfigError("each --family may be given once")
        items = [it for name in names for it in make_tasks(name, n, seed, _levels(difficulty))]
        count = write_tasks(output, items)
        typer.echo(f"wrote {count} items ({', '.join(names)}; seed {seed}) to {output}")

    @tasks_app.command("families")
    def families(
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """List the task families and their difficulty levels."""
        from wattserve.tasks import FAMILIES

        rows = [
            {"family": f.name, "levels": list(f.levels), "description": f.description}
            for f in FAMILIES.values()
        ]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            typer.echo(f"{r['family']:<13} levels {r['levels']}: {r['description']}")
