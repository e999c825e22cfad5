"""From formula and DataFrame to matrices: levels, ordering, missing values, rank, checks, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmm
from lmm.design import build_design, r_column_name
from lmm.formula import parse_formula


def design(formula: str, data: pd.DataFrame, **kw):
    return build_design(parse_formula(formula), data, **kw)


@pytest.fixture
def sleep():
    return lmm.datasets.load("sleepstudy")


def test_sleepstudy_matrices(sleep):
    d = design("Reaction ~ Days + (Days | Subject)", sleep)
    assert d.xnames == ("(Intercept)", "Days")
    assert d.X.shape == (180, 2)
    (t,) = d.reterms
    assert t.cnames == ("(Intercept)", "Days") and t.nl == 18 and t.nc == 2
    assert t.levels[:3] == ("308", "309", "310")
    np.testing.assert_array_equal(t.z[:, 1], sleep["Days"].to_numpy())


def test_terms_sorted_by_levels_like_lme4():
    pastes = lmm.datasets.load("pastes")
    d = design("strength ~ 1 + (1 | batch/cask)", pastes)
    assert [t.group for t in d.reterms] == ["cask:batch", "batch"]
    assert d.reterms[0].levels[:3] == ("a:A", "a:B", "a:C")  # first factor varies slowest, as R's a:b


@pytest.mark.parametrize(
    "values",
    [
        ["b", "a", "c", "a", "b", "c"] * 5,
        [3, 1, 2, 1, 3, 2] * 5,
        pd.Categorical(["b", "a", "c", "a", "b", "c"] * 5, categories=["c", "b", "a", "unused"]),
    ],
)
def test_grouping_factor_types(values):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.normal(size=30), "g": values})
    d = design("y ~ 1 + (1 | g)", df)
    (t,) = d.reterms
    assert t.nl == 3  # unused categories dropped, as lme4 drops unused levels
    if isinstance(values, pd.Categorical):
        assert t.levels == ("c", "b", "a")
    fit_levels = {str(v) for v in pd.Series(values).astype(str)}
    assert set(t.levels) == fit_levels


def test_categorical_random_slope():
    rng = np.random.default_rng(1)
    n = 120
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "Machine": pd.Categorical(rng.choice(["A", "B", "C"], size=n)),
            "Worker": rng.choice([f"w{i}" for i in range(8)], size=n),
        }
    )
    d = design("y ~ Machine + (0 + Machine | Worker)", df)
    assert d.reterms[0].cnames == ("MachineA", "MachineB", "MachineC")
    d2 = design("y ~ Machine + (Machine | Worker)", df)
    assert d2.reterms[0].cnames == ("(Intercept)", "MachineB", "MachineC")


def test_missing_rows_dropped_with_warning_and_input_unchanged(sleep):
    df = sleep.copy()
    df.loc[[3, 50], "Reaction"] = np.nan
    df.loc[7, "Days"] = np.nan
    before = df.copy()
    with pytest.warns(lmm.MissingDataWarning, match="3 of 180 rows dropped"):
        d = design("Reaction ~ Days + (Days | Subject)", df)
    assert d.n == 177
    assert 3 not in d.rows and 7 not in d.rows
    pd.testing.assert_frame_equal(df, before)


def test_rank_deficient_columns_dropped_with_names(sleep):
    df = sleep.assign(Days2=sleep["Days"] * 2.0)
    with pytest.warns(lmm.RankDeficiencyWarning, match="Days2"):
        d = design("Reaction ~ Days + Days2 + (1 | Subject)", df)
    assert d.xnames == ("(Intercept)", "Days")


def test_column_names_follow_lme4():
    assert r_column_name("Intercept") == "(Intercept)"
    assert r_column_name("recipe[T.B]:temperature[T.185]") == "recipeB:temperature185"
    assert r_column_name("Machine[A]") == "MachineA"
    cake = lmm.datasets.load("cake")
    d = design("angle ~ recipe * temperature + (1 | recipe:replicate)", cake)
    assert "recipeB:temperature185" in d.xnames and len(d.xnames) == 18


def test_weights_and_offset_by_name_or_array(sleep):
    df = sleep.assign(w=np.tile([1.0, 2.0], 90), o=sleep["Days"] / 10)
    a = design("Reaction ~ Days + (Days | Subject)", df, weights="w", offset="o")
    b = design("Reaction ~ Days + (Days | Subject)", df, weights=df["w"].to_numpy(), offset=df["o"].to_numpy())
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.offset, b.offset)


def test_lmer_never_changes_the_caller_frame(sleep):
    before = sleep.copy()
    lmm.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    pd.testing.assert_frame_equal(sleep, before)


def test_singular_fit_warning_names_the_term():
    with pytest.warns(lmm.SingularFitWarning, match=r"\(1 \| Batch\).*variance is estimated as zero") as rec:
        lmm.lmer("Yield ~ 1 + (1 | Batch)", lmm.datasets.load("dyestuff2"))
    assert rec[0].filename == __file__  # attributed to the caller, not to lmm's internals
    with pytest.warns(lmm.SingularFitWarning, match=r"\(1 \+ x \| grp\).*\|\|"):
        lmm.lmer("y ~ x + (x | grp)", lmm.datasets.load("seed_example"))
