"""What the CLI bad-input tests share (no tests here): every leaf command of the typer app by
its path, running ``wattserve ARGV`` in this process, the one-error-line check, the known
failures, and a fresh working directory for each case.

The cases are split: ``test_cli_fuzz.py`` holds the generic ones every command gets and the
output checks for scripts, ``test_cli_fuzz_commands.py`` the bad inputs each command reads.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from wattserve.cli import build_app, main

Case = tuple[str, tuple[str, ...]]  # (command path, argv after the path)


def _commands() -> dict[str, Any]:
    """Every leaf command of the app by its path, e.g. ``"fit show"``."""
    out: dict[str, Any] = {}

    def walk(cmd: Any, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs is None:
            out[" ".join(path)] = cmd
            return
        for name, sub in subs.items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(build_app()), [])
    return out


COMMANDS = _commands()


# failures known and reported to the command's owner: strict=False, so a fix shows as XPASS
KNOWN: dict[Case, str] = {}


def params(cases: list[Case]) -> list[Any]:
    """The cases as pytest parameters, the ``KNOWN`` ones marked non-strict xfail."""
    return [
        pytest.param(*c, marks=pytest.mark.xfail(reason=KNOWN[c], strict=False))
        if c in KNOWN
        else c
        for c in cases
    ]


def case_id(value: str | tuple[str, ...]) -> str:
    return value if isinstance(value, str) else " ".join(value) or "(no arguments)"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``wattserve ARGV`` in this process: (exit code, stdout, stderr)."""
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    else:  # pragma: no cover - main always exits
        code = 0
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_error_line(argv: list[str], code: int, out: str, err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    shown = f"wattserve {' '.join(argv)}\nexit {code}\nstderr:\n{err}\nstdout:\n{out[-2000:]}"
    assert code != 0, shown
    assert "Traceback" not in err and "Traceback" not in out, shown
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert "internal error" not in lines[0], shown


def tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh working directory (commands write runs/ and fits.json there), a fixed
    environment (main sets OMP_WAIT_POLICY), and signal handlers restored afterwards; the
    body of each test file's ``in_tmp_cwd`` fixture."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.delenv("WATTSERVE_HOME", raising=False)
    monkeypatch.delenv("WATTSERVE_DEBUG", raising=False)
    term = signal.getsignal(signal.SIGTERM)
    yield tmp_path
    signal.signal(signal.SIGTERM, term)
