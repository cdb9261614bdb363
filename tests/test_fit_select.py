"""Losses, the context-quadratic form, the two-threshold selection rule and the published
form's statsmodels-equal R²."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from wattserve.errors import ConfigError
from wattserve.fit import FORMS, fit_form, fit_groups, select_best
from wattserve.fit.fitting import GroupData, meets, resolve_losses, threshold_misses
from wattserve.fit.losses import LOSSES
from wattserve.types import ModelFit


def grid(seed: int = 0, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(8, 2048, n).astype(float), rng.integers(8, 2048, n).astype(float)


def fake(form: str, cv_r2: float | None, cv_mape: float | None) -> ModelFit:
    return ModelFit("m", "d", "energy_j", form, (), (), cv_r2=cv_r2, cv_mape=cv_mape)


def test_published_form_uncentered_r2_equals_statsmodels_formula_on_unclipped_predictions():
    i, o = grid(1, 200)
    rng = np.random.default_rng(2)
    # cost falling with long prompts at short outputs: the fit's prompt slope is negative and
    # some raw predictions are below 0, where clipping would change R²
    y = np.maximum(5 + o + 2e-3 * i * o - 0.6 * i, 1.0) + np.abs(rng.normal(0, 5, len(i)))
    f = fit_form("linear-interaction", "m", "d", "energy_j", i, o, y, loss="squared")
    X = np.column_stack([i, o, i * o])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    raw = X @ beta
    assert np.any(raw < 0)  # the clipped and unclipped figures really differ here
    ssr = float(((y - raw) ** 2).sum())
    statsmodels_r2 = 1.0 - ssr / float((y**2).sum())  # OLS without constant: uncentered
    assert f.r2_uncentered == pytest.approx(statsmodels_r2, rel=1e-12, abs=1e-12)
    clipped = np.maximum(raw, 0.0)
    assert f.r2_uncentered != pytest.approx(1 - ((y - clipped) ** 2).sum() / (y**2).sum())
    # the centered figure sits beside it, of the clipped predictions predict() returns
    centered = 1 - ((y - clipped) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert f.r2 == pytest.approx(centered, rel=1e-12)


@pytest.mark.skipif(importlib.util.find_spec("statsmodels") is None, reason="needs statsmodels")
def test_published_form_uncentered_r2_equals_statsmodels():
    import statsmodels.api as sm

    i, o = grid(1, 200)
    rng = np.random.default_rng(2)
    y = np.maximum(5 + o + 2e-3 * i * o - 0.6 * i, 1.0) + np.abs(rng.normal(0, 5, len(i)))
    f = fit_form("linear-interaction", "m", "d", "energy_j", i, o, y)
    res = sm.OLS(y, np.column_stack([i, o, i * o])).fit()
    np.testing.assert_allclose(f.coefficients, res.params, rtol=1e-8)
    assert f.r2_uncentered == pytest.approx(res.rsquared, rel=1e-10)


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_recovers_exact_costs(loss):
    i, o = grid()
    true = np.array([5.0, 0.2, 3e-5, 1.5, 2e-4, 1e-8])
    y = FORMS["context-quadratic"].design(i, o) @ true
    f = fit_form("context-quadratic", "m", "d", "energy_j", i, o, y, loss=loss)
    np.testing.assert_allclose(f.coefficients, true, rtol=1e-5, atol=1e-10)
    assert f.loss == loss and f.cv_mape < 1e-5


def test_huber_relative_resists_outliers_that_pull_relative_loss():
    i, o = grid(3)
    y = 10.0 + 0.5 * o + 0.05 * i
    rng = np.random.default_rng(4)
    bad = rng.choice(len(y), 40, replace=False)
    y_obs = y.copy()
    y_obs[bad] *= 4.0  # 10 % of rows far off
    rel = fit_form("physical", "m", "d", "energy_j", i, o, y_obs, loss="relative")
    hub = fit_form("physical", "m", "d", "energy_j", i, o, y_obs, loss="huber-relative")
    good = np.setdiff1d(np.arange(len(y)), bad)
    err = {
        name: np.median(np.abs(FORMS["physical"].predict(f.coefficients, i, o)[good] / y[good] - 1))
        for name, f in (("rel", rel), ("hub", hub))
    }
    assert err["hub"] < 0.01 < err["rel"]


def test_context_quadratic_form_follows_decode_without_kv_cache():
    i, o = grid(5)
    s2 = o * i * i + i * o * (o - 1) + (o - 1) * o * (2 * o - 1) / 6
    y = (2.0 + 0.01 * i + 0.5 * o + 1e-4 * (o * i + o * (o - 1) / 2) + 5e-7 * s2) * np.exp(
        np.random.default_rng(6).normal(0, 0.03, len(i))
    )
    ctx = fit_form("context", "m", "d", "runtime_s", i, o, y, loss="relative")
    cq = fit_form("context-quadratic", "m", "d", "runtime_s", i, o, y, loss="relative")
    assert cq.cv_mape < 0.05 < ctx.cv_mape
    assert select_best([ctx, cq]) is cq


def test_select_prefers_meeting_both_thresholds_over_lowest_mape():
    both = fake("a", 0.975, 0.12)
    low_mape = fake("b", 0.90, 0.03)  # lowest MAPE, misses R²
    high_r2 = fake("c", 0.999, 0.40)  # best R², misses MAPE
    assert select_best([low_mape, high_r2, both]) is both
    better = fake("d", 0.98, 0.05)
    assert select_best([both, better]) is better  # both met: lowest CV MAPE
    # neither meets both: the smaller shortfall wins (0.01/0.03 beats 0.25/0.15)
    near = fake("e", 0.96, 0.10)
    assert select_best([high_r2, near]) is near
    assert select_best([fake("x", None, None), near]) is near


def test_threshold_misses_name_the_figure():
    fits = [fake("a", 0.99, 0.05), fake("b", 0.90, 0.05), fake("c", 0.99, 0.5), fake("d", 0.5, 1)]
    lines = threshold_misses(fits)
    assert len(lines) == 3
    assert "misses CV R²" in lines[0] and "misses CV MAPE" in lines[1]
    assert "meets neither" in lines[2]
    assert meets(fits[0]) == (True, True) and meets(fits[3]) == (False, False)


def test_fit_groups_searches_every_loss_and_keeps_one_fit():
    i, o = grid(7, 200)
    y = 3 + 0.01 * i + 0.4 * o
    g = GroupData("m", "d", i, o, y / 100, y)
    every = fit_groups([g], forms=["physical"], quantities=["energy_j"], loss="all")
    assert [f.loss for f in every] == list(LOSSES)
    best = fit_groups([g], forms=list(FORMS), quantities=["energy_j"], loss="all", select="best")
    assert len(best) == 1 and meets(best[0]) == (True, True)
    assert resolve_losses("squared, log") == ["squared", "log"]
    with pytest.raises(ConfigError, match="unknown loss 'huber'"):
        resolve_losses("huber")
