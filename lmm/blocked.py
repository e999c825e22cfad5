"""The blocked penalised least-squares system of the formula path.

The columns of ``[Z X y]`` are split in two blocks: the first random-effects
term (the one with most levels) and *the rest* (the other terms, then X, then
y). The cross-products are formed once, weighted:

* ``a11`` — ``Z1ᵀ W Z1``, block diagonal: one ``nc1 × nc1`` block per level;
* ``a_r1`` — ``Rᵀ W Z1`` (sparse, ``Q × q1``), ``R = [Z2 … Zk X y]``;
* ``a_rr`` — ``Rᵀ W R`` (dense, ``Q × Q``).

For a given θ, the Cholesky factor of ``Λᵀ ZᵀWZ Λ + I`` augmented with X and
y is, in the first block, a batch of ``nl1`` small factors of
``M_s = λ1ᵀ a11_s λ1 + I``. Eliminating the first block leaves the dense Schur
complement ``S = Λ_Rᵀ (a_rr − a_r1 D a_r1ᵀ) Λ_R + I`` with
``D = blockdiag(λ1 M_s⁻¹ λ1ᵀ)``, factored by one LAPACK call. The last
diagonal element of that factor is ``sqrt(pwrss)``; its X block is ``RXᵀ``.

``a_r1 D a_r1ᵀ`` is linear in D, with a sparsity pattern fixed by the data. It
is computed in one of three ways, chosen once per model from the sizes:
a dense product (small models), a precomputed sparse map from the entries of
D to the entries of the product (one sparse matrix–vector product per
evaluation), or a general sparse product (when the map would be too large).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.linalg.lapack import dpotrf

from .design import ReTerm
from .theta import ThetaMap

__all__ = ["BlockedSystem", "CrossProducts", "crossproducts", "Solution", "MAP_LIMIT", "DENSE_LIMIT"]

DENSE_LIMIT = 2_000_000
"""Largest ``Q² · q1`` (flops of the dense product) for which the dense strategy is used."""

MAP_LIMIT = 40_000_000
"""Largest number of terms in the precomputed product map; above it the sparse product is used."""


@dataclass(frozen=True)
class Solution:
    """Everything derived from the factorisation at one θ.

    Attributes
    ----------
    beta : ndarray, shape (p,)
        Fixed effects.
    u : ndarray, shape (q,)
        Spherical random effects (``b = Λ u``), in the terms' order.
    b : ndarray, shape (q,)
        Random effects on the data scale relative to σ... multiplied out: ``b = Λθ u``.
    ldL2, ldRX2, pwrss : float
        ``log|L|²``, ``log|RX|²`` and the penalised weighted residual sum of squares.
    rx_lower : ndarray, shape (p, p)
        Lower-triangular ``RXᵀ``: ``σ² (RXᵀ RX)⁻¹`` is the covariance of β.
    """

    beta: NDArray[np.float64]
    u: NDArray[np.float64]
    b: NDArray[np.float64]
    ldL2: float
    ldRX2: float
    pwrss: float
    rx_lower: NDArray[np.float64]


def sinv_full(lower: NDArray[np.float64]) -> NDArray[np.float64]:
    """The symmetric matrix whose lower triangle is given."""
    out = np.tril(lower)
    return out + np.tril(out, -1).T


def _term_csr(t: ReTerm, sw: NDArray[np.float64], col0: int, ncols: int) -> sp.csr_matrix:
    """``W^{1/2} Z_t`` as an ``n × ncols`` sparse matrix with the term's columns starting at ``col0``."""
    n = t.z.shape[0]
    cols = col0 + t.refs[:, None] * t.nc + np.arange(t.nc)[None, :]
    vals = t.z * sw[:, None]
    indptr = np.arange(0, n * t.nc + 1, t.nc)
    return sp.csr_matrix((vals.ravel(), cols.ravel(), indptr), shape=(n, ncols))


@dataclass
class CrossProducts:
    """The weighted cross-products of ``[Z X y]`` that the blocked system needs.

    Attributes
    ----------
    a11 : ndarray, shape (nl1, nc1, nc1)
        Diagonal blocks of ``Z1ᵀWZ1``.
    a_r1 : scipy.sparse.csr_matrix, shape (Q, q1)
        ``RᵀWZ1`` with ``R = [Z2 … Zk X y]``.
    a_rr : ndarray, shape (Q, Q)
        ``RᵀWR``.
    n, p : int
        Observations and fixed effects.
    ldw : float
        Sum of the logs of the prior weights.

    Cross-products of row chunks add up to those of the whole data, which is
    how chunked and distributed data are reduced (:mod:`lmm.chunked`).
    """

    a11: NDArray[np.float64]
    a_r1: sp.csr_matrix
    a_rr: NDArray[np.float64]
    n: int
    p: int
    ldw: float = 0.0

    def __add__(self, other: CrossProducts) -> CrossProducts:
        return CrossProducts(
            self.a11 + other.a11, (self.a_r1 + other.a_r1).tocsr(), self.a_rr + other.a_rr, self.n + other.n, self.p, self.ldw + other.ldw
        )


def crossproducts(
    reterms: tuple[ReTerm, ...], X: NDArray[np.float64], y: NDArray[np.float64], weights: NDArray[np.float64] | None
) -> CrossProducts:
    """Form the cross-products of rows held in memory (terms first, largest term first)."""
    n, p = X.shape
    sw = np.ones(n) if weights is None else np.sqrt(weights)
    t1 = reterms[0]
    zw1 = t1.z * sw[:, None]
    a11 = np.empty((t1.nl, t1.nc, t1.nc))
    for a in range(t1.nc):
        for b in range(a + 1):
            v = np.bincount(t1.refs, weights=zw1[:, a] * zw1[:, b], minlength=t1.nl)
            a11[:, a, b] = v
            a11[:, b, a] = v
    z1 = _term_csr(t1, sw, 0, t1.q)
    parts = [_term_csr(t, sw, 0, t.q) for t in reterms[1:]]
    xy = np.column_stack([X * sw[:, None], y * sw])
    r_sparse = sp.hstack(parts + [sp.csr_matrix(xy)], format="csc") if parts else sp.csc_matrix(xy)
    a_r1 = (r_sparse.T @ z1).tocsr()
    a_rr = r_sparse.T @ r_sparse
    a_rr = np.ascontiguousarray(np.asarray(a_rr.toarray() if sp.issparse(a_rr) else a_rr))
    ldw = float(np.sum(np.log(weights))) if weights is not None else 0.0
    return CrossProducts(a11=a11, a_r1=a_r1, a_rr=a_rr, n=n, p=p, ldw=ldw)


class BlockedSystem:
    """Cross-products of ``[Z X y]`` and the per-θ factorisation (see the module docs).

    Parameters
    ----------
    reterms : sequence of ReTerm
        Random-effects terms, the first one with the most levels (only their
        shapes are used here: a term of chunked data carries no rows).
    cp : CrossProducts
        The weighted cross-products of ``[Z X y]``.
    theta_map : ThetaMap
    """

    def __init__(self, reterms: tuple[ReTerm, ...], cp: CrossProducts, theta_map: ThetaMap) -> None:
        self.n, self.p = cp.n, cp.p
        self.theta_map = theta_map
        self.reterms = reterms
        t1 = reterms[0]
        self.nc1, self.nl1 = t1.nc, t1.nl
        self.q1 = t1.q
        rest = reterms[1:]
        self.qs = [t.q for t in reterms]
        self.q = int(sum(self.qs))
        self.qr = self.q - self.q1  # random effects in the rest block
        self.Q = self.qr + self.p + 1
        self.a11 = cp.a11
        self.a_r1 = cp.a_r1
        self.a_rr = cp.a_rr
        # term layout in the rest block
        self.rest_offsets = np.cumsum([0] + [t.q for t in rest])
        self.rest_scalar = all(t.nc == 1 for t in rest)
        self._re_diag = np.arange(self.qr)
        self._choose_strategy()

    @classmethod
    def from_data(
        cls,
        reterms: tuple[ReTerm, ...],
        X: NDArray[np.float64],
        y: NDArray[np.float64],
        weights: NDArray[np.float64] | None,
        theta_map: ThetaMap,
    ) -> BlockedSystem:
        """The system of in-memory data (see :func:`crossproducts`)."""
        return cls(reterms, crossproducts(reterms, X, y, weights), theta_map)

    # ------------------------------------------------------------------ setup
    def _choose_strategy(self) -> None:
        Q, q1, nc1 = self.Q, self.q1, self.nc1
        csc = self.a_r1.tocsc()
        # entries per level of the first term
        col_counts = np.diff(csc.indptr)
        per_level = col_counts.reshape(self.nl1, nc1).sum(axis=1)
        map_terms = int(np.sum(per_level.astype(np.int64) ** 2))
        if Q * Q * q1 <= DENSE_LIMIT or Q * q1 <= 4096:
            self.strategy = "dense"
            self._a_r1_dense = self.a_r1.toarray()
            self._a3 = self._a_r1_dense.reshape(Q, self.nl1, nc1)
        elif map_terms <= MAP_LIMIT:
            self.strategy = "map"
            self._build_map(csc)
        else:
            self.strategy = "sparse"

    def _build_map(self, csc: sp.csc_matrix) -> None:
        """Precompute the sparse linear map vec(D) -> lower-triangle entries of a_r1 D a_r1ᵀ."""
        nc1, Q = self.nc1, self.Q
        rows = csc.indices.astype(np.int64)
        vals = csc.data
        # CSC columns are ordered by level, so the entries already come grouped by level
        cols = np.repeat(np.arange(csc.shape[1]), np.diff(csc.indptr))
        level = cols // nc1
        within = cols % nc1
        m = np.bincount(level, minlength=self.nl1)
        start = np.concatenate([[0], np.cumsum(m)[:-1]])
        m_e = m[level]
        e1 = np.repeat(np.arange(rows.size), m_e)
        block_start = np.repeat(np.cumsum(m_e) - m_e, m_e)
        e2 = start[level[e1]] + (np.arange(e1.size) - block_start)
        keep = rows[e1] >= rows[e2]
        e1, e2 = e1[keep], e2[keep]
        out_lin = rows[e1] * Q + rows[e2]
        in_idx = level[e1] * nc1 * nc1 + within[e1] * nc1 + within[e2]
        coef = vals[e1] * vals[e2]
        # compact ids of the product's nonzero positions, without sorting (Q² is held densely anyway)
        present = np.zeros(Q * Q, dtype=bool)
        present[out_lin] = True
        uniq = np.flatnonzero(present)
        position = np.zeros(Q * Q, dtype=np.int64)
        position[uniq] = np.arange(uniq.size)
        inv = position[out_lin]
        del present, position
        self._map = sp.csr_matrix((coef, (inv, in_idx)), shape=(uniq.size, self.nl1 * nc1 * nc1))
        self._map.sum_duplicates()
        i, j = np.divmod(uniq, Q)
        self._map_i, self._map_j = i, j
        self._map_target = j * Q + i  # the triangle LAPACK reads (see `factor`)
        self._map_lower = uniq
        off = i != j
        self._map_off = np.flatnonzero(off)
        self._map_upper = j[off] * Q + i[off]

    # ------------------------------------------------------------- per theta
    def _first_block(self, lam1: NDArray[np.float64]) -> tuple[float, NDArray[np.float64] | None, NDArray[np.float64]]:
        """``log|L11|²``, the D blocks and the batch of factors of ``M_s``.

        Returns ``(logdet, D, chol)`` with D of shape (nl1, nc1, nc1) or None
        when some ``M_s`` is not positive definite.
        """
        a11 = self.a11
        if self.nc1 == 1:
            t = lam1[0, 0]
            m = t * t * a11[:, 0, 0] + 1.0
            D = (t * t / m)[:, None, None]
            return float(np.sum(np.log(m))), D, np.sqrt(m)[:, None, None]
        M = np.matmul(np.matmul(lam1.T[None, :, :], a11), lam1[None, :, :])
        idx = np.arange(self.nc1)
        M[:, idx, idx] += 1.0
        try:
            C = np.linalg.cholesky(M)
        except np.linalg.LinAlgError:
            return np.inf, None, M
        logdet = 2.0 * float(np.sum(np.log(C[:, idx, idx])))
        # D_s = lam M_s^{-1} lam^T = (C_s^{-1} lam^T)^T (C_s^{-1} lam^T)
        Y = np.linalg.solve(C, np.broadcast_to(lam1.T, M.shape))
        D = np.matmul(np.swapaxes(Y, 1, 2), Y)
        return logdet, D, C

    def _schur(self, D: NDArray[np.float64], lams: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        """The Schur complement S (C-ordered, full symmetric) before factorisation."""
        Q = self.Q
        if self.strategy == "dense":
            if self.nc1 == 1:
                T = self._a_r1_dense * D[:, 0, 0][None, :]
            else:
                T = np.einsum("qla,lab->qlb", self._a3, D).reshape(Q, self.q1)
            G = self.a_rr - T @ self._a_r1_dense.T
        elif self.strategy == "map" and self.rest_scalar:
            # only the triangle LAPACK reads is formed: S = s (a_rr - map(D)) s + I
            s = self._rest_scale(lams)
            vals = self._map @ D.ravel()
            vals *= s[self._map_i] * s[self._map_j]
            S = np.multiply(self.a_rr, s[:, None])
            S *= s[None, :]
            S.reshape(-1)[self._map_target] -= vals
            S[self._re_diag, self._re_diag] += 1.0
            return S
        elif self.strategy == "map":
            vals = self._map @ D.ravel()
            G = self.a_rr.copy()
            flat = G.reshape(-1)
            flat[self._map_lower] -= vals
            flat[self._map_upper] -= vals[self._map_off]
        else:
            dmat = sp.block_diag(list(D), format="csr") if self.nc1 > 1 else sp.diags(D[:, 0, 0])
            prod = self.a_r1 @ dmat @ self.a_r1.T
            G = self.a_rr - prod.toarray()
        # scale by Lambda_R on both sides
        if self.rest_scalar:
            s = self._rest_scale(lams)
            G *= s[:, None]
            G *= s[None, :]
        else:
            lr = self._lambda_rest(lams)
            G = np.asarray(lr.T @ (lr.T @ G).T)
        G[self._re_diag, self._re_diag] += 1.0
        return G

    def _rest_scale(self, lams: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        """Diagonal of Λ_R when every term of the rest block is scalar (1 for X and y)."""
        s = np.ones(self.Q)
        for k, lam in enumerate(lams[1:]):
            s[self.rest_offsets[k] : self.rest_offsets[k + 1]] = lam[0, 0]
        return s

    def _lambda_rest(self, lams: list[NDArray[np.float64]]) -> sp.csr_matrix:
        blocks = [sp.kron(sp.identity(t.nl), sp.csr_matrix(lam)) for t, lam in zip(self.reterms[1:], lams[1:])]
        blocks.append(sp.identity(self.p + 1))
        return sp.block_diag(blocks, format="csr")

    def factor(self, theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64], NDArray[np.float64]] | None:
        """Factor the system at θ.

        Returns ``(logdet_L11, D, L)`` where L is the lower Cholesky factor of the
        Schur complement (returned as a view whose lower triangle holds the factor),
        or None when the system is not positive definite at θ.
        """
        lams = self.theta_map.lambdas(theta)
        ld1, D, _ = self._first_block(lams[0])
        if D is None:
            return None
        S = self._schur(D, lams)
        # S is symmetric: factor its transpose (Fortran order, no copy); the lower
        # triangle of the result, read in Fortran order, is the factor.
        c, info = dpotrf(S.T, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            return None
        return ld1, D, c

    def evaluate(self, theta: NDArray[np.float64]) -> tuple[float, float, float] | None:
        """``(ldL2, ldRX2, pwrss)`` at θ, or None when the system is singular."""
        out = self.factor(theta)
        if out is None:
            return None
        ld1, _, L = out
        d = np.diagonal(L)
        if np.any(d[:-1] <= 0):
            return None
        logd = np.log(d[:-1])
        qr, p = self.qr, self.p
        ldL2 = ld1 + 2.0 * float(np.sum(logd[:qr]))
        ldRX2 = 2.0 * float(np.sum(logd[qr : qr + p]))
        pwrss = float(d[-1]) ** 2
        return ldL2, ldRX2, pwrss

    def _unknowns(
        self, lams: list[NDArray[np.float64]], L: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """``(u1, u_rest, beta)`` from the factor L of the rest block (lower triangle read)."""
        qr, p = self.qr, self.p
        # rest unknowns [u_rest; beta]: T^T x = c, with c the y row of L
        c = np.array(L[-1, :-1])
        x = scipy.linalg.solve_triangular(L[:-1, :-1], c, lower=True, trans="T", check_finite=False) if c.size else c
        u_rest, beta = x[:qr], x[qr:]
        # first-term unknowns: M_s u1_s = lam1^T (a_1y - a_1R' [Lambda_R' u_rest; beta])
        if self.rest_scalar:
            v = self._rest_scale(lams) * np.concatenate([x, [-1.0]])
        else:
            v = np.concatenate([self._lambda_rest(lams)[: qr + p, : qr + p] @ x, [-1.0]])
        rhs = -(self.a_r1.T @ v)
        lam1 = lams[0]
        if self.nc1 == 1:
            t = lam1[0, 0]
            u1 = t * rhs / (t * t * self.a11[:, 0, 0] + 1.0)
        else:
            rhs = rhs.reshape(self.nl1, self.nc1) @ lam1  # lam1^T r per level, as rows
            M = np.matmul(np.matmul(lam1.T[None], self.a11), lam1[None])
            idx = np.arange(self.nc1)
            M[:, idx, idx] += 1.0
            u1 = np.linalg.solve(M, rhs[:, :, None])[:, :, 0].reshape(-1)
        return u1, u_rest, beta

    def solve(self, theta: NDArray[np.float64]) -> Solution:
        """β, u, b and the factor pieces at θ."""
        out = self.factor(theta)
        if out is None:
            raise np.linalg.LinAlgError("the penalised system is not positive definite at theta")
        ld1, _, Lf = out
        L = np.tril(Lf)
        d = np.diagonal(L)
        qr, p = self.qr, self.p
        lams = self.theta_map.lambdas(theta)
        u1, u_rest, beta = self._unknowns(lams, L)
        u = np.concatenate([u1, u_rest])
        return Solution(
            beta=beta,
            u=u,
            b=self._lambda_all(lams) @ u,
            ldL2=ld1 + 2.0 * float(np.sum(np.log(d[:qr]))),
            ldRX2=2.0 * float(np.sum(np.log(d[qr : qr + p]))),
            pwrss=float(d[-1]) ** 2,
            rx_lower=L[qr : qr + p, qr : qr + p].copy(),
        )

    # ------------------------------------------------- conditional variances
    def conditional_covariances(self, theta: NDArray[np.float64], chunk: int = 2048) -> list[NDArray[np.float64]]:
        """Per term, the ``(nl, nc, nc)`` blocks of ``Λ (ΛᵀZᵀWZΛ + I)⁻¹ Λᵀ``.

        Multiplied by σ² these are the conditional covariances of each level's
        random effects given the data (lme4's ``condVar``, which ignores the
        uncertainty of β). The first term's blocks use ``W = T⁻¹ L_R1`` computed in
        column chunks of ``chunk``; the other terms' blocks come from the inverse
        of the rest block's leading factor.
        """
        from scipy.linalg.lapack import dpotri

        out = self.factor(theta)
        if out is None:
            raise np.linalg.LinAlgError("the penalised system is not positive definite at theta")
        _, _, Lf = out
        lams = self.theta_map.lambdas(theta)
        lam1 = lams[0]
        nc1, nl1, qr = self.nc1, self.nl1, self.qr
        M = np.matmul(np.matmul(lam1.T[None], self.a11), lam1[None])
        idx = np.arange(nc1)
        M[:, idx, idx] += 1.0
        C = np.linalg.cholesky(M)  # L11 blocks
        Cinv = np.linalg.inv(C)
        inner = np.broadcast_to(np.eye(nc1), (nl1, nc1, nc1)).copy()
        if qr:
            T = np.array(Lf[:qr, :qr], order="F")
            lam_r = self._lambda_rest(lams)[:qr, :qr]
            a_re = self.a_r1[:qr].tocsc()
            for start in range(0, nl1, max(1, chunk // nc1)):
                stop = min(nl1, start + max(1, chunk // nc1))
                cols = slice(start * nc1, stop * nc1)
                # L_R1 columns of these levels: Λ_Rᵀ a_R1 Λ1 L11⁻ᵀ
                block = (lam_r.T @ a_re[:, cols]).toarray().reshape(qr, stop - start, nc1)
                block = np.einsum("qla,ab,lcb->qlc", block, lam1, Cinv[start:stop])
                W = scipy.linalg.solve_triangular(T, block.reshape(qr, -1), lower=True, check_finite=False)
                W = W.reshape(qr, stop - start, nc1)
                inner[start:stop] += np.einsum("qla,qlb->lab", W, W)
            sinv, info = dpotri(T, lower=1)
            if info != 0:
                raise np.linalg.LinAlgError("the rest block is singular")
            sinv = sinv_full(sinv)
        # first term: λ1 L11⁻ᵀ (I + WᵀW) L11⁻¹ λ1ᵀ
        left = np.matmul(lam1[None], np.swapaxes(Cinv, 1, 2))
        covs = [np.matmul(np.matmul(left, inner), np.swapaxes(left, 1, 2))]
        for k, t in enumerate(self.reterms[1:]):
            a = int(self.rest_offsets[k])
            blocks = np.empty((t.nl, t.nc, t.nc))
            sub = sinv[a : a + t.q, a : a + t.q]
            lam = lams[k + 1]
            for j in range(t.nc):
                for i in range(t.nc):
                    blocks[:, i, j] = np.diagonal(sub[i :: t.nc, j :: t.nc])
            covs.append(np.matmul(np.matmul(lam[None], blocks), lam.T[None]))
        return covs

    # ---------------------------------------------------------- gradient
    @property
    def has_gradient(self) -> bool:
        """Whether :meth:`objective_and_gradient` is available (every term scalar, no general sparse product)."""
        return self.nc1 == 1 and self.rest_scalar and self.strategy in ("dense", "map")

    def objective_and_gradient(
        self, theta: NDArray[np.float64], *, reml: bool, ldW: float = 0.0
    ) -> tuple[float, NDArray[np.float64]]:
        """The profiled objective and its exact gradient, for models whose terms are all scalar.

        With ``M`` the leading block of the augmented system whose log-determinant
        enters the objective (the random effects for ML, random and fixed effects
        for REML) and ``q_k`` the size of term ``k``,

        ``∂ log|M| / ∂θ_k = (2 / θ_k) (q_k − tr_k(M⁻¹))`` and
        ``∂ pwrss / ∂θ_k = −2 ||u_k||² / θ_k``,

        where ``tr_k`` sums the diagonal of ``M⁻¹`` over term ``k``. Both vanish at
        ``θ_k = 0`` (the objective is even in each θ_k). The diagonal of ``M⁻¹`` comes
        from the inverse of the rest block's factor (LAPACK ``potri``) and, for the
        first term, from the same sparse map as the objective.
        """
        from scipy.linalg.lapack import dpotri

        from .deviance import profiled_deviance

        nth = theta.size
        out = self.factor(theta)
        if out is None:
            return np.inf, np.zeros(nth)
        ld1, D, Lf = out
        d = np.diagonal(Lf)
        if np.any(d[:-1] <= 0):
            return np.inf, np.zeros(nth)
        qr, p, n = self.qr, self.p, self.n
        ldL2 = ld1 + 2.0 * float(np.sum(np.log(d[:qr])))
        ldRX2 = 2.0 * float(np.sum(np.log(d[qr : qr + p])))
        pwrss = float(d[-1]) ** 2
        f = profiled_deviance(ldL2, ldRX2, pwrss, n, p, reml=reml, ldW=ldW)
        lams = self.theta_map.lambdas(theta)
        u1, u_rest, _ = self._unknowns(lams, Lf)
        m_r = qr + p if reml else qr
        nprime = n - p if reml else n
        # inverse of the leading m_r block of the rest factor
        if m_r:
            sinv, info = dpotri(np.array(Lf[:m_r, :m_r], order="F"), lower=1)
            if info != 0:
                return f, np.full(nth, np.nan)
            sdiag = np.diagonal(sinv).copy()
        else:
            sinv, sdiag = np.zeros((0, 0)), np.zeros(0)
        s = self._rest_scale(lams)
        t1 = lams[0][0, 0]
        m1 = t1 * t1 * self.a11[:, 0, 0] + 1.0
        # quadratic forms l_s^T Sinv l_s of the first-term columns of L_R1
        if m_r == 0:
            qf = np.zeros(self.nl1)
        elif self.strategy == "dense":
            B = self._a_r1_dense[:m_r] * s[:m_r, None]
            qf = np.einsum("ij,ij->j", B, sinv_full(sinv) @ B) * (t1 * t1) / m1
        else:
            i, j = self._map_i, self._map_j
            keep = (i < m_r) & (j < m_r)
            # potri fills the lower triangle (Fortran order) = entries (i, j), i >= j
            w = np.zeros(i.size)
            w[keep] = sinv[i[keep], j[keep]] * s[i[keep]] * s[j[keep]]
            w[keep & (i != j)] *= 2.0
            qf = (self._map.T @ w) * (t1 * t1) / m1
        grad = np.zeros(nth)
        tr1 = float(np.sum((1.0 + qf) / m1))
        if t1 > 0:
            grad[0] = (2.0 / t1) * (self.q1 - tr1) - 2.0 * nprime * float(u1 @ u1) / (t1 * pwrss)
        for k, t in enumerate(self.reterms[1:]):
            tk = lams[k + 1][0, 0]
            if tk > 0:
                a, b = self.rest_offsets[k], self.rest_offsets[k + 1]
                uk = u_rest[a:b]
                grad[k + 1] = (2.0 / tk) * (t.q - float(np.sum(sdiag[a:b]))) - 2.0 * nprime * float(uk @ uk) / (tk * pwrss)
        return f, grad

    def _lambda_all(self, lams: list[NDArray[np.float64]]) -> sp.csr_matrix:
        blocks = [sp.kron(sp.identity(t.nl), sp.csr_matrix(lam)) for t, lam in zip(self.reterms, lams)]
        return sp.block_diag(blocks, format="csr")
