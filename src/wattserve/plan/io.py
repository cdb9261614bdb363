"""Query sets (JSONL/CSV) and targets files (YAML/JSON) for the planner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wattserve.errors import ConfigError
from wattserve.plan.problem import Target
from wattserve.readers import read_csv


@dataclass(frozen=True)
class QuerySet:
    ids: list[str]
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    deadline_s: np.ndarray | None
    quality: dict[str, np.ndarray]  # target name or model -> per-query predicted quality


def read_queries(path: str | Path) -> QuerySet:
    """Columns: id, input_tokens, output_tokens (or expected_output_tokens / max_tokens as a cap),
    optional deadline_s, optional quality:<target or model> per-query predicted quality."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such query file")
    try:
        df = (
            pd.read_json(path, lines=True)
            if path.suffix.lower() in (".jsonl", ".json")
            else pd.read_csv(path)
        )
    except ValueError as exc:
        raise ConfigError(f"{path}: cannot read queries ({exc})") from None
    if df.empty:
        raise ConfigError(f"{path}: no queries")
    out_col = next(
        (c for c in ("output_tokens", "expected_output_tokens", "max_tokens") if c in df), None
    )
    missing = [
        c
        for c, ok in (("input_tokens", "input_tokens" in df), ("output_tokens", out_col))
        if not ok
    ]
    if missing:
        raise ConfigError(
            f"{path}: missing column(s) {', '.join(missing)} (output may also be "
            f"expected_output_tokens or max_tokens); columns are: {', '.join(map(str, df.columns))}"
        )
    ids = [str(x) for x in df["id"]] if "id" in df else [str(k) for k in range(len(df))]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{path}: query ids are not unique")
    arrays = {}
    for col in ("input_tokens", out_col):
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~np.isfinite(v) | (v <= 0))
        if len(bad):
            raise ConfigError(
                f"{path}: column {col!r} must be a positive number; bad in queries "
                f"{', '.join(ids[k] for k in bad[:5])}"
            )
        arrays[col] = v
    deadline = None
    if "deadline_s" in df:
        deadline = pd.to_numeric(df["deadline_s"], errors="coerce").to_numpy(float)
        deadline = np.where(np.isnan(deadline), np.inf, deadline)
    quality = {}
    for col in df.columns:
        if str(col).startswith("quality:"):
            q = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
            if np.isnan(q).any():
                raise ConfigError(f"{path}: column {col!r} has missing values")
            quality[str(col)[len("quality:") :]] = q
    return QuerySet(ids, arrays["input_tokens"], arrays[out_col], deadline, quality)


def read_targets(path: str | Path, fits_path: str | Path | None = None) -> list[Target]:
    """A YAML/JSON file: ``{fits: FITS.json, targets: [{name, model, device, quality, slots,
    capacity_s, idle_power_w, min_share, gpus_per_instance}, ...]}``; ``fits`` is relative to
    the targets file. When the fits file holds several forms for a (model, device, quantity),
    the lowest CV MAPE is used."""
    from wattserve.fit import load_fits, select_best

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such targets file")
    text = path.read_text()
    import yaml

    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except (yaml.YAMLError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ConfigError(f"{path}: cannot parse ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("targets"), list) or not doc["targets"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty 'targets' list")
    fp = Path(fits_path) if fits_path else (path.parent / doc["fits"] if doc.get("fits") else None)
    if fp is None:
        raise ConfigError(f"{path}: no 'fits' file named (or pass --fits)")
    fits = load_fits(fp)
    targets = []
    for k, t in enumerate(doc["targets"]):
        if not isinstance(t, dict) or "model" not in t or "device" not in t:
            raise ConfigError(f"{path}: target #{k + 1} needs 'model' and 'device'")
        found = {}
        for q in ("energy_j", "runtime_s"):
            cands = [
                f
                for f in fits
                if f.model == t["model"] and f.device == t["device"] and f.quantity == q
            ]
            if not cands:
                have = sorted({f"{f.model} @ {f.device}" for f in fits})
                raise ConfigError(
                    f"{path}: no {q} fit for {t['model']} @ {t['device']} in {fp}; "
                    f"fits exist for: {', '.join(have)}"
                )
            found[q] = select_best(cands)
        try:
            targets.append(
                Target(
                    name=str(t.get("name") or f"{t['model']}@{t['device']}"),
                    model=t["model"],
                    device=t["device"],
                    energy_fit=found["energy_j"],
                    runtime_fit=found["runtime_s"],
                    quality=float(t.get("quality", 0.0)),
                    slots=int(t.get("slots", 1)),
                    capacity_s=None if t.get("capacity_s") is None else float(t["capacity_s"]),
                    idle_power_w=float(t.get("idle_power_w", 0.0)),
                    min_share=float(t.get("min_share", 0.0)),
                    gpus_per_instance=_whole(t.get("gpus_per_instance", 1)),
                )
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: target #{k + 1} has a bad value ({exc})") from None
        last = targets[-1]
        if not 0.0 <= last.min_share <= 1.0:
            raise ConfigError(f"{path}: target {last.name}: min_share must be between 0 and 1")
        if last.gpus_per_instance < 1:
            raise ConfigError(f"{path}: target {last.name}: gpus_per_instance must be >= 1")
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: target names are not unique")
    return targets


def _whole(x: Any) -> int:
    """An integer count from YAML (2 or 2.0, not 2.5 or true)."""
    if isinstance(x, bool) or float(x) != int(float(x)):
        raise ValueError(f"{x!r} is not a whole number")
    return int(float(x))


def parse_gpu_budget(text: str | None) -> int | dict[str, int] | None:
    """``N`` (one budget over all targets) or ``DEVICE=N,DEVICE=N`` (one per device)."""
    if text is None or not text.strip():
        return None
    try:
        if "=" not in text:
            return _nonneg(int(text))
        out = {}
        for part in text.split(","):
            dev, sep, num = part.rpartition("=")
            if not sep or not dev.strip():
                raise ValueError(part)
            out[dev.strip()] = _nonneg(int(num))
        return out
    except ValueError:
        raise ConfigError(
            f"--gpu-budget must be N or DEVICE=N[,DEVICE=N] with whole N >= 0, not {text!r}"
        ) from None


def _nonneg(k: int) -> int:
    if k < 0:
        raise ValueError(k)
    return k


def quality_matrix(qs: QuerySet, targets: list[Target]) -> np.ndarray | None:
    """Per-query quality (n, T) when the query set carries any; per-model scores elsewhere."""
    if not qs.quality:
        return None
    cols = []
    for t in targets:
        q = qs.quality.get(t.name, qs.quality.get(t.model))
        cols.append(q if q is not None else np.full(len(qs.ids), t.quality))
    return np.column_stack(cols)


def synth_queries(source_csv: str | Path, n: int, seed: int = 0):
    """A mixed workload from the token ranges of a sweeps file (e.g. wilkins_sweeps.csv).

    The sweeps are log-spaced grids, so lengths are drawn log-uniformly over the same input and
    output ranges (the continuous version of the grid distribution)."""
    import pandas as pd

    df = read_csv(source_csv)
    for c in ("input_tokens", "output_tokens"):
        if c not in df:
            raise ConfigError(f"{source_csv}: needs an {c} column")
    rng = np.random.default_rng(seed)

    def draw(col):
        lo, hi = float(df[col].min()), float(df[col].max())
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n)).round().astype(int)

    return pd.DataFrame(
        {
            "id": [f"q{k}" for k in range(n)],
            "input_tokens": draw("input_tokens"),
            "output_tokens": draw("output_tokens"),
        }
    )
