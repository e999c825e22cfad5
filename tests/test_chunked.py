"""Fits from chunked data equal the in-memory fit.

The cross-products of [Z X y] add up over row chunks, so a fit from chunks,
from a Parquet directory or from a Dask DataFrame must reach the in-memory
optimum: the criterion to 1e-9 relative (it is the same arithmetic, summed in
a different order), θ and β to 1e-6 and standard errors to 1e-5 relative (the
optimiser sees the same function up to rounding, so it may stop at a point
that differs at its own precision, ~1e-7 in θ, and the standard errors move
with θ).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmm
from lmm.errors import DataError, FormulaError, MissingDataWarning

RTOL_CRIT = 1e-9
ATOL_PARAM = 1e-6

INSTEVAL = "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)"
SLEEP = "Reaction ~ Days + (Days | Subject)"


def _assert_same(fit: lmm.LmmResult, ref: lmm.LmmResult) -> None:
    assert fit.nobs == ref.nobs
    assert fit.objective == pytest.approx(ref.objective, rel=RTOL_CRIT)
    np.testing.assert_allclose(fit.theta, ref.theta, atol=ATOL_PARAM)
    np.testing.assert_allclose(fit.fixef.to_numpy(), ref.fixef.to_numpy(), atol=ATOL_PARAM * np.abs(ref.fixef.to_numpy()).max())
    assert list(fit.fixef.index) == list(ref.fixef.index)
    assert fit.sigma == pytest.approx(ref.sigma, rel=1e-7)
    np.testing.assert_allclose(fit.std_errors.to_numpy(), ref.std_errors.to_numpy(), rtol=1e-5)


@pytest.fixture(scope="module")
def insteval() -> pd.DataFrame:
    return lmm.datasets.load("InstEval")


@pytest.fixture(scope="module")
def insteval_fit(insteval: pd.DataFrame) -> lmm.LmmResult:
    return lmm.lmer(INSTEVAL, data=insteval, reml=False)


@pytest.fixture(scope="module")
def insteval_chunks(insteval: pd.DataFrame) -> list[pd.DataFrame]:
    return [insteval.iloc[idx] for idx in np.array_split(np.arange(len(insteval)), 7)]


@pytest.fixture(scope="module")
def parquet_dir(insteval_chunks: list[pd.DataFrame], tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("pyarrow")
    d = tmp_path_factory.mktemp("insteval_parquet")
    for k, chunk in enumerate(insteval_chunks):
        chunk.to_parquet(d / f"part-{k}.parquet")
    return d


@pytest.mark.slow
def test_insteval_seven_chunks(insteval_fit, insteval_chunks):
    fit = lmm.lmer(INSTEVAL, data=insteval_chunks, reml=False)
    _assert_same(fit, insteval_fit)
    assert fit.ngroups == insteval_fit.ngroups
    for g in fit.ranef:
        np.testing.assert_allclose(fit.ranef[g].to_numpy(), insteval_fit.ranef[g].to_numpy(), atol=1e-6)
        assert list(fit.ranef[g].index) == list(insteval_fit.ranef[g].index)


@pytest.mark.slow
def test_insteval_parquet_directory(insteval_fit, parquet_dir):
    fit = lmm.lmer(INSTEVAL, data=parquet_dir, reml=False)
    _assert_same(fit, insteval_fit)
    fit_str = lmm.lmer(INSTEVAL, data=str(parquet_dir / "part-0.parquet"), reml=False)
    assert fit_str.nobs == len(pd.read_parquet(parquet_dir / "part-0.parquet"))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Sending large graph")  # from_pandas puts the test data in the graph
def test_insteval_dask_local_cluster(insteval, insteval_fit):
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            ddf = dd.from_pandas(insteval, npartitions=7)
            fit = lmm.lmer(INSTEVAL, data=ddf, reml=False)
            _assert_same(fit, insteval_fit)
            out = fit.predict_chunks(ddf).compute()
    np.testing.assert_allclose(out["fitted"].to_numpy(), insteval_fit.fitted().to_numpy(), atol=1e-9)


def test_sleepstudy_reml_chunks_and_generator_function():
    df = lmm.datasets.load("sleepstudy")
    ref = lmm.lmer(SLEEP, data=df)
    parts = [df.iloc[i::5] for i in range(5)]  # interleaved rows: every chunk sees every subject
    _assert_same(lmm.lmer(SLEEP, data=parts), ref)
    _assert_same(lmm.lmer(SLEEP, data=lambda: (df.iloc[i : i + 37] for i in range(0, len(df), 37))), ref)


def test_integer_grouping_factor_in_chunks():
    df = lmm.datasets.load("sleepstudy").assign(Subject=lambda d: d["Subject"].astype(str).astype(int))
    ref = lmm.lmer(SLEEP, data=df)
    fit = lmm.lmer(SLEEP, data=[df.iloc[i::3] for i in range(3)])
    _assert_same(fit, ref)
    assert list(fit.ranef["Subject"].index) == list(ref.ranef["Subject"].index)


def test_chunks_with_different_categories():
    df = lmm.datasets.load("sleepstudy")
    ref = lmm.lmer(SLEEP, data=df)
    parts = []
    for i in range(3):
        part = df.iloc[i * 60 : (i + 1) * 60].copy()
        part["Subject"] = part["Subject"].astype(str).astype("category")  # only this chunk's subjects
        parts.append(part)
    fit = lmm.lmer(SLEEP, data=parts)
    _assert_same(fit, ref)
    assert sorted(fit.ranef["Subject"].index) == sorted(ref.ranef["Subject"].index)


def test_weights_offset_and_missing_rows_in_chunks():
    df = lmm.datasets.load("sleepstudy").copy()
    rng = np.random.default_rng(1)
    df["w"] = rng.uniform(0.5, 2.0, len(df))
    df["off"] = rng.normal(0, 5, len(df))
    df.loc[[3, 50, 111], "Reaction"] = np.nan
    with pytest.warns(MissingDataWarning):
        ref = lmm.lmer(SLEEP, data=df, weights="w", offset="off")
    parts = [df.iloc[:70], df.iloc[70:]]
    with pytest.warns(MissingDataWarning, match="3 of 180 rows"):
        fit = lmm.lmer(SLEEP, data=parts, weights="w", offset="off")
    _assert_same(fit, ref)
    assert fit.loglik == pytest.approx(ref.loglik, rel=RTOL_CRIT)


def test_categorical_fixed_effects_and_levels_missing_from_first_chunk():
    df = lmm.datasets.load("cake")
    formula = "angle ~ recipe * temperature + (1 | recipe:replicate)"
    ref = lmm.lmer(formula, data=df)
    order = df.sort_values("recipe", kind="stable")  # the first chunk holds one recipe only
    parts = [order.iloc[i : i + 60] for i in range(0, len(order), 60)]
    fit = lmm.lmer(formula, data=parts)
    _assert_same(fit, ref)


def test_predict_chunks_streams_fitted_and_residuals():
    df = lmm.datasets.load("sleepstudy")
    parts = [df.iloc[:90], df.iloc[90:]]
    fit = lmm.lmer(SLEEP, data=parts)
    ref = lmm.lmer(SLEEP, data=df)
    out = pd.concat(list(fit.predict_chunks(parts)))
    # the two fits agree at optimiser precision (θ to ~1e-7), so fitted values to ~1e-5 ms of ~300 ms
    np.testing.assert_allclose(out["fitted"].to_numpy(), ref.fitted().to_numpy(), atol=1e-4)
    np.testing.assert_allclose(out["residual"].to_numpy(), ref.residuals().to_numpy(), atol=1e-4)
    exact = pd.concat(list(fit.predict_chunks(iter(parts))))  # a one-shot iterator is enough here
    np.testing.assert_allclose(exact["fitted"].to_numpy(), fit.predict(df).to_numpy(), rtol=1e-13)
    assert list(out.index) == list(df.index)


def test_chunked_fit_keeps_no_rows():
    df = lmm.datasets.load("sleepstudy")
    fit = lmm.lmer(SLEEP, data=[df.iloc[:90], df.iloc[90:]])
    assert fit.y.size == 0
    with pytest.raises(DataError, match="predict_chunks"):
        fit.fitted()
    text = str(fit.summary())
    assert "REML criterion at convergence: 1743.6" in text
    assert "fit from chunked data keeps no rows" in text


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda df: iter([df]), "read twice"),
        (lambda df: [], "empty"),
        (lambda df: [df, df.drop(columns="Days")], r"chunk 1 lacks the column\(s\) \['Days'\]"),
        (lambda df: [df, df.to_numpy()], "not a pandas DataFrame"),
        (lambda df: "no/such/dir", "no Parquet file or directory"),
    ],
)
def test_bad_chunked_sources(make, match):
    df = lmm.datasets.load("sleepstudy")
    with pytest.raises(DataError, match=match):
        lmm.lmer(SLEEP, data=make(df))


def test_stateful_transforms_refused():
    df = lmm.datasets.load("sleepstudy")
    with pytest.raises(FormulaError, match=r"scale\(\) needs the whole data"):
        lmm.lmer("Reaction ~ scale(Days) + (1 | Subject)", data=[df])
    with pytest.raises(DataError, match="column name"):
        lmm.lmer(SLEEP, data=[df], weights=np.ones(len(df)))


def test_chunks_are_not_modified():
    df = lmm.datasets.load("sleepstudy")
    parts = [df.iloc[:90].copy(), df.iloc[90:].copy()]
    before = [p.copy(deep=True) for p in parts]
    lmm.lmer(SLEEP, data=parts)
    for p, b in zip(parts, before):
        pd.testing.assert_frame_equal(p, b)
