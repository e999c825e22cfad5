"""Property tests over random designs.

For random data (numbers of levels, crossed or nested factors, random slopes,
missing values, weights) ``lmm.lmer`` either fits — and then its criterion at
the optimum equals an independent dense computation through the marginal
covariance ``V = W⁻¹ + ZΛΛᵀZᵀ`` at the same θ, and is no higher than that
computation at the start point — or raises an ``lmm.LmmError``. No other
exception type, and no NaN in the results.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmm


def dense_criterion(fit_model: lmm.LinearMixedModel, theta: np.ndarray, reml: bool) -> float:
    """Profiled REML criterion or deviance through V = W^-1 + Z Lambda Lambda' Z'."""
    X, y = fit_model.X, fit_model.y
    if fit_model.offset is not None:
        y = y - fit_model.offset
    n, p = X.shape
    Z = fit_model.Zt_matrix.T.toarray()
    lam = fit_model.lambdat(theta).toarray().T
    w = fit_model.weights if fit_model.weights is not None else np.ones(n)
    V = np.diag(1.0 / w) + Z @ lam @ lam.T @ Z.T
    Vinv = np.linalg.inv(V)
    XtVX = X.T @ Vinv @ X
    beta = np.linalg.solve(XtVX, X.T @ Vinv @ y)
    r = y - X @ beta
    rss = float(r @ Vinv @ r)
    _, logdetV = np.linalg.slogdet(V)
    if reml:
        _, logdetX = np.linalg.slogdet(XtVX)
        return logdetV + logdetX + (n - p) * (1 + np.log(2 * np.pi * rss / (n - p)))
    return logdetV + n * (1 + np.log(2 * np.pi * rss / n))


@st.composite
def designs(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(20, 120))
    nl1 = draw(st.integers(2, 12))
    layout = draw(st.sampled_from(["single", "crossed", "nested"]))
    slope = draw(st.booleans())
    uncorrelated = draw(st.booleans())
    missing = draw(st.floats(0.0, 0.2))
    weighted = draw(st.booleans())
    g1 = rng.integers(0, nl1, size=n)
    x = rng.normal(size=n)
    df = pd.DataFrame({"x": x, "g1": [f"a{v}" for v in g1]})
    eta = 1.0 + 0.5 * x + rng.normal(size=nl1)[g1] * draw(st.floats(0.0, 2.0))
    terms = []
    bar = "||" if uncorrelated else "|"
    terms.append(f"(1 + x {bar} g1)" if slope else "(1 | g1)")
    if layout == "crossed":
        nl2 = draw(st.integers(2, 6))
        g2 = rng.integers(0, nl2, size=n)
        df["g2"] = g2  # integers as a grouping factor
        eta = eta + rng.normal(size=nl2)[g2]
        terms.append("(1 | g2)")
    elif layout == "nested":
        df["g2"] = pd.Categorical([f"b{v % 3}" for v in g1])
        terms.append("(1 | g2/g1)")
        terms = terms[1:] if not slope else terms
    df["y"] = eta + rng.normal(size=n)
    if missing > 0:
        holes = rng.random(n) < missing
        df.loc[holes, "y"] = np.nan
    weights = rng.uniform(0.5, 2.0, size=n) if weighted else None
    formula = "y ~ x + " + " + ".join(terms)
    reml = draw(st.booleans())
    return formula, df, weights, reml


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(designs())
def test_fit_or_clear_error(case):
    formula, df, weights, reml = case
    before = df.copy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lmm.LmmWarning)
            model = lmm.LinearMixedModel.from_formula(formula, df, reml=reml, weights=weights)
            fit = model.fit()
    except lmm.LmmError:
        pd.testing.assert_frame_equal(df, before)
        return
    pd.testing.assert_frame_equal(df, before)
    assert np.isfinite(fit.objective) and np.isfinite(fit.sigma)
    assert np.all(np.isfinite(fit.beta)) and np.all(np.isfinite(fit.theta))
    dense = dense_criterion(model, fit.theta, reml)
    assert abs(fit.objective - dense) <= 1e-7 * max(1.0, abs(dense))
    start = dense_criterion(model, model.theta0, reml)
    assert fit.objective <= start + 1e-8 * max(1.0, abs(start))
