"""Every bad input gets an lmm error (a ValueError) naming what is wrong; the caller's data never change.

One table: case name -> (formula, data change, keyword arguments, exception, message pattern).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import lmm


def base_data() -> pd.DataFrame:
    df = lmm.datasets.load("sleepstudy")
    rng = np.random.default_rng(1)
    df["row"] = np.arange(len(df)).astype(str)
    df["one"] = "x"
    df["const"] = 1.0
    df["word"] = "w" + df["Days"].astype(int).astype(str)
    for k in range(2, 10):
        df[f"D{k}"] = df["Days"] ** (k / 3) + rng.normal(size=len(df))
    return df


def with_inf(df):
    df = df.copy()
    df.loc[5, "Reaction"] = np.inf
    return df


def all_missing(df):
    return df.assign(Reaction=np.nan)


BAD = {
    # formula syntax
    "not a string": (42, None, {}, lmm.FormulaError, "must be a string"),
    "empty formula": ("", None, {}, lmm.FormulaError, "empty"),
    "no tilde": ("Reaction Days + (1 | Subject)", None, {}, lmm.FormulaError, "no '~'"),
    "two tildes": ("Reaction ~ Days ~ x + (1 | Subject)", None, {}, lmm.FormulaError, "more than one '~'"),
    "no response": ("~ Days + (1 | Subject)", None, {}, lmm.FormulaError, "no response"),
    "empty right side": ("Reaction ~ ", None, {}, lmm.FormulaError, "nothing right of"),
    "unclosed parenthesis": ("Reaction ~ Days + (1 | Subject", None, {}, lmm.FormulaError, "never closed"),
    "stray parenthesis": ("Reaction ~ Days) + (1 | Subject)", None, {}, lmm.FormulaError, "closes nothing"),
    "empty left of bar": ("Reaction ~ Days + ( | Subject)", None, {}, lmm.FormulaError, "nothing left of the bar"),
    "empty right of bar": ("Reaction ~ Days + (1 | )", None, {}, lmm.FormulaError, "nothing right of the bar"),
    "bar outside parentheses": ("Reaction ~ Days | Subject", None, {}, lmm.FormulaError, "inside parentheses"),
    "R power in I()": ("Reaction ~ I(Days^2) + (1 | Subject)", None, {}, lmm.FormulaError, r"I\(x\*\*2\)"),
    "function as group": ("Reaction ~ Days + (1 | log(Subject))", None, {}, lmm.FormulaError, "grouping side"),
    "empty term": ("Reaction ~ Days + + (1 | Subject)", None, {}, lmm.FormulaError, "empty term"),
    "no random effects": ("Reaction ~ Days", None, {}, lmm.FormulaError, "no random-effects terms"),
    "empty bar term": ("Reaction ~ Days + (0 | Subject)", None, {}, lmm.FormulaError, "no columns"),
    # columns
    "unknown fixed column": ("Reaction ~ Dayz + (1 | Subject)", None, {}, lmm.DataError, "Did you mean 'Days'"),
    "unknown grouping factor": ("Reaction ~ Days + (1 | Subjekt)", None, {}, lmm.DataError, "Did you mean 'Subject'"),
    "unknown column in bar": ("Reaction ~ Days + (Dayz | Subject)", None, {}, lmm.DataError, "'Dayz'"),
    "unknown response": ("Reactoin ~ Days + (1 | Subject)", None, {}, lmm.DataError, "Did you mean 'Reaction'"),
    # response
    "string response": ("word ~ Days + (1 | Subject)", None, {}, lmm.DataError, "must be numeric"),
    "constant response": ("const ~ Days + (1 | Subject)", None, {}, lmm.DataError, "is constant"),
    "infinite response": ("Reaction ~ Days + (1 | Subject)", with_inf, {}, lmm.DataError, "infinite"),
    "all rows missing": ("Reaction ~ Days + (1 | Subject)", all_missing, {}, lmm.DataError, "every row"),
    "empty data": ("Reaction ~ Days + (1 | Subject)", lambda d: d.iloc[:0], {}, lmm.DataError, "no rows"),
    "not a DataFrame": ("Reaction ~ Days + (1 | Subject)", lambda d: d.to_numpy(), {}, lmm.DataError, "DataFrame"),
    # grouping factors and random effects
    "one level": ("Reaction ~ Days + (1 | one)", None, {}, lmm.DesignError, "at least 2"),
    "as many levels as rows": ("Reaction ~ Days + (1 | row)", None, {}, lmm.DesignError, "less than the number of observations"),
    "too many random effects": ("Reaction ~ Days + (1 + Days + D2 + D3 + D4 + D5 + D6 + D7 + D8 + D9 | Subject)", None, {}, lmm.DesignError, "unidentifiable"),
    # weights and offset
    "negative weights": ("Reaction ~ Days + (1 | Subject)", None, {"weights": -np.ones(180)}, lmm.DataError, "non-negative"),
    "zero weights everywhere": ("Reaction ~ Days + (1 | Subject)", None, {"weights": np.zeros(180)}, lmm.DataError, "zero everywhere"),
    "weights of wrong length": ("Reaction ~ Days + (1 | Subject)", None, {"weights": np.ones(10)}, lmm.DataError, "length 10"),
    "unknown weights column": ("Reaction ~ Days + (1 | Subject)", None, {"weights": "wt"}, lmm.DataError, "'wt'"),
    "non-numeric weights column": ("Reaction ~ Days + (1 | Subject)", None, {"weights": "word"}, lmm.DataError, "must be numeric"),
    "offset of wrong length": ("Reaction ~ Days + (1 | Subject)", None, {"offset": np.ones(3)}, lmm.DataError, "length 3"),
    "infinite offset": ("Reaction ~ Days + (1 | Subject)", None, {"offset": np.full(180, np.inf)}, lmm.DataError, "offset must be finite"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input(case):
    formula, change, kwargs, exc, pattern = BAD[case]
    df = base_data()
    data = change(df) if change is not None else df
    snapshot = data.copy() if isinstance(data, pd.DataFrame) else None
    with pytest.raises(exc, match=pattern) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lmm.LmmWarning)
            lmm.lmer(formula, data, **kwargs)
    assert isinstance(info.value, lmm.LmmError) and isinstance(info.value, ValueError)
    if snapshot is not None:
        pd.testing.assert_frame_equal(data, snapshot)


GOOD_ODD_NAMES = {
    "dots, spaces and non-ASCII": ("`my y` ~ my.x + (my.x | grüppe)", ["(Intercept)", "my.x"]),
    "I() of a dotted name": ("`my y` ~ I(my.x**2) + (1 | grüppe)", ["(Intercept)", "I(my.x ** 2)"]),
    "backticked group": ("`my y` ~ 1 + (1 | `grüppe`)", ["(Intercept)"]),
}


@pytest.mark.parametrize("case", list(GOOD_ODD_NAMES), ids=list(GOOD_ODD_NAMES))
def test_odd_column_names_work(case):
    formula, names = GOOD_ODD_NAMES[case]
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"my y": rng.normal(size=60), "my.x": rng.normal(size=60), "grüppe": np.repeat(list("abcdef"), 10)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm.LmmWarning)
        fit = lmm.lmer(formula, df)
    assert list(fit.fixef.index) == names
    assert np.all(np.isfinite(fit.predict(df.iloc[:3]).to_numpy()))


def test_large_integer_columns_do_not_overflow():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(6), 10)
    y = rng.normal(size=60) + rng.normal(size=6)[g] * 2
    df = pd.DataFrame({"y": y, "big": (np.arange(60, dtype=np.int64) * 10**12), "g": g})
    # ML: the deviance does not depend on the scale of X (the REML criterion does, by log|RX|)
    fit = lmm.lmer("y ~ big + (1 | g)", df, reml=False)
    small = lmm.lmer("y ~ big + (1 | g)", df.assign(big=df["big"] / 1e12), reml=False)
    assert fit.objective == pytest.approx(small.objective, abs=1e-6)
    assert fit.fixef["big"] * 1e12 == pytest.approx(small.fixef["big"], rel=1e-6)


def test_predict_newdata_missing_column():
    df = base_data()
    fit = lmm.lmer("Reaction ~ Days + (1 | Subject)", df)
    with pytest.raises(lmm.DataError, match="lacks the column"):
        fit.predict(df.drop(columns="Days"))
