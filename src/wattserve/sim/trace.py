"""Request traces for the simulator: the synthetic power-law setting of Zhu et al.
(arXiv 2306.02003) and trace files.

A scenario is everything one simulated run needs, as arrays over requests ``t`` and
models ``m``:

- ``queries[t]``: the distinct-query index of request ``t``;
- ``base_cost[q, m]``: the cost of answering query ``q`` with model ``m``;
- ``noisy_cost[t, m]``: what request ``t`` costs on model ``m`` (base + noise, clipped);
- ``selector_ok[t]``: whether an inaccurate selector picks the right model for request ``t``;
- ``popularity[q]``: the true request probability (for offline variants);
- ``small_correct[t]``: whether the small model (the last) answers request ``t`` right, for
  the cascade (None: always, as in the paper's synthetic setting).

Popularity models of the paper's code: ``power`` (its ``trace.py``: query floor(Q U),
U ~ numpy power(alpha)) and ``notebook`` (its ``sim_cache.ipynb``: query probabilities
proportional to Q draws of power(alpha), and the small model cheap for a share
``small_share`` of the queries instead of one half).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wattserve.errors import ConfigError


@dataclass(frozen=True)
class Scenario:
    queries: np.ndarray  # (T,) int64
    base_cost: np.ndarray  # (Q, M)
    noisy_cost: np.ndarray  # (T, M)
    selector_u: np.ndarray  # (T,) uniform draws; the selector errs where u >= accuracy
    popularity: np.ndarray  # (Q,)
    small_correct: np.ndarray | None = None  # (T,) bool

    @property
    def n_queries(self) -> int:
        return int(self.base_cost.shape[0])


def power_popularity(n_queries: int, alpha: float) -> np.ndarray:
    """P(floor(Q * U) = q) for U ~ numpy power(alpha): ((q+1)/Q)^alpha - (q/Q)^alpha."""
    edges = (np.arange(n_queries + 1) / n_queries) ** alpha
    return np.diff(edges)


def zhu_scenario(
    seed: int | Sequence[int],  # anything numpy's default_rng takes (an entropy list too)
    alpha: float,
    ratio: float,
    n_queries: int = 20,
    n_requests: int = 10_000,
    noise_sd: float = 1.0,
    min_cost: float = 0.1,
    popularity: str = "power",
    small_share: float = 0.5,
    rng: str = "numpy",
) -> Scenario:
    """The synthetic setting of Zhu et al.: power-law popularity, two models (model 1 the
    large, model 2 the small) whose cost per query is 1 or 1 + ratio with probability 1/2
    each (independently), N(0, 1) noise per request clipped below at ``min_cost``.
    ``popularity="notebook"``: the notebook's variant (see the module notes), in which the
    small model is cheap for a share ``small_share`` of the queries.

    ``rng="paper"``: the draws of the paper's ``generate_requests`` exactly (numpy's legacy
    generator seeded with the integer ``seed``, in its order; ``zhu_reference.paper_trace``),
    the power popularity only; the selector's uniforms come after them. ``"numpy"``:
    ``default_rng(seed)``, the same distributions in another order."""
    if not 0 < alpha:
        raise ConfigError("alpha must be positive")
    if popularity not in ("power", "notebook"):
        raise ConfigError(f"unknown popularity {popularity!r}: power or notebook")
    if not 0.0 <= small_share <= 1.0:
        raise ConfigError("small_share must be in [0, 1]")
    if rng not in ("numpy", "paper"):
        raise ConfigError(f"unknown rng {rng!r}: numpy or paper")
    if rng == "paper":
        return _paper_scenario(seed, alpha, ratio, n_queries, n_requests, popularity)
    rng_ = np.random.default_rng(seed)
    if popularity == "power":
        queries = np.minimum(
            np.floor(n_queries * rng_.power(alpha, size=n_requests)), n_queries - 1
        ).astype(np.int64)
        pop = power_popularity(n_queries, alpha)
        cheap = rng_.random((n_queries, 2)) < 0.5
    else:
        w = rng_.power(alpha, size=n_queries)
        pop = w / w.sum()
        queries = rng_.choice(n_queries, size=n_requests, p=pop).astype(np.int64)
        u = rng_.random((n_queries, 2))
        cheap = np.stack([u[:, 0] < 0.5, u[:, 1] < small_share], axis=1)
    base = np.where(cheap, 1.0, 1.0 + ratio)
    noise = rng_.normal(0.0, noise_sd, size=(n_requests, 2))
    noisy = np.maximum(base[queries] + noise, min_cost)
    sel_u = rng_.random(n_requests)
    return Scenario(queries, base, noisy, sel_u, pop)


def _paper_scenario(
    seed: int | Sequence[int],
    alpha: float,
    ratio: float,
    n_queries: int,
    n_requests: int,
    popularity: str,
) -> Scenario:
    """The paper's own draws (``rng="paper"``): model 1 the large, model 2 the small."""
    from wattserve.sim.zhu_reference import paper_trace

    if popularity != "power":
        raise ConfigError("rng paper draws the power popularity only")
    if not isinstance(seed, int | np.integer) or not 0 <= int(seed) < 2**32:
        raise ConfigError("rng paper takes one integer seed in [0, 2**32)")
    rs = np.random.RandomState(int(seed))
    tr = paper_trace(rs, alpha, ratio, n_queries, n_requests)
    base = np.stack([tr.base_l, tr.base_s], axis=1)
    noisy = np.stack([tr.cost_l, tr.cost_s], axis=1)
    pop = power_popularity(n_queries, alpha)
    return Scenario(tr.queries, base, noisy, rs.random_sample(n_requests), pop)


def power_trace(n_requests: int, n_queries: int, alpha: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.minimum(
        np.floor(n_queries * rng.power(alpha, size=n_requests)), n_queries - 1
    ).astype(np.int64)


def load_trace(
    path: str | Path, seed: int = 0, noise_sd: float = 0.0, min_cost: float = 0.1
) -> tuple[Scenario, list[str]]:
    """A trace file (CSV or JSONL): one row per request with a ``query`` column and one
    ``cost_<model>`` column per model (that request's cost on that model)."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"trace file not found: {p}")
    try:
        df = pd.read_json(p, lines=True) if p.suffix in (".jsonl", ".json") else pd.read_csv(p)
    except ValueError as exc:
        raise ConfigError(f"cannot read trace {p}: {exc}") from exc
    cost_cols = [c for c in df.columns if str(c).startswith("cost_")]
    if "query" not in df.columns or len(cost_cols) < 1:
        raise ConfigError(f"{p}: needs a 'query' column and cost_<model> columns")
    if df[cost_cols].isna().any().any() or (df[cost_cols] < 0).any().any():
        raise ConfigError(f"{p}: costs must be present and non-negative")
    codes, uniques = pd.factorize(df["query"].astype(str))
    queries = codes.astype(np.int64)
    per_req = df[cost_cols].to_numpy(dtype=float)
    n_q = len(uniques)
    base = np.zeros((n_q, len(cost_cols)))
    np.add.at(base, queries, per_req)
    counts = np.bincount(queries, minlength=n_q)
    base /= counts[:, None]
    rng = np.random.default_rng(seed)
    noisy = (
        np.maximum(per_req + rng.normal(0.0, noise_sd, size=per_req.shape), min_cost)
        if noise_sd
        else per_req
    )
    scen = Scenario(queries, base, noisy, rng.random(len(df)), counts / counts.sum())
    return scen, [str(c)[5:] for c in cost_cols]
