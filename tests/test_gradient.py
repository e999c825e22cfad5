"""The exact gradient of the profiled objective (lmm.gradient) for vector-valued first terms.

Checked against central differences (step 1e-4: smaller steps meet the objective's
rounding on the seed example; agreement to 1e-5 relative of
the largest element, the accuracy of the differences), on models with a
correlated first term alone and beside scalar terms, REML and ML, through the
dense strategy and through the sparse map (which must agree to rounding).
"""

from __future__ import annotations

import numpy as np
import pytest

import lmm
from lmm.deviance import make_objective
from lmm.gradient import has_exact_gradient, objective_and_gradient


def _sleep():
    df = lmm.datasets.load("sleepstudy").copy()
    df["DayF"] = df["Days"].astype(str)
    return df


CASES = [
    ("Reaction ~ Days + (Days | Subject)", _sleep),
    ("Reaction ~ Days + (Days | Subject) + (1 | DayF)", _sleep),
    ("y ~ x + (x | grp)", lambda: lmm.datasets.load("seed_example")),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", lambda: lmm.datasets.load("Penicillin")),
    ("strength ~ 1 + (1 | batch/cask)", lambda: lmm.datasets.load("Pastes")),
]


def _central(fun, x, h=1e-4):
    return np.array([(fun(x + h * e) - fun(x - h * e)) / (2 * h) for e in np.eye(x.size)])


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize(("formula", "data"), CASES, ids=[c[0] for c in CASES])
def test_gradient_matches_central_differences(formula, data, reml):
    model = lmm.LinearMixedModel.from_formula(formula, data(), reml=reml)
    system = model._system
    assert has_exact_gradient(system)
    objective = make_objective(system, reml=reml, ldW=model.ldW)
    rng = np.random.default_rng(3)
    for _ in range(3):
        theta = model.theta0 + rng.uniform(0.05, 0.6, model.theta0.size)
        f, g = objective_and_gradient(system, theta, reml=reml, ldW=model.ldW)
        assert f == pytest.approx(objective(theta), rel=1e-13)
        fd = _central(objective, theta)
        np.testing.assert_allclose(g, fd, atol=1e-5 * max(1.0, np.abs(fd).max()))


@pytest.mark.parametrize(("formula", "data"), CASES[1:], ids=[c[0] for c in CASES[1:]])
def test_map_strategy_agrees_with_dense(formula, data):
    model = lmm.LinearMixedModel.from_formula(formula, data())
    system = model._system
    theta = model.theta0 + np.random.default_rng(4).uniform(0.1, 0.5, model.theta0.size)
    f_dense, g_dense = objective_and_gradient(system, theta, reml=True)
    system.strategy = "map"
    system._build_map(system.a_r1.tocsc())
    f_map, g_map = objective_and_gradient(system, theta, reml=True)
    assert f_map == pytest.approx(f_dense, rel=1e-10)  # same sums in another order; the seed example is ill-conditioned
    np.testing.assert_allclose(g_map, g_dense, rtol=1e-6, atol=1e-7)


def test_gradient_is_zero_at_the_optimum():
    fit = lmm.lmer("Reaction ~ Days + (Days | Subject)", data=lmm.datasets.load("sleepstudy"))
    _, g = objective_and_gradient(fit.model._system, fit.theta, reml=True)
    assert np.abs(g).max() < 1e-4
    assert fit.opt.method.startswith("L-BFGS-B")
    assert fit.opt.feval < 43  # lme4's BOBYQA needs 43 on this fit
