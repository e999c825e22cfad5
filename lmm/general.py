"""The general penalised least-squares system of the matrix door.

The user gives X, y, Zᵀ and a function θ ↦ Λθᵀ of any structure. The
cross-products of ``[Z X y]`` are formed once; each evaluation forms the dense
``(q + p + 1)``-square matrix

    [ΛᵀZᵀWZΛ + I   ΛᵀZᵀW[X y]]
    [[X y]ᵀWZΛ     [X y]ᵀW[X y]]

and factors it with one LAPACK call. It costs ``O((q + p)³)`` per evaluation,
which suits the few thousand random effects such custom structures usually
have; the formula path (:mod:`lmm.blocked`) exploits the block structure
instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.linalg.lapack import dpotrf

from .blocked import Solution

__all__ = ["GeneralSystem"]


def _dense(m: Any) -> NDArray[np.float64]:
    return np.asarray(m.toarray() if sp.issparse(m) else m, dtype=np.float64)


class GeneralSystem:
    """Cross-products and per-θ factorisation for a user-supplied Λθᵀ.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    y : ndarray, shape (n,)
        Response minus offset.
    Zt : sparse or dense, shape (q, n)
    lambdat : callable
        θ ↦ Λθᵀ (sparse or dense, ``q × q``).
    weights : ndarray or None
    """

    def __init__(
        self,
        X: NDArray[np.float64],
        y: NDArray[np.float64],
        Zt: Any,
        lambdat: Callable[[NDArray[np.float64]], Any],
        weights: NDArray[np.float64] | None,
    ) -> None:
        n, p = X.shape
        self.n, self.p = n, p
        self.lambdat_fn = lambdat
        sw = np.ones(n) if weights is None else np.sqrt(weights)
        zt = sp.csr_matrix(Zt) if sp.issparse(Zt) else np.asarray(Zt, dtype=np.float64)
        self.q = int(zt.shape[0])
        ztw = zt @ sp.diags(sw) if sp.issparse(zt) else zt * sw[None, :]
        xy = np.column_stack([X, y]) * sw[:, None]
        self.ztz = _dense(ztw @ ztw.T)
        self.ztxy = _dense(ztw @ xy)
        self.xyxy = xy.T @ xy

    def _matrix(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        lt = _dense(self.lambdat_fn(np.asarray(theta, dtype=np.float64)))
        q = self.q
        top = lt @ self.ztz @ lt.T
        top[np.arange(q), np.arange(q)] += 1.0
        off = lt @ self.ztxy
        return np.block([[top, off], [off.T, self.xyxy]])

    def evaluate(self, theta: NDArray[np.float64]) -> tuple[float, float, float] | None:
        """``(ldL2, ldRX2, pwrss)`` at θ, or None where the system is singular."""
        c, info = dpotrf(self._matrix(theta), lower=1, clean=0, overwrite_a=1)
        if info != 0:
            return None
        d = np.diagonal(c)
        q, p = self.q, self.p
        if np.any(d[:-1] <= 0):
            return None
        return 2.0 * float(np.sum(np.log(d[:q]))), 2.0 * float(np.sum(np.log(d[q : q + p]))), float(d[-1]) ** 2

    def solve(self, theta: NDArray[np.float64]) -> Solution:
        """β, u, b and the factor pieces at θ."""
        c, info = dpotrf(self._matrix(theta), lower=1, clean=0, overwrite_a=0)
        if info != 0:
            raise np.linalg.LinAlgError("the penalised system is not positive definite at theta")
        L = np.tril(c)
        q, p = self.q, self.p
        d = np.diagonal(L)
        x = scipy.linalg.solve_triangular(L[:-1, :-1], L[-1, :-1], lower=True, trans="T")
        u, beta = x[:q], x[q:]
        lt = _dense(self.lambdat_fn(np.asarray(theta, dtype=np.float64)))
        return Solution(
            beta=beta,
            u=u,
            b=lt.T @ u,
            ldL2=2.0 * float(np.sum(np.log(d[:q]))),
            ldRX2=2.0 * float(np.sum(np.log(d[q : q + p]))),
            pwrss=float(d[-1]) ** 2,
            rx_lower=L[q : q + p, q : q + p].copy(),
        )
