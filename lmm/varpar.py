"""The variance parameters on the standard-deviation scale: sds, correlations, σ.

lme4 reports and profiles the random-effects covariances as standard
deviations and correlations (``sd_(Intercept)|Subject``,
``cor_Days.(Intercept)|Subject``) and σ. This module maps between that vector
φ and the optimiser's ``(θ, σ)``: per term, ``Σ = σ² λλᵀ = D R D`` with ``D``
the sds and ``R`` the correlations, ``λ = chol(Σ) / σ``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .theta import tril_colmajor

__all__ = ["VarParMap"]


def _chol_psd(S: NDArray[np.float64]) -> NDArray[np.float64]:
    """Lower Cholesky factor of a positive semi-definite matrix (zero columns where singular)."""
    n = S.shape[0]
    L = np.zeros_like(S)
    for j in range(n):
        d = S[j, j] - L[j, :j] @ L[j, :j]
        if d <= 1e-14 * max(S[j, j], 1e-300):
            continue
        L[j, j] = np.sqrt(d)
        L[j + 1 :, j] = (S[j + 1 :, j] - L[j + 1 :, :j] @ L[j, :j]) / L[j, j]
    return L


@dataclass(frozen=True)
class VarParMap:
    """Positions and names of φ for terms with ``ncs`` columns.

    ``φ`` has, per term and in θ's order, a standard deviation where θ has a
    diagonal element and a correlation where θ has an off-diagonal one; σ last.
    """

    ncs: tuple[int, ...]
    names: tuple[str, ...]
    is_cor: NDArray[np.bool_]

    @classmethod
    def from_terms(cls, terms: tuple) -> VarParMap:  # tuple[TermInfo, ...]
        """Names as lme4's ``confint(oldNames = FALSE)``."""
        names = []
        is_cor = []
        for t in terms:
            rows, cols = tril_colmajor(t.nc)
            for r, c in zip(rows, cols):
                if r == c:
                    names.append(f"sd_{t.cnames[r]}|{t.group}")
                    is_cor.append(False)
                else:
                    names.append(f"cor_{t.cnames[r]}.{t.cnames[c]}|{t.group}")
                    is_cor.append(True)
        names.append("sigma")
        is_cor.append(False)
        return cls(ncs=tuple(t.nc for t in terms), names=tuple(names), is_cor=np.array(is_cor))

    def lower(self) -> NDArray[np.float64]:
        """Bounds of φ: sds and σ ≥ 0, correlations ≥ −1."""
        return np.where(self.is_cor, -1.0, 0.0)

    def upper(self) -> NDArray[np.float64]:
        """Upper bounds: correlations ≤ 1."""
        return np.where(self.is_cor, 1.0, np.inf)

    def from_theta(self, theta: NDArray[np.float64], sigma: float) -> NDArray[np.float64]:
        """φ from ``(θ, σ)``."""
        out = []
        pos = 0
        for nc in self.ncs:
            k = nc * (nc + 1) // 2
            rows, cols = tril_colmajor(nc)
            lam = np.zeros((nc, nc))
            lam[rows, cols] = theta[pos : pos + k]
            S = sigma**2 * lam @ lam.T
            sd = np.sqrt(np.diag(S))
            for r, c in zip(rows, cols):
                if r == c:
                    out.append(sd[r])
                else:
                    out.append(S[r, c] / (sd[r] * sd[c]) if sd[r] > 0 and sd[c] > 0 else 0.0)
            pos += k
        out.append(sigma)
        return np.array(out)

    def to_theta(self, phi: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
        """``(θ, σ)`` from φ (correlations clipped to [−1, 1])."""
        sigma = float(phi[-1])
        theta = []
        pos = 0
        for nc in self.ncs:
            k = nc * (nc + 1) // 2
            rows, cols = tril_colmajor(nc)
            sd = np.zeros(nc)
            R = np.eye(nc)
            for (r, c), value in zip(zip(rows, cols), phi[pos : pos + k]):
                if r == c:
                    sd[r] = max(value, 0.0)
                else:
                    R[r, c] = R[c, r] = np.clip(value, -1.0, 1.0)
            S = np.outer(sd, sd) * R
            lam = _chol_psd(S) / sigma
            theta.extend(lam[rows, cols])
            pos += k
        return np.array(theta), sigma
