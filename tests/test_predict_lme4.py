"""predict on rows held back from the fit, against lme4's predict.

The reference values come from ``tests/reference/predict/predict_heldback.R``
(lme4 1.1-31). Predictions depend on θ, which lme4's default optimiser finds
to about 1e-6 relative, so they are compared to 1e-5 relative; the criterion
of our fit must be no higher than lme4's by more than 1e-8 relative.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmm

REF = json.loads((Path(__file__).parent / "reference" / "predict" / "predict_heldback.json").read_text())
RTOL = 1e-5


@pytest.fixture(scope="module")
def sleep():
    ss = lmm.datasets.load("sleepstudy")
    subj = ss["Subject"].astype(str)
    train = ss[(ss["Days"] <= 7) & (subj != "372")]
    test = ss[ss["Days"] >= 8]
    fit = lmm.lmer(REF["sleepstudy"]["formula"], data=train)
    return fit, test


@pytest.fixture(scope="module")
def penicillin():
    pen = lmm.datasets.load("Penicillin")
    held = pen["plate"].astype(str).isin(["a", "b"]) & (pen["sample"].astype(str) == "F")
    fit = lmm.lmer(REF["penicillin"]["formula"], data=pen[~held], reml=False)
    return fit, pen[held]


def test_sleepstudy_heldback_rows(sleep):
    fit, test = sleep
    ref = REF["sleepstudy"]
    assert list(test["Subject"].astype(str)) == ref["test_subject"]
    assert fit.objective <= ref["criterion"] * (1 + 1e-8)
    np.testing.assert_allclose(fit.predict(test, allow_new_levels=True), ref["full"], rtol=RTOL)
    np.testing.assert_allclose(fit.predict(test, re_form="~0"), ref["population"], rtol=RTOL)
    np.testing.assert_allclose(fit.predict(test, re_form="~(Days | Subject)", allow_new_levels=True), ref["subject_only"], rtol=RTOL)


def test_new_level_needs_permission(sleep):
    fit, test = sleep
    with pytest.raises(lmm.DataError, match="372"):
        fit.predict(test)


def test_penicillin_each_subset_of_terms(penicillin):
    fit, test = penicillin
    ref = REF["penicillin"]
    assert list(test["plate"].astype(str)) == ref["test_plate"]
    assert fit.objective <= ref["criterion"] * (1 + 1e-8)
    np.testing.assert_allclose(fit.predict(test), ref["full"], rtol=RTOL)
    np.testing.assert_allclose(fit.predict(test, re_form="~(1 | plate)"), ref["plate_only"], rtol=RTOL)
    np.testing.assert_allclose(fit.predict(test, re_form="~(1 | sample)"), ref["sample_only"], rtol=RTOL)
    np.testing.assert_allclose(fit.predict(test, re_form="~0"), ref["population"], rtol=RTOL)


def test_predict_keeps_newdata_index(penicillin):
    fit, test = penicillin
    out = fit.predict(test)
    assert isinstance(out, pd.Series)
    assert list(out.index) == list(test.index)
