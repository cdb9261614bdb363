"""Every ``wattserve`` command, fed bad input, fails with one ``error: ...`` line, no traceback.

The commands are enumerated from the typer app, so a new command gets the generic cases
(an unknown option, a non-number for each numeric option, no arguments when some are
required) without anyone listing it. ``SPECIFIC`` adds the bad inputs each command reads:
missing, unreadable and malformed files (CSV with an unterminated quote, JSON, JSONL, YAML,
a 9-byte GGUF), out-of-range values, a busy port and an unreachable server. The commands
run in-process through ``wattserve.cli.main`` (the entry point) with a temporary working
directory; each case is checked before any model loads, so the whole file takes seconds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import types
import typing
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


# {name} is filled from the ``inputs`` fixture below
SPECIFIC: dict[str, list[tuple[str, ...]]] = {
    "env": [("--meter", "bogus"), ("--measure-s", "-1"), ("--measure-s", "9999")],
    "generate": [
        ("hi", "--base-url", "{closed_url}"),
        ("hi", "--model", "{bad_gguf}"),
        ("hi", "--model", "{empty_gguf}"),
        ("hi", "--model", "{missing}.gguf"),
        ("hi", "--max-tokens", "0"),
        ("hi", "--endpoint", "bogus"),
        ("hi", "--dtype", "bogus"),
    ],
    "mock-server": [("--port", "99999"), ("--port", "-1"), ("--port", "{busy}")],
    "bench": [
        ("--model", "m", "--backend", "openai", "--base-url", "{closed_url}", "--num-prompts", "2"),
        (
            "--model",
            "m",
            "--backend",
            "simulated",
            "--dataset-name",
            "custom",
            "--dataset-path",
            "{bad_jsonl}",
        ),
        (
            "--model",
            "m",
            "--backend",
            "simulated",
            "--dataset-name",
            "custom",
            "--dataset-path",
            "{bad_csv}",
        ),
        (
            "--model",
            "m",
            "--backend",
            "simulated",
            "--dataset-name",
            "custom",
            "--dataset-path",
            "{missing}",
        ),
        (
            "--model",
            "m",
            "--backend",
            "simulated",
            "--dataset-name",
            "custom",
            "--dataset-path",
            "{unreadable}",
        ),
        (
            "--model",
            "m",
            "--backend",
            "simulated",
            "--dataset-name",
            "sharegpt",
            "--dataset-path",
            "{bad_json}",
        ),
        ("--model", "m", "--backend", "simulated", "--max-concurrency", "abc"),
        ("--resume", "{missing}"),
        (),
    ],
    "simulate": [
        ("--trace", "{bad_csv}"),
        ("--trace", "{bad_jsonl}"),
        ("--trace", "{bad_json}"),
        ("--trace", "{missing}"),
        ("--trace", "{a_dir}"),
        ("--trace", "{unreadable}"),
        ("--preset", "nope"),
        ("--preset", "zhu-synthetic", "--capacity", "0"),
        ("--preset", "zhu-synthetic", "--accuracy", "2"),
        ("--preset", "zhu-synthetic", "--format", "xml"),
        (),
    ],
    "serve": [
        ("--config", "{bad_yaml}"),
        ("--config", "{schema_yaml}"),
        ("--config", "{missing}.yaml"),
        ("--config", "{a_dir}"),
        ("--config", "{unreadable}"),
        ("--config", "{mock_yaml}", "--port", "99999"),
        ("--config", "{mock_yaml}", "--port", "0"),
        ("--config", "{mock_yaml}", "--port", "{busy}"),
    ],
    "demo-gateway": [
        ("--config", "{bad_yaml}"),
        ("--config", "{missing}.yaml"),
        ("--num-prompts", "0"),
        ("--port", "99999"),
        ("--port", "{busy}"),  # the packaged default config, found from a temporary cwd
        ("--config", "{mock_yaml}", "--port", "{busy}"),
    ],
    "footprint": [
        ("{bad_gguf}",),
        ("{empty_gguf}",),
        ("{bad_json}",),
        ("{unreadable}",),
        ("{missing}",),
        ("smollm2-135m", "--context", "0"),
        ("smollm2-135m", "--dtype", "bogus"),
        ("smollm2-135m", "--reserve", "1.5"),
        (),
    ],
    "sweep": [
        ("--replicas", "abc"),
        ("--replicas", "0"),
        ("--backend", "bogus"),
        ("--goodput", "bogus"),
        ("--gpu-memory-utilization", "2"),
        ("--result-dir", "{bad_json}"),
        ("--result-dir", "{bad_sweep_dir}"),
    ],
    "report": [
        ("{missing}",),
        ("{a_dir}",),
        ("{run_dir}", "--fits", "{bad_json}"),
        ("{run_dir}", "--fits", "{missing}.json"),
        ("{run_dir}", "--fits", "{unreadable}"),
        ("{run_dir}", "--plan", "{bad_json}"),
    ],
    "eval": [
        (),
        ("--tasks", "{bad_jsonl}"),
        ("--tasks", "{missing}", "--model", "m"),
        ("--tasks", "{bad_jsonl}", "--model", "m", "--base-url", "{closed_url}"),
        ("--resume", "{missing}"),
    ],
    "runs list": [("--result-dir", "{missing}"), ("--result-dir", "{bad_json}")],
    "runs show": [("nope", "--result-dir", "{a_dir}"), ("{missing}",), ("{bad_run_dir}",)],
    "fit run": [
        ("{bad_csv}",),
        ("{bad_json}",),
        ("{bad_jsonl}",),
        ("{unreadable}",),
        ("{missing}",),
        ("{a_dir}",),
        ("{wrong_json}",),
        ("{measurements}", "--folds", "1"),
        ("{measurements}", "--quantity", "bogus"),
    ],
    "fit show": [
        ("{bad_json}",),
        ("{missing}",),
        ("{a_dir}",),
        ("{unreadable}",),
        ("{wrong_json}",),
    ],
    "plan run": [
        ("--queries", "{bad_csv}", "--targets", "{targets_yaml}"),
        ("--queries", "{bad_jsonl}", "--targets", "{targets_yaml}"),
        ("--queries", "{unreadable}", "--targets", "{targets_yaml}"),
        ("--queries", "{missing}", "--targets", "{targets_yaml}"),
        ("--queries", "{queries}", "--targets", "{bad_yaml}"),
        ("--queries", "{queries}", "--targets", "{missing}.yaml"),
        ("--queries", "{queries}", "--targets", "{targets_yaml}", "--fits", "{bad_json}"),
        ("--queries", "{queries}", "--targets", "{targets_yaml}", "--objective", "bogus"),
        ("--queries", "{queries}", "--targets", "{targets_yaml}", "--makespan-s", "-1"),
    ],
    "plan queries": [
        ("{bad_csv}",),
        ("{unreadable}",),
        ("{missing}",),
        ("{a_dir}",),
        ("{measurements}", "-n", "0"),
    ],
    "cache stats": [
        ("{missing}.sqlite",),
        ("{bad_json}",),
        ("{garbage_sqlite}",),
        ("redis://127.0.0.1:{closed}/0",),
        ("{missing}.sqlite", "--format", "xml"),
    ],
    "cache semantic-eval": [
        ("--data", "{bad_csv}", "--embedder", "hashing"),
        ("--data", "{unreadable}", "--embedder", "hashing"),
        ("--data", "{missing}", "--embedder", "hashing"),
        ("--data", "{labels}", "--embedder", "bogus"),
        ("--data", "{labels}", "--embedder", "hashing", "--threshold", "2"),
    ],
    "cache clear": [
        ("{missing}.sqlite",),
        ("{bad_json}",),
        ("{garbage_sqlite}",),
        ("redis://127.0.0.1:{closed}/0",),
    ],
    "route train": [
        ("--data", "{bad_csv}"),
        ("--data", "{unreadable}"),
        ("--data", "{missing}"),
        ("--data", "{empty_dir}"),
        ("--data", "{labels}", "--objective", "bogus"),
        ("--data", "{labels}", "--target-share", "2"),
        ("--data", "{labels}", "--cost", "bogus"),
    ],
    "route eval": [
        ("--data", "{bad_csv}"),
        ("--data", "{missing}"),
        ("--data", "{labels}", "--split", "bogus"),
        ("--data", "{labels}", "--test-fraction", "1.5"),
        ("--data", "{labels}", "--format", "xml"),
    ],
    "route decide": [
        ("--router", "{missing}", "--prompt", "hi"),
        ("--router", "{bad_json}", "--prompt", "hi"),
        ("--router", "{a_dir}", "--prompt", "hi"),
    ],
    "mlenergy view": [("{missing}",), ("{bad_csv}",), ("{unreadable}",), ("{measurements}",)],
    "mlenergy points": [("{bad_csv}", "-o", "{out_dir}"), ("{missing}", "-o", "{out_dir}")],
    "tasks make": [("--family", "bogus"), ("--family", "arithmetic", "--n", "0")],
    "tasks families": [],
}

# the default command of a group: `wattserve fit DATA` is `wattserve fit run DATA`
GROUP_DEFAULTS: list[tuple[str, ...]] = [
    ("fit", "{bad_csv}"),
    ("plan", "--queries", "{bad_csv}", "--targets", "{targets_yaml}"),
]


# failures known and reported to the command's owner: strict=False, so a fix shows as XPASS
KNOWN: dict[Case, str] = {}


def _cases() -> list[Any]:
    cases = _generic_cases()
    cases += [(path, argv) for path, many in SPECIFIC.items() for argv in many]
    return [
        pytest.param(*c, marks=pytest.mark.xfail(reason=KNOWN[c], strict=False))
        if c in KNOWN
        else c
        for c in cases
    ]


def _case_id(value: str | tuple[str, ...]) -> str:
    return value if isinstance(value, str) else " ".join(value) or "(no arguments)"


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    """A port some other socket listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A port nothing listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unreadable(root: Path) -> Path:
    """A file that cannot be read as text: no read permission, or (as root, who reads any
    file) bytes that are not UTF-8."""
    p = root / "unreadable.csv"
    p.write_bytes(b"\xff\xfe\x00garbage\x80\n")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        p.chmod(0)
    return p


@pytest.fixture(scope="module")
def inputs(
    tmp_path_factory: pytest.TempPathFactory, busy_port: int, closed_port: int
) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-inputs")
    files = {
        "bad_csv": ("bad.csv", 'prompt,a,b\n"unterminated,1,0\nx,1,0\n'),
        "bad_json": ("bad.json", '{"fits": [1,\n'),
        "bad_jsonl": ("bad.jsonl", '{"prompt": "ok"}\n{not json\n'),
        "bad_yaml": ("bad.yaml", "models: [1, 2\nhost: : :\n"),
        "schema_yaml": ("schema.yaml", "models: [{name: x, replicas: [{kind: url}]}]\n"),
        "wrong_json": ("wrong.json", '{"something": "else"}\n'),
        "mock_yaml": (
            "mock.yaml",
            "host: 127.0.0.1\nport: 8089\nmodels:\n  - name: mock\n"
            "    replicas:\n      - kind: mock\n",
        ),
        "measurements": ("m.csv", "model,device,input_tokens,output_tokens\nx,cpu,1,1\n"),
        "queries": ("queries.csv", "id,input_tokens,output_tokens\nq0,10,10\nq1,20,5\n"),
        "labels": (
            "labels.csv",
            "prompt,small,large\n"
            + "".join(f"question {i},{i % 2},{1 - i % 3 // 2}\n" for i in range(40)),
        ),
    }
    out = {name: str(root / fname) for name, (fname, _) in files.items()}
    for fname, text in files.values():
        (root / fname).write_text(text)
    (root / "targets.yaml").write_text(
        "fits: fits.json\ntargets:\n  - {name: a, model: x, device: cpu}\n"
    )
    (root / "bad.gguf").write_bytes(b"GGUF\x03\x00\x00\x00\x01")  # 9 bytes: cut in the header
    (root / "empty.gguf").write_bytes(b"")
    (root / "garbage.sqlite").write_bytes(b"not a database at all\n" * 10)
    for d in ("a_dir", "empty_dir", "out_dir", "run_dir", "bad_run_dir", "bad_sweep_dir"):
        (root / d).mkdir()
        out[d] = str(root / d)
    (root / "run_dir" / "run.json").write_text('{"run_id": "r1", "config": {}}\n')
    (root / "bad_run_dir" / "run.json").write_text('{"run_id": \n')
    (root / "bad_sweep_dir" / "sweep.json").write_text("{broken\n")
    out |= {
        "targets_yaml": str(root / "targets.yaml"),
        "bad_gguf": str(root / "bad.gguf"),
        "empty_gguf": str(root / "empty.gguf"),
        "garbage_sqlite": str(root / "garbage.sqlite"),
        "unreadable": str(_unreadable(root)),
        "missing": str(root / "no-such-file"),
        "busy": str(busy_port),
        "closed": str(closed_port),
        "closed_url": f"http://127.0.0.1:{closed_port}/v1",
    }
    return out


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


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh working directory (commands write runs/ and fits.json there), a fixed
    environment (main sets OMP_WAIT_POLICY), and signal handlers restored afterwards."""
    import signal

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.delenv("WATTSERVE_HOME", raising=False)
    monkeypatch.delenv("WATTSERVE_DEBUG", raising=False)
    term = signal.getsignal(signal.SIGTERM)
    yield tmp_path
    signal.signal(signal.SIGTERM, term)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("path", "argv"), _cases(), ids=_case_id)
def test_bad_input_gives_one_error_line(
    path: str,
    argv: tuple[str, ...],
    inputs: dict[str, str],
    in_tmp_cwd: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    full = [*path.split(), *(a.format(**inputs) for a in argv)]
    assert_one_error_line(full, *run_cli(full, capsys))


@pytest.mark.parametrize("argv", GROUP_DEFAULTS, ids=" ".join)
def test_group_default_command_gets_the_same_errors(
    argv: tuple[str, ...],
    inputs: dict[str, str],
    in_tmp_cwd: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    full = [a.format(**inputs) for a in argv]
    assert_one_error_line(full, *run_cli(full, capsys))


def test_every_listed_command_exists_and_all_are_enumerated() -> None:
    """SPECIFIC names only real commands, and the enumeration sees groups' subcommands."""
    assert set(SPECIFIC) <= set(COMMANDS), set(SPECIFIC) - set(COMMANDS)
    assert {"fit run", "fit show", "serve", "runs list", "route decide"} <= set(COMMANDS)


def test_unknown_command_and_bare_group(
    in_tmp_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["no-such-command"]
    assert_one_error_line(argv, *run_cli(argv, capsys))
    code, out, err = run_cli(["fit"], capsys)  # a group alone prints its help
    assert code == 2 and "show" in out + err and "Traceback" not in out + err


def test_entry_point_in_a_subprocess(busy_port: int, closed_port: int, tmp_path: Path) -> None:
    """The installed entry point, with real stderr: nothing else (no unclosed-session warnings,
    no log lines) beside the one error line."""
    cases = [
        ["demo-gateway", "--port", str(busy_port)],
        ["generate", "hi", "--base-url", f"http://127.0.0.1:{closed_port}/v1"],
        ["serve", "--config", str(tmp_path / "none.yaml")],
    ]
    for argv in cases:
        r = subprocess.run(
            [sys.executable, "-m", "wattserve", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if k != "WATTSERVE_DEBUG"},
        )
        assert_one_error_line(argv, r.returncode, r.stdout, r.stderr)


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
