"""The fitted model: estimates and lme4's extractors as pandas objects.

:class:`LmmResult` is a frozen value built by :meth:`lmm.LinearMixedModel.fit`
from plain arrays; it never refers back to the model. The R vocabulary
(``fixef``, ``ranef``, ``varcorr``, ``vcov``, ``loglik``…) lives here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .errors import DataError
from .optimize import BOUNDARY_TOL, OptSummary

if TYPE_CHECKING:
    from .summary import Summary

__all__ = ["TermInfo", "VarCorr", "VarCorrComponent", "LmmResult"]


@dataclass(frozen=True)
class TermInfo:
    """The layout of one random-effects term, without its data.

    Attributes
    ----------
    name : str
        lme4's component name (``"Subject"``, ``"Subject.1"`` for a second term on the same factor).
    group : str
        Grouping factor label.
    cnames : tuple of str
        Column names of the term.
    levels : tuple of str
        Levels of the grouping factor.
    offset : int
        Position of the term's first random effect in ``b``.
    expr : str
        The term's left-hand side as materialised (``"1 + Days"``).
    """

    name: str
    group: str
    cnames: tuple[str, ...]
    levels: tuple[str, ...]
    offset: int
    expr: str = ""

    @property
    def nc(self) -> int:
        """Columns of the term."""
        return len(self.cnames)

    @property
    def nl(self) -> int:
        """Levels of the grouping factor."""
        return len(self.levels)


@dataclass(frozen=True)
class VarCorrComponent:
    """Standard deviations and correlations of one random-effects term."""

    name: str
    group: str
    cnames: tuple[str, ...]
    cov: NDArray[np.float64]

    @property
    def sd(self) -> NDArray[np.float64]:
        """Standard deviations of the term's random effects."""
        return np.sqrt(np.diag(self.cov))

    @property
    def corr(self) -> NDArray[np.float64]:
        """Correlation matrix (NaN where a standard deviation is zero, as in lme4)."""
        sd = self.sd
        with np.errstate(invalid="ignore", divide="ignore"):
            c = self.cov / np.outer(sd, sd)
        np.fill_diagonal(c, 1.0)
        return c


@dataclass(frozen=True)
class VarCorr:
    """Variance components (lme4's ``VarCorr``)."""

    components: tuple[VarCorrComponent, ...]
    residual_sd: float

    def to_frame(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(fit))``: columns grp, var1, var2, vcov, sdcor.

        One row per variance, then per covariance (lower triangle, column by
        column), for each term; the residual row last. ``var2`` is missing on
        variance rows.
        """
        rows: list[tuple[str, Any, Any, float, float]] = []
        for c in self.components:
            sd, corr = c.sd, c.corr
            for i, name in enumerate(c.cnames):
                rows.append((c.name, name, None, float(c.cov[i, i]), float(sd[i])))
            for j in range(c.cov.shape[0]):
                for i in range(j + 1, c.cov.shape[0]):
                    rows.append((c.name, c.cnames[j], c.cnames[i], float(c.cov[i, j]), float(corr[i, j])))
        rows.append(("Residual", None, None, self.residual_sd**2, self.residual_sd))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    def __str__(self) -> str:
        from .summary import format_varcorr

        return format_varcorr(self)


@dataclass(frozen=True)
class LmmResult:
    """A fitted linear mixed model.

    Attributes
    ----------
    theta : ndarray
        Relative covariance parameters at the optimum (lme4's θ).
    beta : ndarray
        Fixed effects.
    sigma : float
        Residual standard deviation.
    b, u : ndarray
        Random effects (conditional modes) and their spherical form, ``b = Λθ u``.
    objective : float
        REML criterion (``reml=True``) or deviance, at the optimum.
    reml : bool
        Whether the REML criterion was minimised.
    opt : OptSummary
        What the optimiser did.
    """

    theta: NDArray[np.float64]
    beta: NDArray[np.float64]
    sigma: float
    b: NDArray[np.float64]
    u: NDArray[np.float64]
    objective: float
    reml: bool
    nobs: int
    xnames: tuple[str, ...]
    vcov_matrix: NDArray[np.float64]
    terms: tuple[TermInfo, ...]
    theta_names: tuple[str, ...]
    lower: NDArray[np.float64]
    opt: OptSummary
    ldL2: float
    ldRX2: float
    pwrss: float
    ldW: float
    fitted_values: NDArray[np.float64] = field(repr=False)
    y: NDArray[np.float64] = field(repr=False)
    weights: NDArray[np.float64] | None = field(default=None, repr=False)
    formula: str | None = None
    data_name: str | None = None
    messages: tuple[str, ...] = ()
    cond_cov: tuple[NDArray[np.float64], ...] | None = field(default=None, repr=False)
    model: Any = field(default=None, repr=False, compare=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # ----------------------------------------------------------- estimates
    @property
    def fixef(self) -> pd.Series:
        """Fixed-effects estimates, indexed by X's column names."""
        return pd.Series(self.beta, index=list(self.xnames), name="Estimate")

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed effects (``σ² (RXᵀRX)⁻¹``)."""
        names = list(self.xnames)
        return pd.DataFrame(self.vcov_matrix, index=names, columns=names)

    @property
    def std_errors(self) -> pd.Series:
        """Standard errors of the fixed effects."""
        return pd.Series(np.sqrt(np.diag(self.vcov_matrix)), index=list(self.xnames), name="Std. Error")

    @property
    def nfixef(self) -> int:
        """Number of fixed effects."""
        return int(self.beta.size)

    @property
    def df(self) -> int:
        """Number of parameters: fixed effects, θ and σ."""
        return self.nfixef + int(self.theta.size) + 1

    @property
    def df_resid(self) -> int:
        """Residual degrees of freedom, ``n − df`` as lme4 prints it."""
        return self.nobs - self.df

    # ------------------------------------------------------------- criteria
    @property
    def loglik(self) -> float:
        """Log-likelihood (the REML log-likelihood of a REML fit, as lme4's ``logLik``)."""
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        """Akaike's information criterion, ``−2 logLik + 2 df``."""
        return -2.0 * self.loglik + 2.0 * self.df

    @property
    def bic(self) -> float:
        """Bayesian information criterion, ``−2 logLik + log(n) df``."""
        return -2.0 * self.loglik + math.log(self.nobs) * self.df

    @property
    def deviance(self) -> float:
        """−2 × the ML log-likelihood at these estimates (lme4's ``deviance(fit, REML = FALSE)``)."""
        n = self.nobs
        return self.ldL2 - self.ldW + n * (1.0 + math.log(2.0 * math.pi * self.pwrss / n))

    @property
    def reml_criterion(self) -> float:
        """The REML criterion at these estimates (lme4's ``REMLcrit``)."""
        nmp = self.nobs - self.nfixef
        return self.ldL2 + self.ldRX2 - self.ldW + nmp * (1.0 + math.log(2.0 * math.pi * self.pwrss / nmp))

    # ------------------------------------------------------ random effects
    def _term_lambdas(self) -> list[NDArray[np.float64]]:
        out = []
        pos = 0
        for t in self.terms:
            nc = t.nc
            k = nc * (nc + 1) // 2
            lam = np.zeros((nc, nc))
            cols, rows = np.triu_indices(nc)
            lam[rows, cols] = self.theta[pos : pos + k]
            out.append(lam)
            pos += k
        return out

    @property
    def varcorr(self) -> VarCorr:
        """Variance components: per term the covariance ``σ² λλᵀ``, and σ."""
        comps = []
        for t, lam in zip(self.terms, self._term_lambdas()):
            comps.append(VarCorrComponent(name=t.name, group=t.group, cnames=t.cnames, cov=self.sigma**2 * lam @ lam.T))
        return VarCorr(components=tuple(comps), residual_sd=self.sigma)

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes per grouping factor: rows are levels, columns every term on the factor."""
        out: dict[str, pd.DataFrame] = {}
        for t in self.terms:
            block = self.b[t.offset : t.offset + t.nc * t.nl].reshape(t.nl, t.nc)
            frame = pd.DataFrame(block, index=pd.Index(list(t.levels), name=t.group), columns=list(t.cnames))
            if t.group in out:
                out[t.group] = out[t.group].join(frame, how="outer")
            else:
                out[t.group] = frame
        return out

    @property
    def ranef_cond_cov(self) -> dict[str, NDArray[np.float64]]:
        """Conditional covariance of each level's random effects, per grouping factor.

        An array of shape ``(levels, k, k)`` per factor, ``k`` the number of columns
        of ``ranef[factor]``: lme4's ``attr(ranef(fit, condVar = TRUE), "postVar")``
        (σ² included). Terms on the same factor (as from
        ``||``) get a block-diagonal matrix: as in lme4, the covariances between
        different terms are not reported.
        """
        if self.cond_cov is None:
            raise AttributeError("conditional covariances are available for formula fits only")
        out: dict[str, NDArray[np.float64]] = {}
        for t, c in zip(self.terms, self.cond_cov):
            if t.group in out:
                prev = out[t.group]
                k0 = prev.shape[1]
                merged = np.zeros((t.nl, k0 + t.nc, k0 + t.nc))
                merged[:, :k0, :k0] = prev
                merged[:, k0:, k0:] = c
                out[t.group] = merged
            else:
                out[t.group] = c.copy()
        return out

    @property
    def ranef_cond_sd(self) -> dict[str, pd.DataFrame]:
        """Conditional standard deviations of the random effects, shaped as :attr:`ranef`."""
        frames = self.ranef
        out = {}
        for group, cov in self.ranef_cond_cov.items():
            sd = np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0))
            frame = frames[group]
            out[group] = pd.DataFrame(sd, index=frame.index, columns=frame.columns)
        return out

    @property
    def ngroups(self) -> dict[str, int]:
        """Number of levels of each grouping factor."""
        out: dict[str, int] = {}
        for t in self.terms:
            out.setdefault(t.group, t.nl)
        return out

    # ------------------------------------------------------------ values
    def _index(self) -> pd.Index:
        model = self.model
        if model is not None and getattr(model, "data", None) is not None and model.design is not None:
            return model.data.index[model.design.rows]
        return pd.RangeIndex(self.nobs)

    def _expand(self, values: NDArray[np.float64], na_action: str, name: str) -> pd.Series:
        if self._chunked:
            raise DataError(f"{name} are not kept for a fit from chunked data: stream them with fit.predict_chunks(data).")
        series = pd.Series(values, index=self._index(), name=name)
        if na_action == "omit":
            return series
        if na_action != "exclude":
            raise DataError(f"na_action must be 'omit' or 'exclude', not {na_action!r}.")
        model = self.model
        if model is None or getattr(model, "data", None) is None:
            return series
        return series.reindex(model.data.index)

    def fitted(self, *, na_action: str = "omit") -> pd.Series:
        """Fitted values ``Xβ + Zb + offset``.

        Parameters
        ----------
        na_action : {"omit", "exclude"}
            ``"omit"``: the rows used (lme4's ``na.omit``); ``"exclude"``: one value
            per row of the data, NaN where a row was dropped (lme4's ``na.exclude``).
        """
        return self._expand(self.fitted_values.copy(), na_action, "fitted")

    def residuals(self, type: str = "response", *, na_action: str = "omit") -> pd.Series:  # noqa: A002 - lme4's name
        """Residuals: ``"response"`` (``y − fitted``) or ``"pearson"`` (times ``sqrt(w)``)."""
        r = self.y - self.fitted_values
        if type == "pearson":
            if self.weights is not None:
                r = r * np.sqrt(self.weights)
        elif type != "response":
            raise DataError(f"type must be 'response' or 'pearson', not {type!r}.")
        return self._expand(r, na_action, "residuals")

    def resid(self, *, scaled: bool = False, na_action: str = "omit") -> pd.Series:
        """Pearson residuals, divided by σ when ``scaled`` (lme4's ``resid(fit, scaled = TRUE)``)."""
        r = self.residuals("pearson", na_action=na_action)
        return r / self.sigma if scaled else r

    def coef(self) -> dict[str, pd.DataFrame]:
        """Per grouping factor, fixed effects plus each level's random effects (lme4's ``coef``)."""
        out = {}
        fixef = self.fixef
        for group, frame in self.ranef.items():
            table = pd.DataFrame({name: np.full(len(frame), value) for name, value in fixef.items()}, index=frame.index)
            for col in frame.columns:
                table[col] = table[col] + frame[col] if col in table.columns else frame[col]
            out[group] = table
        return out

    def predict(
        self, newdata: pd.DataFrame | None = None, *, re_form: str | None = None, allow_new_levels: bool = False
    ) -> pd.Series:
        """Predictions on the response scale (lme4's ``predict``).

        Parameters
        ----------
        newdata : DataFrame, optional
            New data; by default the fitted rows.
        re_form : str, optional
            ``None``: all random effects; ``"~0"``: none (the population level); a
            formula such as ``"~(1 | Subject)"``: the terms on those grouping factors.
        allow_new_levels : bool
            Predict rows of levels unseen at fit time at the population level
            instead of raising.
        """
        from .predict import predict

        return predict(self, newdata, re_form=re_form, allow_new_levels=allow_new_levels)

    def simulate(self, nsim: int = 1, *, seed: Any = None, re_form: str | None = None) -> pd.DataFrame:
        """Simulate responses from the fitted model (lme4's ``simulate``).

        ``re_form=None`` (lme4's default ``NA``) draws new random effects for every
        simulation; a formula conditions on the conditional modes of the terms it
        names. One column per simulation; reproducible with ``seed``.
        """
        from .predict import simulate

        return simulate(self, nsim, seed=seed, re_form=re_form)

    def predict_chunks(self, data: Any, *, re_form: str | None = None, allow_new_levels: bool = False) -> Any:
        """Fitted values and residuals on chunked data, streamed chunk by chunk.

        ``data`` is a list of DataFrames, a function returning an iterator of
        them, a Parquet path or a Dask DataFrame; see :func:`lmm.chunked.predict_chunks`.
        This is how a fit from chunked data, which keeps no rows, gives its
        fitted values and residuals.
        """
        from .chunked import predict_chunks

        return predict_chunks(self, data, re_form=re_form, allow_new_levels=allow_new_levels)

    def refit(self, new_y: Any) -> LmmResult:
        """Fit the same model to a new response (same design, started from this θ)."""
        if self.model is None:
            raise DataError("this fit has no model to refit.")
        return self.model.with_response(new_y).fit(reml=self.reml, start=self.theta)

    def update(self, formula: str | None = None, data: pd.DataFrame | None = None, *, reml: bool | None = None) -> LmmResult:
        """Fit a changed model: another formula, data or REML flag (lme4's ``update``)."""
        if self.model is None:
            raise DataError("this fit has no model to update.")
        use_reml = self.reml if reml is None else reml
        if formula is None and data is None:
            return self.model.fit(reml=use_reml, start=self.theta)
        return self.model.updated(formula=formula, data=data, reml=use_reml).fit()

    # ---------------------------------------------------------- diagnostics
    # ------------------------------------------------------- model matrices
    @property
    def _chunked(self) -> bool:
        """A fit from chunked data: it has observations but keeps no rows."""
        return self.y.size == 0 and self.nobs > 0

    def _model_or_error(self) -> Any:
        if self.model is None:
            raise DataError("this fit has no model: its matrices are not available.")
        if self._chunked:
            raise DataError("a fit from chunked data keeps no rows, so it has no model matrices.")
        return self.model

    @property
    def X(self) -> pd.DataFrame:
        """The fixed-effects model matrix, one column per fixed effect (lme4's ``getME(fit, "X")``)."""
        model = self._model_or_error()
        return pd.DataFrame(np.asarray(model.X), index=self._index(), columns=list(self.xnames))

    @property
    def Zt(self) -> Any:
        """The sparse ``q × n`` random-effects matrix Zᵀ (``getME(fit, "Zt")``), terms in the fit's order."""
        return self._model_or_error().Zt_matrix

    @property
    def Lambdat(self) -> Any:
        """The sparse ``q × q`` relative covariance factor Λθᵀ at the fitted θ (``getME(fit, "Lambdat")``)."""
        if self.model is None:
            raise DataError("this fit has no model: its matrices are not available.")
        return self.model.lambdat(self.theta)

    @property
    def singular(self) -> bool:
        """lme4's ``isSingular``: a diagonal element of θ below 1e-4."""
        diag = np.isfinite(self.lower)
        return bool(np.any(self.theta[diag] < BOUNDARY_TOL))

    def singular_terms(self) -> list[str]:
        """Names of the terms with a zero variance or a ±1 correlation."""
        out = []
        pos = 0
        for t in self.terms:
            k = t.nc * (t.nc + 1) // 2
            diag = np.isfinite(self.lower[pos : pos + k])
            if np.any(self.theta[pos : pos + k][diag] < BOUNDARY_TOL):
                out.append(f"({t.expr} | {t.group})")
            pos += k
        return out

    @property
    def diagnostics(self) -> Any:
        """Gradient, Hessian and a verdict on convergence at the optimum (:class:`lmm.diagnostics.Diagnostics`)."""
        if "diagnostics" not in self._cache:
            from .diagnostics import diagnose

            self._cache["diagnostics"] = diagnose(self)
        return self._cache["diagnostics"]

    # --------------------------------------------------------------- output
    def _satterthwaite(self) -> Any:
        if "satterthwaite" not in self._cache:
            from .satterthwaite import satterthwaite_info

            self._cache["satterthwaite"] = satterthwaite_info(self)
        return self._cache["satterthwaite"]

    def _kenward_roger(self) -> Any:
        if "kenward_roger" not in self._cache:
            from .kenward_roger import kr_info

            self._cache["kenward_roger"] = kr_info(self)
        return self._cache["kenward_roger"]

    def coef_table(self, ddf: str | None = None) -> pd.DataFrame:
        """Fixed effects: Estimate, Std. Error, (df,) t value and p-value.

        Parameters
        ----------
        ddf : {None, "Satterthwaite", "Kenward-Roger"}
            None: Estimate, Std. Error and t value, as lme4 prints them, plus
            ``Pr(>|z|)`` from the normal distribution. "Satterthwaite": lmerTest's
            table with ``df`` and ``Pr(>|t|)``. "Kenward-Roger" (REML fits): the
            same with Kenward–Roger's adjusted standard errors and df, as
            lmerTest with pbkrtest.
        """
        se = np.sqrt(np.diag(self.vcov_matrix))
        if ddf is None:
            from scipy import stats

            t = self.beta / se
            return pd.DataFrame(
                {"Estimate": self.beta, "Std. Error": se, "t value": t, "Pr(>|z|)": 2.0 * stats.norm.sf(np.abs(t))},
                index=list(self.xnames),
            )
        if ddf.lower() == "satterthwaite":
            from .satterthwaite import coef_table

            return coef_table(self, self._satterthwaite())
        if ddf.lower() in {"kenward-roger", "kr"}:
            from .kenward_roger import kr_coef_table

            return kr_coef_table(self, self._kenward_roger())
        raise DataError(f"ddf must be None, 'Satterthwaite' or 'Kenward-Roger', not {ddf!r}.")

    def anova(self, ddf: str = "Satterthwaite") -> pd.DataFrame:
        """Type III F tests of the fixed-effects terms (lmerTest's ``anova``).

        Columns Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F); one row per term
        of the fixed part (the intercept excluded). Terms are tested with
        sum-to-zero coding of the factors, whatever coding the fit used.
        ``ddf`` is "Satterthwaite" or "Kenward-Roger" (REML fits).
        """
        from .lrt import AnovaFrame
        from .satterthwaite import anova_type3

        key = str(ddf).lower()
        if key == "satterthwaite":
            table, method = anova_type3(self, self._satterthwaite()), "Satterthwaite's method"
        elif key in {"kenward-roger", "kr"}:
            table, method = anova_type3(self, self._kenward_roger()), "Kenward-Roger's method"
        else:
            raise DataError(f"ddf must be 'Satterthwaite' or 'Kenward-Roger', not {ddf!r}.")
        out = AnovaFrame(table)
        out.heading = f"Type III Analysis of Variance Table with {method}"
        return out

    def drop1(self) -> pd.DataFrame:
        """Likelihood-ratio tests of dropping each fixed-effect term (see :func:`lmm.drop1`)."""
        from .lrt import drop1

        return drop1(self)

    def confint(self, method: str = "profile", level: float = 0.95, *, nsim: int = 500, seed: Any = None) -> pd.DataFrame:
        """Confidence intervals with lme4's row names and order.

        Rows: ``sd_<term>|<group>``, ``cor_<term1>.<term2>|<group>``, ``sigma``, then
        the fixed effects; columns e.g. ``2.5 %`` and ``97.5 %``.

        Parameters
        ----------
        method : {"profile", "wald", "boot"}
            Likelihood profile (lme4's default; the ML deviance is profiled, also
            for REML fits), Wald (fixed effects only; NaN for variance
            parameters, as lme4), or percentile parametric bootstrap.
        level : float
            Confidence level.
        nsim, seed : int, optional
            Bootstrap size and seed (``method="boot"``).
        """
        from .confint import confint

        return confint(self, method=method, level=level, nsim=nsim, seed=seed)

    def profile(self, *, npoints: int = 9, zmax: float = 2.6) -> pd.DataFrame:
        """The likelihood profile as data: columns parameter, value, zeta."""
        from .profile import profile

        return profile(self, npoints=npoints, zmax=zmax)

    def bootstrap(self, nsim: int = 500, *, seed: Any = None, n_jobs: int = 1, progress: bool | None = None) -> pd.DataFrame:
        """Parametric bootstrap (lme4's ``bootMer``): one row per simulation.

        Columns: the variance parameters (sds, correlations, σ) and the fixed
        effects, named as in :meth:`confint`. Responses are simulated with new
        random effects and refitted from this fit's θ; the simulations are drawn
        from ``seed`` up front, so results do not depend on ``n_jobs``.
        """
        from .confint import bootstrap

        return bootstrap(self, nsim, seed=seed, n_jobs=n_jobs, progress=progress)

    def summary(self, ddf: str | None = None, *, correlation: bool | None = None) -> Summary:
        """lme4's ``summary()`` as a :class:`lmm.summary.Summary`; print it for lme4's text.

        Parameters
        ----------
        ddf : {None, "Satterthwaite", "Kenward-Roger"}
            None: lme4's summary. "Satterthwaite" (or "Kenward-Roger", REML
            fits): lmerTest's, whose fixed-effects table adds df, Pr(>|t|) and
            significance stars.
        correlation : bool, optional
            Show the correlation of the fixed effects; by default only when
            there are at most 12 fixed effects, as lme4.

        Returns
        -------
        Summary
        """
        from .summary import Summary

        return Summary.from_result(self, ddf=ddf, correlation=correlation)

    def __str__(self) -> str:
        return str(self.summary())

    def __repr__(self) -> str:
        crit = "REML criterion" if self.reml else "deviance"
        form = f" {self.formula!r}" if self.formula else ""
        return f"<LmmResult{form}: n={self.nobs}, {crit}={self.objective:.4f}, sigma={self.sigma:.4g}>"

    def _repr_html_(self) -> str:
        """The summary's HTML tables (shown by Jupyter)."""
        return self.summary()._repr_html_()
