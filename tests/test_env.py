"""collect_environment and the `wattserve env` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from test_energy_nvml import FakeNvml
from wattserve.cli import build_app, main
from wattserve.energy.meters import NullMeter
from wattserve.environment import collect_environment, git_state, package_versions


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(fail_init=True))
    monkeypatch.delenv("WATTSERVE_METER", raising=False)


def test_environment_record_schema(no_gpu: None) -> None:
    env = collect_environment(meter=NullMeter(), meter_reason="asked for none", torch_threads=False)
    assert env["schema"] == 1
    assert set(env["packages"]) >= {
        "wattserve",
        "torch",
        "transformers",
        "numpy",
        "llama_cpp",
        "vllm",
    }
    assert env["packages"]["wattserve"] and env["packages"]["numpy"]
    assert env["cpu"]["cores_logical"] >= 1 and env["cpu"]["model"]
    assert env["memory"]["total_bytes"] > 0
    assert env["gpus"] == [] and "NVML is not available" in env["gpu_note"]
    assert env["meter"] == {"type": "NullMeter", "devices": [], "reason": "asked for none"}
    json.dumps(env)  # JSON-able as it stands


def test_environment_probes_meter_and_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("WATTSERVE_METER", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    env = collect_environment(torch_threads=False)
    assert [g["name"] for g in env["gpus"]] == ["NVIDIA H100 80GB HBM3", "Tesla P100"]
    assert env["gpu_driver"] == "550.54.15" and env["gpus"][0]["power_limit_w"] == 700.0
    meter = env["meter"]
    assert meter["devices"][:2] == ["gpu0", "gpu1"]
    assert meter["reason"].startswith("NVML: 2 NVIDIA GPU(s)")
    assert fake.inits == fake.shutdowns  # probing leaves NVML closed


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_state_inside_and_outside_a_repo(tmp_path: Path) -> None:
    assert git_state(tmp_path) is None  # not a work tree: no error
    assert git_state(tmp_path / "missing") is None
    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (repo / "f.txt").write_text("x")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "init")
    state = git_state(repo)
    assert state is not None and len(state["sha"]) == 40 and state["dirty"] is False
    (repo / "f.txt").write_text("changed")
    assert git_state(repo)["dirty"] is True


def test_package_versions_none_when_absent() -> None:
    versions = package_versions()
    assert versions["vllm"] is None or isinstance(versions["vllm"], str)
    assert isinstance(versions["numpy"], str)


def test_torch_facts() -> None:
    pytest.importorskip("torch")
    from wattserve.environment import torch_facts

    facts = torch_facts()
    assert facts is not None and facts["threads"] >= 1 and facts["cuda_available"] in (True, False)
    # once torch is loaded, the default record (no forced import) reports it too
    env = collect_environment(meter=NullMeter(), meter_reason="-")
    assert env["torch"]["threads"] == facts["threads"]
    assert collect_environment(meter=NullMeter(), torch_threads=False)["torch"] is None


def test_environment_does_not_import_torch_by_default() -> None:
    code = (
        "import sys; from wattserve.environment import collect_environment; "
        "from wattserve.energy.meters import NullMeter; "
        "e = collect_environment(meter=NullMeter()); print(e['torch'], 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["None", "False"]


def test_env_command_json_and_table(no_gpu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # importing torch costs seconds; test_torch_facts covers it, the command only prints it
    asked: list[bool] = []

    def fake_torch_facts(import_torch: bool = True) -> dict:
        asked.append(import_torch)
        return {"threads": 3, "interop_threads": 1, "cuda_build": None, "cuda_available": False}

    monkeypatch.setattr("wattserve.environment.torch_facts", fake_torch_facts)
    runner = CliRunner()
    app = build_app()
    result = runner.invoke(app, ["env", "--json", "--meter", "null"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (
        record["meter"]["type"] == "NullMeter" and "null meter chosen" in record["meter"]["reason"]
    )
    assert record["torch"]["threads"] == 3 and asked == [True]  # `env` always reports torch threads
    table = runner.invoke(app, ["env", "--meter", "modeled:process", "--measure-s", "0.3"])
    assert table.exit_code == 0, table.output
    assert (
        "ModeledCpuMeter" in table.output and "power cpu" in table.output and "CPU" in table.output
    )
    assert "torch threads" in table.output
    assert runner.invoke(app, ["env", "--help"]).exit_code == 0


def test_env_command_bad_meter_is_one_line(
    no_gpu: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["env", "--meter", "abacus"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown meter 'abacus'") and "\n" not in err
    with pytest.raises(SystemExit) as info:
        main(["env", "--meter", "nvml"])
    assert info.value.code == 3
    assert "NVML is not available" in capsys.readouterr().err


@pytest.mark.gpu
def test_real_gpu_is_reported_and_metered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # pragma: no cover - GPU only
    monkeypatch.delenv("WATTSERVE_METER", raising=False)
    env = collect_environment(torch_threads=False)
    assert env["gpus"] and env["gpus"][0]["name"] and env["gpu_driver"]
    assert env["meter"]["type"] in ("NvmlMeter", "CompositeMeter")
    assert any(d.startswith("gpu") for d in env["meter"]["devices"])
