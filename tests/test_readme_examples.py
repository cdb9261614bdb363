"""The README's "Python API" examples run as written: each ``python`` block of that section is
executed in order, in its own interpreter, in one empty directory (later blocks read what
earlier ones wrote: the plan reads ``fits.json``, the report reads the sweep directory).
They use the mock OpenAI server and paced mock replicas, so no model loads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Python API"
BLOCK_TIMEOUT_S = 60
TOTAL_BUDGET_S = 60


def python_blocks(text: str) -> list[str]:
    """The ``python`` fenced blocks between ``## Python API`` and the next ``## `` heading."""
    start = text.index(SECTION + "\n")
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end >= 0 else len(text)]
    return re.findall(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)


def test_blocks_are_found():
    blocks = python_blocks(README.read_text())
    assert len(blocks) == 6
    imports = " ".join(blocks)
    for package in ("bench", "fit", "plan", "serve", "sweep", "report"):
        assert f"from wattserve.{package} import" in imports


def test_readme_examples_run(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("WATTSERVE_METER", None)
    started = time.monotonic()
    outputs = []
    for n, code in enumerate(python_blocks(README.read_text()), 1):
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )
        assert proc.returncode == 0, f"README Python API block {n} failed:\n{proc.stderr[-3000:]}"
        outputs.append(proc.stdout)
    assert time.monotonic() - started < TOTAL_BUDGET_S

    bench, fit, plan, serve, sweep, report = outputs
    run_json = next(tmp_path.glob("runs/mock-*/run.json"))
    assert json.loads(run_json.read_text())["status"] == "complete"
    assert " complete 16 requests" in bench
    assert "CV MAPE" in fit and (tmp_path / "fits.json").is_file()
    assert plan.startswith("milp ") and "mean quality 0.65" in plan.splitlines()[0]
    assert serve.split()[0] == "miss" and "\nhit " in serve
    assert "recommended: mock-" in sweep
    assert (tmp_path / "runs/sweep/report.html").stat().st_size > 10_000
    assert report.startswith("runs/sweep/report.html")
