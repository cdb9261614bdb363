"""Every ``wattserve`` command, fed the bad inputs it reads, fails with one ``error: ...``
line, no traceback: missing, unreadable and malformed files (CSV with an unterminated quote,
JSON, JSONL, YAML, a 9-byte GGUF), out-of-range values, a busy port and an unreachable
server, listed per command in ``SPECIFIC``; the generic cases every command gets are in
``test_cli_fuzz.py``. The commands run in-process through ``wattserve.cli.main`` with a
temporary working directory, and three through the installed entry point in a subprocess.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_fuzz_support import COMMANDS, assert_one_error_line, case_id, params, run_cli, tmp_cwd

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


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh working directory and environment (``cli_fuzz_support.tmp_cwd``)."""
    yield from tmp_cwd(tmp_path, monkeypatch)


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


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("path", "argv"),
    params([(path, argv) for path, many in SPECIFIC.items() for argv in many]),
    ids=case_id,
)
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
