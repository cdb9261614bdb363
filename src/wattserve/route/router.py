"""``Router``: the model multiplexer over N >= 2 models with costs.

Given a scorer's predicted quality ``q[m]`` per model and a cost per model (a number:
joules, FLOPs or money; or a callable ``request -> cost``; or a ``ModelFit`` evaluated
at the request's input and output tokens), the router picks

- ``objective="threshold"``: the cheapest model whose predicted quality is at least
  ``threshold``; when none reaches it, the model with the highest predicted quality;
- ``objective="gain"``: the model maximising ``quality - threshold * normalised cost``
  (cost scaled to [0, 1] between the cheapest and the dearest model): a pricier model is
  chosen when its predicted quality gain is worth it. This is ``cost - lambda * quality``
  with ``lambda = cost span / threshold``, re-scaled so the knob lies in [0, 1]; with two
  models it sends a prompt to the strong one when ``q_strong - q_weak >= threshold``.
  On MMLU it beats the plain threshold rule (docs/cache_route_sim.md), so trained routers
  use it by default;
- ``objective="lambda"``: the model minimising ``cost - lam * quality`` (raw units).

The decision carries the reason, the scores and the costs. ``cost_source`` names where the
costs came from (``training``: the file's own; ``fits``: fitted joules; ``fixed``: numbers
from a config) so a gateway can say what its decisions rest on. ``expected_cost`` is the
cost of answering a request again through the router (LEC's recompute cost with a
selector, ``wattserve.route.costs.RoutedCost``). Thresholds are calibrated
separately (``wattserve.route.calibrate``), as in RouteLLM. The routing policy can
travel in the OpenAI ``model`` field: ``router-<name>[-<threshold>]``.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from wattserve.errors import ConfigError
from wattserve.types import Request, RouteDecision

CostSpec = float | int | Callable[[Request], float] | Any  # Any: a ModelFit
#: ``joules(model, input_tokens, output_tokens)``: a model's joules for one answer, or None
JoulesFn = Callable[[str, int, int], float | None]
FORMAT_VERSION = 1


def _fit_cost(fit: Any) -> Callable[[Request], float]:
    def cost(request: Request) -> float:
        from wattserve.fit import predict  # on first use: only fit-costed routers need it

        n_in = (
            request.input_tokens
            if request.input_tokens is not None
            else max(1, len(request.text()) // 4)
        )
        return float(predict(fit, n_in, request.max_tokens, warn=False))

    return cost


def _as_cost_fn(spec: CostSpec) -> float | Callable[[Request], float]:
    if isinstance(spec, (int, float)):
        if spec < 0:
            raise ConfigError("model costs must be non-negative")
        return float(spec)
    if hasattr(spec, "coefficients") and hasattr(spec, "form"):
        return _fit_cost(spec)
    if callable(spec):
        return spec
    raise ConfigError(
        f"a model cost must be a number, a callable or a ModelFit, not {type(spec).__name__}"
    )


class Router:
    def __init__(
        self,
        models: Sequence[str],
        costs: Mapping[str, CostSpec] | Sequence[CostSpec],
        scorer: Any,
        threshold: float = 0.5,
        objective: Literal["threshold", "gain", "lambda"] = "threshold",
        lam: float = 1.0,
        name: str = "router",
        cost_source: str = "given",
    ) -> None:
        self.models = tuple(models)
        if len(self.models) < 2:
            raise ConfigError("a router needs at least two models")
        if not isinstance(costs, Mapping):
            if len(costs) != len(self.models):
                raise ConfigError(
                    f"{len(costs)} cost(s) given for {len(self.models)} models (one per model)"
                )
            costs = dict(zip(self.models, costs, strict=True))
        missing = [m for m in self.models if m not in costs]
        if missing:
            raise ConfigError(f"no cost given for model(s): {', '.join(missing)}")
        self.cost_specs = {m: costs[m] for m in self.models}
        self._costs = [_as_cost_fn(costs[m]) for m in self.models]
        self.scorer = scorer
        scorer_models = tuple(getattr(scorer, "models", ()) or ())
        if scorer_models and scorer_models != self.models:
            if set(self.models) <= set(scorer_models):
                self._cols = [scorer_models.index(m) for m in self.models]
            else:
                raise ConfigError(f"the scorer was trained for {scorer_models}, not {self.models}")
        else:
            self._cols = list(range(len(self.models)))
        if objective not in ("threshold", "gain", "lambda"):
            raise ConfigError("objective must be 'threshold', 'gain' or 'lambda'")
        self.objective = objective
        self.threshold = float(threshold)
        self.lam = float(lam)
        self.name = name
        self.cost_source = cost_source  # training | fits | fixed | given (constructor costs)
        self._at: dict[float, Router] = {}  # with_threshold's copies, shared by all of them

    # ------------------------------------------------------------------ deciding
    def costs_for(
        self, requests: Sequence[Request] | None = None, n: int | None = None
    ) -> np.ndarray:
        """Cost matrix (n, n_models) for the requests (constant costs need only ``n``)."""
        if requests is None:
            if any(callable(c) for c in self._costs):
                raise ConfigError("per-request costs need the requests")
            return np.tile(np.array(self._costs, dtype=float), (n or 1, 1))
        out = np.empty((len(requests), len(self.models)))
        for j, c in enumerate(self._costs):
            out[:, j] = [c(r) for r in requests] if callable(c) else c
        return out

    def quality(self, texts: Sequence[str]) -> np.ndarray:
        q = np.asarray(self.scorer.predict_quality(list(texts)), dtype=float)
        return q[:, self._cols]

    def choose(
        self,
        q: np.ndarray,
        costs: np.ndarray,
        threshold: float | None = None,
        lam: float | None = None,
    ) -> np.ndarray:
        """The vectorised rule: index of the chosen model per row."""
        if self.objective == "lambda":
            lam = self.lam if lam is None else lam
            return np.argmin(costs - lam * q, axis=1)
        t = self.threshold if threshold is None else threshold
        if self.objective == "gain":
            lo = costs.min(axis=1, keepdims=True)
            span = costs.max(axis=1, keepdims=True) - lo
            norm = (costs - lo) / np.where(span > 0, span, 1.0)
            value = q - t * norm
            best = value.max(axis=1, keepdims=True)
            # ties go to the cheaper model
            return np.argmin(np.where(value >= best - 1e-12, costs, np.inf), axis=1)
        ok = q >= t
        masked = np.where(ok, costs, np.inf)
        pick = np.argmin(masked, axis=1)
        none = ~ok.any(axis=1)
        if none.any():
            span = np.ptp(costs[none], axis=1, keepdims=True) + 1.0
            pick[none] = np.argmax(q[none] - 1e-9 * costs[none] / span, axis=1)
        return pick

    def route(self, request: Request) -> RouteDecision:
        q = self.quality([request.text()])
        c = self.costs_for([request])
        j = int(self.choose(q, c)[0])
        scores = {m: float(q[0, i]) for i, m in enumerate(self.models)}
        costs = {m: float(c[0, i]) for i, m in enumerate(self.models)}
        if self.objective == "lambda":
            reason = f"min cost - {self.lam:g} x quality"
        elif self.objective == "gain":
            cheapest = int(np.argmin(c[0]))
            if j == cheapest:
                reason = f"no pricier model gains >= {self.threshold:.3f} quality per cost span"
            else:
                reason = (
                    f"predicted quality {q[0, j]:.3f} vs {q[0, cheapest]:.3f} "
                    f"on {self.models[cheapest]}: gain worth its cost "
                    f"at threshold {self.threshold:.3f}"
                )
        elif q[0, j] >= self.threshold:
            cheaper = [m for i, m in enumerate(self.models) if c[0, i] < c[0, j]]
            reason = (
                f"cheapest model with predicted quality {q[0, j]:.3f} >= {self.threshold:.3f}"
                + (f" (cheaper {', '.join(cheaper)} below it)" if cheaper else "")
            )
        else:
            reason = (
                f"no model reaches {self.threshold:.3f}; highest predicted quality {q[0, j]:.3f}"
            )
        return RouteDecision(model=self.models[j], reason=reason, scores=scores, costs=costs)

    def route_many(self, requests: Sequence[Request]) -> list[str]:
        q = self.quality([r.text() for r in requests])
        return [self.models[j] for j in self.choose(q, self.costs_for(requests))]

    def pick(
        self,
        request: Request,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        scores: Mapping[str, float] | None = None,
    ) -> str:
        """The model this router chooses for ``request``, per-request costs evaluated at
        these token counts (default: the request's own ``input_tokens`` / ``max_tokens``).
        ``scores`` (a decision's predicted quality per model) skips the scorer."""
        return self.models[self._pick_index(request, input_tokens, output_tokens, scores)[0]]

    def expected_cost(
        self,
        request: Request,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        *,
        joules: JoulesFn | None = None,
        scores: Mapping[str, float] | None = None,
    ) -> float:
        """Cost of answering ``request`` again through this router: the chosen model's cost
        at these token counts. With ``joules`` that cost is the model's joules (e.g. its
        fit), whatever the router ranks by; where ``joules`` knows none, the router's own."""
        j, c = self._pick_index(request, input_tokens, output_tokens, scores)
        if joules is not None:
            n_in, n_out = _tokens(request, input_tokens, output_tokens)
            e = joules(self.models[j], n_in, n_out)
            if e is not None:
                return float(e)
        return float(c[j])

    def describe_costs(self) -> dict[str, Any]:
        """Where the costs come from and what each model's is (a number, or ``fit``/
        ``callable`` for per-request costs): for logs and the gateway's ``/stats``."""
        costs: dict[str, Any] = {}
        for m, spec in self.cost_specs.items():
            if isinstance(spec, (int, float)):
                costs[m] = float(spec)
            elif hasattr(spec, "coefficients"):
                costs[m] = f"fit {getattr(spec, 'quantity', '')} @ {getattr(spec, 'device', '')}"
            else:
                costs[m] = "callable"
        return {"source": self.cost_source, "costs": costs}

    def _pick_index(
        self,
        request: Request,
        input_tokens: int | None,
        output_tokens: int | None,
        scores: Mapping[str, float] | None,
    ) -> tuple[int, np.ndarray]:
        if input_tokens is not None or output_tokens is not None:
            n_in, n_out = _tokens(request, input_tokens, output_tokens)
            request = dataclasses.replace(request, input_tokens=n_in, max_tokens=n_out)
        if scores is not None and all(m in scores for m in self.models):
            q = np.array([[float(scores[m]) for m in self.models]])
        else:
            q = self.quality([request.text()])
        c = self.costs_for([request])
        return int(self.choose(q, c)[0]), c[0]

    def with_threshold(self, threshold: float) -> Router:
        """A copy with another threshold (the ``router-<name>-<threshold>`` knob), made once per
        threshold and kept: a gateway or a trace replay asks for the same few on every request."""
        t = float(threshold)
        r = self._at.get(t)
        if r is None:
            r = self._at[t] = copy.copy(self)
            r.threshold = t
            if r.objective == "lambda":
                r.objective = "threshold"
        return r

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        costs: dict[str, CostSpec | None] = {}
        for m, spec in self.cost_specs.items():
            if callable(spec) and not hasattr(spec, "coefficients"):
                costs[m] = None  # callables are supplied again at load time
            else:
                costs[m] = spec
        blob = {
            "format": "wattserve-router",
            "version": FORMAT_VERSION,
            "models": self.models,
            "costs": costs,
            "scorer": self.scorer,
            "threshold": self.threshold,
            "objective": self.objective,
            "lam": self.lam,
            "name": self.name,
        }
        with open(path, "wb") as fh:
            pickle.dump(blob, fh, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(
        cls,
        path: str | Path,
        costs: Mapping[str, CostSpec] | None = None,
        cost_source: str | None = None,
    ) -> Router:
        """Load a router saved by ``save`` (a pickle: load only files you trust).

        ``costs`` replace the saved ones for the models they name; ``cost_source`` labels
        the result (default: ``training`` without ``costs``, ``given`` with them)."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"router file not found: {p}")
        try:
            with open(p, "rb") as fh:
                blob = pickle.load(fh)
        except Exception as exc:
            raise ConfigError(f"cannot read router file {p}: {exc}") from exc
        if not isinstance(blob, dict) or blob.get("format") != "wattserve-router":
            raise ConfigError(f"{p} is not a wattserve router file")
        merged = dict(blob["costs"])
        merged.update(costs or {})
        if any(v is None for v in merged.values()):
            raise ConfigError("this router was saved with callable costs: pass costs= when loading")
        return cls(
            blob["models"],
            merged,
            blob["scorer"],
            threshold=blob["threshold"],
            objective=blob["objective"],
            lam=blob["lam"],
            name=blob["name"],
            cost_source=cost_source or ("given" if costs else "training"),
        )

    from_file = load


def _tokens(
    request: Request, input_tokens: int | None, output_tokens: int | None
) -> tuple[int, int]:
    """Token counts for a cost: the given ones, else the request's (about 4 characters a token)."""
    n_in = input_tokens if input_tokens is not None else request.input_tokens
    if n_in is None:
        n_in = max(1, len(request.text()) // 4)
    return int(n_in), int(output_tokens if output_tokens is not None else request.max_tokens)


_ROUTE_MODEL = re.compile(
    r"^router-(?P<name>[A-Za-z0-9_.]+(?:-[A-Za-z_][A-Za-z0-9_.]*)*)(?:-(?P<t>\d*\.?\d+))?$"
)


def parse_route_model(model: str) -> tuple[str, float | None] | None:
    """``router-<name>[-<threshold>]`` -> (name, threshold); None when not a router model.

    ``router-tfidf-0.62`` -> ("tfidf", 0.62); ``router-mmlu-tfidf`` -> ("mmlu-tfidf", None).
    """
    if not model.startswith("router-"):
        return None
    m = _ROUTE_MODEL.match(model)
    if m is None:
        raise ConfigError(f"malformed routing model {model!r}: use router-<name>[-<threshold>]")
    t = m.group("t")
    threshold = float(t) if t is not None else None
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"routing threshold must be in [0, 1], got {threshold}")
    return m.group("name"), threshold
