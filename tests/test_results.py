"""Extractors, predict, simulate, refit, update and pickling of a fit."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import lmm


@pytest.fixture(scope="module")
def sleep_fit():
    df = lmm.datasets.load("sleepstudy")
    return df, lmm.lmer("Reaction ~ Days + (Days | Subject)", df)


@pytest.fixture(scope="module")
def penicillin_fit():
    df = lmm.datasets.load("penicillin")
    return df, lmm.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", df)


def test_predict_on_fitted_rows_equals_fitted(sleep_fit):
    df, fit = sleep_fit
    np.testing.assert_allclose(fit.predict(df).to_numpy(), fit.fitted().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(fit.predict().to_numpy(), fit.fitted().to_numpy(), rtol=1e-12)


def test_predict_population_level(sleep_fit):
    df, fit = sleep_fit
    expect = fit.fixef["(Intercept)"] + fit.fixef["Days"] * df["Days"].to_numpy()
    np.testing.assert_allclose(fit.predict(df, re_form="~0").to_numpy(), expect, rtol=1e-12)


def test_predict_subset_of_terms(penicillin_fit):
    df, fit = penicillin_fit
    plate = fit.ranef["plate"]["(Intercept)"]
    expect = fit.fixef["(Intercept)"] + plate.loc[df["plate"].astype(str)].to_numpy()
    np.testing.assert_allclose(fit.predict(df, re_form="~(1 | plate)").to_numpy(), expect, rtol=1e-12)
    with pytest.raises(lmm.FormulaError, match="not in the model"):
        fit.predict(df, re_form="~(1 | batch)")


def test_predict_new_levels(sleep_fit):
    df, fit = sleep_fit
    new = pd.DataFrame({"Days": [0.0, 5.0], "Subject": ["308", "999"]})
    with pytest.raises(lmm.DataError, match="'999'.*allow_new_levels"):
        fit.predict(new)
    pred = fit.predict(new, allow_new_levels=True)
    assert pred.iloc[1] == pytest.approx(fit.fixef["(Intercept)"] + 5 * fit.fixef["Days"])
    assert pred.iloc[0] == pytest.approx(fit.coef()["Subject"].loc["308", "(Intercept)"])


def test_predict_checks_newdata():
    cake = lmm.datasets.load("cake")
    fit = lmm.lmer("angle ~ recipe + temperature + (1 | recipe:replicate)", cake)
    new = cake.iloc[:2].copy()
    new["temperature"] = ["175", "999"]
    with pytest.raises(lmm.DataError, match="'999'"):
        fit.predict(new)
    with pytest.raises(lmm.DataError, match="lacks the column"):
        fit.predict(cake.drop(columns="recipe"))


def test_simulate_reproducible_and_centred(sleep_fit):
    _, fit = sleep_fit
    a = fit.simulate(3, seed=42)
    b = fit.simulate(3, seed=42)
    assert a.shape == (180, 3) and list(a.columns) == ["sim_1", "sim_2", "sim_3"]
    pd.testing.assert_frame_equal(a, b)
    many = fit.simulate(400, seed=1)
    pop = fit.predict(re_form="~0").to_numpy()
    # the mean over simulations estimates X beta; its standard error is below 2.5 here
    assert np.max(np.abs(many.mean(axis=1).to_numpy() - pop)) < 12.0
    # conditioning on the subjects' modes leaves only residual noise
    cond = fit.simulate(400, seed=2, re_form="~(Days | Subject)")
    assert cond.std(axis=1).mean() == pytest.approx(fit.sigma, rel=0.05)


def test_refit_with_own_response_reproduces_fit(sleep_fit):
    _, fit = sleep_fit
    again = fit.refit(fit.y)
    assert again.objective == pytest.approx(fit.objective, abs=1e-8)
    other = fit.refit(fit.simulate(1, seed=5)["sim_1"].to_numpy())
    assert other.objective != pytest.approx(fit.objective)


def test_update(sleep_fit):
    df, fit = sleep_fit
    smaller = fit.update("Reaction ~ Days + (1 | Subject)")
    direct = lmm.lmer("Reaction ~ Days + (1 | Subject)", df)
    assert smaller.objective == pytest.approx(direct.objective, abs=1e-8)
    ml = fit.update(reml=False)
    assert not ml.reml and ml.objective == pytest.approx(1751.9393444890, abs=1e-4)


def test_pickle_round_trip(sleep_fit):
    df, fit = sleep_fit
    back = pickle.loads(pickle.dumps(fit))
    assert back.objective == fit.objective
    np.testing.assert_array_equal(back.theta, fit.theta)
    pd.testing.assert_series_equal(back.fixef, fit.fixef)
    np.testing.assert_allclose(back.predict(df.iloc[:5]).to_numpy(), fit.predict(df.iloc[:5]).to_numpy())


def test_fitted_na_exclude_keeps_row_positions():
    df = lmm.datasets.load("sleepstudy")
    df.loc[[2, 10], "Reaction"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm.MissingDataWarning)
        fit = lmm.lmer("Reaction ~ Days + (Days | Subject)", df)
    assert len(fit.fitted()) == 178
    full = fit.fitted(na_action="exclude")
    assert len(full) == 180 and np.isnan(full.loc[2]) and np.isnan(full.loc[10])
    assert full.loc[3] == fit.fitted().loc[3]
    assert np.isnan(fit.residuals(na_action="exclude").loc[10])


def test_coef_is_fixef_plus_ranef(sleep_fit):
    _, fit = sleep_fit
    coef = fit.coef()["Subject"]
    np.testing.assert_allclose(coef["Days"].to_numpy(), fit.fixef["Days"] + fit.ranef["Subject"]["Days"].to_numpy())


def test_residual_types_with_weights():
    df = lmm.datasets.load("sleepstudy")
    w = np.tile([1.0, 2.0], 90)
    fit = lmm.lmer("Reaction ~ Days + (Days | Subject)", df, weights=w)
    np.testing.assert_allclose(fit.residuals("pearson").to_numpy(), fit.residuals().to_numpy() * np.sqrt(w))
    np.testing.assert_allclose(fit.resid(scaled=True).to_numpy(), fit.residuals("pearson").to_numpy() / fit.sigma)
    with pytest.raises(ValueError, match="pearson"):
        fit.residuals("deviance")


def test_repr_and_model_matrices(sleep_fit):
    df, fit = sleep_fit
    assert repr(fit).startswith("<LmmResult 'Reaction ~ Days + (Days | Subject)'")
    model = lmm.LinearMixedModel.from_formula("Reaction ~ Days + (Days | Subject)", df)
    assert model.Zt_matrix.shape == (36, 180)
    assert model.lambdat().shape == (36, 36)
    np.testing.assert_allclose(model.lambdat(fit.theta).toarray()[:2, :2], [[fit.theta[0], fit.theta[1]], [0.0, fit.theta[2]]])


def test_model_matrices_on_the_fit(sleep_fit):
    _, sleep_fit = sleep_fit
    X, Zt, Lt = sleep_fit.X, sleep_fit.Zt, sleep_fit.Lambdat
    assert list(X.columns) == ["(Intercept)", "Days"]
    assert X.shape == (180, 2) and np.allclose(X["Days"].to_numpy(), sleep_fit.model.X[:, 1])
    assert Zt.shape == (36, 180) and Zt.nnz == 360
    assert Lt.shape == (36, 36)
    # b = Λθ u and Zb are the conditional modes' contribution to the fitted values
    eta = X.to_numpy() @ sleep_fit.beta + Zt.T @ sleep_fit.b
    np.testing.assert_allclose(eta, sleep_fit.fitted().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose((Lt.T @ Lt).diagonal()[:2], sleep_fit.theta[0] ** 2 * np.array([1.0, 0.0]) + np.array([0.0, sleep_fit.theta[1] ** 2 + sleep_fit.theta[2] ** 2]))
