"""The blocked factorisation against a dense reference on random designs.

For random crossed and nested designs, with scalar and vector-valued terms and
with weights, the blocked system's ``log|L|²``, ``log|RX|²`` and pwrss must
equal those of a dense Cholesky of ``ΛᵀZᵀWZΛ + I`` augmented with X and y,
and its β and b must solve the dense penalised least-squares problem. The three
product strategies (dense, map, sparse) must agree with each other.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from lmm import blocked
from lmm.blocked import BlockedSystem
from lmm.design import ReTerm
from lmm.theta import ThetaMap

RTOL = 1e-9


def _random_design(rng: np.random.Generator, n: int, specs: list[tuple[int, int]], nested: bool):
    """Terms with (nc, nl) each; nested: each later factor is a coarsening of the first."""
    terms = []
    base = rng.integers(0, specs[0][1], size=n)
    base[: specs[0][1]] = np.arange(specs[0][1])  # every level present
    for k, (nc, nl) in enumerate(specs):
        if k == 0:
            refs = base
        elif nested:
            refs = base % nl
        else:
            refs = rng.integers(0, nl, size=n)
            refs[:nl] = np.arange(nl)
        z = np.column_stack([np.ones(n)] + [rng.normal(size=n) for _ in range(nc - 1)])
        terms.append(
            ReTerm(
                group=f"g{k}",
                factors=(f"g{k}",),
                expr="1",
                cnames=tuple(f"c{j}" for j in range(nc)),
                levels=tuple(str(i) for i in range(nl)),
                refs=refs.astype(np.intp),
                z=z,
            )
        )
    terms.sort(key=lambda t: -t.nl)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.normal(size=n)
    return tuple(terms), X, y


def _dense_reference(terms, X, y, w, tm, theta):
    n = X.shape[0]
    Z = sp.hstack(
        [sp.csr_matrix((t.z.ravel(), (np.repeat(np.arange(n), t.nc), (t.refs[:, None] * t.nc + np.arange(t.nc)).ravel())), shape=(n, t.q)) for t in terms]
    ).toarray()
    Lam = tm.lambdat(theta).toarray().T
    sw = np.sqrt(w)
    A = np.column_stack([Z @ Lam, X, y]) * sw[:, None]
    C = A.T @ A
    q = Z.shape[1]
    C[np.arange(q), np.arange(q)] += 1.0
    L = np.linalg.cholesky(C)
    d = np.diag(L)
    p = X.shape[1]
    ldL2 = 2 * np.sum(np.log(d[:q]))
    ldRX2 = 2 * np.sum(np.log(d[q : q + p]))
    pwrss = d[-1] ** 2
    sol = np.linalg.solve(C[:-1, :-1], C[:-1, -1])
    u, beta = sol[:q], sol[q:]
    return ldL2, ldRX2, pwrss, beta, Lam @ u


def _theta_for(tm: ThetaMap, rng: np.random.Generator) -> np.ndarray:
    th = tm.theta0.copy()
    diag = np.isfinite(tm.lower)
    th[diag] = rng.uniform(0.2, 2.0, size=diag.sum())
    th[~diag] = rng.uniform(-0.8, 0.8, size=(~diag).sum())
    return th


def _check(terms, X, y, w, theta_rng, strategy=None):
    tm = ThetaMap.from_terms([t.nc for t in terms], [t.nl for t in terms], [t.group for t in terms], [t.cnames for t in terms])
    system = BlockedSystem.from_data(terms, X, y, w, tm)
    if strategy is not None:
        _force(system, strategy)
    theta = _theta_for(tm, theta_rng)
    ldL2, ldRX2, pwrss = system.evaluate(theta)
    r = _dense_reference(terms, X, y, np.ones(X.shape[0]) if w is None else w, tm, theta)
    np.testing.assert_allclose([ldL2, ldRX2, pwrss], r[:3], rtol=RTOL)
    sol = system.solve(theta)
    np.testing.assert_allclose(sol.beta, r[3], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(sol.b, r[4], rtol=1e-7, atol=1e-9)
    return system


def _force(system: BlockedSystem, strategy: str) -> None:
    system.strategy = strategy
    if strategy == "dense":
        system._a_r1_dense = system.a_r1.toarray()
        system._a3 = system._a_r1_dense.reshape(system.Q, system.nl1, system.nc1)
    elif strategy == "map":
        system._build_map(system.a_r1.tocsc())


@pytest.mark.parametrize("strategy", ["dense", "map", "sparse"])
@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("specs", [[(1, 30), (1, 7)], [(2, 25), (1, 6)], [(1, 20), (2, 5), (1, 3)], [(3, 12)], [(2, 15), (2, 4)]])
def test_blocked_matches_dense(specs, nested, strategy):
    rng = np.random.default_rng(hash((str(specs), nested)) % 2**32)
    terms, X, y = _random_design(rng, 200, specs, nested)
    _check(terms, X, y, None, rng, strategy)


def test_blocked_with_weights():
    rng = np.random.default_rng(7)
    terms, X, y = _random_design(rng, 150, [(2, 20), (1, 6)], False)
    w = rng.uniform(0.2, 3.0, size=150)
    _check(terms, X, y, w, rng, "map")


def test_strategy_is_chosen_from_sizes(monkeypatch):
    rng = np.random.default_rng(3)
    terms, X, y = _random_design(rng, 300, [(1, 60), (1, 40)], False)
    tm = ThetaMap.from_terms([1, 1], [60, 40], ["g0", "g1"], [("c0",), ("c0",)])
    monkeypatch.setattr(blocked, "DENSE_LIMIT", 0)
    assert BlockedSystem.from_data(terms, X, y, None, tm).strategy in {"map", "dense"}
    monkeypatch.setattr(blocked, "MAP_LIMIT", 0)
    s = BlockedSystem.from_data(terms, X, y, None, tm)
    assert s.strategy in {"sparse", "dense"}


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(60, 160),
    nl1=st.integers(3, 20),
    nc1=st.integers(1, 3),
    nl2=st.integers(2, 6),
    nc2=st.integers(1, 2),
    nested=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_blocked_property(n, nl1, nc1, nl2, nc2, nested, seed):
    rng = np.random.default_rng(seed)
    nl2 = min(nl2, nl1)
    terms, X, y = _random_design(rng, n, [(nc1, nl1), (nc2, nl2)], nested)
    _check(terms, X, y, None, rng)


# ---------------------------------------------------------------- sparse strategy: heavy/light split, gradient


def _scalar_crossed(seed: int, n: int, specs: list[tuple[int, int]]):
    terms, X, y = _random_design(np.random.default_rng(seed), n, specs, False)
    tm = ThetaMap.from_terms([t.nc for t in terms], [t.nl for t in terms], [t.group for t in terms], [t.cnames for t in terms])
    return terms, X, y, tm


def _skewed_terms(seed: int):
    """Scalar crossed terms whose first-term levels range from 2 to ~150 rows."""
    rng = np.random.default_rng(seed)
    n, nl1, nl2 = 900, 40, 25
    w = np.exp(rng.normal(0.0, 1.2, nl1))
    refs1 = np.concatenate([np.arange(nl1), rng.choice(nl1, n - nl1, p=w / w.sum())])
    refs2 = np.concatenate([np.arange(nl2), rng.integers(0, nl2, n - nl2)])
    terms = tuple(
        ReTerm(group=g, factors=(g,), expr="1", cnames=("c0",), levels=tuple(str(i) for i in range(nl)), refs=r.astype(np.intp), z=np.ones((n, 1)))
        for g, nl, r in (("g0", nl1, refs1), ("g1", nl2, refs2))
    )
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.normal(size=n) + refs1 % 3 - refs2 % 2
    tm = ThetaMap.from_terms([1, 1], [nl1, nl2], ["g0", "g1"], [("c0",), ("c0",)])
    return terms, X, y, tm


@pytest.mark.parametrize("heavy_cost", [0.0, 1.0, 1e12])
def test_sparse_split_matches_dense(monkeypatch, heavy_cost):
    """Heavy (syrk), light (sparse) and mixed splits give the dense strategy's numbers."""
    terms, X, y, tm = _skewed_terms(11)
    monkeypatch.setattr(blocked, "HEAVY_TERM_COST", heavy_cost)
    system = BlockedSystem.from_data(terms, X, y, None, tm)
    _force(system, "sparse")
    hl = system._heavy_light()
    if heavy_cost == 1.0:
        assert 0 < hl.heavy.size < system.nl1
    dense = BlockedSystem.from_data(terms, X, y, None, tm)
    _force(dense, "dense")
    for theta in ([0.8, 1.3], [0.05, 2.0], [1.7, 0.3]):
        theta = np.array(theta)
        np.testing.assert_allclose(system.evaluate(theta), dense.evaluate(theta), rtol=1e-10)
        for reml in (False, True):
            f, g = system.objective_and_gradient(theta, reml=reml)
            fd, gd = dense.objective_and_gradient(theta, reml=reml)
            assert f == pytest.approx(fd, rel=1e-11)
            np.testing.assert_allclose(g, gd, rtol=1e-8, atol=1e-9)
        for a, b in zip(system.conditional_covariances(theta), dense.conditional_covariances(theta)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-14)
    r = _dense_reference(terms, X, y, np.ones(X.shape[0]), tm, np.array([0.8, 1.3]))
    np.testing.assert_allclose(system.evaluate(np.array([0.8, 1.3])), r[:3], rtol=RTOL)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("strategy", ["dense", "map", "sparse"])
def test_gradient_matches_central_differences(monkeypatch, strategy, reml):
    """The exact gradient of every strategy against central differences of the objective (three scalar terms)."""
    monkeypatch.setattr(blocked, "HEAVY_TERM_COST", 2.0)
    terms, X, y, tm = _scalar_crossed(5, 600, [(1, 45), (1, 14), (1, 6)])
    system = BlockedSystem.from_data(terms, X, y, None, tm)
    _force(system, strategy)
    assert system.has_gradient
    from lmm.deviance import make_objective

    obj = make_objective(system, reml=reml)
    theta = np.array([0.9, 0.6, 1.4])
    f, g = system.objective_and_gradient(theta, reml=reml)
    assert f == pytest.approx(obj(theta), rel=1e-12)
    h = 1e-5
    fd = np.array([(obj(theta + h * e) - obj(theta - h * e)) / (2 * h) for e in np.eye(theta.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6)


def test_sparse_conditional_covariances_match_general_path(monkeypatch):
    """The all-scalar shortcut (S⁻¹ and per-level quadratic forms, chunked) equals the general chunked solve."""
    monkeypatch.setattr(blocked, "HEAVY_TERM_COST", 1.0)
    terms, X, y, tm = _skewed_terms(3)
    system = BlockedSystem.from_data(terms, X, y, None, tm)
    _force(system, "sparse")
    theta = np.array([1.1, 0.7])
    fast = system.conditional_covariances(theta)
    system.rest_scalar = False  # takes the general path (same numbers, Λ_R as a sparse matrix)
    general = system.conditional_covariances(theta)
    system.rest_scalar = True
    for a, b in zip(fast, general):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    # the light levels' pair gathering gives the same forms in any chunking
    sinv = blocked.chol_inverse(np.linalg.cholesky(np.eye(system.qr) * 2.0 + 0.1))
    s = np.linspace(0.5, 1.5, system.Q)
    np.testing.assert_allclose(
        system._level_quadratic_forms(sinv, s, system.qr, max_pairs=5), system._level_quadratic_forms(sinv, s, system.qr), rtol=1e-13
    )
    # heavy levels by a triangular solve with the whole factor, or by symm with S⁻¹
    _, _, Lf = system.factor(theta)
    sinv = blocked.chol_inverse(Lf[: system.qr, : system.qr])
    np.testing.assert_allclose(
        system._level_quadratic_forms(sinv, s, system.qr, factor=Lf), system._level_quadratic_forms(sinv, s, system.qr), rtol=1e-11
    )


def test_sparse_fit_matches_dense_fit(monkeypatch):
    """A whole fit through the sparse strategy (L-BFGS-B with its gradient) reaches the dense strategy's optimum."""
    import pandas as pd

    import lmm

    terms, X, y = _random_design(np.random.default_rng(8), 2500, [(1, 300), (1, 20)], False)
    df = pd.DataFrame({"y": y, "x": X[:, 1], "g0": [str(v) for v in terms[0].refs], "g1": [str(v) for v in terms[1].refs]})
    df["y"] += terms[0].refs % 5 * 0.3 + terms[1].refs % 3 * 0.5
    formula = "y ~ x + (1 | g0) + (1 | g1)"
    ref = lmm.LinearMixedModel.from_formula(formula, df, reml=False).fit()
    monkeypatch.setattr(blocked, "DENSE_LIMIT", 0)
    monkeypatch.setattr(blocked, "MAP_LIMIT", 0)
    monkeypatch.setattr(blocked, "HEAVY_TERM_COST", 2.0)
    model = lmm.LinearMixedModel.from_formula(formula, df, reml=False)
    assert model._system.strategy == "sparse" and model._system.has_gradient
    fit = model.fit()
    assert fit.objective == pytest.approx(ref.objective, rel=1e-10)
    np.testing.assert_allclose(fit.theta, ref.theta, rtol=1e-4)
    np.testing.assert_allclose(fit.beta, ref.beta, rtol=1e-6)


def test_sparse_gradient_after_cached_factor(monkeypatch):
    """With the last factor kept, a gradient at an already-factored θ (no P' share cached) gives the same numbers."""
    monkeypatch.setattr(blocked, "HEAVY_TERM_COST", 1.0)
    monkeypatch.setattr(blocked, "FACTOR_CACHE_MIN", 0)
    terms, X, y, tm = _skewed_terms(4)
    theta = np.array([0.9, 1.2])
    fresh = BlockedSystem.from_data(terms, X, y, None, tm)
    _force(fresh, "sparse")
    expected = fresh.objective_and_gradient(theta, reml=True)
    system = BlockedSystem.from_data(terms, X, y, None, tm)
    _force(system, "sparse")
    first = system.evaluate(theta)
    assert system._last_factor is not None and system._last_factor[2] is None
    f, g = system.objective_and_gradient(theta, reml=True)
    assert system.evaluate(theta) == first  # the kept factor was not modified
    assert f == pytest.approx(expected[0], rel=1e-13)
    np.testing.assert_allclose(g, expected[1], rtol=1e-10)


def test_moment_start_reaches_the_same_optimum(monkeypatch):
    """The moment start of large all-scalar models (forced here on a small one) is near θ̂ and the fit ends at θ̂."""
    import pandas as pd

    import lmm

    rng = np.random.default_rng(12)
    n, n1, n2 = 3000, 200, 60
    g1, g2 = rng.integers(0, n1, n), rng.integers(0, n2, n)
    y = 2.0 + rng.normal(0, 0.5, n1)[g1] + rng.normal(0, 0.8, n2)[g2] + rng.normal(0, 1.0, n)
    df = pd.DataFrame({"y": y, "a": [f"a{v}" for v in g1], "b": [f"b{v}" for v in g2]})
    formula = "y ~ 1 + (1 | a) + (1 | b)"
    ref = lmm.LinearMixedModel.from_formula(formula, df, reml=False).fit()
    monkeypatch.setattr(blocked, "MOMENT_START_MIN", 0)
    model = lmm.LinearMixedModel.from_formula(formula, df, reml=False)
    start = model._system.start_point()
    assert start is not None
    np.testing.assert_allclose(start, ref.theta, rtol=0.25)
    fit = model.fit()
    np.testing.assert_allclose(fit.opt.initial, start)
    assert fit.opt.feval < ref.opt.feval
    assert fit.objective == pytest.approx(ref.objective, rel=1e-11)
    np.testing.assert_allclose(fit.theta, ref.theta, rtol=1e-5)
