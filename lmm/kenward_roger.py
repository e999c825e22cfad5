"""Kenward–Roger's adjusted covariance and denominator degrees of freedom (REML fits).

The method of Kenward & Roger (1997) as pbkrtest computes it. The marginal
covariance is written linearly in the variance components,
``V = Σ_r s_r G_r`` (per term each variance and covariance of its random
effects, then the residual variance), and with ``Φ = (XᵀV⁻¹X)⁻¹``,
``P_r = −XᵀV⁻¹G_rV⁻¹X`` and ``Q_rs = XᵀV⁻¹G_rV⁻¹G_sV⁻¹X``:

* ``W = 2 I⁻¹`` with ``I_rs = tr(V⁻¹G_rV⁻¹G_s) − 2 tr(ΦQ_rs) + tr(ΦP_rΦP_s)``;
* ``Φ_A = Φ + 2 Φ (Σ_rs W_rs (Q_rs − P_rΦP_s)) Φ``;
* for a contrast L with q rows, the F statistic is scaled and its
  denominator degrees of freedom found from ``A1``, ``A2`` as in the paper.

Cost: dense ``n × n`` matrices, ``O(n³)`` time and ``O(k n²)`` memory for k
variance components — fine for thousands of observations, not for InstEval
(pbkrtest has the same limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.linalg
from numpy.typing import NDArray
from scipy import stats

from .errors import DataError
from .theta import tril_colmajor

if TYPE_CHECKING:
    from .results import LmmResult

__all__ = ["KRInfo", "kr_info", "kr_test", "kr_coef_table", "MAX_KR_OBS"]

MAX_KR_OBS = 20_000
"""Largest number of observations for which the dense computation is attempted."""


@dataclass(frozen=True)
class KRInfo:
    """Φ, Φ_A, the P_r and W of a fit."""

    phi: NDArray[np.float64]
    phi_adj: NDArray[np.float64]
    P: tuple[NDArray[np.float64], ...]
    W: NDArray[np.float64]


def kr_info(fit: LmmResult) -> KRInfo:
    """Compute the pieces of the adjustment (see the module docs)."""
    if not fit.reml:
        raise DataError("Kenward-Roger's method is defined for REML fits; refit with reml=True.")
    model = fit.model
    if model is None or model.design is None:
        raise DataError("Kenward-Roger's method needs a fit from a formula.")
    n = fit.nobs
    if n > MAX_KR_OBS:
        raise DataError(f"Kenward-Roger needs dense {n} x {n} matrices; use ddf='Satterthwaite' for data this large.")
    X = model.X
    Zt = model.Zt_matrix
    G: list[NDArray[np.float64]] = []
    s: list[float] = []
    pos = 0
    for t, cov in zip(fit.terms, [c.cov for c in fit.varcorr.components]):
        Zk = Zt[pos : pos + t.nc * t.nl].T.tocsc()  # n x (nc * nl), columns level-major
        rows, cols = tril_colmajor(t.nc)
        for r, c in zip(rows, cols):
            # G = Z_k (I ⊗ (E_rc + E_cr)) Z_kᵀ = z_r z_cᵀ + z_c z_rᵀ blockwise by level
            zr = Zk[:, r :: t.nc]
            zc = Zk[:, c :: t.nc]
            g = (zr @ zc.T).toarray()
            G.append(g if r == c else g + g.T)
            s.append(float(cov[r, c]))
        pos += t.nc * t.nl
    resid = np.diag(1.0 / fit.weights) if fit.weights is not None else np.eye(n)
    G.append(resid)
    s.append(fit.sigma**2)
    V = sum(sk * Gk for sk, Gk in zip(s, G))
    cV = scipy.linalg.cho_factor(V, lower=True)
    Vinv_X = scipy.linalg.cho_solve(cV, X)
    phi = np.linalg.inv(X.T @ Vinv_X)
    H = [scipy.linalg.cho_solve(cV, Gk) for Gk in G]  # V⁻¹ G_r
    P = tuple(-(Vinv_X.T @ (Gk @ Vinv_X)) for Gk in G)
    k = len(G)
    Q = [[Vinv_X.T @ (G[r] @ (H[u] @ Vinv_X)) for u in range(k)] for r in range(k)]
    info = np.empty((k, k))
    for r in range(k):
        for u in range(r, k):
            val = float(np.sum(H[r] * H[u].T)) - 2.0 * float(np.trace(phi @ Q[r][u])) + float(np.trace(phi @ P[r] @ phi @ P[u]))
            info[r, u] = info[u, r] = val
    W = 2.0 * np.linalg.inv(info)
    U = np.zeros_like(phi)
    for r in range(k):
        for u in range(k):
            U += W[r, u] * (Q[r][u] - P[r] @ phi @ P[u])
    phi_adj = phi + 2.0 * phi @ U @ phi
    return KRInfo(phi=phi, phi_adj=phi_adj, P=P, W=W)


def kr_test(fit: LmmResult, L: NDArray[np.float64], info: KRInfo) -> dict[str, float]:
    """Kenward–Roger F test of ``L β = 0``: NumDF, DenDF, F value, Pr(>F), the scale, and t for one row."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    q = np.linalg.matrix_rank(L)
    phi, W = info.phi, info.W
    Theta = L.T @ np.linalg.solve(L @ phi @ L.T, L)
    M = [Theta @ phi @ Pk @ phi for Pk in info.P]
    k = len(M)
    tr = np.array([np.trace(m) for m in M])
    A1 = float(sum(W[i, j] * tr[i] * tr[j] for i in range(k) for j in range(k)))
    A2 = float(sum(W[i, j] * np.trace(M[i] @ M[j]) for i in range(k) for j in range(k)))
    B = (A1 + 6.0 * A2) / (2.0 * q)
    g = ((q + 1.0) * A1 - (q + 4.0) * A2) / ((q + 2.0) * A2) if A2 != 0 else 0.0
    d = 3.0 * q + 2.0 * (1.0 - g)
    c1, c2, c3 = g / d, (q - g) / d, (q + 2.0 - g) / d
    E = 1.0 / (1.0 - A2 / q)
    Vs = (2.0 / q) * (1.0 + c1 * B) / ((1.0 - c2 * B) ** 2 * (1.0 - c3 * B))
    rho = Vs / (2.0 * E**2)
    ddf = 4.0 + (q + 2.0) / (q * rho - 1.0)
    scale = ddf / (E * (ddf - 2.0))
    Lb = L @ fit.beta
    F_unscaled = float(Lb @ np.linalg.solve(L @ info.phi_adj @ L.T, Lb)) / q
    F = scale * F_unscaled
    out = {"NumDF": q, "DenDF": ddf, "F value": F, "Pr(>F)": float(stats.f.sf(F, q, ddf)), "scale": scale}
    if L.shape[0] == 1:
        se = float(np.sqrt(L[0] @ info.phi_adj @ L[0]))
        out["t value"] = float(Lb[0]) / se
        out["Std. Error"] = se
    return out


def kr_coef_table(fit: LmmResult, info: KRInfo) -> pd.DataFrame:
    """Estimate, Std. Error (from Φ_A), df, t value, Pr(>|t|) with Kenward–Roger's df."""
    rows = []
    p = fit.nfixef
    for j in range(p):
        L = np.zeros(p)
        L[j] = 1.0
        res = kr_test(fit, L, info)
        t, df = res["t value"], res["DenDF"]
        rows.append((fit.beta[j], res["Std. Error"], df, t, float(2.0 * stats.t.sf(abs(t), df))))
    return pd.DataFrame(rows, index=list(fit.xnames), columns=["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"])
