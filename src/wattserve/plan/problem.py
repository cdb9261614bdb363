"""The offline planning problem: queries x targets with predicted costs, and its evaluation.

Every solver reduces the problem to a generalized assignment with few coupling rows:

    minimise   sum_i cost[i, a_i]
    subject to a_i in allowed[i]                                  (deadlines, makespan)
               sum_{i: a_i = t} runtime_s[i, t] <= capacity_s[t]  (one row per bounded target)
               mean_i quality[i, a_i] >= quality_target           (when a target is set)

``capacity_s`` is device-seconds: ``slots * makespan_s`` when a makespan limit is given, or a
per-target budget from the targets file. A query's deadline is met when its own predicted
runtime on the target fits within it (queries run in parallel slots; the makespan limit bounds
the queueing). Energy charged for a query is the fitted energy plus the target's
``idle_power_w`` times its runtime divided by the target's slots: keeping a device busy longer
costs its static power too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wattserve.errors import ConfigError
from wattserve.types import ModelFit, Schedule


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
    slots: int = 1  # concurrent requests the target serves
    capacity_s: float | None = None  # device-seconds available (overrides slots * makespan)
    idle_power_w: float = 0.0


@dataclass
class Problem:
    query_ids: list[str]
    target_names: list[str]
    energy_j: np.ndarray  # (n, T) charged energy per query per target
    runtime_s: np.ndarray  # (n, T)
    quality: np.ndarray  # (n, T)
    allowed: np.ndarray  # (n, T) bool
    capacity_s: np.ndarray  # (T,) inf = unbounded
    slots: np.ndarray  # (T,)
    quality_target: float | None = None
    objective: str = "energy"  # "energy" | "weighted"
    zeta: float | None = None
    cost: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.cost is None:
            self.cost = self.objective_matrix()

    @property
    def n(self) -> int:
        return len(self.query_ids)

    @property
    def T(self) -> int:
        return len(self.target_names)

    def objective_matrix(self) -> np.ndarray:
        if self.objective == "energy":
            return self.energy_j
        if self.objective == "weighted":
            z = 0.5 if self.zeta is None else float(self.zeta)
            e_norm = self.energy_j / np.max(
                np.where(self.allowed, self.energy_j, 0), axis=1, keepdims=True
            ).clip(1e-300)
            qmax = np.max(np.where(self.allowed, self.quality, 0), axis=1, keepdims=True)
            q_norm = self.quality / np.where(qmax > 0, qmax, 1.0)
            return z * e_norm - (1 - z) * q_norm
        raise ConfigError(f"unknown objective {self.objective!r}; use 'energy' or 'weighted'")

    def with_objective(
        self, objective: str, zeta: float | None = None, quality_target=...
    ) -> Problem:
        qt = self.quality_target if quality_target is ... else quality_target
        return Problem(
            self.query_ids,
            self.target_names,
            self.energy_j,
            self.runtime_s,
            self.quality,
            self.allowed,
            self.capacity_s,
            self.slots,
            qt,
            objective,
            zeta,
        )

    # ---- evaluation -------------------------------------------------------------------
    def loads_s(self, assign: np.ndarray) -> np.ndarray:
        rt = self.runtime_s[np.arange(self.n), assign]
        return np.bincount(assign, weights=rt, minlength=self.T)

    def evaluate(self, assign, tol: float = 1e-9) -> dict:
        a = np.asarray(assign, dtype=int)
        rows = np.arange(self.n)
        load = self.loads_s(a)
        mq = float(self.quality[rows, a].mean()) if self.n else 0.0
        cap_ok = bool(np.all(load <= self.capacity_s * (1 + tol) + tol))
        q_ok = self.quality_target is None or mq >= self.quality_target - tol
        return {
            "energy_j": float(self.energy_j[rows, a].sum()),
            "objective": float(self.cost[rows, a].sum()),
            "mean_quality": mq,
            "load_s": load,
            "makespan_s": float(np.max(load / self.slots)) if self.n else 0.0,
            "meets_capacity": cap_ok,
            "meets_quality": bool(q_ok),
            "meets_deadlines": bool(np.all(self.allowed[rows, a])),
            "feasible": bool(cap_ok and q_ok and np.all(self.allowed[rows, a])),
        }

    def schedule(
        self, assign, solver: str, gap: float | None = None, solve_time_s: float | None = None
    ) -> Schedule:
        ev = self.evaluate(assign)
        objective = "min-energy" if self.objective == "energy" else f"weighted(zeta={self.zeta})"
        if self.quality_target is not None:
            objective += f", mean quality >= {self.quality_target:g}"
        return Schedule(
            assignment={
                q: self.target_names[t] for q, t in zip(self.query_ids, np.asarray(assign, int))
            },
            energy_j=ev["energy_j"],
            makespan_s=ev["makespan_s"],
            mean_quality=ev["mean_quality"],
            target_load_s={name: float(x) for name, x in zip(self.target_names, ev["load_s"])},
            solver=solver,
            objective=objective,
            optimality_gap=gap,
            solve_time_s=solve_time_s,
        )


def build_problem(
    input_tokens,
    output_tokens,
    targets: list[Target],
    *,
    query_ids: list[str] | None = None,
    deadline_s=None,
    quality=None,
    quality_target: float | None = None,
    makespan_s: float | None = None,
    objective: str = "energy",
    zeta: float | None = None,
) -> Problem:
    """Predict every query's cost on every target and assemble the constraint data."""
    from wattserve.fit import predict

    if not targets:
        raise ConfigError("no targets given")
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
        R[:, t] = predict(tg.runtime_fit, i, o)
        E[:, t] = predict(tg.energy_fit, i, o) + tg.idle_power_w * R[:, t] / tg.slots
    if quality is None:
        Q = np.tile(np.array([tg.quality for tg in targets], float), (n, 1))
    else:
        Q = np.asarray(quality, float)
        if Q.shape != (n, T):
            raise ConfigError(f"per-query quality has shape {Q.shape}, expected ({n}, {T})")
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
    )
