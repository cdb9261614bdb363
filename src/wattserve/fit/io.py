"""Read measurements (CSV, Parquet, bench run directories) and read/write ``ModelFit`` JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wattserve.errors import ConfigError
from wattserve.fit.fitting import GroupData
from wattserve.readers import read_csv, read_json, read_json_table
from wattserve.types import ModelFit

FITS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Columns:
    """Which column holds what; ``None`` means: pick the first default that exists."""

    model: str | None = None
    device: str | None = None
    input_tokens: str | None = None
    output_tokens: str | None = None
    runtime_s: str | None = None
    energy_j: str | None = None


DEFAULTS = {
    "model": ("model",),
    "device": ("device", "system", "gpu"),
    "input_tokens": ("input_tokens", "prompt_tokens", "input_len"),
    "output_tokens": ("output_tokens", "completion_tokens", "output_len"),
    "runtime_s": ("runtime_s", "e2e_s", "latency_s"),
    "energy_j": ("total_energy_j", "energy_j", "gpu_energy_j"),
}


def _read_run_dir(path: Path):
    """A bench run directory: ``requests.jsonl`` (+ ``run.json`` for model/device)."""
    import pandas as pd

    req = path / "requests.jsonl"
    if not req.is_file():
        raise ConfigError(f"{path}: a run directory must hold requests.jsonl")
    meta = {}
    if (path / "run.json").is_file():
        try:
            meta = json.loads((path / "run.json").read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path / 'run.json'}: not valid JSON ({exc})") from None
    rows = []
    for n, line in enumerate(req.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise ConfigError(f"{req}:{n}: not valid JSON") from None
    df = pd.DataFrame(rows)
    if df.empty:
        raise ConfigError(f"{req}: no requests")
    if "error" in df:
        df = df[df["error"].isna()]
    if {"end_s", "sent_s"} <= set(df.columns):
        df = df.assign(runtime_s=df["end_s"] - df["sent_s"])
    config = meta.get("config") or {}
    if "model" not in df or df["model"].isna().all():
        df = df.assign(model=config.get("model", "unknown"))
    if "device" not in df or df["device"].isna().all():
        df = df.assign(device=run_device(meta) or "unknown")
    return df


def _gpu_name(env: dict) -> str | None:
    gpus = env.get("gpus")
    if env.get("gpu_name"):
        return str(env["gpu_name"])
    if isinstance(gpus, list) and gpus:
        first = gpus[0]
        return str(first.get("name") or "gpu") if isinstance(first, dict) else str(first)
    return None


def _cpu_name(env: dict) -> str | None:
    cpu = env.get("cpu")
    name = cpu.get("model") if isinstance(cpu, dict) else None
    return str(name or env.get("cpu_name") or "") or None


def run_device(meta: dict) -> str | None:
    """The device a bench run was measured on, from its ``run.json``.

    ``config.device`` when given; else the metered device: the GPU's name under an NVML
    meter, the CPU's model under RAPL or the modeled CPU meter and for in-process engines
    (local, llama-cpp); else the first GPU, else the CPU. None when the environment is empty.
    """
    config, env = meta.get("config") or {}, meta.get("environment") or {}
    if config.get("device") or env.get("device"):
        return str(config.get("device") or env.get("device"))
    meter = str(meta.get("meter") or (meta.get("meter_info") or {}).get("type") or "").lower()
    on_cpu = config.get("backend") in ("local", "llama-cpp") or "rapl" in meter
    if "nvml" in meter and _gpu_name(env):
        return _gpu_name(env)
    if on_cpu or "modeled" in meter:
        return _cpu_name(env) or _gpu_name(env)
    return _gpu_name(env) or _cpu_name(env)


def read_table(paths: Iterable[str | Path]):
    """Concatenate CSV / Parquet files and bench run directories into one DataFrame."""
    import pandas as pd

    frames = []
    for p in map(Path, paths):
        if not p.exists():
            raise ConfigError(f"{p}: no such file or directory")
        if p.is_dir():
            frames.append(_read_run_dir(p))
        elif p.suffix.lower() in (".parquet", ".pq"):
            try:
                frames.append(pd.read_parquet(p))
            except ImportError as exc:
                raise ConfigError(f"{p}: reading Parquet needs pyarrow ({exc})") from None
        elif p.suffix.lower() in (".jsonl", ".json"):
            frames.append(read_json_table(p, lines=p.suffix.lower() == ".jsonl"))
        else:
            frames.append(read_csv(p))
    if not frames:
        raise ConfigError("no input data given")
    return pd.concat(frames, ignore_index=True)


def _rows(idx, limit: int = 5) -> str:
    idx = list(idx)
    shown = ", ".join(str(int(i) + 2) for i in idx[:limit])  # +2: header line, 1-based
    return shown + (f" and {len(idx) - limit} more" if len(idx) > limit else "")


def resolve_columns(df, cols: Columns, quantities: list[str]) -> dict[str, str]:
    """Map roles to column names; a clear error names what is missing and what exists."""
    mapping: dict[str, str] = {}
    needed = ["model", "device", "input_tokens", "output_tokens", *quantities]
    missing = []
    for role in needed:
        chosen = getattr(cols, role)
        if chosen is not None:
            if chosen not in df.columns:
                missing.append(f"{role} (column {chosen!r})")
                continue
            mapping[role] = chosen
            continue
        found = next((c for c in DEFAULTS[role] if c in df.columns), None)
        if found is None:
            missing.append(f"{role} (tried {', '.join(DEFAULTS[role])})")
        else:
            mapping[role] = found
    if missing:
        raise ConfigError(
            "missing columns: "
            + "; ".join(missing)
            + f". Available: {', '.join(map(str, df.columns))}. "
            "Map them with --model-col/--device-col/--input-col/--output-col/--runtime-col/"
            "--energy-col."
        )
    return mapping


def load_groups(
    paths: Iterable[str | Path],
    columns: Columns = Columns(),
    *,
    quantities: tuple[str, ...] = ("energy_j", "runtime_s"),
    keep_cold: bool = False,
    min_rows: int = 1,
) -> tuple[list[GroupData], list[str]]:
    """Read, validate and split measurements by (model, device). Returns (groups, notes)."""
    df = read_table(paths)
    notes: list[str] = []
    if not keep_cold and "iteration" in df.columns:
        cold = df["iteration"] == 0
        if cold.any():
            notes.append(
                f"excluded {int(cold.sum())} cold-start rows (iteration 0); --keep-cold keeps them"
            )
        df = df[~cold]
    qs = list(quantities)
    m = resolve_columns(df, columns, qs)
    numeric = ["input_tokens", "output_tokens", *qs]
    for role in numeric:
        col = m[role]
        values = _numeric(df, col)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            hint = "; fit runtime alone with --quantity runtime_s" if role == "energy_j" else ""
            raise ConfigError(
                f"column {col!r} ({role}) has missing or non-numeric values in rows "
                f"{_rows(df.index[bad])}{hint}"
            )
        nonpos = np.flatnonzero(values <= 0)
        if len(nonpos):
            raise ConfigError(
                f"column {col!r} ({role}) must be > 0; rows {_rows(df.index[nonpos])} hold "
                f"{', '.join(repr(float(v)) for v in values[nonpos][:3])}"
            )
    for role in ("model", "device"):
        if df[m[role]].isna().any():
            raise ConfigError(
                f"column {m[role]!r} ({role}) is empty in rows "
                f"{_rows(df.index[df[m[role]].isna()])}"
            )
    groups = []
    for (model, device), g in df.groupby([m["model"], m["device"]], sort=True):
        if len(g) < min_rows:
            notes.append(f"skipped {model} @ {device}: {len(g)} rows < --min-rows {min_rows}")
            continue
        groups.append(
            GroupData(
                model=str(model),
                device=str(device),
                input_tokens=_numeric(g, m["input_tokens"]),
                output_tokens=_numeric(g, m["output_tokens"]),
                runtime_s=_numeric(g, m["runtime_s"]) if "runtime_s" in m else None,
                energy_j=_numeric(g, m["energy_j"]) if "energy_j" in m else None,
            )
        )
    if not groups:
        raise ConfigError(
            "no (model, device) group has enough rows to fit" + (f" ({notes[-1]})" if notes else "")
        )
    return groups, notes


def _numeric(df, col) -> np.ndarray:
    import pandas as pd

    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)


def save_fits(fits: Iterable[ModelFit], path: str | Path) -> Path:
    """Write fits as JSON: ``{"schema_version": 1, "fits": [ModelFit.to_dict(), ...]}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema_version": FITS_SCHEMA_VERSION, "fits": [f.to_dict() for f in fits]}
    path.write_text(json.dumps(doc, indent=2, allow_nan=True) + "\n")
    return path


def load_fits(path: str | Path) -> list[ModelFit]:
    """Read fits written by ``save_fits`` (or a bare JSON list of ModelFit dicts)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such fits file (write one with `wattserve fit DATA -o {path}`)"
        )
    doc = read_json(path)
    items = doc.get("fits") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ConfigError(f"{path}: expected a list of fits or an object with a 'fits' list")
    try:
        return [ModelFit.from_dict(d) for d in items]
    except TypeError as exc:
        raise ConfigError(f"{path}: a fit entry is malformed ({exc})") from None
