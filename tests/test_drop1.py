"""drop1 against lme4's ``drop1(fit, test = "Chisq")`` (tests/reference/drop1/drop1.R).

AIC and the likelihood-ratio statistic come from ML deviances that agree with
lme4's to about 1e-8 relative; the statistic is a difference of two such
deviances, so it is compared to 1e-6 absolute, and p-values to 1e-5 relative.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lmm

REF = json.loads((Path(__file__).parent / "reference" / "drop1" / "drop1.json").read_text())
DATA = {"sleepstudy": "sleepstudy", "cake_additive": "cake", "cake_interaction": "cake"}


@pytest.mark.parametrize("key", sorted(DATA))
def test_drop1_matches_lme4(key):
    ref = REF[key]
    fit = lmm.lmer(ref["formula"], data=lmm.datasets.load(DATA[key]), reml=False)
    table = fit.drop1()
    assert list(table.index) == ref["rows"]
    np.testing.assert_allclose(table["AIC"], ref["AIC"], rtol=1e-8)
    np.testing.assert_allclose(table["LRT"].iloc[1:], ref["LRT"][1:], atol=1e-6)
    np.testing.assert_allclose(table["Pr(Chi)"].iloc[1:], ref["p"][1:], rtol=1e-5)
    assert list(table["npar"].iloc[1:].astype(int)) == ref["npar"][1:]


def test_drop1_refits_reml_by_ml_and_says_so():
    fit = lmm.lmer("Reaction ~ Days + (Days | Subject)", data=lmm.datasets.load("sleepstudy"))
    table = lmm.drop1(fit)
    assert table.loc["Days", "LRT"] == pytest.approx(REF["sleepstudy"]["LRT"][1], abs=1e-6)
    text = str(table)
    assert text.startswith("refitting model(s) with ML (instead of REML)")
    assert "Days      1 1785.5 23.537 1.226e-06 ***" in text


def test_drop1_needs_a_term():
    fit = lmm.lmer("Reaction ~ 1 + (1 | Subject)", data=lmm.datasets.load("sleepstudy"))
    with pytest.raises(lmm.DataError, match="no fixed-effect term"):
        fit.drop1()
