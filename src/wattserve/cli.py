"""The ``wattserve`` command line: a typer app whose commands live in ``wattserve.commands``.

Each module in ``wattserve/commands/`` exposes ``register(app)``; that keeps one noun per
module and lets each command import its heavy libraries only when it runs. Errors that the
user can fix (``WattserveError``) are printed as one line, never as a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import NoReturn

import typer

from wattserve.errors import WattserveError

try:  # typer >= 0.24 carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click.exceptions import (  # type: ignore[assignment]
        ClickException,
        NoArgsIsHelpError,
        UsageError,
    )

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
    "mlenergy",
    "tasks",
    "eval",
    "demo",
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="wattserve",
        help=(
            "Measure, model, plan and serve small language models at the lowest energy per answer."
        ),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # help texts are plain: [ray], [0, 1] and cuda[:i] print as written
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def _root() -> None:
        """Measure, model, plan and serve small language models at the lowest energy per answer."""

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"wattserve.commands.{name}")
        except ModuleNotFoundError as exc:  # a command module not present: leave it out
            if exc.name == f"wattserve.commands.{name}":
                continue
            raise
        module.register(app)
    return app


def one_line(message: object) -> str:
    """A message on one line: parser errors (YAML, pydantic) span several lines."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def _fail(message: object, code: int) -> NoReturn:
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the CLI and exit. Every failure ends as one ``error: ...`` line on stderr and a
    non-zero exit: usage errors (exit 2), ``WattserveError`` (its exit code), operating-system
    errors such as an unreadable file (exit 2), and anything else as an internal error (exit 1;
    ``WATTSERVE_DEBUG=1`` re-raises it with its traceback)."""
    # OpenMP threads that spin while waiting starve each other (and the client, the gateway,
    # other replicas) on a shared CPU: measured with the embedded model at 2 threads, a busy
    # core cut concurrency-1 decoding from 9.2 to 6.3 tok/s (and 2.0 in the worst run) with
    # spinning, while on a quiet machine spinning gained only 11.5 vs 9.8 tok/s and charged
    # 17% more modeled J/token for the burnt cycles. Must be set before torch loads; a
    # value the user set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app = build_app()
    try:
        rv = app(args=argv, prog_name="wattserve", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `wattserve` or `wattserve fit` alone: the help text
        exc.show()
        sys.exit(exc.exit_code)
    except UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _fail(exc.format_message() + hint, exc.exit_code)
    except ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except typer.Abort:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except WattserveError as exc:
        _fail(exc, exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # a file that cannot be read or written, a socket that cannot bind
        if os.environ.get("WATTSERVE_DEBUG"):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}", 2)
    except Exception as exc:  # the last guard: no traceback for the user
        if os.environ.get("WATTSERVE_DEBUG"):
            raise
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (WATTSERVE_DEBUG=1 shows the traceback)",
            1,
        )
    if rv == 130:  # Ctrl-C inside a command (click turns it into exit code 130)
        print("interrupted", file=sys.stderr)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
