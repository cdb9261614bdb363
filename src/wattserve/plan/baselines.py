"""Plans to compare against: each target alone, round-robin, random, fastest target."""

from __future__ import annotations

import numpy as np

from wattserve.plan.problem import Problem


def baselines(p: Problem, seed: int = 0) -> dict[str, np.ndarray]:
    """Name -> assignment. Baselines ignore the constraints; evaluate them to see which hold."""
    n = p.n
    out = {f"only {name}": np.full(n, t) for t, name in enumerate(p.target_names)}
    out["round-robin"] = np.arange(n) % p.T
    out["random"] = np.random.default_rng(seed).integers(0, p.T, n)
    out["fastest"] = np.argmin(p.runtime_s, axis=1)
    return out


def compare(p: Problem, plans: dict[str, np.ndarray]) -> list[dict]:
    """One row per plan: energy, quality, makespan, which constraints hold, energy vs the first."""
    rows = []
    ref = None
    for name, assign in plans.items():
        ev = p.evaluate(assign)
        ref = ev["energy_j"] if ref is None else ref
        rows.append(
            {
                "plan": name,
                "energy_j": ev["energy_j"],
                "mean_quality": ev["mean_quality"],
                "makespan_s": ev["makespan_s"],
                "meets_quality": ev["meets_quality"],
                "meets_capacity": ev["meets_capacity"],
                "meets_deadlines": ev["meets_deadlines"],
                "meets_min_share": ev["meets_min_share"],
                "meets_gpu_budget": ev["meets_gpu_budget"],
                "feasible": ev["feasible"],
                "energy_vs_plan": ev["energy_j"] / ref if ref else float("nan"),
            }
        )
    return rows
