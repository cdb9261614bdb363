"""Where a router's costs come from, and the routed recompute cost LEC and GDSF are given.

A trained router ranks models by the costs it was trained with (``route train --cost``).
A deployment may rank by something else: each model's fitted joules (``fits``) or numbers
from its config (``fixed``). ``router_with_costs`` loads a router file with the costs of
the named source and labels it, so logs and ``/stats`` can say what decisions rest on.
Fitted joules are in other units than training costs, which can flip every decision (a
router trained with ``weak=1, strong=10`` sends everything to ``strong`` when the fits say
``strong`` draws fewer joules per answer), so the source is always named, never implied.

``RoutedCost`` is the recompute cost of Zhu et al.'s LEC with a selector: the joules of
answering a request again through the router, i.e. the model the router would choose for
it, charged at that model's fitted joules for the request's token counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from wattserve.errors import ConfigError
from wattserve.route.router import CostSpec, JoulesFn, Router, parse_route_model
from wattserve.types import Request

CostSource = Literal["training", "fits", "fixed"]
COST_SOURCES: tuple[str, ...] = ("training", "fits", "fixed")


def source_costs(
    source: str,
    models: Sequence[str],
    fits: Mapping[str, Any] | None = None,
    fixed: Mapping[str, float] | None = None,
) -> dict[str, CostSpec] | None:
    """The costs that replace a router file's for ``source`` (None: keep the file's).

    ``fits`` needs a fit for every model the router picks from and ``fixed`` a number for
    each: a router never ranks some models by joules and others by training costs."""
    if source == "training":
        return None
    if source == "fits":
        missing = [m for m in models if m not in (fits or {})]
        if missing:
            raise ConfigError(
                f"router cost source 'fits' needs an energy fit for every routed model; "
                f"none for {', '.join(missing)} (set models[].fit, or use cost_source "
                "training or fixed)"
            )
        assert fits is not None
        return {m: fits[m] for m in models}
    if source == "fixed":
        given = dict(fixed or {})
        missing = [m for m in models if m not in given]
        extra = [m for m in given if m not in models]
        if missing or extra:
            raise ConfigError(
                "router cost source 'fixed' needs one cost per routed model "
                f"({', '.join(models)}); "
                + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}")
            )
        bad = [m for m, v in given.items() if not float(v) >= 0]
        if bad:
            raise ConfigError(f"router costs must be non-negative numbers ({', '.join(bad)})")
        return {m: float(given[m]) for m in models}
    raise ConfigError(f"unknown router cost source {source!r}: use {', '.join(COST_SOURCES)}")


def router_with_costs(
    path: str | Path,
    source: str = "training",
    fits: Mapping[str, Any] | None = None,
    fixed: Mapping[str, float] | None = None,
) -> Router:
    """Load a router file whose decisions rank by the costs of ``source``."""
    if source not in COST_SOURCES:
        raise ConfigError(f"unknown router cost source {source!r}: use {', '.join(COST_SOURCES)}")
    router = Router.load(path)
    costs = source_costs(source, router.models, fits, fixed)
    if costs is None:
        return router
    return Router(
        router.models,
        costs,
        router.scorer,
        threshold=router.threshold,
        objective=router.objective,
        lam=router.lam,
        name=router.name,
        cost_source=source,
    )


def describe_router(router: Router) -> str:
    """One line for the startup log: the router, its rule and where its costs come from."""
    d = router.describe_costs()
    costs = ", ".join(
        f"{m}={v:g}" if isinstance(v, float) else f"{m}: {v}" for m, v in d["costs"].items()
    )
    return (
        f"router {router.name!r} ({router.objective}, threshold {router.threshold:g}) "
        f"over {', '.join(router.models)}; costs from {d['source']}: {costs}"
    )


def fitted_joules(
    fits: Mapping[str, Any], per_token_j: Mapping[str, float] | None = None
) -> JoulesFn:
    """``joules(model, input_tokens, output_tokens)`` from each model's energy fit, else its
    J/token estimate over all tokens; None for a model with neither."""
    per_token = dict(per_token_j or {})

    def joules(model: str, input_tokens: int, output_tokens: int) -> float | None:
        fit = fits.get(model)
        if fit is not None:
            from wattserve.fit import predict  # on first use: numpy forms

            return max(0.0, float(predict(fit, input_tokens, output_tokens, warn=False)))
        j = per_token.get(model)
        return None if j is None else j * (input_tokens + output_tokens)

    return joules


class RoutedCost:
    """The expected joules of answering a request again through a router.

    ``cost(router, request, input_tokens, output_tokens)``: the router picks the model (by
    its own costs, at these token counts) and the model's joules are ``joules`` for them;
    None when no joules are known for the chosen model (the caller keeps its fallback)."""

    def __init__(self, joules: JoulesFn) -> None:
        self.joules = joules

    def choice(
        self,
        router: Router,
        request: Request,
        input_tokens: int,
        output_tokens: int,
        scores: Mapping[str, float] | None = None,
    ) -> tuple[str, float | None]:
        """(the model the router would choose, its joules for these tokens or None)."""
        model = router.pick(request, input_tokens, output_tokens, scores)
        return model, self.joules(model, input_tokens, output_tokens)

    def __call__(
        self,
        router: Router,
        request: Request,
        input_tokens: int,
        output_tokens: int,
        scores: Mapping[str, float] | None = None,
    ) -> float | None:
        return self.choice(router, request, input_tokens, output_tokens, scores)[1]


class RecomputeCost:
    """The cache cost of a gateway's answer: what answering its request again would cost.

    ``cost(request, model, input_tokens, output_tokens)``, where ``request.model`` is the
    model field the client sent (its cache group) and ``model`` the one that answered: for
    ``auto`` / ``router-<name>[-<threshold>]`` the routed cost (``RoutedCost``, the router
    at that threshold), for a named model its joules. None when no joules are known (the
    caller falls back to the metered joules)."""

    def __init__(self, joules: JoulesFn, router: Router | None = None) -> None:
        self.joules = joules
        self.router = router
        self.routed = RoutedCost(joules)

    def router_for(self, group: str) -> Router | None:
        """The router a model field names (None for a plain model or a foreign policy)."""
        r = self.router
        if r is None:
            return None
        if group == "auto":
            return r
        try:
            parsed = parse_route_model(group)
        except ConfigError:
            return None
        if parsed is None or parsed[0] != r.name:
            return None
        threshold = parsed[1]
        if threshold is None:
            return r
        return r.with_threshold(threshold)

    def __call__(
        self,
        request: Request,
        model: str,
        input_tokens: int,
        output_tokens: int,
        scores: Mapping[str, float] | None = None,
    ) -> float | None:
        """``scores``: the routing decision's quality per model, which spares the scorer."""
        router = self.router_for(request.model) if request.model != model else None
        if router is None:
            return self.joules(model, input_tokens, output_tokens)
        return self.routed(router, request, input_tokens, output_tokens, scores)
