"""Functional forms for energy and runtime in (input tokens, output tokens).

Each form is a small object: ``params`` (names), ``param_units``, ``design(in, out)`` (the
feature matrix, one column per parameter), ``fit(in, out, y, loss)`` -> coefficients and
``predict(coef, in, out)``. All forms are linear in their coefficients, so fitting is a
(weighted) least-squares solve; the non-negative forms use NNLS so every coefficient is a
physical cost (J or s per unit) and no prediction is ever negative.

Losses (``squared``, ``relative``, ``log``, ``huber-relative``) live in
``wattserve.fit.losses``; the form only supplies the design matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wattserve.fit.losses import LOSSES, solve

Loss = str  # one of LOSSES


def _as_float(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


@dataclass(frozen=True)
class Form:
    """A cost model linear in its coefficients: ``y = design(in, out) @ coef``."""

    name: str
    params: tuple[str, ...]
    param_units: tuple[str, ...]  # per unit of the quantity: "{q}" is replaced by J or s
    columns: Callable[[np.ndarray, np.ndarray], list[np.ndarray]]
    nonnegative: bool
    description: str

    def design(self, input_tokens, output_tokens) -> np.ndarray:
        i, o = np.broadcast_arrays(_as_float(input_tokens), _as_float(output_tokens))
        cols = self.columns(i.ravel(), o.ravel())
        return np.column_stack([np.broadcast_to(c, i.size) for c in cols])

    def units(self, quantity_unit: str) -> tuple[str, ...]:
        return tuple(u.replace("{q}", quantity_unit) for u in self.param_units)

    def fit(self, input_tokens, output_tokens, y, loss: Loss = "squared") -> np.ndarray:
        """Least-squares (or NNLS) coefficients under ``loss`` (see ``wattserve.fit.losses``)."""
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; use one of {', '.join(LOSSES)}")
        X = self.design(input_tokens, output_tokens)
        return solve(X, _as_float(y).ravel(), loss, self.nonnegative)

    def predict(self, coef, input_tokens, output_tokens) -> np.ndarray:
        """Raw linear prediction (may be negative for unconstrained forms); shape of the inputs."""
        i, o = np.broadcast_arrays(_as_float(input_tokens), _as_float(output_tokens))
        X = self.design(i, o)
        return (X @ _as_float(coef)).reshape(i.shape)


def _linear_interaction(i, o):
    return [i, o, i * o]


def _physical(i, o):
    return [np.ones_like(i), i, o, i * o]


def _context(i, o):
    # prefill: fixed + per-token + attention over the prompt (in^2);
    # decode: per generated token + attention over a context growing from in to in+out,
    # i.e. sum_{k=0}^{out-1} (in + k) = out*in + out*(out-1)/2 token-contexts.
    return [np.ones_like(i), i, i * i, o, o * i + o * (o - 1.0) / 2.0]


def _context_quadratic(i, o):
    # as ``context``, with a per-step cost that also grows with the square of the context
    # (attention without an efficient KV cache, memory traffic that grows with it):
    # sum_{k=0}^{out-1} (in + k)^2 = out*in^2 + in*out*(out-1) + (out-1)*out*(2*out-1)/6.
    s2 = o * i * i + i * o * (o - 1.0) + (o - 1.0) * o * (2.0 * o - 1.0) / 6.0
    return [*_context(i, o), s2]


FORMS: dict[str, Form] = {
    f.name: f
    for f in (
        Form(
            name="linear-interaction",
            params=("a0_in", "a1_out", "a2_in_out"),
            param_units=("{q}/token", "{q}/token", "{q}/token^2"),
            columns=_linear_interaction,
            nonnegative=False,
            description="a0*in + a1*out + a2*in*out, no intercept (Wilkins et al. 2024); "
            "unconstrained, predictions clipped at 0",
        ),
        Form(
            name="physical",
            params=("c0_fixed", "c1_prefill", "c2_decode", "c3_in_out"),
            param_units=("{q}", "{q}/input token", "{q}/output token", "{q}/(input*output token)"),
            columns=_physical,
            nonnegative=True,
            description="c0 + c1*in + c2*out + c3*in*out, all c >= 0 (NNLS)",
        ),
        Form(
            name="context",
            params=("c0_fixed", "c1_prefill", "c2_prefill_attn", "c3_decode", "c4_decode_ctx"),
            param_units=(
                "{q}",
                "{q}/input token",
                "{q}/input token^2",
                "{q}/output token",
                "{q}/(token of context per decode step)",
            ),
            columns=_context,
            nonnegative=True,
            description="c0 + c1*in + c2*in^2 + c3*out + c4*(out*in + out*(out-1)/2), all c >= 0 "
            "(NNLS): each decode step attends over a context growing from in to in+out",
        ),
        Form(
            name="context-quadratic",
            params=(
                "c0_fixed",
                "c1_prefill",
                "c2_prefill_attn",
                "c3_decode",
                "c4_decode_ctx",
                "c5_decode_ctx2",
            ),
            param_units=(
                "{q}",
                "{q}/input token",
                "{q}/input token^2",
                "{q}/output token",
                "{q}/(token of context per decode step)",
                "{q}/(token of context^2 per decode step)",
            ),
            columns=_context_quadratic,
            nonnegative=True,
            description="context + c5*sum_k (in+k)^2, all c >= 0 (NNLS): a decode step's cost "
            "grows with the square of its context as well",
        ),
    )
}


def get_form(name: str) -> Form:
    try:
        return FORMS[name]
    except KeyError:
        raise KeyError(f"unknown form {name!r}; known forms: {', '.join(FORMS)}") from None
