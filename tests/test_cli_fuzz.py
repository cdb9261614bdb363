"""Every ``wattserve`` command, fed bad input, fails with one ``error: ...`` line, no traceback:
the generic cases, and output meant for scripts.

The commands are enumerated from the typer app (``cli_fuzz_support.COMMANDS``), so a new
command gets the generic cases (an unknown option, a non-number for each numeric option, no
arguments when some are required) without anyone listing it; the bad inputs each command
reads are in ``test_cli_fuzz_commands.py``. The commands run in-process through
``wattserve.cli.main`` (the entry point) with a temporary working directory; each case is
checked before any model loads, so the whole file takes seconds. Tables printed to a pipe
are not cut, and ``--json`` output parses.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_fuzz_support import (
    COMMANDS,
    Case,
    assert_one_error_line,
    case_id,
    params,
    run_cli,
    tmp_cwd,
)


def _annotation(param: Any) -> Any:
    """A parameter's Python type (``int | None`` -> ``int``), from typer's description of it."""
    described = getattr(param, "type_descriptor", None)
    ann = getattr(described, "annotation", None)
    if ann is None:  # typer on click: click's own type
        return {"INT": int, "FLOAT": float}.get(getattr(getattr(param, "type", None), "name", ""))
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        ann = args[0] if len(args) == 1 else ann
    if typing.get_origin(ann) is list:
        ann = typing.get_args(ann)[0]
    return ann


def _generic_cases() -> list[Case]:
    cases: list[Case] = []
    for path, cmd in COMMANDS.items():
        cases.append((path, ("--no-such-option",)))
        for p in cmd.params:
            opts = [o for o in getattr(p, "opts", []) if o.startswith("--")]
            if opts and _annotation(p) in (int, float) and not getattr(p, "is_flag", False):
                cases.append((path, (opts[0], "not-a-number")))
        if any(p.required for p in cmd.params):
            cases.append((path, ()))
    return cases


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh working directory and environment (``cli_fuzz_support.tmp_cwd``)."""
    yield from tmp_cwd(tmp_path, monkeypatch)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("path", "argv"), params(_generic_cases()), ids=case_id)
def test_bad_input_gives_one_error_line(
    path: str,
    argv: tuple[str, ...],
    in_tmp_cwd: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    full = [*path.split(), *argv]
    assert_one_error_line(full, *run_cli(full, capsys))


def test_unknown_command_and_bare_group(
    in_tmp_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["no-such-command"]
    assert_one_error_line(argv, *run_cli(argv, capsys))
    code, out, err = run_cli(["fit"], capsys)  # a group alone prints its help
    assert code == 2 and "show" in out + err and "Traceback" not in out + err


# ------------------------------------------------------------------ output for scripts
def _fits_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    rows = ["model,device,input_tokens,output_tokens,energy_j,runtime_s"]
    for i in (8, 16, 32, 64, 128, 256):
        for o in (4, 8, 16, 32, 64):
            rows.append(f"tiny-model-name,cpu-device,{i},{o},{0.5 + 0.01 * i + 0.2 * o},{0.1 * o}")
    data = tmp_path / "m.csv"
    data.write_text("\n".join(rows) + "\n")
    fits = tmp_path / "fits.json"
    code, _, err = run_cli(["fit", str(data), "-o", str(fits), "--min-rows", "5"], capsys)
    assert code == 0, err
    return fits


def test_tables_are_not_cut_when_stdout_is_not_a_terminal(
    in_tmp_cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # what a CI runner or a narrow pipe reports
    fits = _fits_file(in_tmp_cwd, capsys)
    code, out, err = run_cli(["fit", "show", str(fits), "--params"], capsys)
    assert code == 0, err
    assert "…" not in out
    header = next(line for line in out.splitlines() if "CV MAPE" in line)
    for col in ("model", "device", "quantity", "form", "CV R²", "R² unc.", "rows", "output"):
        assert col in header
    assert max(len(line) for line in out.splitlines()) > 80  # wider than rich's default
    code, out, err = run_cli(["footprint", "smollm2-135m"], capsys)
    assert code == 0 and "…" not in out, err


def test_json_output_parses(in_tmp_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fits = _fits_file(in_tmp_cwd, capsys)
    code, out, err = run_cli(["fit", "show", str(fits), "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert {f["quantity"] for f in doc["fits"]} == {"energy_j", "runtime_s"}
    assert all(f["model"] == "tiny-model-name" for f in doc["fits"])

    data = in_tmp_cwd / "m.csv"
    code, out, err = run_cli(
        ["fit", str(data), "-o", "f2.json", "--min-rows", "5", "--json"], capsys
    )
    assert code == 0, err
    assert len(json.loads(out)["fits"]) == len(json.loads(Path("f2.json").read_text())["fits"])

    (in_tmp_cwd / "runs").mkdir()
    code, out, err = run_cli(["runs", "list", "--json"], capsys)
    assert code == 0 and json.loads(out) == [], err

    code, out, err = run_cli(["footprint", "smollm2-135m", "--json"], capsys)
    assert code == 0 and json.loads(out)["replicas_fit"] >= 1, err

    labels = in_tmp_cwd / "labels.csv"
    labels.write_text(
        "prompt,small,large\n"
        + "".join(f"question number {i} {'long ' * (i % 5)},{i % 2},1\n" for i in range(60))
    )
    code, out, err = run_cli(["route", "eval", "--data", str(labels), "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["n"] > 0 and "auc" in res

    from wattserve.cache import open_store

    store = open_store(f"sqlite:{in_tmp_cwd / 'c.sqlite'}")
    assert store is not None
    store.put("k" * 20, {"text": "answer"}, 2.0, 10, 3)
    store.close()
    code, out, err = run_cli(["cache", "stats", str(in_tmp_cwd / "c.sqlite"), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["entries"] == 1
