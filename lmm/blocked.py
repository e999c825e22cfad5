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

In the sparse strategy with a scalar first term, the levels of the first term
are split once by their number of entries in ``a_r1``: the *heavy* levels'
columns are stored densely and their share of the product is one BLAS ``syrk``
(multi-threaded, written straight into the triangle LAPACK reads), the *light*
levels' share is a sparse product. A level with ``m`` entries goes dense when
the sparse product's ``m²`` terms cost more than the ``Q²/2`` multiply-adds of
its dense rank-one update (:data:`HEAVY_TERM_COST`). The arithmetic is the same
sum of products either way, so the split changes results only by rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.linalg.blas import dsymm, dsyrk, dtrsm, dtrsv
from scipy.linalg.lapack import dlauum, dpotrf, dtrtri

from .design import ReTerm
from .theta import ThetaMap

__all__ = ["BlockedSystem", "CrossProducts", "crossproducts", "Solution", "MAP_LIMIT", "DENSE_LIMIT", "HEAVY_TERM_COST", "HEAVY_BYTES"]

DENSE_LIMIT = 2_000_000
"""Largest ``Q² · q1`` (flops of the dense product) for which the dense strategy is used."""

MAP_LIMIT = 40_000_000
"""Largest number of terms in the precomputed product map; above it the sparse product is used."""

HEAVY_TERM_COST = 300.0
"""Cost of one term of a sparse product, in multiply-adds of a dense BLAS product.

In the sparse strategy a first-term level whose column of ``a_r1`` holds ``m``
entries is handled densely when ``HEAVY_TERM_COST · m² > Q² / 2`` (measured
here: ~7 ns a sparse term against ~0.03 ns a ``syrk`` multiply-add on 2 cores;
on MovieLens-1M the product time is flat between 200 and 800)."""

FACTOR_CACHE_MIN = 1000
"""Smallest rest block whose last factor is kept for reuse at the same θ."""

MOMENT_START_MIN = 1000
"""Smallest rest block for which :meth:`BlockedSystem.start_point` offers the moment start (where an evaluation is costly)."""

MOMENT_STEP = 0.1
"""Length of L-BFGS-B's first step from the moment start (one evaluation fewer on MovieLens-1M and InstEval than 1)."""

HEAVY_BYTES = 512 * 2**20
"""Most memory for the dense columns of the heavy levels; the heaviest are kept when more qualify."""


def chol_inverse(lower: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """The inverse of ``L Lᵀ`` from the lower Cholesky factor ``L`` (lower triangle returned, Fortran order).

    ``trtri`` then ``lauum``: the same computation as LAPACK ``potri``, which is
    measured 2× slower here through scipy's wrapper. Returns None if L is singular.
    Only the lower triangle of ``lower`` is read; the result's upper triangle is
    whatever ``lower`` held there.
    """
    if lower.shape[0] == 0:
        return np.zeros((0, 0))
    linv, info = dtrtri(np.array(lower, order="F"), lower=1, overwrite_c=1)
    if info != 0:
        return None
    sinv, info = dlauum(linv, lower=1, overwrite_c=1)
    return None if info != 0 else sinv


@dataclass
class _HeavyLight:
    """The first-term levels split for the product ``a_r1 D a_r1ᵀ`` (scalar first term).

    ``heavy``/``light`` are level indices; ``hcols`` (h, Q) holds the heavy
    columns densely (C order, so ``hcols.T`` is a Fortran-ordered ``Q × h``);
    ``al`` is the light columns (CSR, ``Q × nlight``) and ``al_rows`` the row of
    each of its entries.
    """

    heavy: NDArray[np.intp]
    light: NDArray[np.intp]
    hcols: NDArray[np.float64]
    al: sp.csr_matrix
    al_rows: NDArray[np.intp]


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
        self.beta_shift = np.zeros(cp.p)  # γ of a response centred on its fit on X (see from_data)
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
        self.a_r1_t = cp.a_r1.T.tocsr()  # formed once: a sparse transpose per evaluation costs more than the product
        self.a_rr = cp.a_rr
        # term layout in the rest block
        self.rest_offsets = np.cumsum([0] + [t.q for t in rest])
        self.rest_scalar = all(t.nc == 1 for t in rest)
        self._re_diag = np.arange(self.qr)
        self._last_factor: tuple[bytes, tuple[float, NDArray[np.float64], NDArray[np.float64]], Any] | None = None
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
        """The system of in-memory data (see :func:`crossproducts`).

        The response first loses its least-squares fit on X (``y − Xγ``, added
        back to β by :meth:`solve`): cross-products of a response far from zero
        relative to its spread (``y ≈ 1e9 ± 50``) would otherwise cancel
        catastrophically. The criterion is unchanged, since β is profiled out.
        """
        shift = None
        if X.shape[1] and y.size:
            sw = np.sqrt(weights) if weights is not None else None
            Xw = X * sw[:, None] if sw is not None else X
            yw = y * sw if sw is not None else y
            gamma = scipy.linalg.lstsq(Xw, yw, check_finite=False, lapack_driver="gelsy")[0]
            if np.all(np.isfinite(gamma)):
                y = y - X @ gamma
                shift = gamma
        system = cls(reterms, crossproducts(reterms, X, y, weights), theta_map)
        if shift is not None:
            system.beta_shift = shift
        return system

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
        elif self.nc1 == 1 and self.rest_scalar:
            return self._schur_split(D, lams)[0]
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

    def _schur_split(self, D: NDArray[np.float64], lams: list[NDArray[np.float64]], want_dprime: bool = False) -> tuple[NDArray[np.float64], Any]:
        """The sparse strategy's S for all-scalar models: heavy levels by ``syrk``, light ones by a sparse product.

        Only the triangle LAPACK reads is formed. With ``want_dprime``, also the
        light levels' share of the gradient's ``P'`` (see :meth:`_add_product`).
        """
        s = self._rest_scale(lams)
        S = np.multiply(self.a_rr, s[:, None])
        S *= s[None, :]
        dvec2 = None
        if want_dprime:
            t1 = lams[0][0, 0]
            m1 = t1 * t1 * self.a11[:, 0, 0] + 1.0
            dvec2 = (t1 * t1) / (m1 * m1)
        extra = self._add_product(S.T, D[:, 0, 0], s, self.Q, -1.0, dvec2=dvec2)
        S[self._re_diag, self._re_diag] += 1.0
        return S, extra

    def _heavy_light(self) -> _HeavyLight:
        """The heavy/light split of the first-term levels (scalar first term), made on first use."""
        hl: _HeavyLight | None = getattr(self, "_hl", None)
        if hl is not None:
            return hl
        Q = self.Q
        csc = self.a_r1.tocsc()
        counts = np.diff(csc.indptr).astype(np.float64)
        heavy_mask = HEAVY_TERM_COST * counts * counts > 0.5 * Q * Q
        most = max(0, HEAVY_BYTES // (8 * Q))
        if np.count_nonzero(heavy_mask) > most:
            order = np.argsort(-counts, kind="stable")
            heavy_mask = np.zeros(counts.size, dtype=bool)
            heavy_mask[order[:most]] = True
        heavy = np.flatnonzero(heavy_mask)
        light = np.flatnonzero(~heavy_mask)
        hcols = np.ascontiguousarray(csc[:, heavy].toarray().T)
        al = csc[:, light].tocsr()
        al.sort_indices()
        al_rows = np.repeat(np.arange(Q), np.diff(al.indptr))
        hl = _HeavyLight(heavy=heavy, light=light, hcols=hcols, al=al, al_rows=al_rows)
        self._hl = hl
        return hl

    def _add_product(
        self,
        F: NDArray[np.float64],
        dvec: NDArray[np.float64],
        s: NDArray[np.float64],
        m: int,
        alpha: float,
        *,
        light: bool = True,
        dvec2: NDArray[np.float64] | None = None,
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]] | None:
        """``F += alpha · (s∘a_r1) diag(dvec) (s∘a_r1)ᵀ`` restricted to the leading ``m`` rows and columns.

        ``F`` is a Fortran-ordered ``m × m`` array; only its lower triangle is
        updated (scalar first term; ``dvec ≥ 0``, one entry per level). With
        ``light=False`` only the heavy levels' share is added. With ``dvec2``, the
        light levels' share of the product with ``dvec2`` in place of ``dvec`` comes
        out of the same sparse product (complex weights ``dvec + i·dvec2``) and is
        returned as ``(rows, cols, values)`` of its lower triangle, not added.
        """
        hl = self._heavy_light()
        if hl.heavy.size:
            W = hl.hcols[:, :m] * (np.sqrt(dvec[hl.heavy])[:, None] * s[None, :m])
            out = dsyrk(alpha, W.T, beta=1.0, c=F, trans=0, lower=1, overwrite_c=1)
            if not np.shares_memory(out, F):  # pragma: no cover - scipy copies only non-Fortran input
                F[...] = np.tril(out) + np.triu(F, 1)
        if not (light and hl.light.size):
            return None
        al = hl.al
        sa = al.data * s[hl.al_rows]
        if dvec2 is None:
            As = sp.csr_matrix((sa * np.sqrt(dvec[hl.light])[al.indices], al.indices, al.indptr), shape=al.shape)
            As = As[:m] if m < self.Q else As
            P = (As @ As.T).tocsr()
        else:
            left = sp.csr_matrix((sa * (dvec + 1j * dvec2)[hl.light][al.indices], al.indices, al.indptr), shape=al.shape)
            right = sp.csr_matrix((sa, al.indices, al.indptr), shape=al.shape)
            if m < self.Q:
                left, right = left[:m], right[:m]
            P = (left @ right.T).tocsr()
        rows = np.repeat(np.arange(m), np.diff(P.indptr))
        cols = P.indices
        low = rows >= cols
        rows, cols, vals = rows[low], cols[low], P.data[low]
        flat = F.T.reshape(-1)  # F[i, j] lives at j*m + i
        if not np.shares_memory(flat, F):  # pragma: no cover
            raise RuntimeError("the product target must be a contiguous Fortran-ordered array")
        if dvec2 is None:
            flat[cols * m + rows] += alpha * vals
            return None
        flat[cols * m + rows] += alpha * vals.real
        return rows, cols, vals.imag

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
        or None when the system is not positive definite at θ. The result must not
        be modified: for large rest blocks the last one is kept and returned again
        for the same θ (the optimiser's last evaluation is usually the point that
        :meth:`solve` and :meth:`conditional_covariances` then factor).
        """
        return self._factor(theta)[0]

    def _factor(
        self, theta: NDArray[np.float64], want_dprime: bool = False
    ) -> tuple[tuple[float, NDArray[np.float64], NDArray[np.float64]] | None, Any]:
        """:meth:`factor`, and the light levels' share of ``P'`` when asked and available (see the gradient)."""
        theta = np.asarray(theta, dtype=np.float64)
        key = theta.tobytes()
        last = self._last_factor
        if last is not None and last[0] == key:
            return last[1], last[2]
        lams = self.theta_map.lambdas(theta)
        ld1, D, _ = self._first_block(lams[0])
        if D is None:
            return None, None
        if self.strategy == "sparse" and self.nc1 == 1 and self.rest_scalar:
            S, extra = self._schur_split(D, lams, want_dprime)
        else:
            S, extra = self._schur(D, lams), None
        # S is symmetric: factor its transpose (Fortran order, no copy); the lower
        # triangle of the result, read in Fortran order, is the factor.
        c, info = dpotrf(S.T, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            return None, None
        if self.Q >= FACTOR_CACHE_MIN:
            self._last_factor = (key, (ld1, D, c), extra)
        return (ld1, D, c), extra

    def evaluate(self, theta: NDArray[np.float64]) -> tuple[float, float, float] | None:
        """``(ldL2, ldRX2, pwrss)`` at θ, or None when the system is singular."""
        out = self.factor(theta)
        return None if out is None else self.pieces(out[0], out[2])

    def pieces(self, ld1: float, L: NDArray[np.float64]) -> tuple[float, float, float] | None:
        """``(ldL2, ldRX2, pwrss)`` from the first block's log-determinant and the rest block's factor."""
        d = np.diagonal(L)
        if np.any(d[:-1] <= 0):
            return None
        logd = np.log(d[:-1])
        qr, p = self.qr, self.p
        ldL2 = ld1 + 2.0 * float(np.sum(logd[:qr]))
        ldRX2 = 2.0 * float(np.sum(logd[qr : qr + p]))
        pwrss = float(d[-1]) ** 2
        return ldL2, ldRX2, pwrss

    @staticmethod
    def rest_solution(L: NDArray[np.float64]) -> NDArray[np.float64]:
        """The rest block's unknowns ``[u_rest; β]`` (scaled space): ``Tᵀ x = c`` with c the y row of L."""
        c = np.array(L[-1, :-1])
        if c.size and L.flags.f_contiguous:
            # solve with the whole factor (no copy of the leading block): a zero last
            # right-hand side gives a zero last unknown, so the leading block's system is solved exactly
            return dtrsv(L, np.append(c, 0.0), lower=1, trans=1)[:-1]
        if c.size:
            return scipy.linalg.solve_triangular(L[:-1, :-1], c, lower=True, trans="T", check_finite=False)
        return c

    def _unknowns(
        self, lams: list[NDArray[np.float64]], L: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """``(u1, u_rest, beta)`` from the factor L of the rest block (lower triangle read)."""
        qr, p = self.qr, self.p
        x = self.rest_solution(L)
        u_rest, beta = x[:qr], x[qr:]
        # first-term unknowns: M_s u1_s = lam1^T (a_1y - a_1R' [Lambda_R' u_rest; beta])
        if self.rest_scalar:
            v = self._rest_scale(lams) * np.concatenate([x, [-1.0]])
        else:
            v = np.concatenate([self._lambda_rest(lams)[: qr + p, : qr + p] @ x, [-1.0]])
        rhs = -(self.a_r1_t @ v)
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
            beta=beta + self.beta_shift,
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
        if nc1 == 1 and self.rest_scalar and qr:
            return self._scalar_conditional_covariances(lams, Lf)
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

    def _scalar_conditional_covariances(self, lams: list[NDArray[np.float64]], Lf: NDArray[np.float64]) -> list[NDArray[np.float64]]:
        """:meth:`conditional_covariances` when every term is scalar, from ``S⁻¹`` of the rest block.

        A first-term level's variance is ``θ1²/m_s · (1 + θ1²/m_s · c_sᵀ S⁻¹ c_s)``
        with ``c_s`` its column of ``a_r1`` scaled by Λ_R (the same number as
        ``1 + ||T⁻¹ l_s||²`` of the general path, without solving for every level).
        """
        qr = self.qr
        sinv = chol_inverse(Lf[:qr, :qr])
        if sinv is None:
            raise np.linalg.LinAlgError("the rest block is singular")
        s = self._rest_scale(lams)
        t1 = lams[0][0, 0]
        m1 = t1 * t1 * self.a11[:, 0, 0] + 1.0
        qf = self._level_quadratic_forms(sinv, s, qr, factor=Lf)
        covs = [((t1 * t1 / m1) * (1.0 + (t1 * t1) * qf / m1))[:, None, None]]
        sdiag = np.diagonal(sinv)
        for k, t in enumerate(self.reterms[1:]):
            a = int(self.rest_offsets[k])
            tk = lams[k + 1][0, 0]
            covs.append((tk * tk * sdiag[a : a + t.q])[:, None, None])
        return covs

    def _level_quadratic_forms(
        self,
        sinv: NDArray[np.float64],
        s: NDArray[np.float64],
        m: int,
        max_pairs: int = 4_000_000,
        factor: NDArray[np.float64] | None = None,
    ) -> NDArray[np.float64]:
        """``c_sᵀ S⁻¹ c_s`` per first-term level, ``c_s = s ∘ a_r1[:m, s]`` (scalar first term).

        ``sinv`` holds ``S⁻¹`` (``m × m``) in its lower triangle, Fortran order;
        ``factor``, if given, is the Fortran-ordered lower Cholesky factor whose
        leading ``m × m`` block factors S. Heavy levels: ``||L⁻¹ c_s||²`` by one BLAS
        ``trsm`` with the whole factor (zero right-hand sides below row m leave
        the leading solution alone; half the flops of a ``symm`` with S⁻¹), or
        ``symm`` without it. Light levels, grouped by their number of entries ``k``:
        the ``k × k`` blocks of ``S⁻¹`` at each level's rows are gathered (at most
        ``max_pairs`` entries at a time) and contracted.
        """
        hl = self._heavy_light()
        qf = np.zeros(self.nl1)
        if hl.heavy.size and factor is not None and factor.flags.f_contiguous and factor.shape[0] >= m:
            B = np.zeros((hl.heavy.size, factor.shape[0]))
            np.multiply(hl.hcols[:, :m], s[None, :m], out=B[:, :m])
            W = dtrsm(1.0, factor, B.T, side=0, lower=1, overwrite_b=1)
            qf[hl.heavy] = np.einsum("ij,ij->j", W[:m], W[:m])
        elif hl.heavy.size:
            X = hl.hcols[:, :m] * s[None, :m]
            Y = dsymm(1.0, sinv, X.T, side=0, lower=1)
            qf[hl.heavy] = np.einsum("ij,ji->j", Y, X)
        if hl.light.size:
            csc = hl.al[:m].tocsc()
            csc.sort_indices()
            full = np.triu(sinv.T)  # C order, upper triangle = S⁻¹'s lower one transposed
            full += np.triu(full, 1).T
            counts = np.diff(csc.indptr)
            vals = csc.data * s[csc.indices]
            order = np.argsort(counts, kind="stable")
            bounds = np.flatnonzero(np.diff(counts[order])) + 1
            for grp in np.split(order, bounds):
                k = int(counts[grp[0]])
                if k == 0:
                    continue
                step = max(1, max_pairs // (k * k))
                for a in range(0, grp.size, step):
                    lv = grp[a : a + step]
                    idx = csc.indptr[lv][:, None] + np.arange(k)[None, :]
                    r, v = csc.indices[idx], vals[idx]
                    blocks = full[r[:, :, None], r[:, None, :]]
                    qf[hl.light[lv]] = np.einsum("gi,gij,gj->g", v, blocks, v)
        return qf

    def start_point(self) -> NDArray[np.float64] | None:
        """The start the fit should use instead of lme4's θ = 1, or None.

        For all-scalar models whose rest block has at least :data:`MOMENT_START_MIN`
        rows, :meth:`moment_start` (it cut the L-BFGS-B evaluations from 15 to 9
        on a MovieLens-1M-sized model and from 21 to 12 on InstEval, to the same
        optimum); small models keep lme4's start, and so their reference results.
        """
        if self.Q < MOMENT_START_MIN:
            return None
        return self.moment_start()

    def moment_start(self) -> NDArray[np.float64] | None:
        """A start for θ from one-way moment estimates, for models whose terms are all scalar.

        From the cross-products only: with the OLS residuals' sums ``R_g`` and the
        sizes ``n_g = Σ z²`` of the levels of term k, ``Σ_g R_g²/n_g ≈ N σ_k² + G_k (V − σ_k²)``
        where ``V = RSS/(N − p)`` is the total variance, which gives ``σ_k²``; then
        ``σ² = V − Σ σ_k²`` and ``θ_k = σ_k/σ``. Returns None when an estimate is
        not positive (the default start is used then). Only a start: the optimiser
        still converges to its own tolerances.
        """
        if not (self.nc1 == 1 and self.rest_scalar) or self.n <= self.p:
            return None
        qr, p = self.qr, self.p
        xx = self.a_rr[qr : qr + p, qr : qr + p]
        xy = self.a_rr[qr : qr + p, -1]
        try:
            beta = np.linalg.solve(xx, xy) if p else np.zeros(0)
        except np.linalg.LinAlgError:
            return None
        rss = float(self.a_rr[-1, -1] - beta @ xy)
        V = rss / (self.n - p)
        if not V > 0:
            return None
        a_r1 = self.a_r1
        tail = np.asarray(a_r1[qr:].toarray())  # X and y rows: (p + 1, q1)
        sums = [tail[-1] - beta @ tail[:-1]]
        sizes = [self.a11[:, 0, 0]]
        diag = np.diagonal(self.a_rr)
        for k in range(len(self.reterms) - 1):
            a, b = int(self.rest_offsets[k]), int(self.rest_offsets[k + 1])
            sums.append(self.a_rr[a:b, -1] - self.a_rr[a:b, qr : qr + p] @ beta)
            sizes.append(diag[a:b])
        sig2 = []
        for r, nz in zip(sums, sizes):
            ok = nz > 0
            G = int(np.count_nonzero(ok))
            N = float(np.sum(nz[ok]))
            if N <= G:
                return None
            sig2.append((float(np.sum(r[ok] ** 2 / nz[ok])) - G * V) / (N - G))
        s2 = V - sum(sig2)
        if not (min(sig2) > 0 and s2 > 0):
            return None
        return np.sqrt(np.array(sig2) / s2)

    # ---------------------------------------------------------- gradient
    @property
    def has_gradient(self) -> bool:
        """Whether :meth:`objective_and_gradient` is available (every term scalar, no general sparse product)."""
        return self.nc1 == 1 and self.rest_scalar

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
        from the inverse of the rest block's factor (:func:`chol_inverse`) and, for the
        first term, from the same sparse map as the objective (map strategy), or
        (sparse strategy) as ``tr(S⁻¹ P')`` with ``P' = (s∘a_r1) diag(θ1²/m1²) (s∘a_r1)ᵀ``
        formed like the Schur product (heavy levels by ``syrk``, light ones sparse).
        """
        from .deviance import profiled_deviance

        nth = theta.size
        out, light_dprime = self._factor(theta, want_dprime=True)
        if out is None:
            return np.inf, np.zeros(nth)
        ld1, D, Lf = out
        pieces = self.pieces(ld1, Lf)
        if pieces is None:
            return np.inf, np.zeros(nth)
        ldL2, ldRX2, pwrss = pieces
        qr, p, n = self.qr, self.p, self.n
        f = profiled_deviance(ldL2, ldRX2, pwrss, n, p, reml=reml, ldW=ldW)
        lams = self.theta_map.lambdas(theta)
        u1, u_rest, _ = self._unknowns(lams, Lf)
        m_r = qr + p if reml else qr
        nprime = n - p if reml else n
        # inverse of the leading m_r block of the rest factor
        if m_r:
            sinv_or_none = chol_inverse(Lf[:m_r, :m_r])
            if sinv_or_none is None:
                return f, np.full(nth, np.nan)
            sinv = sinv_or_none
            sdiag = np.diagonal(sinv).copy()
        else:
            sinv, sdiag = np.zeros((0, 0)), np.zeros(0)
        s = self._rest_scale(lams)
        t1 = lams[0][0, 0]
        m1 = t1 * t1 * self.a11[:, 0, 0] + 1.0
        # quadratic forms l_s^T Sinv l_s of the first-term columns of L_R1
        qsum = None  # sum over levels of qf / m1, when the qf themselves are not formed
        if m_r == 0:
            qf = np.zeros(self.nl1)
        elif self.strategy == "sparse":
            # sum_s (t1²/m1²) c_sᵀ Sinv c_s = tr(Sinv P') over the lower triangle (sinv's upper is not read)
            Pp = np.zeros((m_r, m_r), order="F")
            self._add_product(Pp, (t1 * t1) / (m1 * m1), s, m_r, 1.0, light=light_dprime is None)
            if light_dprime is not None:  # the light share came with the Schur product
                rows, cols, vals = light_dprime
                inside = rows < m_r
                Pp.T.reshape(-1)[cols[inside] * m_r + rows[inside]] += vals[inside]
            dd = float(np.dot(np.diagonal(Pp), np.diagonal(sinv)))
            Pp *= sinv  # Pp's upper triangle is zero, sinv's holds finite leftovers: the sum is the lower one
            qsum = 2.0 * float(np.sum(Pp)) - dd
            qf = np.zeros(0)
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
        tr1 = float(np.sum(1.0 / m1)) + qsum if qsum is not None else float(np.sum((1.0 + qf) / m1))
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
