"""The exact gradient of the profiled objective for the blocked system.

For models whose first (largest) term may have any number of columns and
whose other terms are scalar, the objective

    f(θ) = Σ_s log|M_s| + log|S_B| + n′ log(pwrss) + const

(``M_s = λᵀ A_s λ + I`` the first term's per-level blocks, ``S`` the Schur
complement of the rest, ``S_B`` its leading block — the other terms' random
effects for ML, and the fixed effects too for REML — and ``pwrss = vᵀ S v``
with ``v = [−x; 1]`` the rest unknowns) is differentiated in closed form:

* for an element θ_k at position (a, b) of the first term's λ, with
  ``P_s = M_s⁻¹``, ``K_s = λ P_s``, ``W_s = B_sᵀ S_B⁻¹ B_s`` (B the scaled
  coupling columns of level s), ``z_s = B_sᵀ v`` and
  ``Ω_s = W_s + (n′/pwrss) z_s z_sᵀ``,

  ``∂f/∂θ_k = 2 Σ_s [(A_s λ P_s)_ab − (P_s λᵀ Ω_s)_ba + (A_s λ K_sᵀ Ω_s K_s)_ab]``;

* for the scalar θ_k of another term (``q_k`` random effects ``u_k``),
  ``∂f/∂θ_k = (2/θ_k)(q_k − tr_k S_B⁻¹) − 2 n′ ||u_k||² / (θ_k pwrss)``, and 0 at
  ``θ_k = 0`` where f is even in θ_k.

``S_B⁻¹`` comes from the rest block's factor (:func:`lmm.blocked.chol_inverse`); the blocks
``W_s`` from the dense coupling block or from the same sparse map that forms
the Schur complement. One gradient costs about two evaluations of f.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from .blocked import chol_inverse
from .deviance import profiled_deviance

if TYPE_CHECKING:
    from .blocked import BlockedSystem

__all__ = ["has_exact_gradient", "objective_and_gradient", "gradient_function"]


def gradient_function(
    system: object, *, reml: bool, ldW: float = 0.0
) -> Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]] | None:
    """θ ↦ (objective, exact gradient) for ``system``, or None where no exact gradient is available.

    All-scalar models use the system's own specialised gradient (every strategy);
    models with a vector-valued first term and scalar other terms use
    :func:`objective_and_gradient`; others (and the matrix door's dense system) have none.
    """
    from .blocked import BlockedSystem

    if not isinstance(system, BlockedSystem):
        return None
    if system.has_gradient:
        return lambda theta: system.objective_and_gradient(theta, reml=reml, ldW=ldW)
    if has_exact_gradient(system):
        return lambda theta: objective_and_gradient(system, theta, reml=reml, ldW=ldW)
    return None


def has_exact_gradient(system: BlockedSystem) -> bool:
    """Whether :func:`objective_and_gradient` applies: scalar rest terms, dense or map strategy."""
    return bool(system.rest_scalar) and system.strategy in ("dense", "map")


def _coupling_blocks(system: BlockedSystem, sinv: NDArray[np.float64], s: NDArray[np.float64], m_r: int) -> NDArray[np.float64]:
    """``W_s = B_sᵀ S_B⁻¹ B_s`` for every level s, shape (nl1, nc1, nc1)."""
    nl1, nc1 = system.nl1, system.nc1
    if m_r == 0:
        return np.zeros((nl1, nc1, nc1))
    if system.strategy == "dense":
        low = np.tril(sinv)
        full = low + np.tril(low, -1).T
        B = system._a_r1_dense[:m_r] * s[:m_r, None]  # (m_r, q1)
        Y = full @ B
        return np.einsum("isa,isb->sab", B.reshape(m_r, nl1, nc1), Y.reshape(m_r, nl1, nc1))
    # the map sends vec(D) to the lower-triangle entries of a_r1 D a_r1ᵀ; its transpose
    # sends weights on those entries back to per-level nc1 × nc1 blocks
    i, j = system._map_i, system._map_j
    keep = (i < m_r) & (j < m_r)
    w = np.zeros(i.size)
    w[keep] = sinv[i[keep], j[keep]] * s[i[keep]] * s[j[keep]]
    v_all = (system._map.T @ w).reshape(nl1, nc1, nc1)
    if nc1 == 1:
        off = keep & (i != j)
        w_off = np.where(off, w, 0.0)
        return v_all + (system._map.T @ w_off).reshape(nl1, 1, 1)
    w_off = np.where(i != j, w, 0.0)
    v_off = (system._map.T @ w_off).reshape(nl1, nc1, nc1)
    return v_all + np.swapaxes(v_off, 1, 2)


def objective_and_gradient(
    system: BlockedSystem, theta: NDArray[np.float64], *, reml: bool, ldW: float = 0.0
) -> tuple[float, NDArray[np.float64]]:
    """The profiled objective at θ and its exact gradient (see the module docstring)."""
    theta = np.asarray(theta, dtype=np.float64)
    nth = theta.size
    out = system.factor(theta)
    if out is None:
        return np.inf, np.zeros(nth)
    ld1, _, Lf = out
    pieces = system.pieces(ld1, Lf)
    if pieces is None:
        return np.inf, np.zeros(nth)
    ldL2, ldRX2, pwrss = pieces
    qr, p, n = system.qr, system.p, system.n
    f = profiled_deviance(ldL2, ldRX2, pwrss, n, p, reml=reml, ldW=ldW)
    lams = system.theta_map.lambdas(theta)
    x = system.rest_solution(Lf)
    u_rest = x[:qr]
    m_r = qr + p if reml else qr
    nprime = n - p if reml else n
    sinv = chol_inverse(Lf[:m_r, :m_r])  # lower triangle read below
    if sinv is None:
        return f, np.full(nth, np.nan)
    sdiag = np.diagonal(sinv).copy()
    s = system._rest_scale(lams)
    grad = np.zeros(nth)

    # ---- the first term
    lam = lams[0]
    nc1 = system.nc1
    A = system.a11  # (nl1, nc1, nc1)
    M = np.matmul(np.matmul(lam.T[None], A), lam[None])
    idx = np.arange(nc1)
    M[:, idx, idx] += 1.0
    P = np.linalg.inv(M)
    K = np.matmul(lam[None], P)
    W = _coupling_blocks(system, sinv, s, m_r)
    v = np.concatenate([-x, [1.0]]) * s
    z = np.asarray(system.a_r1_t @ v).reshape(system.nl1, nc1)
    omega = W + (nprime / pwrss) * z[:, :, None] * z[:, None, :]
    A_lam = np.matmul(A, lam[None])
    T1 = np.matmul(A_lam, P).sum(axis=0)
    T2 = np.matmul(np.matmul(P, lam.T[None]), omega).sum(axis=0)
    T3 = np.matmul(np.matmul(A_lam, np.swapaxes(K, 1, 2)), np.matmul(omega, K)).sum(axis=0)
    rows, cols = np.triu_indices(nc1)  # lme4's column-major lower triangle: (a, b) = (cols, rows)
    a, b = cols, rows
    k0 = system.theta_map.offsets[0]
    grad[k0 : k0 + a.size] = 2.0 * (T1[a, b] - T2[b, a] + T3[a, b])

    # ---- the other (scalar) terms
    for k, t in enumerate(system.reterms[1:]):
        tk = lams[k + 1][0, 0]
        if tk > 0:
            lo, hi = system.rest_offsets[k], system.rest_offsets[k + 1]
            uk = u_rest[lo:hi]
            pos = system.theta_map.offsets[k + 1]
            grad[pos] = (2.0 / tk) * (t.q - float(np.sum(sdiag[lo:hi]))) - 2.0 * nprime * float(uk @ uk) / (tk * pwrss)
    return f, grad

