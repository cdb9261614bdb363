"""Which model answers each simulated request: always one model; a multiplexer of given
accuracy (the oracle: it picks the cheaper model for the query, and the wrong one with
probability 1 - accuracy); the cascade (the small model, the last one, then the large, the
first, on failure: ``c_s + (1 - correct_s) * 2 * c_l``, the paper's failure penalty 2); or
the learned selector of Zhu et al.'s online algorithm, which has no fixed costs: it picks
inside the simulator (``simulate_lanes(model_costs=...)``), by the lowest lower confidence
bound of each model's observed costs. Also the expected recompute cost an offline LEC/GDSF
would know."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattserve.errors import ConfigError
from wattserve.sim.trace import Scenario


@dataclass(frozen=True)
class Selector:
    kind: str  # "model", "mux", "cascade" or "learned"
    model: int = 0
    accuracy: float = 1.0

    @property
    def label(self) -> str:
        if self.kind in ("cascade", "learned"):
            return self.kind
        return f"model{self.model + 1}" if self.kind == "model" else f"mux@{self.accuracy:g}"

    @property
    def learned(self) -> bool:
        return self.kind == "learned"


FAIL_PENALTY = 2.0  # the cascade pays the large model twice after a failed small answer


def parse_selector(text: str) -> Selector:
    """``model1``/``model2``/..., ``mux`` / ``mux@0.8`` (``oracle`` = ``mux``),
    ``cascade`` or ``learned``."""
    t = text.strip().lower()
    if t in ("cascade", "learned"):
        return Selector(t)
    if t == "oracle":
        t = "mux"
    if t.startswith("model") and t[5:].isdigit() and int(t[5:]) >= 1:
        return Selector("model", model=int(t[5:]) - 1)
    if t.startswith("mux"):
        acc = float(t.split("@", 1)[1]) if "@" in t else 1.0
        if not 0.0 <= acc <= 1.0:
            raise ConfigError("selector accuracy must be in [0, 1]")
        return Selector("mux", accuracy=acc)
    raise ConfigError(
        f"unknown selector {text!r}: use model1, model2, mux, mux@ACCURACY, oracle, "
        "cascade or learned"
    )


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
    """Cost of recomputing each request (T,) with the selector's model (the cascade: small,
    then large on failure). The learned selector has none: it picks as it goes."""
    if sel.learned:
        raise ConfigError("the learned selector picks inside the simulator: no fixed costs")
    if sel.kind == "cascade":
        small, large = scen.noisy_cost[:, -1], scen.noisy_cost[:, 0]
        ok = _small_correct(scen)
        return small + (1.0 - ok) * FAIL_PENALTY * large
    m = chosen_models(scen, sel)
    return scen.noisy_cost[np.arange(m.shape[0]), m]


def expected_costs(scen: Scenario, sel: Selector) -> np.ndarray:
    """Known expected recompute cost per query (Q,), for the offline variants."""
    base = scen.base_cost
    if sel.learned:  # what it converges to: the cheaper model
        return base.min(axis=1)
    if sel.kind == "cascade":
        ok = np.bincount(scen.queries, _small_correct(scen), minlength=base.shape[0])
        n = np.maximum(np.bincount(scen.queries, minlength=base.shape[0]), 1)
        return base[:, -1] + (1.0 - ok / n) * FAIL_PENALTY * base[:, 0]
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


def _small_correct(scen: Scenario) -> np.ndarray:
    """Per request (T,): 1.0 where the small model's answer is right (all of them when the
    scenario says nothing, the paper's synthetic setting)."""
    if scen.small_correct is None:
        return np.ones(scen.queries.shape[0])
    return scen.small_correct.astype(float)
