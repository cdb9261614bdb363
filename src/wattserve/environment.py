"""The machine and software a run was measured on, for ``run.json`` and ``wattserve env``.

``collect_environment`` never fails: facts it cannot get are ``None`` (and a GPU-less,
git-less machine is normal). Package versions come from installed metadata, so nothing
heavy is imported except torch when ``torch_threads`` is asked for.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ENVIRONMENT_SCHEMA = 1
# distribution name -> key in the record
PACKAGES = {
    "wattserve": "wattserve",
    "torch": "torch",
    "transformers": "transformers",
    "numpy": "numpy",
    "llama-cpp-python": "llama_cpp",
    "vllm": "vllm",
    "nvidia-ml-py": "pynvml",
    "psutil": "psutil",
}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist, key in PACKAGES.items():
        try:
            out[key] = md.version(dist)
        except md.PackageNotFoundError:
            out[key] = None
    return out


def git_state(start: Path | str | None = None) -> dict[str, Any] | None:
    """``{"sha", "dirty", "root"}`` of the git work tree holding ``start`` (default: this
    package's source, then the current directory); None when there is none or git is missing."""
    candidates = (
        [Path(start)] if start is not None else [Path(__file__).resolve().parent, Path.cwd()]
    )
    for where in candidates:
        try:
            root = _git(where, "rev-parse", "--show-toplevel")
            sha = _git(where, "rev-parse", "HEAD")
        except (OSError, subprocess.SubprocessError):
            continue
        if not sha:
            continue
        try:
            dirty = bool(_git(where, "status", "--porcelain", "--untracked-files=no"))
        except (OSError, subprocess.SubprocessError):
            dirty = None
        return {"sha": sha, "dirty": dirty, "root": root}
    return None


def _git(where: Path, *args: str) -> str:
    if not where.is_dir():
        raise OSError(f"{where} is not a directory")
    done = subprocess.run(
        ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=5, check=True
    )
    return done.stdout.strip()


def cpu_facts() -> dict[str, Any]:
    import psutil

    from wattserve.energy.modeled import cpu_model_name, usable_cores

    freq = None
    try:
        f = psutil.cpu_freq()
        freq = None if f is None else round(f.max or f.current, 1)
    except Exception:  # noqa: BLE001 - unsupported in some containers
        pass
    return {
        "model": cpu_model_name(),
        "arch": platform.machine(),
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_usable": usable_cores(),
        "max_mhz": freq,
    }


def memory_facts() -> dict[str, Any]:
    import psutil

    vm = psutil.virtual_memory()
    return {"total_bytes": int(vm.total), "available_bytes": int(vm.available)}


def torch_facts(import_torch: bool = True) -> dict[str, Any] | None:
    """Torch thread settings; with ``import_torch=False`` only if this process has loaded torch."""
    if not import_torch and "torch" not in sys.modules:
        return None
    try:
        import torch
    except Exception:  # noqa: BLE001 - missing or broken install
        return None
    return {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cuda_build": torch.version.cuda,
        "cuda_available": bool(torch.cuda.is_available()),
    }


def collect_environment(
    meter: Any = None,
    meter_reason: str | None = None,
    torch_threads: bool | None = None,
    probe_meter: bool = True,
) -> dict[str, Any]:
    """A JSON-able description of this machine and software.

    ``meter``/``meter_reason`` describe the meter in use; with no meter and ``probe_meter``
    the record says what ``auto_meter()`` would pick here and why. ``torch_threads``: True
    imports torch to report its threads (seconds), False never does, None (default) reports
    them only when this process already uses torch (an in-process engine).
    """
    from wattserve.energy.meters import auto_meter, meter_info
    from wattserve.energy.nvml import probe_gpus

    gpus, driver, gpu_note = probe_gpus()
    env: dict[str, Any] = {
        "schema": ENVIRONMENT_SCHEMA,
        "packages": package_versions(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "git": git_state(),
        "cpu": cpu_facts(),
        "memory": memory_facts(),
        "gpus": gpus,
        "gpu_driver": driver,
        "gpu_note": gpu_note,
        "torch": None if torch_threads is False else torch_facts(import_torch=bool(torch_threads)),
        "env_vars": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "WATTSERVE_METER")
            if k in os.environ
        },
    }
    if meter is None and probe_meter:
        try:
            meter, meter_reason = auto_meter()
        except Exception as exc:  # noqa: BLE001 - an environment record must not fail
            env["meter"] = {"type": None, "reason": f"no meter: {exc}"}
            return env
        try:
            env["meter"] = meter_info(meter, meter_reason)
        finally:
            close = getattr(meter, "close", None)
            if close is not None:
                close()
    elif meter is not None:
        env["meter"] = meter_info(meter, meter_reason)
    else:
        env["meter"] = None
    return env
