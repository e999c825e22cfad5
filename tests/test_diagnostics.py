"""Convergence diagnostics: exact where possible, no false alarms on converged fits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from reference_data import load_reference, reference_ids

import lmm

SMALL = [k for k in reference_ids() if not k[0].startswith("insteval")]


@pytest.mark.parametrize("key", SMALL, ids=[f"{k[0]}-{'REML' if k[1] else 'ML'}" for k in SMALL])
def test_every_reference_fit_is_declared_converged(key):
    ref = load_reference(*key)
    kw = {}
    if ref.get("weights") is not None:
        kw["weights"] = np.asarray(ref["weights"], dtype=float)
    if ref.get("offset") is not None:
        kw["offset"] = np.asarray(ref["offset"], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm.LmmWarning)
        fit = lmm.lmer(ref["formula"], lmm.datasets.load(ref["dataset"]), reml=key[1], **kw)
    d = fit.diagnostics
    assert d.converged, d.verdict
    assert d.scaled_gradient < 1e-3
    assert bool(d.boundary) == fit.singular
    assert d.verdict.startswith("converged")


def test_exact_gradient_agrees_with_numerical():
    fit = lmm.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", lmm.datasets.load("penicillin"))
    from lmm.numderiv import gradient

    theta = fit.theta * 1.1
    _, exact = fit.model._system.objective_and_gradient(theta, reml=True)
    numeric = gradient(lambda t: fit.model.objective(t), theta)
    np.testing.assert_allclose(exact, numeric, rtol=1e-6)


def test_early_stop_is_diagnosed():
    model = lmm.LinearMixedModel.from_formula("Reaction ~ Days + (Days | Subject)", lmm.datasets.load("sleepstudy"))
    with pytest.warns(lmm.ConvergenceWarning, match="did not converge"):
        fit = model.fit(maxeval=4)  # every run (first and restarts) stops at 4 evaluations
    assert not fit.diagnostics.converged
    assert "stopped early" in fit.diagnostics.verdict
