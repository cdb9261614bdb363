"""Workload-based cost models: energy and runtime as functions of input and output tokens.

Public API::

    from wattserve.fit import fit_form, load_groups, predict, save_fits, select_best
    groups, notes = load_groups(["measurements.csv"])        # or bench run directories
    fits = [fit_form("context", g.model, g.device, "energy_j", g.input_tokens,
                     g.output_tokens, g.energy_j, loss="relative") for g in groups]
    predict(fits[0], 512, 128)                               # joules; vectorised, never negative

``fit_groups`` fits every form to every group (``select="best"`` keeps the lowest CV MAPE);
``load_fits`` / ``save_fits`` read and write ``ModelFit`` JSON; ``find_fit`` picks one.
"""

from __future__ import annotations

import warnings

import numpy as np

from wattserve.fit.fitting import GroupData, fit_form, fit_groups, select_best
from wattserve.fit.forms import FORMS, Form, get_form
from wattserve.fit.io import Columns, load_fits, load_groups, read_table, save_fits
from wattserve.types import ModelFit

__all__ = [
    "FORMS",
    "Columns",
    "ExtrapolationWarning",
    "Form",
    "GroupData",
    "ModelFit",
    "find_fit",
    "fit_form",
    "fit_groups",
    "get_form",
    "load_fits",
    "load_groups",
    "predict",
    "read_table",
    "save_fits",
    "select_best",
]


class ExtrapolationWarning(UserWarning):
    """A prediction asked for token counts outside the range the fit was measured on."""


def predict(fit: ModelFit, input_tokens, output_tokens, *, warn: bool = True):
    """Predicted ``fit.quantity`` (J or s) for each (input, output) pair; never negative.

    Accepts scalars or numpy arrays (broadcast together); returns a float for scalars and
    an ndarray otherwise. Inputs outside the fit's measured token ranges emit one
    ``ExtrapolationWarning`` per call (``warn=False`` silences it).
    """
    form = get_form(fit.form)
    i = np.asarray(input_tokens, dtype=np.float64)
    o = np.asarray(output_tokens, dtype=np.float64)
    y = np.maximum(form.predict(fit.coefficients, i, o), 0.0)
    if warn and fit.n_rows:
        (ilo, ihi), (olo, ohi) = fit.input_range, fit.output_range
        outside = (i < ilo) | (i > ihi) | (o < olo) | (o > ohi)
        if np.any(outside):
            warnings.warn(
                f"{fit.model} @ {fit.device} {fit.quantity}: "
                f"{int(np.count_nonzero(outside))} prediction(s) "
                f"outside the measured range (input {ilo}..{ihi}, output {olo}..{ohi} tokens)",
                ExtrapolationWarning,
                stacklevel=2,
            )
    return float(y) if y.ndim == 0 else y


def find_fit(fits: list[ModelFit], model: str, device: str, quantity: str) -> ModelFit:
    """The (first) fit for (model, device, quantity); KeyError names what exists."""
    for f in fits:
        if f.model == model and f.device == device and f.quantity == quantity:
            return f
    have = sorted({f"{f.model} @ {f.device}" for f in fits})
    raise KeyError(f"no {quantity} fit for {model} @ {device}; fits exist for: {', '.join(have)}")
