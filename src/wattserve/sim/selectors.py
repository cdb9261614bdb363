"""Which model answers each simulated request: always one model, or a multiplexer of given
accuracy (it picks the cheaper model for the query, and the wrong one with probability
1 - accuracy). Also the expected recompute cost an offline LEC/GDSF would know."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattserve.errors import ConfigError
from wattserve.sim.trace import Scenario


@dataclass(frozen=True)
class Selector:
    kind: str  # "model" or "mux"
    model: int = 0
    accuracy: float = 1.0

    @property
    def label(self) -> str:
        return f"model{self.model + 1}" if self.kind == "model" else f"mux@{self.accuracy:g}"


def parse_selector(text: str) -> Selector:
    """``model1``/``model2``/... or ``mux`` / ``mux@0.8``."""
    t = text.strip().lower()
    if t.startswith("model") and t[5:].isdigit() and int(t[5:]) >= 1:
        return Selector("model", model=int(t[5:]) - 1)
    if t.startswith("mux"):
        acc = float(t.split("@", 1)[1]) if "@" in t else 1.0
        if not 0.0 <= acc <= 1.0:
            raise ConfigError("selector accuracy must be in [0, 1]")
        return Selector("mux", accuracy=acc)
    raise ConfigError(f"unknown selector {text!r}: use model1, model2, mux or mux@ACCURACY")


def chosen_models(scen: Scenario, sel: Selector) -> np.ndarray:
    """Model index per request (T,)."""
    n_models = scen.base_cost.shape[1]
    if sel.kind == "model":
        if sel.model >= n_models:
            raise ConfigError(f"selector model{sel.model + 1}: the trace has {n_models} models")
        return np.full(scen.queries.shape[0], sel.model, dtype=np.int64)
    right = np.argmin(scen.base_cost, axis=1)[scen.queries]
    if n_models == 1:
        return right
    ok = scen.selector_u < sel.accuracy
    # a wrong pick: one of the other models, drawn from the same uniform (re-scaled)
    frac = np.where(ok, 0.0, (scen.selector_u - sel.accuracy) / max(1e-12, 1.0 - sel.accuracy))
    offset = 1 + np.minimum((frac * (n_models - 1)).astype(np.int64), n_models - 2)
    wrong = (right + offset) % n_models
    return np.where(ok, right, wrong)


def request_costs(scen: Scenario, sel: Selector) -> np.ndarray:
    """Cost of recomputing each request (T,) with the selector's model."""
    m = chosen_models(scen, sel)
    return scen.noisy_cost[np.arange(m.shape[0]), m]


def expected_costs(scen: Scenario, sel: Selector) -> np.ndarray:
    """Known expected recompute cost per query (Q,), for the offline variants."""
    base = scen.base_cost
    if sel.kind == "model":
        return base[:, sel.model].copy()
    right = np.argmin(base, axis=1)
    rows = np.arange(base.shape[0])
    best = base[rows, right]
    n_models = base.shape[1]
    if n_models == 1:
        return best
    others = (base.sum(axis=1) - best) / (n_models - 1)
    return sel.accuracy * best + (1.0 - sel.accuracy) * others
