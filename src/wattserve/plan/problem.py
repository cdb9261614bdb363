"""The offline planning problem: queries x targets with predicted costs, and its evaluation.

Every solver reduces the problem to a generalized assignment with few coupling rows:

    minimise   sum_i cost[i, a_i]
    subject to a_i in allowed[i]                                  (deadlines, makespan)
               sum_{i: a_i = t} runtime_s[i, t] <= m_t * capacity_s[t]  (bounded targets)
               |{i: a_i = t}| >= min_count[t]                     (minimum share per target)
               sum_{t in budget b} gpus[t] * m_t <= gpu_budget_b  (GPU budgets, m_t integer)
               mean_i quality[i, a_i] >= quality_target           (when a target is set)

``capacity_s`` is device-seconds per instance: ``slots * makespan_s`` when a makespan limit is
given, or a per-target budget from the targets file. Without a GPU budget every target is one
instance (m_t = 1); under a budget m_t >= 0 is chosen by the plan, a target serves queries only
when m_t >= 1, and its capacity is m_t times the instance's. A query's deadline is met when its
own predicted runtime on the target fits within it (queries run in parallel slots; the makespan
limit bounds the queueing). Energy charged for a query is the fitted energy plus the target's
``idle_power_w`` times its runtime divided by the target's slots: keeping a device busy longer
costs its static power too.

The weighted objective ``zeta * energy_norm - (1 - zeta) * quality_norm`` normalises min-max
over all allowed (query, target) pairs (``normalise="global"``, the thesis formulation: an
affine map of total energy and total quality, so each zeta's optimum is a Pareto-optimal plan)
or by each query's largest value (``"per-query"``: every query weighs the same whatever its
size).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from wattserve.errors import ConfigError
from wattserve.types import ModelFit, Schedule

NORMALISE = ("global", "per-query")
WEIGHTING = ("none", "tokens")


class InfeasibleError(ConfigError):
    """The constraints cannot all be met; the message says which and the best achievable value."""


@dataclass(frozen=True)
class Target:
    """One place a query can run: a model on a device, with its fits and quality."""

    name: str
    model: str
    device: str
    energy_fit: ModelFit
    runtime_fit: ModelFit
    quality: float = 0.0  # per-model score (e.g. benchmark accuracy), used unless per-query given
    slots: int = 1  # concurrent requests one instance serves
    capacity_s: float | None = None  # device-seconds per instance (overrides slots * makespan)
    idle_power_w: float = 0.0
    min_share: float = 0.0  # at least this fraction of the queries runs here
    gpus_per_instance: int = 1  # GPUs one instance takes out of a GPU budget


def _unset() -> np.ndarray:
    """Placeholder for arrays that ``Problem`` derives after construction."""
    return np.empty(0)


@dataclass(frozen=True)
class GpuBudget:
    """At most ``gpus`` GPUs over the targets in ``mask`` (one system, or one device type)."""

    name: str
    mask: np.ndarray  # (T,) bool
    gpus: int


@dataclass
class Problem:
    query_ids: list[str]
    target_names: list[str]
    energy_j: np.ndarray  # (n, T) charged energy per query per target
    runtime_s: np.ndarray  # (n, T)
    quality: np.ndarray  # (n, T)
    allowed: np.ndarray  # (n, T) bool
    capacity_s: np.ndarray  # (T,) per instance, inf = unbounded
    slots: np.ndarray  # (T,)
    quality_target: float | None = None
    objective: str = "energy"  # "energy" | "weighted"
    zeta: float | None = None
    cost: np.ndarray = field(default_factory=_unset)  # (n, T); from the objective when unset
    normalise: str = "global"  # weighted objective: "global" | "per-query"
    min_count: np.ndarray = field(default_factory=_unset)  # (T,) least queries per target
    gpus: np.ndarray = field(default_factory=_unset)  # (T,) GPUs per instance
    budgets: list[GpuBudget] = field(default_factory=list)
    weighting: str = "none"  # how quality was built: "none" | "tokens" (A_K * tokens / mean)

    def __post_init__(self) -> None:
        if self.cost.size == 0:
            self.cost = self.objective_matrix()
        if self.min_count.size == 0:
            self.min_count = np.zeros(self.T, int)
        if self.gpus.size == 0:
            self.gpus = np.ones(self.T, int)

    @property
    def n(self) -> int:
        return len(self.query_ids)

    @property
    def T(self) -> int:  # noqa: N802 (the papers' name for the target count)
        return len(self.target_names)

    @property
    def budgeted(self) -> np.ndarray:
        """(T,) bool: targets whose instance count is a decision under some GPU budget."""
        m = np.zeros(self.T, bool)
        for b in self.budgets:
            m |= b.mask
        return m

    @property
    def has_min_share(self) -> bool:
        return bool(np.any(self.min_count > 0))

    def objective_matrix(self) -> np.ndarray:
        if self.objective == "energy":
            return self.energy_j
        if self.objective != "weighted":
            raise ConfigError(f"unknown objective {self.objective!r}; use 'energy' or 'weighted'")
        if self.normalise not in NORMALISE:
            raise ConfigError(f"unknown normalisation {self.normalise!r}; use global or per-query")
        z = 0.5 if self.zeta is None else float(self.zeta)
        if self.normalise == "per-query":
            e_norm = self.energy_j / np.max(
                np.where(self.allowed, self.energy_j, 0), axis=1, keepdims=True
            ).clip(1e-300)
            qmax = np.max(np.where(self.allowed, self.quality, 0), axis=1, keepdims=True)
            q_norm = self.quality / np.where(qmax > 0, qmax, 1.0)
        else:
            e_norm = _minmax(self.energy_j, self.allowed)
            q_norm = _minmax(self.quality, self.allowed)
        return z * e_norm - (1 - z) * q_norm

    def with_objective(
        self,
        objective: str,
        zeta: float | None = None,
        quality_target: Any = ...,
        normalise: str | None = None,
    ) -> Problem:
        qt = self.quality_target if quality_target is ... else quality_target
        return replace(
            self,
            quality_target=qt,
            objective=objective,
            zeta=zeta,
            cost=_unset(),
            normalise=self.normalise if normalise is None else normalise,
        )

    # ---- evaluation -------------------------------------------------------------------
    def loads_s(self, assign: np.ndarray) -> np.ndarray:
        rt = self.runtime_s[np.arange(self.n), assign]
        return np.bincount(assign, weights=rt, minlength=self.T)

    def instances(self, assign: np.ndarray, tol: float = 1e-9) -> np.ndarray:
        """Fewest instances per target that serve ``assign``: 1 outside GPU budgets; under one,
        enough for the target's load (0 when it serves nothing)."""
        a = np.asarray(assign, dtype=int)
        inst = np.ones(self.T, int)
        bud = self.budgeted
        if bud.any():
            load = self.loads_s(a)
            used = np.bincount(a, minlength=self.T) > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                need = np.where(
                    np.isfinite(self.capacity_s),
                    np.ceil(load / (self.capacity_s * (1 + tol) + tol) - 1e-9),
                    0.0,
                )
            need = np.maximum(need, used.astype(float))
            inst[bud] = need[bud].astype(int)
        return inst

    def evaluate(self, assign: Any, tol: float = 1e-9) -> dict[str, Any]:
        a = np.asarray(assign, dtype=int)
        rows = np.arange(self.n)
        load = self.loads_s(a)
        count = np.bincount(a, minlength=self.T)
        inst = self.instances(a, tol)
        mq = float(self.quality[rows, a].mean()) if self.n else 0.0
        free = ~self.budgeted  # budgeted targets get the instances their load needs
        cap_ok = bool(np.all(load[free] <= self.capacity_s[free] * (1 + tol) + tol))
        gpu_ok = all(int(np.sum(self.gpus[b.mask] * inst[b.mask])) <= b.gpus for b in self.budgets)
        share_ok = bool(np.all(count >= self.min_count))
        q_ok = self.quality_target is None or mq >= self.quality_target - tol
        deadlines_ok = bool(np.all(self.allowed[rows, a]))
        per_slot = load / (self.slots * np.maximum(inst, 1))
        return {
            "energy_j": float(self.energy_j[rows, a].sum()),
            "objective": float(self.cost[rows, a].sum()),
            "mean_quality": mq,
            "load_s": load,
            "count": count,
            "instances": inst,
            "makespan_s": float(np.max(per_slot)) if self.n else 0.0,
            "meets_capacity": cap_ok,
            "meets_gpu_budget": gpu_ok,
            "meets_min_share": share_ok,
            "meets_quality": bool(q_ok),
            "meets_deadlines": deadlines_ok,
            "feasible": bool(cap_ok and gpu_ok and share_ok and q_ok and deadlines_ok),
        }

    def describe(self, assign: Any) -> dict[str, Any]:
        """Share of the queries, instances and GPUs per target for a result file."""
        ev = self.evaluate(assign)
        out: dict[str, Any] = {
            "share": {
                t: float(c) / max(self.n, 1)
                for t, c in zip(self.target_names, ev["count"], strict=True)
            }
        }
        if self.budgets:
            out["instances"] = {
                t: int(m) for t, m in zip(self.target_names, ev["instances"], strict=True)
            }
            out["gpus_used"] = {
                b.name: int(np.sum(self.gpus[b.mask] * ev["instances"][b.mask]))
                for b in self.budgets
            }
        return out

    def label(self) -> str:
        if self.objective == "energy":
            text = "min-energy"
        else:
            text = f"weighted(zeta={self.zeta}), {self.normalise} normalisation"
        if self.weighting == "tokens":
            text += ", token-weighted quality"
        if self.quality_target is not None:
            text += f", mean quality >= {self.quality_target:g}"
        if self.has_min_share:
            text += ", min share per target"
        if self.budgets:
            text += ", GPU budget " + ", ".join(f"{b.name} {b.gpus}" for b in self.budgets)
        return text

    def schedule(
        self,
        assign: Any,
        solver: str,
        gap: float | None = None,
        solve_time_s: float | None = None,
    ) -> Schedule:
        ev = self.evaluate(assign)
        return Schedule(
            assignment={
                q: self.target_names[t]
                for q, t in zip(self.query_ids, np.asarray(assign, int), strict=True)
            },
            energy_j=ev["energy_j"],
            makespan_s=ev["makespan_s"],
            mean_quality=ev["mean_quality"],
            target_load_s={
                name: float(x) for name, x in zip(self.target_names, ev["load_s"], strict=True)
            },
            solver=solver,
            objective=self.label(),
            optimality_gap=gap,
            solve_time_s=solve_time_s,
        )


def _minmax(x: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """(x - min) / (max - min) over the allowed entries; 0 where they all agree."""
    vals = x[allowed]
    if vals.size == 0:
        return np.zeros_like(x)
    lo, hi = float(vals.min()), float(vals.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def gpu_budgets(spec: int | Mapping[str, int] | None, targets: Sequence[Target]) -> list[GpuBudget]:
    """One budget over every target (an int), or one per device (device -> GPUs); targets on a
    device without a budget keep one fixed instance."""
    if spec is None:
        return []
    devices = [t.device for t in targets]
    items = {"system": int(spec)} if isinstance(spec, int) else {k: int(v) for k, v in spec.items()}
    out = []
    for name, g in items.items():
        if g < 0:
            raise ConfigError(f"GPU budget {name}: must be >= 0, not {g}")
        mask = (
            np.ones(len(targets), bool)
            if isinstance(spec, int)
            else np.array([d == name for d in devices])
        )
        if not mask.any():
            raise ConfigError(
                f"GPU budget for device {name!r}: no target on it; devices are: "
                + ", ".join(sorted(set(devices)))
            )
        out.append(GpuBudget(name, mask, g))
    return out


def build_problem(
    input_tokens: Any,
    output_tokens: Any,
    targets: list[Target],
    *,
    query_ids: list[str] | None = None,
    deadline_s: Any = None,
    quality: Any = None,
    quality_target: float | None = None,
    makespan_s: float | None = None,
    objective: str = "energy",
    zeta: float | None = None,
    normalise: str = "global",
    accuracy_weighting: str = "none",
    min_share: float | None = None,
    gpu_budget: int | Mapping[str, int] | None = None,
) -> Problem:
    """Predict every query's cost on every target and assemble the constraint data.

    ``accuracy_weighting="tokens"`` scores a query's quality as A_K * (tokens in + out) divided
    by the mean token count, so the plan's mean quality is the token-weighted accuracy.
    ``min_share`` applies to every target that does not set its own."""
    from wattserve.fit import predict

    if not targets:
        raise ConfigError("no targets given")
    if accuracy_weighting not in WEIGHTING:
        raise ConfigError(f"unknown accuracy weighting {accuracy_weighting!r}; use none or tokens")
    i = np.asarray(input_tokens, dtype=float)
    o = np.asarray(output_tokens, dtype=float)
    n, T = len(i), len(targets)
    if n == 0:
        raise ConfigError("the query set is empty")
    bad = np.flatnonzero(~np.isfinite(i) | ~np.isfinite(o) | (i <= 0) | (o <= 0))
    if len(bad):
        ids = query_ids or [str(k) for k in range(n)]
        raise ConfigError(
            f"queries {', '.join(ids[k] for k in bad[:5])} need positive input and output tokens"
        )
    E = np.empty((n, T))
    R = np.empty((n, T))
    for t, tg in enumerate(targets):
        if tg.slots < 1:
            raise ConfigError(f"target {tg.name}: slots must be >= 1")
        if tg.gpus_per_instance < 1:
            raise ConfigError(f"target {tg.name}: gpus_per_instance must be >= 1")
        R[:, t] = predict(tg.runtime_fit, i, o)
        E[:, t] = predict(tg.energy_fit, i, o) + tg.idle_power_w * R[:, t] / tg.slots
    if quality is None:
        Q = np.tile(np.array([tg.quality for tg in targets], float), (n, 1))
    else:
        Q = np.asarray(quality, float)
        if Q.shape != (n, T):
            raise ConfigError(f"per-query quality has shape {Q.shape}, expected ({n}, {T})")
    if accuracy_weighting == "tokens":
        w = i + o
        Q = Q * (w / w.mean())[:, None]
    shares = np.array([tg.min_share or (min_share or 0.0) for tg in targets], float)
    if np.any((shares < 0) | (shares > 1)):
        raise ConfigError("min_share must be between 0 and 1")
    allowed = np.ones((n, T), bool)
    if deadline_s is not None:
        d = np.asarray(deadline_s, float)
        allowed &= R <= np.where(np.isfinite(d), d, np.inf)[:, None]
    if makespan_s is not None:
        allowed &= R <= makespan_s
    slots = np.array([tg.slots for tg in targets], float)
    cap = np.full(T, np.inf)
    for t, tg in enumerate(targets):
        if tg.capacity_s is not None:
            cap[t] = tg.capacity_s
        elif makespan_s is not None:
            cap[t] = tg.slots * makespan_s
    return Problem(
        query_ids=list(query_ids) if query_ids is not None else [str(k) for k in range(n)],
        target_names=[tg.name for tg in targets],
        energy_j=E,
        runtime_s=R,
        quality=Q,
        allowed=allowed,
        capacity_s=cap,
        slots=slots,
        quality_target=quality_target,
        objective=objective,
        zeta=zeta,
        normalise=normalise,
        min_count=np.array([math.ceil(s * n - 1e-9) for s in shares], int),
        gpus=np.array([tg.gpus_per_instance for tg in targets], int),
        budgets=gpu_budgets(gpu_budget, targets),
        weighting=accuracy_weighting,
    )
