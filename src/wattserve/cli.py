"""The ``wattserve`` command line: a typer app whose commands live in ``wattserve.commands``.

Each module in ``wattserve/commands/`` exposes ``register(app)``; that keeps one noun per
module and lets each command import its heavy libraries only when it runs. Errors that the
user can fix (``WattserveError``) are printed as one line, never as a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from wattserve.errors import WattserveError

COMMAND_MODULES = (
    "env",
    "engines",
    "bench",
    "runs",
    "fit",
    "plan",
    "cache",
    "route",
    "simulate",
    "serve",
    "footprint",
    "sweep",
    "report",
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="wattserve",
        help="Measure, model, plan and serve small language models at the lowest energy per answer.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def _root() -> None:
        """Measure, model, plan and serve small language models at the lowest energy per answer."""

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"wattserve.commands.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet: leave it out
            if exc.name == f"wattserve.commands.{name}":
                continue
            raise
        module.register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    # OpenMP threads that spin while waiting starve each other (and the client, the gateway,
    # other replicas) on a shared CPU: measured with the embedded model at 2 threads, a busy
    # core cut concurrency-1 decoding from 9.2 to 6.3 tok/s (and 2.0 in the worst run) with
    # spinning, while on a quiet machine spinning gained only 11.5 vs 9.8 tok/s and charged
    # 17% more modeled J/token for the burnt cycles. Must be set before torch loads; a
    # value the user set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app = build_app()
    try:
        app(args=argv, prog_name="wattserve")
    except WattserveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
