"""Inference against lmerTest and lme4: Satterthwaite df, type III F tests, likelihood-ratio tests.

Tolerances:

* ``RTOL_DF = 1e-3`` — Satterthwaite's df relative to lmerTest's.
* t values within 1e-4 relative; the p-value computed from lmerTest's t with our
  df within ``RTOL_P = 1e-4`` of lmerTest's where |t| < 8 (this isolates the df).
  Our own p-values are compared within 2e-2 relative: lmerTest's are computed at
  lme4's default optimum, whose t differs from the exact optimum in the fifth or
  sixth digit, and a p-value amplifies that by about t² (1e-17 for t = 37).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from reference_data import load_reference, reference_ids
from scipy import stats

import lmm

RTOL_DF = 1e-3
RTOL_P = 1e-4

KEYS = [k for k in reference_ids() if k != ("seed_example", False)]  # lme4 is not at the optimum there


def _fit(key):
    ref = load_reference(*key)
    kw = {}
    if ref.get("weights") is not None:
        kw["weights"] = np.asarray(ref["weights"], dtype=float)
    if ref.get("offset") is not None:
        kw["offset"] = np.asarray(ref["offset"], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm.LmmWarning)
        fit = lmm.lmer(ref["formula"], lmm.datasets.load(ref["dataset"]), reml=key[1], **kw)
    return fit, ref


def _params():
    out = []
    for k in KEYS:
        marks = [pytest.mark.slow] if k[0].startswith("insteval") else []
        out.append(pytest.param(k, id=f"{k[0]}-{'REML' if k[1] else 'ML'}", marks=marks))
    return out


@pytest.mark.parametrize("key", _params())
def test_satterthwaite_coefficients(key):
    fit, ref = _fit(key)
    table = fit.coef_table(ddf="Satterthwaite")
    s = ref["satterthwaite"]["coefficients"]
    rows = s["rows"]
    assert list(table.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    np.testing.assert_allclose(table.loc[rows, "df"].to_numpy(), np.array(s["df"], dtype=float), rtol=RTOL_DF)
    t_ref = np.array(s["t value"], dtype=float)
    p_ref = np.array(s["Pr(>|t|)"], dtype=float)
    df = table.loc[rows, "df"].to_numpy()
    np.testing.assert_allclose(table.loc[rows, "t value"].to_numpy(), t_ref, rtol=1e-4)
    # the p-value from lmerTest's t and our df isolates the df computation
    # (skipped where lme4's default fit stopped more than 1e-7 above the optimum:
    # lmerTest's df are then computed at another θ, 2.5e-4 away for the weighted ML fit)
    moderate = np.abs(t_ref) < 8
    if float(ref["optimum_check"]["objective_gap"]) < 1e-7:
        np.testing.assert_allclose(2 * stats.t.sf(np.abs(t_ref), df)[moderate], p_ref[moderate], rtol=RTOL_P)
    # our own p-values: the fifth-digit differences of t at lme4's default optimum
    # are amplified by about t^2 in a p-value
    np.testing.assert_allclose(table.loc[rows, "Pr(>|t|)"].to_numpy(), p_ref, rtol=2e-2)


@pytest.mark.parametrize("key", _params())
def test_type3_anova(key):
    fit, ref = _fit(key)
    a_ref = ref["satterthwaite"]["anova_type3"]
    if not a_ref or not a_ref.get("rows"):
        pytest.skip("intercept-only model: no terms to test")
    table = fit.anova()
    assert list(table.columns) == ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
    rows = a_ref["rows"]
    assert list(table.index) == rows
    np.testing.assert_array_equal(table.loc[rows, "NumDF"].to_numpy(), np.array(a_ref["NumDF"], dtype=float))
    np.testing.assert_allclose(table.loc[rows, "DenDF"].to_numpy(), np.array(a_ref["DenDF"], dtype=float), rtol=RTOL_DF)
    np.testing.assert_allclose(table.loc[rows, "F value"].to_numpy(), np.array(a_ref["F value"], dtype=float), rtol=1e-3)
    np.testing.assert_allclose(table.loc[rows, "Mean Sq"].to_numpy(), np.array(a_ref["Mean Sq"], dtype=float), rtol=1e-3)


def test_coef_table_without_ddf_is_lme4s():
    fit, ref = _fit(("sleepstudy_slope", True))
    table = fit.coef_table()
    np.testing.assert_allclose(table["t value"].to_numpy(), np.array(list(ref["t_value"].values()), dtype=float), rtol=1e-4)
    assert "df" not in table.columns


ANOVA_FILES = [
    "anova_sleepstudy_null_vs_int",
    "anova_sleepstudy_int_vs_diag",
    "anova_sleepstudy_int_vs_slope",
    "anova_sleepstudy_diag_vs_slope",
    "anova_sleepstudy_null_int_diag_slope",
    pytest.param("anova_insteval_null_vs_service", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name", ANOVA_FILES)
def test_likelihood_ratio_tests(name):
    import json

    from reference_data import REFERENCE_DIR

    ref = json.loads((REFERENCE_DIR / f"{name}.json").read_text())
    fits = []
    for model_id in ref["models"]:
        # REML fits: lmm.anova refits them by ML, as lme4 does
        fit, _ = _fit((model_id, True))
        fits.append(fit)
    table = lmm.anova(*fits, names=ref["models"])
    assert "refitting model(s) with ML" in str(table)
    tab = ref["table"]
    assert list(table.index) == tab["rows"]
    np.testing.assert_array_equal(table["npar"].to_numpy(), np.array(tab["npar"], dtype=float))
    tight = np.array(ref["tight_refits"]["deviance"], dtype=float)
    # our deviances are at the optimum: no higher than lme4's tight refits (1e-8 relative)
    assert np.all(table["deviance"].to_numpy() <= tight + 1e-8 * np.abs(tight) + 1e-6)
    np.testing.assert_allclose(table["deviance"].to_numpy(), tight, rtol=1e-8, atol=1e-6)
    np.testing.assert_allclose(table["Chisq"].to_numpy()[1:], np.array(ref["tight_refits"]["chisq"], dtype=float), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(table["Pr(>Chisq)"].to_numpy()[1:], np.array(ref["tight_refits"]["p_value"], dtype=float), rtol=1e-3)
    np.testing.assert_allclose(table["AIC"].to_numpy(), np.array(tab["AIC"], dtype=float), atol=1e-4)


def test_anova_needs_two_fits_on_same_data():
    fit, _ = _fit(("sleepstudy_int", True))
    with pytest.raises(lmm.DataError, match="at least two"):
        lmm.anova(fit)
    other, _ = _fit(("dyestuff", True))
    with pytest.raises(lmm.DataError, match="different numbers of observations"):
        lmm.anova(fit, other)


# Kenward-Roger (REML fits). Excluded: InstEval (pbkrtest skips it: dense n x n work)
# and the weighted fit: pbkrtest 0.5.2's numbers there agree with no placement of
# the prior weights in V (we use V = Z Sigma Z' + sigma^2 W^-1, the model's own).
KR_KEYS = [k for k in KEYS if k[1] and not k[0].startswith("insteval") and k[0] != "sleepstudy_weights"]


@pytest.mark.parametrize("key", KR_KEYS, ids=[k[0] for k in KR_KEYS])
def test_kenward_roger(key):
    fit, ref = _fit(key)
    kr = ref["kenward_roger"]
    table = fit.coef_table(ddf="Kenward-Roger")
    rows = kr["coefficients"]["rows"]
    np.testing.assert_allclose(table.loc[rows, "df"].to_numpy(), np.array(kr["coefficients"]["df"], dtype=float), rtol=RTOL_DF)
    np.testing.assert_allclose(table.loc[rows, "Std. Error"].to_numpy(), np.array(kr["coefficients"]["Std. Error"], dtype=float), rtol=1e-4)
    a = kr.get("anova_type3")
    if a and a.get("rows"):
        an = fit.anova(ddf="Kenward-Roger").loc[a["rows"]]
        np.testing.assert_allclose(an["DenDF"].to_numpy(), np.array(a["DenDF"], dtype=float), rtol=RTOL_DF)
        np.testing.assert_allclose(an["F value"].to_numpy(), np.array(a["F value"], dtype=float), rtol=1e-3)


def test_kenward_roger_needs_reml():
    fit, _ = _fit(("sleepstudy_int", False))
    with pytest.raises(lmm.DataError, match="REML"):
        fit.coef_table(ddf="Kenward-Roger")
