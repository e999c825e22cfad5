"""Satterthwaite's degrees of freedom for t and F tests of the fixed effects.

The method of lmerTest (Kuznetsova, Brockhoff & Christensen 2017). The
variance parameters are ``φ = (θ, σ)``; the criterion the fit minimised (REML or
ML, with β profiled out but σ free) is differentiated twice at the optimum to
give their asymptotic covariance ``2 H⁻¹``, and ``Var(β̂) = σ² (RXᵀRX)⁻¹`` is
differentiated once in φ. For a contrast ``L`` the degrees of freedom are
``2 (L V Lᵀ)² / (gᵀ (2 H⁻¹) g)`` with ``g_i = L (∂V/∂φ_i) Lᵀ``.

Both derivatives are taken numerically, by central differences with Richardson
extrapolation over four halvings of the step (the scheme of R's numDeriv that
lmerTest uses), of functions that are computed exactly from the blocked
factorisation; each costs a few dozen evaluations of the objective, whatever
the size of the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from .errors import DataError
from .numderiv import hessian, jacobian

if TYPE_CHECKING:
    from .results import LmmResult

__all__ = ["SatterthwaiteInfo", "satterthwaite_info", "contrast_test", "coef_table", "anova_type3"]


@dataclass(frozen=True)
class SatterthwaiteInfo:
    """What Satterthwaite's approximation needs, computed once per fit.

    Attributes
    ----------
    varpar : ndarray
        ``(θ, σ)`` at the optimum.
    vcov_varpar : ndarray
        Asymptotic covariance of ``varpar``: twice the inverse Hessian of the criterion.
    jac : list of ndarray
        ``∂ Var(β̂) / ∂ varpar_i``, each ``p × p``.
    vcov_beta : ndarray
        ``Var(β̂)``.
    """

    varpar: NDArray[np.float64]
    vcov_varpar: NDArray[np.float64]
    jac: tuple[NDArray[np.float64], ...]
    vcov_beta: NDArray[np.float64]


def satterthwaite_info(fit: LmmResult) -> SatterthwaiteInfo:
    """Hessian and Jacobian at the fit's optimum (see the module docs)."""
    model = fit.model
    if model is None:
        raise DataError("Satterthwaite's method needs the fitted model.")
    system = model._system
    n, p, reml, ldW = fit.nobs, fit.nfixef, fit.reml, fit.ldW
    nth = fit.theta.size

    def criterion(vp: NDArray[np.float64]) -> float:
        pieces = system.evaluate(vp[:nth])
        if pieces is None:
            return np.inf
        ldL2, ldRX2, pwrss = pieces
        s2 = vp[nth] ** 2
        m = n - p if reml else n
        return ldL2 + (ldRX2 if reml else 0.0) + m * np.log(2.0 * np.pi * s2) + pwrss / s2 - ldW

    def vcov_beta(vp: NDArray[np.float64]) -> NDArray[np.float64]:
        sol = system.solve(vp[:nth])
        rinv = np.linalg.inv(sol.rx_lower)
        return vp[nth] ** 2 * (rinv.T @ rinv)

    varpar = np.concatenate([fit.theta, [fit.sigma]])
    H = hessian(criterion, varpar)
    try:
        vcov_varpar = 2.0 * np.linalg.inv(H)
    except np.linalg.LinAlgError:
        vcov_varpar = 2.0 * np.linalg.pinv(H)
    jac = tuple(jacobian(vcov_beta, varpar))
    return SatterthwaiteInfo(varpar=varpar, vcov_varpar=vcov_varpar, jac=jac, vcov_beta=fit.vcov_matrix)


def _df_1d(info: SatterthwaiteInfo, L: NDArray[np.float64]) -> tuple[float, float]:
    var = float(L @ info.vcov_beta @ L)
    grad = np.array([float(L @ J @ L) for J in info.jac])
    denom = float(grad @ info.vcov_varpar @ grad)
    return var, (2.0 * var**2 / denom if denom > 0 else np.inf)


def contrast_test(fit: LmmResult, L: NDArray[np.float64], info: SatterthwaiteInfo | None = None) -> dict[str, float]:
    """F test of ``L β = 0`` with Satterthwaite's denominator degrees of freedom.

    Returns NumDF, DenDF, F value, Pr(>F) and, for one-row L, the t value.
    """
    info = info if info is not None else fit._satterthwaite()
    L = np.atleast_2d(np.asarray(L, dtype=float))
    q = L.shape[0]
    beta = fit.beta
    if q == 1:
        var, df = _df_1d(info, L[0])
        t = float(L[0] @ beta) / np.sqrt(var)
        return {"NumDF": 1, "DenDF": df, "F value": t * t, "Pr(>F)": float(stats.f.sf(t * t, 1, df)), "t value": t}
    VL = L @ info.vcov_beta @ L.T
    d, P = np.linalg.eigh(VL)
    order = np.argsort(d)[::-1]
    d, P = d[order], P[:, order]
    keep = d > 1e-8 * d[0]
    d, P = d[keep], P[:, keep]
    q = int(d.size)
    PL = P.T @ L
    t2 = (PL @ beta) ** 2 / d
    F = float(np.sum(t2) / q)
    nu = np.array([_df_1d(info, row)[1] for row in PL])
    if np.all(nu <= 2.0):
        dendf = 2.0
    else:
        E = float(np.sum(nu[nu > 2.0] / (nu[nu > 2.0] - 2.0)))
        dendf = 2.0 * E / (E - q) if E > q else 2.0
    return {"NumDF": q, "DenDF": dendf, "F value": F, "Pr(>F)": float(stats.f.sf(F, q, dendf))}


def coef_table(fit: LmmResult, info: SatterthwaiteInfo | None = None) -> pd.DataFrame:
    """Estimate, Std. Error, df, t value, Pr(>|t|) with Satterthwaite's df (lmerTest's layout)."""
    info = info if info is not None else fit._satterthwaite()
    rows = []
    for j in range(fit.nfixef):
        L = np.zeros(fit.nfixef)
        L[j] = 1.0
        var, df = _df_1d(info, L)
        se = np.sqrt(var)
        t = fit.beta[j] / se
        rows.append((fit.beta[j], se, df, t, float(2.0 * stats.t.sf(abs(t), df))))
    return pd.DataFrame(rows, index=list(fit.xnames), columns=["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"])


def type3_contrasts(fit: LmmResult) -> dict[str, NDArray[np.float64]]:
    """Type III contrast matrices per fixed-effects term, independent of the factor coding.

    Each factor is recoded with sum-to-zero contrasts; the hypothesis of a term
    is that its sum-coded coefficients vanish, mapped back to the fitted
    coefficients through ``β_sum = T β`` (``T`` from the two model matrices,
    which span the same space). For cell-complete designs this is SAS's and
    lmerTest's type III.
    """
    import re

    import formulaic

    model = fit.model
    design = model.design
    data = model.data.iloc[design.rows].reset_index(drop=True)
    fixed = design.x_spec.formula
    text = str(fixed)
    for col in design.x_levels:
        text = re.sub(rf"(?<![\w.`]){re.escape(col)}(?![\w.`(])", f"C({col}, contr.sum)", text)
    mm = formulaic.model_matrix(text, data)
    Xs = np.asarray(mm, dtype=float)
    T, *_ = np.linalg.lstsq(Xs, design.X, rcond=None)
    out: dict[str, NDArray[np.float64]] = {}
    spec_terms = list(design.x_spec.term_indices.items())
    sum_terms = list(mm.model_spec.term_indices.items())
    for (term, _), (_, cols) in zip(spec_terms, sum_terms):
        name = str(term)
        if name == "1":
            continue
        out[_r_term_name(name)] = T[cols, :]
    return out


def _r_term_name(name: str) -> str:
    return name.replace("`", "")


def anova_type3(fit: LmmResult, info: Any) -> pd.DataFrame:
    """lmerTest's type III table: Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F) per term.

    ``info`` is a :class:`SatterthwaiteInfo` or a :class:`lmm.kenward_roger.KRInfo`;
    the sums of squares are ``F σ²`` times NumDF, as lmerTest reports them.
    """
    from .kenward_roger import KRInfo, kr_test

    rows = {}
    for term, L in type3_contrasts(fit).items():
        if isinstance(info, KRInfo):
            res = kr_test(fit, L, info)
            mean_sq = res["F value"] / res["scale"] * fit.sigma**2
        else:
            res = contrast_test(fit, L, info)
            mean_sq = res["F value"] * fit.sigma**2
        rows[term] = {
            "Sum Sq": mean_sq * res["NumDF"],
            "Mean Sq": mean_sq,
            "NumDF": res["NumDF"],
            "DenDF": res["DenDF"],
            "F value": res["F value"],
            "Pr(>F)": res["Pr(>F)"],
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"])
