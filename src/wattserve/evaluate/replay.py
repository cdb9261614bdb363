"""Replaying a request trace over an evaluation's measured per-item results.

An eval run records, per item and model, whether the answer was right and the joules it
took (``records.jsonl``). ``Outcomes`` holds that table; ``replay`` sends a trace of item
ids through a strategy: a model choice per item (always one model, a router's pick) and
optionally a real ``ResponseCache`` (LFU, LEC; online or with offline frequencies). A
miss costs the chosen model's measured joules for that item and stores its answer's
correctness with the recompute cost the policy ranks by (the chosen model's joules: the
router's expected cost); a hit costs nothing and returns the stored answer. ``cascade``
prices the small-then-large cascade with a perfect verifier: the small model's joules,
plus the large model's when the small one was wrong.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattserve.cache.policies import make_policy
from wattserve.cache.response_cache import ResponseCache
from wattserve.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Outcome:
    correct: bool
    joules: float


@dataclass
class Outcomes:
    """Per item id: the prompt, the item's family, its answer budget (``max_tokens``; absent
    for items without one) and each model's measured outcome."""

    models: list[str]
    prompts: dict[str, str]
    families: dict[str, str]
    table: dict[str, dict[str, Outcome]]
    budgets: dict[str, int] = field(default_factory=dict)

    def ids(self) -> list[str]:
        return sorted(self.table)

    def accuracy(self, model: str, ids: Sequence[str] | None = None) -> float:
        ids = list(ids if ids is not None else self.table)
        return sum(self.table[i][model].correct for i in ids) / max(1, len(ids))

    def mean_joules(self, model: str, ids: Sequence[str] | None = None) -> float:
        ids = list(ids if ids is not None else self.table)
        return sum(self.table[i][model].joules for i in ids) / max(1, len(ids))


def load_outcomes(run_dir: str | Path, models: Sequence[str] | None = None) -> Outcomes:
    """The items of an eval run that every model answered without error, with joules."""
    from wattserve.evaluate.store import latest_records, read_records
    from wattserve.tasks import read_tasks

    d = Path(run_dir)
    if not (d / "records.jsonl").is_file() or not (d / "tasks.jsonl").is_file():
        raise ConfigError(f"{d} is not an eval run directory (records.jsonl, tasks.jsonl)")
    items = {it.id: it for it in read_tasks(d / "tasks.jsonl")}
    latest = latest_records(read_records(d))
    seen = list(dict.fromkeys(m for m, _ in latest))
    chosen = list(models) if models else seen
    if missing := [m for m in chosen if m not in seen]:
        raise ConfigError(f"{d} has no records of {', '.join(missing)} (it has {seen})")
    table: dict[str, dict[str, Outcome]] = {}
    for (model, item_id), r in latest.items():
        if model in chosen and r.get("error") is None and r.get("energy_j") is not None:
            table.setdefault(item_id, {})[model] = Outcome(bool(r["correct"]), float(r["energy_j"]))
    table = {i: row for i, row in table.items() if len(row) == len(chosen) and i in items}
    if not table:
        raise ConfigError(f"{d} has no item answered by every model with measured joules")
    return Outcomes(
        models=chosen,
        prompts={i: items[i].prompt for i in table},
        families={i: items[i].family for i in table},
        table=table,
        budgets={i: b for i in table if (b := items[i].max_tokens) is not None},
    )


def zipf_trace(ids: Sequence[str], n: int, alpha: float, seed: int = 0) -> list[str]:
    """``n`` draws from ``ids`` with power-law popularity: rank ``k`` (a seeded shuffle of
    ``ids``) has weight ``k ** -alpha`` (alpha 0: uniform)."""
    if not ids or n < 1:
        raise ConfigError("a trace needs at least one item and one request")
    rng = random.Random(seed)
    order = list(ids)
    rng.shuffle(order)
    weights = [(k + 1) ** -alpha for k in range(len(order))]
    return rng.choices(order, weights, k=n)


@dataclass
class ReplayResult:
    name: str
    requests: int = 0
    correct: int = 0
    joules: float = 0.0
    hits: int = 0
    per_model: Counter[str] = field(default_factory=Counter)

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.requests)

    @property
    def j_per_correct(self) -> float:
        return self.joules / self.correct if self.correct else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.name,
            "requests": self.requests,
            "accuracy": self.accuracy,
            "joules": self.joules,
            "j_per_correct": self.j_per_correct,
            "hit_rate": self.hits / max(1, self.requests),
            "per_model": dict(self.per_model),
        }


def make_cache(policy: str, capacity: int, trace: Sequence[str] | None = None) -> ResponseCache:
    """A ``ResponseCache`` of ``capacity`` entries; with ``trace``, the policy knows each
    key's frequency in it in advance (the offline setting)."""
    if trace is None:
        return ResponseCache(policy, capacity_entries=capacity)
    counts = Counter(trace)
    return ResponseCache(
        make_policy(policy, frequency=lambda k: counts.get(k, 0)), capacity_entries=capacity
    )


def replay(
    name: str,
    trace: Sequence[str],
    outcomes: Outcomes,
    choice: Mapping[str, str] | Callable[[str], str],
    cache: ResponseCache | None = None,
) -> ReplayResult:
    """Send ``trace`` (item ids) through a model choice and an optional cache."""
    pick = choice if callable(choice) else choice.__getitem__
    res = ReplayResult(name)
    for item in trace:
        res.requests += 1
        if cache is not None:
            stored = cache.get(item)
            if stored is not None:
                res.hits += 1
                res.correct += int(stored == "right")
                continue
        model = pick(item)
        out = outcomes.table[item][model]
        res.per_model[model] += 1
        res.joules += out.joules
        res.correct += int(out.correct)
        if cache is not None:
            cache.put(item, "right" if out.correct else "wrong", cost=out.joules)
    return res


def cascade(
    name: str, trace: Sequence[str], outcomes: Outcomes, small: str, large: str
) -> ReplayResult:
    """Small model first; a perfect verifier escalates its wrong answers to the large one:
    cost ``c_s + (1 - correct_s) * c_l``, right when either model is."""
    res = ReplayResult(name)
    for item in trace:
        s, big = outcomes.table[item][small], outcomes.table[item][large]
        res.requests += 1
        res.joules += s.joules
        res.per_model[small] += 1
        if s.correct:
            res.correct += 1
            continue
        res.joules += big.joules
        res.per_model[large] += 1
        res.correct += int(big.correct)
    return res


def oracle_choice(outcomes: Outcomes, small: str, large: str) -> dict[str, str]:
    """Per item, the cheaper model among those that answer it right (small when neither)."""
    out = {}
    for i, row in outcomes.table.items():
        right = [m for m in (small, large) if row[m].correct]
        out[i] = min(right, key=lambda m: row[m].joules) if right else small
    return out
