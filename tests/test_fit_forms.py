"""Forms, fitting, CV and predict on synthetic data with known answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from wattserve.fit import (
    FORMS,
    ExtrapolationWarning,
    fit_form,
    load_fits,
    predict,
    save_fits,
    select_best,
)
from wattserve.fit.fitting import mape, r2_centered, r2_uncentered, shape_folds
from wattserve.types import ModelFit


def grid(seed=0, n=300):
    rng = np.random.default_rng(seed)
    i = rng.integers(8, 2048, n).astype(float)
    o = rng.integers(8, 2048, n).astype(float)
    return i, o


def test_linear_interaction_equals_plain_least_squares():
    i, o = grid()
    rng = np.random.default_rng(1)
    y = 0.3 * i + 2.0 * o + 1e-3 * i * o + rng.normal(0, 50, len(i))
    f = fit_form("linear-interaction", "m", "d", "energy_j", i, o, y)
    ref, *_ = np.linalg.lstsq(np.column_stack([i, o, i * o]), y, rcond=None)
    np.testing.assert_allclose(f.coefficients, ref, rtol=1e-9)
    assert f.params == ("a0_in", "a1_out", "a2_in_out")


@pytest.mark.parametrize("form", ["physical", "context"])
def test_nonnegative_forms_recover_known_costs(form):
    i, o = grid()
    true = np.array([5.0, 0.2, 1.5, 3e-4, 2e-3][: len(FORMS[form].params)])
    y = FORMS[form].design(i, o) @ true
    f = fit_form(form, "m", "d", "energy_j", i, o, y)
    np.testing.assert_allclose(f.coefficients, true, rtol=1e-6, atol=1e-9)
    assert f.r2 == pytest.approx(1.0)
    assert f.cv_mape < 1e-6


@pytest.mark.parametrize("form", ["physical", "context"])
def test_nnls_coefficients_nonnegative_even_when_data_pulls_negative(form):
    i, o = grid(2)
    y = 50.0 + 3.0 * o - 0.01 * i  # a negative prompt slope: NNLS must clamp it
    f = fit_form(form, "m", "d", "runtime_s", i, o, y)
    assert min(f.coefficients) >= 0
    assert np.all(predict(f, np.array([1, 5000, 100000]), np.array([1, 1, 1]), warn=False) >= 0)


def test_context_form_beats_published_form_when_decode_is_quadratic():
    i, o = grid(3)
    y = 2.0 + 0.01 * i + 0.5 * o + 1e-4 * (o * i + o * (o - 1) / 2)
    pub = fit_form("linear-interaction", "m", "d", "energy_j", i, o, y)
    ctx = fit_form("context", "m", "d", "energy_j", i, o, y)
    assert ctx.cv_mape < 1e-6 < pub.cv_mape
    assert select_best([pub, ctx]) is ctx


def test_relative_loss_lowers_mape_on_heteroscedastic_data():
    i, o = grid(4, 600)
    rng = np.random.default_rng(5)
    y = (0.5 * i + 2 * o) * np.exp(rng.normal(0, 0.3, len(i))) + 1e-3 * i * o
    sq = fit_form("physical", "m", "d", "energy_j", i, o, y, loss="squared")
    rel = fit_form("physical", "m", "d", "energy_j", i, o, y, loss="relative")
    assert rel.loss == "relative"
    assert rel.cv_mape < sq.cv_mape


def test_predict_clips_negative_and_handles_scalars_and_arrays():
    f = ModelFit(
        "m",
        "d",
        "energy_j",
        "linear-interaction",
        ("a0_in", "a1_out", "a2_in_out"),
        (-1.0, 5.0, 0.001),
        n_rows=10,
        input_range=(1, 5000),
        output_range=(1, 5000),
    )
    raw = FORMS["linear-interaction"].predict(f.coefficients, 2000, 10)
    assert raw < 0  # the published form goes negative for long prompts with short outputs
    assert predict(f, 2000, 10) == 0.0
    assert isinstance(predict(f, 10, 10), float)
    out = predict(f, np.array([10, 20, 2000]), 10)
    assert out.shape == (3,) and np.all(out >= 0)
    assert predict(f, np.array([[10], [20]]), np.array([1, 2, 3])).shape == (2, 3)


def test_predict_warns_outside_measured_range():
    f = ModelFit(
        "m",
        "d",
        "runtime_s",
        "physical",
        FORMS["physical"].params,
        (1.0, 0.1, 0.2, 0.0),
        n_rows=5,
        input_range=(8, 512),
        output_range=(8, 256),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict(f, 100, 100)  # inside: silent
        predict(f, 5000, 100, warn=False)
    with pytest.warns(ExtrapolationWarning, match="outside the measured range"):
        predict(f, np.array([100, 5000]), 100)


def test_shape_folds_keep_each_shape_in_one_fold():
    i = np.repeat([8, 16, 32, 64, 128, 256], 5)
    o = np.tile([32], len(i))
    folds = shape_folds(i, o, k=3, seed=0)
    assert sorted(np.concatenate(folds)) == list(range(len(i)))
    for f in folds:
        held = set(i[f])
        for g in folds:
            if g is not f:
                assert not held & set(i[g])


def test_metrics_by_hand():
    y, yhat = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0])
    assert r2_centered(y, yhat) == pytest.approx(1 - 1 / 2)
    assert r2_uncentered(y, yhat) == pytest.approx(1 - 1 / 14)
    assert mape(y, yhat) == pytest.approx((1 / 3) / 3)


def test_save_load_round_trip(tmp_path):
    i, o = grid()
    fits = [fit_form(f, "m", "d", "energy_j", i, o, 1 + i + o) for f in FORMS]
    path = save_fits(fits, tmp_path / "f.json")
    back = load_fits(path)
    assert back == fits
    np.testing.assert_allclose(
        predict(back[2], i, o, warn=False), predict(fits[2], i, o, warn=False)
    )
