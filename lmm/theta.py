"""The covariance parameter θ and its map to the relative covariance factor Λθ.

θ is lme4's parameter: for each random-effects term with ``nc`` columns, the
lower triangle of an ``nc × nc`` matrix λ in column-major order; Λθ is block
diagonal with one copy of λ per level of the term's grouping factor. Diagonal
entries start at 1 with lower bound 0, off-diagonal entries start at 0 and are
unbounded.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

__all__ = ["ThetaMap", "tril_colmajor"]


@functools.lru_cache(maxsize=64)
def tril_colmajor(nc: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Row and column indices of the lower triangle of an ``nc × nc`` matrix, column by column (read-only, cached)."""
    cols, rows = np.triu_indices(nc)
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


@dataclass(frozen=True)
class ThetaMap:
    """Where each element of θ goes.

    Attributes
    ----------
    ncs : tuple of int
        Columns of each term.
    nls : tuple of int
        Levels of each term.
    offsets : tuple of int
        Start of each term's parameters in θ (length ``k + 1``).
    names : tuple of str
        lme4's names of the parameters (``"Subject.(Intercept)"``, ``"Subject.Days.(Intercept)"``).
    theta0, lower : ndarray
        Start point and lower bounds.
    """

    ncs: tuple[int, ...]
    nls: tuple[int, ...]
    offsets: tuple[int, ...]
    names: tuple[str, ...]
    theta0: NDArray[np.float64]
    lower: NDArray[np.float64]

    @classmethod
    def from_terms(cls, ncs: Sequence[int], nls: Sequence[int], groups: Sequence[str], cnames: Sequence[Sequence[str]]) -> ThetaMap:
        """Build the map for terms with ``ncs`` columns, ``nls`` levels, named as lme4 names them."""
        offsets = [0]
        names: list[str] = []
        theta0: list[float] = []
        lower: list[float] = []
        for nc, group, cn in zip(ncs, groups, cnames):
            for j in range(nc):
                for i in range(j, nc):
                    if i == j:
                        names.append(f"{group}.{cn[i]}")
                        theta0.append(1.0)
                        lower.append(0.0)
                    else:
                        names.append(f"{group}.{cn[i]}.{cn[j]}")
                        theta0.append(0.0)
                        lower.append(-np.inf)
            offsets.append(len(names))
        return cls(
            ncs=tuple(int(n) for n in ncs),
            nls=tuple(int(n) for n in nls),
            offsets=tuple(offsets),
            names=tuple(names),
            theta0=np.array(theta0),
            lower=np.array(lower),
        )

    @property
    def nth(self) -> int:
        """Length of θ."""
        return self.offsets[-1]

    def diagonal(self) -> NDArray[np.bool_]:
        """Boolean mask of the elements of θ on a diagonal of some λ."""
        return np.isfinite(self.lower)

    def lambdas(self, theta: NDArray[np.float64]) -> list[NDArray[np.float64]]:
        """The per-term lower-triangular λ matrices for ``theta``."""
        out = []
        for k, nc in enumerate(self.ncs):
            lam = np.zeros((nc, nc))
            rows, cols = tril_colmajor(nc)
            lam[rows, cols] = theta[self.offsets[k] : self.offsets[k + 1]]
            out.append(lam)
        return out

    def lambdat(self, theta: NDArray[np.float64]) -> sp.csc_matrix:
        """The sparse ``q × q`` matrix Λθᵀ, block diagonal in the terms' order."""
        blocks = []
        for lam, nl in zip(self.lambdas(theta), self.nls):
            blocks.append(sp.kron(sp.identity(nl, format="csr"), sp.csr_matrix(lam.T)))
        return sp.block_diag(blocks, format="csc")

    def covariances(self, theta: NDArray[np.float64], sigma: float) -> list[NDArray[np.float64]]:
        """Per-term covariance matrices ``sigma**2 * λ λᵀ`` of the random effects."""
        return [sigma**2 * lam @ lam.T for lam in self.lambdas(theta)]

    def rectify(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        """Flip column signs of each λ so that its diagonal is non-negative (λλᵀ is unchanged)."""
        out = np.array(theta, dtype=float)
        for k, lam in enumerate(self.lambdas(out)):
            signs = np.where(np.diag(lam) < 0, -1.0, 1.0)
            lam = lam * signs[None, :]
            rows, cols = tril_colmajor(self.ncs[k])
            out[self.offsets[k] : self.offsets[k + 1]] = lam[rows, cols]
        return out
