"""Routing labels: per-prompt correctness (or quality) of each model, and train/test splits.

The reference set is RouteLLM's MMLU responses (``../shared/data/routing/mmlu/*.csv``):
one CSV per subject with ``prompt`` and one boolean column per model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wattserve.errors import ConfigError
from wattserve.readers import read_csv


@dataclass(frozen=True)
class LabelledPrompts:
    """Prompts with a quality label per model: ``labels[i, m]`` in [0, 1]."""

    texts: tuple[str, ...]
    models: tuple[str, ...]
    labels: np.ndarray  # shape (n, n_models), float
    groups: tuple[str, ...]  # subject / source of each prompt (for group splits)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Sequence[int] | np.ndarray) -> LabelledPrompts:
        idx = np.asarray(idx, dtype=np.int64)
        return LabelledPrompts(
            tuple(self.texts[i] for i in idx),
            self.models,
            self.labels[idx],
            tuple(self.groups[i] for i in idx),
        )


def load_labelled_csvs(
    paths: Sequence[str | Path] | str | Path,
    label_range: tuple[float, float] | None = None,
) -> LabelledPrompts:
    """Read one or more CSVs (or a folder of them): ``prompt`` + one label column per model.

    Labels are correct/incorrect (booleans or 0/1) or graded scores. Graded scores outside
    [0, 1] need ``label_range=(lo, hi)`` and are scaled to ``(score - lo) / (hi - lo)``
    (MT-Bench judge scores: ``(1, 10)``). The group of each row is its file's stem without
    an ``mmlu_`` prefix (its subject).
    """
    import pandas as pd

    if isinstance(paths, (str, Path)):
        p = Path(paths)
        files = sorted(p.glob("*.csv")) if p.is_dir() else [p]
    else:
        files = [Path(x) for x in paths]
    if not files:
        raise ConfigError(f"no CSV files found at {paths}")
    frames = []
    models: list[str] | None = None
    for f in files:
        if not f.is_file():
            raise ConfigError(f"routing data file not found: {f}")
        d = read_csv(f)
        if "prompt" not in d.columns or d.shape[1] < 3:
            raise ConfigError(f"{f}: expected a 'prompt' column and at least two model columns")
        cols = [c for c in d.columns if c != "prompt"]
        if models is None:
            models = cols
        elif cols != models:
            raise ConfigError(f"{f}: model columns {cols} differ from {models}")
        d["_group"] = f.stem.removeprefix("mmlu_")
        frames.append(d)
    assert models is not None  # set by the first of the (non-empty) files
    data = pd.concat(frames, ignore_index=True)
    data = data.dropna(subset=["prompt"])
    try:
        labels = data[models].astype(float).to_numpy()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"routing labels must be booleans or numbers: {exc}") from None
    if np.isnan(labels).any():
        raise ConfigError("routing labels are missing for some prompts (empty cells)")
    labels = _scaled(labels, label_range)
    return LabelledPrompts(
        tuple(data["prompt"].astype(str)), tuple(models), labels, tuple(data["_group"])
    )


def _scaled(labels: np.ndarray, label_range: tuple[float, float] | None) -> np.ndarray:
    if label_range is not None:
        lo, hi = (float(v) for v in label_range)
        if not hi > lo:
            raise ConfigError(f"label range {lo:g}:{hi:g}: the upper end must exceed the lower")
        if labels.min() < lo - 1e-9 or labels.max() > hi + 1e-9:
            raise ConfigError(
                f"labels lie in [{labels.min():g}, {labels.max():g}], outside {lo:g}:{hi:g}"
            )
        return (labels - lo) / (hi - lo)
    if labels.min() < 0.0 or labels.max() > 1.0:
        raise ConfigError(
            f"labels lie in [{labels.min():g}, {labels.max():g}], outside [0, 1]: pass the "
            "score range (--label-range LO:HI, e.g. 1:10 for MT-Bench judge scores)"
        )
    return labels


def parse_label_range(spec: str) -> tuple[float, float]:
    """``"LO:HI"`` -> (lo, hi), e.g. ``"1:10"``."""
    lo, sep, hi = spec.partition(":")
    try:
        if not sep:
            raise ValueError
        out = (float(lo), float(hi))
    except ValueError:
        raise ConfigError(f"label range {spec!r}: use LO:HI, e.g. 1:10") from None
    if not (np.isfinite(out).all() and out[1] > out[0]):
        raise ConfigError(f"label range {spec!r}: two finite numbers, the upper end larger")
    return out


def random_split(data: LabelledPrompts, test_fraction: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(data))
    n_test = int(round(test_fraction * len(data)))
    return data.subset(np.sort(idx[n_test:])), data.subset(np.sort(idx[:n_test]))


def group_split(data: LabelledPrompts, test_fraction: float = 0.3, seed: int = 0):
    """Whole groups (subjects) go to test: the router never saw them in training."""
    groups = sorted(set(data.groups))
    rng = np.random.default_rng(seed)
    rng.shuffle(groups)
    target = test_fraction * len(data)
    test_groups: set[str] = set()
    count = 0
    sizes = {g: data.groups.count(g) for g in groups}
    for g in groups:
        if count >= target:
            break
        test_groups.add(g)
        count += sizes[g]
    is_test = np.array([g in test_groups for g in data.groups])
    return data.subset(np.flatnonzero(~is_test)), data.subset(np.flatnonzero(is_test))
