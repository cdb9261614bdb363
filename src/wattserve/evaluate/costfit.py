"""Per-request router costs fitted on an eval's measured joules per item.

Which of two models is cheaper can depend on the request: a model with a cheap prefill
and a dear decode step (a large vocabulary) costs less on short answers and more on long
ones. A router with one mean cost per model cannot follow that; one with a ``ModelFit``
per model can (``Router`` evaluates a fit at each request's input tokens and
``max_tokens``). ``fit_request_costs`` fits each model's joules per request on the rows of
``routing/item_costs.jsonl`` (``route train --cost-from items``), on the axes the router
sees when a request arrives, before it is answered:

- input: the prompt's length in characters / 4 (the router's own estimate for a request
  without a token count, ``wattserve.route.router._tokens``), so both models are
  evaluated at the same number;
- output: the request's ``max_tokens``, the answer budget the item was sent with (its
  family's): the expected length, not the length the answer turned out to have.

The form is ``physical`` (``c0 + c1*in + c2*out + c3*in*out``, all ``c >= 0``), fitted on
squared error so a prediction is the mean joules of requests of that shape.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattserve.errors import ConfigError
from wattserve.evaluate.routing import ITEM_COSTS
from wattserve.readers import read_jsonl

FORM = "physical"
DEVICE = "eval item joules"
LEGACY_MAX_TOKENS = 12  # the answer budget of eval rows written before it was recorded


@dataclass(frozen=True)
class ItemCost:
    """One evaluated item: its prompt, family, budget and joules per model."""

    item_id: str
    family: str
    prompt: str
    max_tokens: int
    joules: dict[str, float | None]

    @property
    def input_estimate(self) -> int:
        return max(1, len(self.prompt) // 4)


def read_item_costs(routing_dir: str | Path) -> list[ItemCost]:
    """The rows of ``routing_dir/item_costs.jsonl`` (``ConfigError`` when absent or bad)."""
    p = Path(routing_dir)
    path = (p if p.is_dir() else p.parent) / ITEM_COSTS
    if not path.is_file():
        raise ConfigError(
            f"no {ITEM_COSTS} beside {p} (--cost-from items needs a wattserve eval's "
            "routing folder)"
        )
    rows = []
    for k, d in enumerate(read_jsonl(path), 1):
        try:
            row = ItemCost(
                str(d["id"]),
                str(d["family"]),
                str(d["prompt"]),
                d.get("max_tokens") or LEGACY_MAX_TOKENS,
                dict(d["joules"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"{path}: row {k}: not an item cost row with a prompt and joules ({exc})"
            ) from None
        rows.append(row)
    return rows


def fit_request_costs(
    rows: Sequence[ItemCost], models: Sequence[str], seed: int = 0
) -> dict[str, Any]:
    """One ``ModelFit`` of joules per request for each model, on ``rows``."""
    from wattserve.fit import fit_form

    fits: dict[str, Any] = {}
    for m in models:
        use = [r for r in rows if r.joules.get(m) is not None]
        if len(use) < 10:
            raise ConfigError(
                f"{m}: {len(use)} item(s) with measured joules; a per-request cost fit "
                "needs at least 10"
            )
        fits[m] = fit_form(
            FORM,
            m,
            DEVICE,
            "energy_j",
            [r.input_estimate for r in use],
            [r.max_tokens for r in use],
            [float(r.joules[m] or 0.0) for r in use],
            seed=seed,
        )
    return fits


def request_cost_fits(
    routing_dir: str | Path,
    models: Sequence[str],
    prompts: Collection[str] | None = None,
) -> dict[str, Any]:
    """Fits on the item costs of ``routing_dir``; with ``prompts`` (a training side's
    prompt texts) only on the items with those prompts."""
    rows = read_item_costs(routing_dir)
    if prompts is not None:
        keep = set(prompts)
        rows = [r for r in rows if r.prompt in keep]
    missing = [m for m in models if not any(m in r.joules for r in rows)]
    if missing:
        raise ConfigError(f"{ITEM_COSTS} has no joules for {', '.join(missing)}")
    return fit_request_costs(rows, models)


def item_requests(routing_dir: str | Path, texts: Sequence[str]) -> list[Any]:
    """A ``Request`` per prompt, with its item's ``max_tokens``: what a router's per-request
    costs are evaluated at when its threshold is calibrated on these prompts."""
    from wattserve.types import Request

    budget = {r.prompt: r.max_tokens for r in read_item_costs(routing_dir)}
    return [
        Request(id=str(i), prompt=t, max_tokens=budget.get(t, LEGACY_MAX_TOKENS))
        for i, t in enumerate(texts)
    ]
