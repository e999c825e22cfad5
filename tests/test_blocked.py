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
