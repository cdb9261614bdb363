"""benchmarks/gpu_check.py: the CPU mode end to end (tiny model, dummy weights, small grid);
the CUDA mode on a small grid where a GPU exists."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _run(out: Path, *args: str, timeout: float) -> tuple[dict, float]:
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((out / "gpu_check.json").read_text()), time.monotonic() - t0


def test_cpu_mode_writes_table_figure_and_recommendation(tmp_path: Path) -> None:
    doc, elapsed = _run(
        tmp_path,
        "--device",
        "cpu",
        "--replicas",
        "1,2",
        "--concurrency",
        "2",
        "--num-prompts",
        "4",
        "--threads",
        "2",
        "--deadline-s",
        "50",
        timeout=120,
    )
    assert elapsed < 50 + 30  # the deadline holds (a running group is stopped)
    assert doc["weights"] == "dummy weights"
    m = doc["models"]["tiny-llama"]
    one = [r for r in m["rows"] if r["replicas"] == "1"]
    assert one and int(one[0]["completed"]) == 4 and int(one[0]["failed"]) == 0
    assert float(one[0]["tok_s_per_device"]) > 0 and one[0]["weights"] == "dummy weights"
    assert m["analysis"]["recommendation"]["point"] in {r["point"] for r in m["rows"]}
    report = (tmp_path / "report.md").read_text()
    assert "dummy weights" in report and "| 1 | 2 |" in report and "Recommendation:" in report
    assert "<circle" in (tmp_path / "figures" / "tiny-llama.svg").read_text()
    run = json.loads(
        (tmp_path / "sweeps" / "tiny-llama" / one[0]["run_dir"] / "run.json").read_text()
    )
    assert run["config"]["engine"]["weights"] == "dummy weights"
    assert run["environment"]["weights"] == "dummy weights"


def test_bad_option_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--deadline-s", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr


@pytest.mark.gpu
def test_cuda_mode_small_grid_measures_nvml_energy(tmp_path: Path) -> None:
    doc, _ = _run(
        tmp_path,
        "--models",
        "smollm2-135m",
        "--replicas",
        "1,2",
        "--concurrency",
        "8",
        "--deadline-s",
        "150",
        timeout=240,
    )
    rows = doc["models"]["smollm2-135m"]["rows"]
    assert rows and all(float(r["j_per_token"]) > 0 for r in rows)
    assert doc["environment"]["gpus"] and doc["environment"]["gpu_driver"]
