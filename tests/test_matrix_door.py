"""The matrix door: X, y, Zᵀ and θ ↦ Λᵀ given directly, as in the package's Ruby ancestor.

On the seed example (50 rows, 5 groups of 10, random intercept and slope) the
matrix door must give the same fit as the formula ``y ~ x + (x | grp)`` and as
lme4.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from reference_data import load_reference

import lmm


def seed_matrices():
    df = lmm.datasets.load("seed_example")
    x = df["x"].to_numpy(dtype=float)
    y = df["y"].to_numpy(dtype=float)
    n = x.size
    X = np.column_stack([np.ones(n), x])
    grp = df["grp"].cat.codes.to_numpy()
    # Zt: 10 x 50, rows (intercept, slope) for each of the 5 groups
    rows = np.concatenate([2 * grp, 2 * grp + 1])
    cols = np.concatenate([np.arange(n), np.arange(n)])
    vals = np.concatenate([np.ones(n), x])
    Zt = sp.csr_matrix((vals, (rows, cols)), shape=(10, n))

    def lambdat(theta):
        block = np.array([[theta[0], theta[1]], [0.0, theta[2]]])  # the transpose of [[t0, 0], [t1, t2]]
        return sp.kron(sp.identity(5), block, format="csc")

    return X, y, Zt, lambdat


@pytest.mark.parametrize("reml", [True, False])
def test_matrix_door_objective_matches_lme4(reml):
    X, y, Zt, lambdat = seed_matrices()
    model = lmm.LinearMixedModel(X, y, Zt, lambdat, theta0=[1.0, 0.0, 1.0], lower=[0.0, -np.inf, 0.0], reml=reml)
    ref = load_reference("seed_example", reml)
    theta = np.array([float(v) for v in ref["theta"].values()])
    assert model.objective(theta) == pytest.approx(float(ref["objective"]), rel=1e-8)


@pytest.mark.parametrize("reml", [True, False])
def test_matrix_door_fit_equals_formula_fit(reml):
    X, y, Zt, lambdat = seed_matrices()
    model = lmm.LinearMixedModel(
        X, y, Zt, lambdat, theta0=[1.0, 0.0, 1.0], lower=[0.0, -np.inf, 0.0], reml=reml, xnames=["(Intercept)", "x"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm.LmmWarning)
        door = model.fit()
        formula = lmm.lmer("y ~ x + (x | grp)", lmm.datasets.load("seed_example"), reml=reml)
    assert door.objective == pytest.approx(formula.objective, abs=1e-6)
    np.testing.assert_allclose(door.beta, formula.beta, rtol=1e-4, atol=1e-6)
    assert door.sigma == pytest.approx(formula.sigma, rel=1e-5)
    # the fitted covariance of (intercept, slope) agrees, whatever the θ along a flat direction
    lam_d = lambdat(door.theta).toarray().T[:2, :2]
    lam_f = lambdat(formula.theta).toarray().T[:2, :2]
    np.testing.assert_allclose(door.sigma**2 * lam_d @ lam_d.T, formula.sigma**2 * lam_f @ lam_f.T, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(door.b, formula.b, rtol=1e-3, atol=1e-5)
    ref = load_reference("seed_example", reml)
    best = min(float(ref["objective"]), float(ref["optimum_check"]["objective"]))
    assert door.objective <= best + 1e-4


def test_matrix_door_dense_zt_and_weights_offset():
    X, y, Zt, lambdat = seed_matrices()
    w = np.linspace(0.5, 2.0, y.size)
    off = np.linspace(0.0, 1.0, y.size)
    sparse = lmm.LinearMixedModel(X, y, Zt, lambdat, [1.0, 0.0, 1.0], [0.0, -np.inf, 0.0], weights=w, offset=off)
    dense = lmm.LinearMixedModel(X, y, Zt.toarray(), lambda t: lambdat(t).toarray(), [1.0, 0.0, 1.0], [0.0, -np.inf, 0.0], weights=w, offset=off)
    df = lmm.datasets.load("seed_example")
    formula = lmm.LinearMixedModel.from_formula("y ~ x + (x | grp)", df, weights=w, offset=off)
    theta = np.array([0.9, 0.3, 0.4])
    assert sparse.objective(theta) == pytest.approx(formula.objective(theta), rel=1e-10)
    assert dense.objective(theta) == pytest.approx(formula.objective(theta), rel=1e-10)


def test_matrix_door_bad_shapes():
    X, y, Zt, lambdat = seed_matrices()
    with pytest.raises(lmm.DataError, match="Zt has"):
        lmm.LinearMixedModel(X[:-1], y[:-1], Zt, lambdat, [1.0, 0.0, 1.0], [0.0, -np.inf, 0.0])
    with pytest.raises(lmm.DataError, match="theta0"):
        lmm.LinearMixedModel(X, y, Zt, lambdat, [1.0, 0.0], [0.0, -np.inf, 0.0])
    with pytest.raises(lmm.DataError, match="lambdat"):
        lmm.LinearMixedModel(X, y, Zt, lambda t: sp.identity(3), [1.0, 0.0, 1.0], [0.0, -np.inf, 0.0])
