"""Fit forms with k-fold cross-validation -> ``ModelFit`` (CV R^2, CV MAPE, in-sample R^2).

``select_best`` ranks candidate (form, loss) fits by both CV figures: a fit that meets
CV R^2 >= ``R2_MIN`` and CV MAPE <= ``MAPE_MAX`` is preferred to one that meets one of them,
which is preferred to one that meets neither; ``threshold_misses`` names the groups whose
chosen fit misses a threshold.

Cross-validation holds out whole request shapes: every row with the same (input, output)
token pair lands in the same fold, so repeated measurements of one shape never sit on both
sides of a split and the CV figures measure prediction on unseen shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wattserve.errors import ConfigError
from wattserve.fit.forms import FORMS, LOSSES, get_form
from wattserve.types import ModelFit

QUANTITY_UNITS = {"energy_j": "J", "runtime_s": "s"}
R2_MIN = 0.97
MAPE_MAX = 0.15


def r2_centered(y, yhat) -> float:
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    sst = float(((y - y.mean()) ** 2).sum())
    return float("nan") if sst == 0 else 1.0 - float(((y - yhat) ** 2).sum()) / sst


def r2_uncentered(y, yhat) -> float:
    """1 - SSR / sum(y^2): what a no-intercept least-squares fit reports (statsmodels, R).

    Pass the raw (unclipped) predictions to get statsmodels' figure."""
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    return 1.0 - float(((y - yhat) ** 2).sum()) / float((y**2).sum())


def mape(y, yhat) -> float:
    """Mean absolute percentage error, as a fraction (0.1 = 10 %)."""
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    return float(np.mean(np.abs(yhat - y) / np.abs(y)))


def shape_folds(input_tokens, output_tokens, k: int, seed: int = 0) -> list[np.ndarray]:
    """Test-index arrays of k folds that keep each (input, output) shape in one fold."""
    pairs = np.stack([np.asarray(input_tokens), np.asarray(output_tokens)], axis=1)
    _, group = np.unique(pairs, axis=0, return_inverse=True)
    group = group.ravel()
    n_groups = int(group.max()) + 1
    if n_groups < 2:  # a single shape: fall back to row folds
        group, n_groups = np.arange(len(group)), len(group)
    k = max(2, min(k, n_groups))
    order = np.random.default_rng(seed).permutation(n_groups)
    fold_of_group = np.empty(n_groups, dtype=int)
    fold_of_group[order] = np.arange(n_groups) % k
    fold = fold_of_group[group]
    return [np.flatnonzero(fold == f) for f in range(k)]


def cv_predictions(form_name, input_tokens, output_tokens, y, loss="squared", k=5, seed=0):
    """Out-of-fold predictions (clipped at 0, as ``predict`` does); NaN where a fold was too
    small."""
    form = get_form(form_name)
    i, o, y = (np.asarray(a, float) for a in (input_tokens, output_tokens, y))
    out = np.full(len(y), np.nan)
    for test in shape_folds(i, o, k, seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        if len(train) < len(form.params):
            continue
        coef = form.fit(i[train], o[train], y[train], loss)
        out[test] = np.maximum(form.predict(coef, i[test], o[test]), 0.0)
    return out


@dataclass(frozen=True)
class GroupData:
    """The rows of one (model, device) group."""

    model: str
    device: str
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    runtime_s: np.ndarray | None
    energy_j: np.ndarray | None


def fit_form(
    form_name: str,
    model: str,
    device: str,
    quantity: str,
    input_tokens,
    output_tokens,
    y,
    *,
    loss: str = "squared",
    k: int = 5,
    seed: int = 0,
) -> ModelFit:
    """Fit one form to one quantity of one group, with k-fold (shape-grouped) CV figures."""
    form = get_form(form_name)
    if loss not in LOSSES:
        raise ConfigError(f"unknown loss {loss!r}; use one of: {', '.join(LOSSES)}")
    i, o, y = (np.asarray(a, float) for a in (input_tokens, output_tokens, y))
    n = len(y)
    if n < len(form.params):
        raise ConfigError(
            f"{model} @ {device} ({quantity}): {n} rows, fewer than the {len(form.params)} "
            f"parameters of form {form_name!r}; collect more measurements or choose a smaller form"
        )
    coef = form.fit(i, o, y, loss)
    raw = form.predict(coef, i, o)
    yhat = np.maximum(raw, 0.0)
    oof = cv_predictions(form_name, i, o, y, loss, k, seed)
    ok = ~np.isnan(oof)
    cv_r2 = r2_centered(y[ok], oof[ok]) if ok.sum() >= 2 else None
    cv_mape = mape(y[ok], oof[ok]) if ok.any() else None
    return ModelFit(
        model=model,
        device=device,
        quantity=quantity,  # type: ignore[arg-type]
        form=form_name,
        params=form.params,
        coefficients=tuple(float(c) for c in coef),
        units=QUANTITY_UNITS.get(quantity, ""),
        loss=loss,
        cv_r2=cv_r2,
        cv_mape=cv_mape,
        r2=r2_centered(y, yhat),  # of the predictions ``predict`` returns (clipped at 0)
        r2_uncentered=r2_uncentered(y, raw),  # unclipped, as statsmodels reports it
        n_rows=n,
        input_range=(int(i.min()), int(i.max())),
        output_range=(int(o.min()), int(o.max())),
    )


def _finite(x: float | None) -> float | None:
    return x if x is not None and np.isfinite(x) else None


def meets(fit: ModelFit, r2_min: float = R2_MIN, mape_max: float = MAPE_MAX) -> tuple[bool, bool]:
    """(CV R^2 >= r2_min, CV MAPE <= mape_max) of one fit; a missing figure meets nothing."""
    r2, m = _finite(fit.cv_r2), _finite(fit.cv_mape)
    return (r2 is not None and r2 >= r2_min, m is not None and m <= mape_max)


def select_best(
    fits: Sequence[ModelFit], r2_min: float = R2_MIN, mape_max: float = MAPE_MAX
) -> ModelFit:
    """The fit to keep among candidates for one (model, device, quantity).

    Ranked by how many of the two thresholds it meets (CV R^2 >= r2_min, CV MAPE <= mape_max),
    then by its shortfall (each figure's distance past its threshold, relative to the
    threshold's room: 1 - r2_min for R^2, mape_max for MAPE; 0 when met), then lowest CV MAPE,
    then highest CV R^2, then order. Among fits that meet both, the lowest CV MAPE wins.
    """

    def key(f: ModelFit) -> tuple[int, float, float, float]:
        ok_r2, ok_mape = meets(f, r2_min, mape_max)
        r2 = _finite(f.cv_r2)
        m = _finite(f.cv_mape)
        r2v = -np.inf if r2 is None else r2
        mv = np.inf if m is None else m
        short = max(0.0, r2_min - r2v) / max(1.0 - r2_min, 1e-12) + max(0.0, mv - mape_max) / max(
            mape_max, 1e-12
        )
        return (-(int(ok_r2) + int(ok_mape)), float(short), float(mv), float(-r2v))

    return min(fits, key=key)


def threshold_misses(
    fits: Sequence[ModelFit], r2_min: float = R2_MIN, mape_max: float = MAPE_MAX
) -> list[str]:
    """One line per fit that misses a threshold, naming the figure(s) it misses."""
    lines = []
    for f in fits:
        ok_r2, ok_mape = meets(f, r2_min, mape_max)
        if ok_r2 and ok_mape:
            continue
        what = (
            "meets neither threshold"
            if not (ok_r2 or ok_mape)
            else ("misses CV R²" if not ok_r2 else "misses CV MAPE")
        )
        r2 = "-" if f.cv_r2 is None else f"{f.cv_r2:.3f}"
        m = "-" if f.cv_mape is None else f"{100 * f.cv_mape:.1f}%"
        lines.append(
            f"{f.model} @ {f.device} {f.quantity}: {what} (best {f.form}/{f.loss}: "
            f"CV R² {r2} vs >= {r2_min:g}, CV MAPE {m} vs <= {100 * mape_max:g}%)"
        )
    return lines


def resolve_losses(loss: str | Sequence[str]) -> list[str]:
    """``"all"``, one loss name, a comma-separated string or a list -> a list of losses."""
    names = (
        [s.strip() for s in loss.split(",") if s.strip()] if isinstance(loss, str) else list(loss)
    )
    if names == ["all"]:
        return list(LOSSES)
    for n in names:
        if n not in LOSSES:
            raise ConfigError(f"unknown loss {n!r}; use one of: {', '.join(LOSSES)} or 'all'")
    if not names:
        raise ConfigError(f"no loss given; use one of: {', '.join(LOSSES)} or 'all'")
    return names


def fit_groups(
    groups: list[GroupData],
    *,
    forms: list[str],
    quantities: list[str],
    loss: str | Sequence[str] = "squared",
    select: str = "all",
    k: int = 5,
    seed: int = 0,
    progress=None,
) -> list[ModelFit]:
    """Fit every (form, loss) to every quantity of every group; ``select='best'`` keeps one
    fit per (group, quantity) by ``select_best``. ``loss`` is a name, a list or ``"all"``."""
    for f in forms:
        if f not in FORMS:
            raise ConfigError(f"unknown form {f!r}; known forms: {', '.join(FORMS)}")
    if select not in ("all", "best"):
        raise ConfigError(f"--select must be 'all' or 'best', not {select!r}")
    losses = resolve_losses(loss)
    result: list[ModelFit] = []
    for g in groups:
        for q in quantities:
            y = g.energy_j if q == "energy_j" else g.runtime_s
            if y is None:
                continue
            fits = [
                fit_form(
                    f,
                    g.model,
                    g.device,
                    q,
                    g.input_tokens,
                    g.output_tokens,
                    y,
                    loss=ls,
                    k=k,
                    seed=seed,
                )
                for f in forms
                for ls in losses
            ]
            result.extend([select_best(fits)] if select == "best" else fits)
            if progress is not None:
                progress()
    return result
