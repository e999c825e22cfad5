"""Robustness: fits in parallel threads, the caller's data never changed, badly scaled data.

The scale relations used below, for the profiled criteria of Bates et al. (2015),
``REML(θ) = ldL2 + ldRX2 + (n-p)·(1 + log(2π·pwrss/(n-p)))`` and
``ML(θ) = ldL2 + n·(1 + log(2π·pwrss/n))``:

* y -> c·y leaves L and RX alone and multiplies pwrss by c², at every θ: REML shifts
  by 2(n-p)·log c, ML by 2n·log c, the argmin θ is unchanged, β and σ scale by c.
* a fixed-effects column x -> c·x (not in a random-effects term) multiplies one column
  of RX by c: REML shifts by 2·log c, ML is unchanged, θ is unchanged, β_x scales by 1/c.
* a random-slope column z -> c·z is absorbed by λ -> diag(1, 1/c)·λ: ldL2 and pwrss are
  unchanged at the mapped θ, so only the fixed-effects part above applies.
* y -> y + a with an intercept in X changes only the intercept (by a).
"""

from __future__ import annotations

import copy
import math
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

import lmm
from lmm.errors import ScaleWarning

# --------------------------------------------------------------------------- threads
MODELS = {
    "sleepstudy slope": ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    "penicillin crossed": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    "pastes nested": ("Pastes", "strength ~ 1 + (1 | batch/cask)"),
    "cake intercepts": ("cake", "angle ~ recipe * temperature + (1 | recipe:replicate)"),
    "cake vector term": ("cake", "angle ~ recipe + (0 + recipe | replicate)"),
}


def _fit(key: str) -> lmm.LmmResult:
    name, formula = MODELS[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm.LmmWarning)
        return lmm.lmer(formula, lmm.datasets.load(name))


def _assert_same_fit(a: lmm.LmmResult, b: lmm.LmmResult) -> None:
    assert a.objective == pytest.approx(b.objective, rel=1e-10, abs=0)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.fixef.to_numpy(), b.fixef.to_numpy(), rtol=1e-10, atol=1e-12)
    assert list(a.fixef.index) == list(b.fixef.index)


@pytest.fixture(scope="module")
def serial_fits():
    return {key: _fit(key) for key in MODELS}


@pytest.mark.filterwarnings("ignore::lmm.LmmWarning")
def test_parallel_fits_of_different_models_equal_serial_fits(serial_fits):
    jobs = [key for key in MODELS for _ in range(2)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_fit, jobs))
    assert len(results) == 2 * len(MODELS)
    for key, fit in zip(jobs, results):
        assert fit.formula == MODELS[key][1]
        _assert_same_fit(fit, serial_fits[key])


@pytest.mark.filterwarnings("ignore::lmm.LmmWarning")
def test_one_model_object_fitted_from_several_threads(serial_fits):
    """The unfitted model is shared: fit() must keep no per-fit state in it (REML and ML at once)."""
    model = lmm.LinearMixedModel.from_formula(MODELS["sleepstudy slope"][1], lmm.datasets.load("sleepstudy"))
    reml_flags = [True, False] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        fits = list(pool.map(lambda r: model.fit(reml=r), reml_flags))
    ml = model.fit(reml=False)
    for reml, fit in zip(reml_flags, fits):
        assert fit.reml is reml
        _assert_same_fit(fit, serial_fits["sleepstudy slope"] if reml else ml)
    assert serial_fits["sleepstudy slope"].objective == pytest.approx(1743.6282719599, abs=1e-6)  # lme4's REMLcrit


# --------------------------------------------------------------------------- the caller's data
def odd_frame() -> pd.DataFrame:
    """sleepstudy with string, integer and categorical grouping columns, NaNs and a non-default index."""
    d = lmm.datasets.load("sleepstudy")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "extra": rng.normal(size=180),
            "g_str": d["Subject"].astype(str).to_numpy(dtype=object),
            "Reaction": d["Reaction"].to_numpy(),
            "Days": d["Days"].to_numpy(),
            "g_int": d["Subject"].astype(int).to_numpy(),
            "g_cat": pd.Categorical(d["Subject"].astype(str), categories=[*map(str, d["Subject"].cat.categories), "unused"]),
            "shift": np.where(d["Days"] % 2 == 0, "even", "odd"),
            "flag": (d["Days"] > 4).to_numpy(),
        },
        index=pd.Index(np.arange(180)[::-1] + 1000, name="row"),
    )
    frame.loc[1003, "Reaction"] = np.nan
    frame.loc[1010, "Days"] = np.nan
    frame.loc[1020, "g_str"] = None
    frame.loc[1030, "g_cat"] = np.nan
    frame.attrs["name"] = "odd sleepstudy"
    return frame


FORMULA = "Reaction ~ Days + shift + (Days | g_str)"


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm.LmmWarning)
        return fn(*args, **kwargs)


def _fit_on(df: pd.DataFrame, formula: str = FORMULA, **kw) -> lmm.LmmResult:
    return _quiet(lmm.lmer, formula, df, **kw)


# entry point -> function of the caller's frame, returning a number that shows it ran
ENTRY_POINTS = {
    "lmer": lambda df: _fit_on(df).nobs,
    "lmer int and categorical groups": lambda df: _fit_on(df, "Reaction ~ Days + flag + (Days | g_int) + (1 | g_cat)").nobs,
    "lmer ML with weights column": lambda df: _fit_on(df.assign(w=1.0), reml=False, weights="w").nobs,
    "from_formula": lambda df: _quiet(lmm.LinearMixedModel.from_formula, FORMULA, df).nobs,
    "predict newdata": lambda df: int(_fit_on(odd_frame()).predict(df, allow_new_levels=True).notna().sum()),
    "predict population level": lambda df: int(_fit_on(odd_frame()).predict(df, re_form="~0").notna().sum()),
    "simulate": lambda df: _fit_on(df).simulate(3, seed=1).shape[0],
    "update data": lambda df: _quiet(_fit_on(odd_frame()).update, data=df).nobs,
    "update formula": lambda df: _quiet(_fit_on(df).update, "Reaction ~ Days + (1 | g_int)").nobs,
    "refit": lambda df: (lambda f: _quiet(f.refit, f.simulate(1, seed=2).iloc[:, 0].to_numpy()).nobs)(_fit_on(df)),
    "anova": lambda df: len(lmm.anova(_fit_on(df), _fit_on(df, "Reaction ~ Days + shift + (1 | g_str)"))),
    "confint wald": lambda df: _fit_on(df).confint(method="wald").shape[0],
    "summary": lambda df: len(str(_fit_on(df).summary())),
}

EXPECTED = {
    "lmer": 177,
    "lmer int and categorical groups": 177,
    "lmer ML with weights column": 177,
    "from_formula": 177,
    "predict newdata": 179,  # the row with Days missing has no prediction
    "predict population level": 179,
    "simulate": 177,
    "update data": 177,
    "update formula": 178,  # g_str is no longer used
    "refit": 177,
    "anova": 2,
    "confint wald": 7,  # sd_(Intercept), cor, sd_Days, sigma, three fixed effects
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS), ids=list(ENTRY_POINTS))
def test_caller_frame_is_never_changed(entry):
    df = odd_frame()
    snapshot = copy.deepcopy(df)
    dtypes = df.dtypes.copy()
    columns = list(df.columns)
    result = ENTRY_POINTS[entry](df)
    if entry in EXPECTED:
        assert result == EXPECTED[entry]
    else:
        assert result > 500  # the summary text
    pd.testing.assert_frame_equal(df, snapshot, check_exact=True)
    assert list(df.columns) == columns
    pd.testing.assert_series_equal(df.dtypes, dtypes)
    assert df.index.equals(snapshot.index) and df.index.name == "row"
    assert list(df["g_cat"].cat.categories) == list(snapshot["g_cat"].cat.categories)
    assert df.attrs == {"name": "odd sleepstudy"}


def test_fit_does_not_see_later_changes_of_the_caller_frame():
    df = odd_frame()
    fit = _fit_on(df)
    before = fit.predict().to_numpy().copy()
    df["Reaction"] = 0.0
    df["Days"] = -1.0
    np.testing.assert_array_equal(fit.predict().to_numpy(), before)
    refitted = _quiet(fit.update, reml=False)  # same data, ML: from the stored design, not the changed frame
    assert refitted.nobs == 177 and np.all(refitted.fitted().to_numpy() > 100)


# --------------------------------------------------------------------------- badly scaled data
N, P = 180, 2  # sleepstudy rows and fixed effects


@pytest.fixture(scope="module")
def sleep():
    return lmm.datasets.load("sleepstudy")


def _fit_recording(formula: str, df: pd.DataFrame, reml: bool = True):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fit = lmm.lmer(formula, df, reml=reml)
    return fit, [w for w in rec if issubclass(w.category, ScaleWarning)]


SLOPE = "Reaction ~ Days + (Days | Subject)"
INTERCEPT = "Reaction ~ Days + (1 | Subject)"


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("c", [1e-6, 1e-3, 1e3, 1e6, 1e9])
def test_response_scale(sleep, c, reml):
    base, _ = _fit_recording(SLOPE, sleep, reml)
    fit, scale_warnings = _fit_recording(SLOPE, sleep.assign(Reaction=sleep["Reaction"] * c), reml)
    assert not scale_warnings  # the scale of y alone costs nothing
    shift = 2 * (N - P if reml else N) * math.log(c)
    assert fit.objective - shift == pytest.approx(base.objective, abs=1e-8 * base.objective)
    np.testing.assert_allclose(fit.theta, base.theta, rtol=1e-4)
    np.testing.assert_allclose(fit.fixef.to_numpy() / c, base.fixef.to_numpy(), rtol=1e-8)
    assert fit.sigma / c == pytest.approx(base.sigma, rel=1e-6)


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("c", [1e-6, 1e6])
def test_fixed_effect_column_scale_is_exact(sleep, c, reml):
    base, _ = _fit_recording(INTERCEPT, sleep, reml)
    fit, scale_warnings = _fit_recording(INTERCEPT, sleep.assign(Days=sleep["Days"] * c), reml)
    assert not scale_warnings
    shift = 2 * math.log(c) if reml else 0.0
    assert fit.objective - shift == pytest.approx(base.objective, abs=1e-9)
    np.testing.assert_allclose(fit.theta, base.theta, rtol=1e-6)
    assert fit.fixef["Days"] * c == pytest.approx(base.fixef["Days"], rel=1e-10)
    assert fit.fixef["(Intercept)"] == pytest.approx(base.fixef["(Intercept)"], rel=1e-10)
    assert fit.std_errors["Days"] * c == pytest.approx(base.std_errors["Days"], rel=1e-6)


def _slope_theta(theta: np.ndarray, c: float) -> np.ndarray:
    """θ of the slope model after Days -> c·Days: λ -> diag(1, 1/c)·λ, column-major lower triangle."""
    return np.array([theta[0], theta[1] / c, theta[2] / c])


@pytest.mark.parametrize("c", [1e-2, 1e2])
def test_random_slope_moderately_rescaled_matches(sleep, c):
    base, _ = _fit_recording(SLOPE, sleep)
    fit, scale_warnings = _fit_recording(SLOPE, sleep.assign(Days=sleep["Days"] * c))
    assert not scale_warnings
    assert fit.objective - 2 * math.log(c) == pytest.approx(base.objective, abs=1e-6)
    np.testing.assert_allclose(fit.theta, _slope_theta(base.theta, c), rtol=1e-3)
    assert fit.fixef["Days"] * c == pytest.approx(base.fixef["Days"], rel=1e-6)


@pytest.mark.parametrize("c", [1e-6, 1e6])
def test_random_slope_on_extreme_scale_warns_what_to_rescale(sleep, c):
    _, scale_warnings = _fit_recording(SLOPE, sleep.assign(Days=sleep["Days"] * c))
    assert len(scale_warnings) == 1
    message = str(scale_warnings[0].message)
    assert "'Days' in (1 + Days | Subject)" in message
    assert f"standard deviation {np.std(sleep['Days'], ddof=1) * c:.3g}" in message
    assert "rescale" in message
    assert scale_warnings[0].filename == __file__  # attributed to the caller


@pytest.mark.xfail(strict=True, reason="the optimiser starts at θ=1 and stops far from θ≈2e5 (warned by ScaleWarning)")
def test_random_slope_at_1e_minus_6_matches_the_rescaled_fit(sleep):
    base, _ = _fit_recording(SLOPE, sleep)
    fit, _ = _fit_recording(SLOPE, sleep.assign(Days=sleep["Days"] * 1e-6))
    assert fit.objective - 2 * math.log(1e-6) == pytest.approx(base.objective, abs=1e-4)


@pytest.mark.parametrize("a", [1e3, 1e4])
def test_response_offset_within_tolerance_matches(sleep, a):
    base, _ = _fit_recording(SLOPE, sleep)
    fit, scale_warnings = _fit_recording(SLOPE, sleep.assign(Reaction=sleep["Reaction"] + a))
    assert not scale_warnings
    assert fit.objective == pytest.approx(base.objective, abs=1e-6)
    np.testing.assert_allclose(fit.theta, base.theta, rtol=1e-4)
    assert fit.fixef["(Intercept)"] - a == pytest.approx(base.fixef["(Intercept)"], abs=1e-6)
    assert fit.fixef["Days"] == pytest.approx(base.fixef["Days"], rel=1e-6)


def test_response_near_1e9_matches_the_centered_fit(sleep):
    """The response is centred on its fit on X before the cross-products, so no digits are lost."""
    base, _ = _fit_recording(SLOPE, sleep)
    fit, scale_warnings = _fit_recording(SLOPE, sleep.assign(Reaction=sleep["Reaction"] + 1e9))
    assert not scale_warnings
    assert fit.objective == pytest.approx(base.objective, abs=1e-4)
    np.testing.assert_allclose(fit.theta, base.theta, rtol=1e-4)
    assert fit.fixef["(Intercept)"] - 1e9 == pytest.approx(base.fixef["(Intercept)"], abs=1e-4)
    assert fit.fixef["Days"] == pytest.approx(base.fixef["Days"], rel=1e-6)


def test_response_near_1e9_without_fixed_effects_warns_to_center_it(sleep):
    _, scale_warnings = _fit_recording("Reaction ~ 0 + (1 | Subject)", sleep.assign(Reaction=sleep["Reaction"] + 1e9))
    assert len(scale_warnings) == 1
    message = str(scale_warnings[0].message)
    assert "response 'Reaction'" in message and "Center it" in message and "1e+09" in message
    assert scale_warnings[0].filename == __file__


def test_bundled_data_sets_raise_no_scale_warning():
    cases = [
        ("sleepstudy", SLOPE),
        ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
        ("Pastes", "strength ~ 1 + (1 | batch/cask)"),
        ("cake", "angle ~ temp + (temp || replicate)"),
        ("seed_example", "y ~ x + (x || grp)"),
    ]
    for name, formula in cases:
        _, scale_warnings = _fit_recording(formula, lmm.datasets.load(name))
        assert scale_warnings == [], (name, [str(w.message) for w in scale_warnings])
