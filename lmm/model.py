"""The linear mixed model: its data and θ layout, the objective, and ``fit``.

Two doors lead in. :meth:`LinearMixedModel.from_formula` parses an lme4
formula and builds the blocked system; the constructor takes the matrices
directly (X, y, Zᵀ and a function θ ↦ Λθᵀ with a start point and lower bounds)
for covariance structures no formula names. ``fit`` never changes the model: it
returns a new :class:`lmm.results.LmmResult`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from .blocked import MOMENT_STEP, BlockedSystem, Solution
from .chunked import chunked_design, is_chunked_source
from .design import Design, build_design
from .deviance import make_objective, profiled_deviance
from .errors import ConvergenceWarning, DataError, SingularFitWarning, warn
from .formula import parse_formula
from .general import GeneralSystem
from .gradient import gradient_function
from .optimize import BOUNDARY_TOL, optimize_theta
from .results import LmmResult, TermInfo
from .theta import ThetaMap, tril_colmajor

__all__ = ["LinearMixedModel", "lmer"]


def _as_vector(value: Any, n: int, what: str) -> NDArray[np.float64] | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape[0] != n:
        raise DataError(f"{what} has length {arr.shape[0]}, expected {n}.")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{what} has non-finite values.")
    return arr


class LinearMixedModel:
    """A linear mixed-effects model, unfitted.

    The matrix door: give the matrices directly.

    Parameters
    ----------
    X : array-like, shape (n, p)
        Fixed-effects model matrix of full column rank.
    y : array-like, shape (n,)
        Response.
    Zt : sparse matrix or array-like, shape (q, n)
        Transposed random-effects model matrix.
    lambdat : callable
        θ ↦ Λθᵀ, a ``q × q`` sparse or dense matrix (the transposed relative covariance factor).
    theta0 : array-like
        Start point of the optimisation.
    lower : array-like
        Lower bounds of θ (``-inf`` for unbounded elements); the diagonal
        elements of Λθ usually have bound 0.
    weights, offset : array-like, optional
        Prior weights and an offset, one per observation.
    reml : bool
        Fit by REML (default) or maximum likelihood.
    xnames : sequence of str, optional
        Names of the fixed effects.

    Examples
    --------
    >>> model = LinearMixedModel.from_formula("Reaction ~ Days + (Days | Subject)", data)  # doctest: +SKIP
    >>> fit = model.fit()  # doctest: +SKIP
    """

    def __init__(
        self,
        X: ArrayLike,
        y: ArrayLike,
        Zt: Any,
        lambdat: Callable[[NDArray[np.float64]], Any],
        theta0: ArrayLike,
        lower: ArrayLike,
        *,
        weights: ArrayLike | None = None,
        offset: ArrayLike | None = None,
        reml: bool = True,
        xnames: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        Xa = np.asarray(X, dtype=np.float64)
        if Xa.ndim == 1:
            Xa = Xa[:, None]
        ya = np.asarray(y, dtype=np.float64).reshape(-1)
        n = ya.shape[0]
        if Xa.shape[0] != n:
            raise DataError(f"X has {Xa.shape[0]} rows but y has {n} values.")
        if Zt.shape[1] != n:
            raise DataError(f"Zt has {Zt.shape[1]} columns but y has {n} values (Zt is q x n).")
        theta0a = np.asarray(theta0, dtype=np.float64).reshape(-1)
        lowera = np.asarray(lower, dtype=np.float64).reshape(-1)
        if theta0a.shape != lowera.shape:
            raise DataError(f"theta0 has {theta0a.size} elements but lower has {lowera.size}.")
        if not callable(lambdat):
            raise DataError("lambdat must be a function of theta returning the q x q matrix Lambda^T.")
        lt0 = lambdat(theta0a)
        if tuple(lt0.shape) != (Zt.shape[0], Zt.shape[0]):
            raise DataError(f"lambdat(theta0) has shape {tuple(lt0.shape)}, expected {(Zt.shape[0], Zt.shape[0])}.")
        self.weights = _as_vector(weights, n, "weights")
        self.offset = _as_vector(offset, n, "offset")
        self.reml = bool(reml)
        self.X, self.y = Xa, ya
        self.Zt = Zt
        self.xnames = tuple(xnames) if xnames is not None else tuple(f"x{j}" for j in range(Xa.shape[1]))
        self.theta0, self.lower = theta0a, lowera
        self.theta_names = tuple(f"theta{j}" for j in range(theta0a.size))
        self.design: Design | None = None
        self.data: pd.DataFrame | None = None
        self._n: int | None = None
        self._ldW: float | None = None
        self._args: dict[str, Any] = {}
        self.formula: str | None = None
        self.data_name: str | None = None
        self._terms: tuple[TermInfo, ...] = ()
        self._system: BlockedSystem | GeneralSystem = GeneralSystem(Xa, self._y_minus_offset(), Zt, lambdat, self.weights)
        self._lambdat_fn = lambdat

    def _y_minus_offset(self) -> NDArray[np.float64]:
        return self.y - self.offset if self.offset is not None else self.y

    # -------------------------------------------------------------- formula
    @classmethod
    def from_formula(
        cls,
        formula: str,
        data: pd.DataFrame,
        *,
        reml: bool = True,
        weights: str | ArrayLike | None = None,
        offset: str | ArrayLike | None = None,
    ) -> LinearMixedModel:
        """Build the model of an lme4 formula on a DataFrame.

        Parameters
        ----------
        formula : str
            For instance ``"Reaction ~ Days + (Days | Subject)"``.
        data : pandas.DataFrame, list of DataFrames, callable, Parquet path or Dask DataFrame
            The data; never modified. Anything but one DataFrame is read in
            chunks, twice, and never held in memory at once (:mod:`lmm.chunked`).
        reml : bool
            REML (default) or maximum likelihood.
        weights, offset : str or array-like, optional
            A column name or one value per row of ``data`` (column names only
            for chunked data).
        """
        parsed = parse_formula(formula)
        cp = None
        if is_chunked_source(data):
            design, cp = chunked_design(parsed, data, weights=weights, offset=offset)
        else:
            design = build_design(parsed, data, weights=weights, offset=offset)
        self = cls.__new__(cls)
        self.data = data if cp is None else None
        self._n = cp.n if cp is not None else None
        self._ldW = cp.ldw if cp is not None else None
        self._args = {"weights": weights, "offset": offset}
        self.design = design
        self.formula = parsed.formula
        name = data.attrs.get("name") if isinstance(data, pd.DataFrame) else None
        self.data_name = name if isinstance(name, str) else None
        self.reml = bool(reml)
        self.X, self.y = design.X, design.y
        self.weights, self.offset = design.weights, design.offset
        self.xnames = design.xnames
        rts = design.reterms
        tm = ThetaMap.from_terms([t.nc for t in rts], [t.nl for t in rts], [t.group for t in rts], [t.cnames for t in rts])
        self._theta_map = tm
        self.theta0, self.lower = tm.theta0, tm.lower
        self.theta_names = tm.names
        self._terms = _term_infos(rts)
        if cp is None:
            self._system = BlockedSystem.from_data(rts, design.X, self._y_minus_offset(), design.weights, tm)
        else:
            self._system = BlockedSystem(rts, cp, tm)
        self.Zt = None
        self._lambdat_fn = None
        return self

    def with_response(self, y: ArrayLike) -> LinearMixedModel:
        """The same model with another response (one value per observation used)."""
        ya = np.asarray(y, dtype=np.float64).reshape(-1)
        if ya.shape[0] != self.nobs:
            raise DataError(f"the new response has {ya.shape[0]} values; the model has {self.nobs} observations.")
        if not np.all(np.isfinite(ya)):
            raise DataError("the new response has non-finite values.")
        new = copy.copy(self)
        new.y = ya
        if self.design is not None:
            new.design = dataclasses.replace(self.design, y=ya)
            new._system = BlockedSystem.from_data(self.design.reterms, self.X, new._y_minus_offset(), self.weights, self._theta_map)
        else:
            new._system = GeneralSystem(self.X, new._y_minus_offset(), self.Zt, self._lambdat_fn, self.weights)
        return new

    def updated(self, *, formula: str | None = None, data: pd.DataFrame | None = None, reml: bool | None = None) -> LinearMixedModel:
        """A new model from this one's formula and data with some of them replaced."""
        if self.formula is None or self.data is None:
            raise DataError("only formula models can be updated.")
        return LinearMixedModel.from_formula(
            formula if formula is not None else self.formula,
            data if data is not None else self.data,
            reml=self.reml if reml is None else reml,
            **self._args,
        )

    # -------------------------------------------------------------- pieces
    @property
    def nobs(self) -> int:
        """Number of observations."""
        return self._n if self._n is not None else int(self.y.shape[0])

    @property
    def ldW(self) -> float:
        """Sum of the logs of the prior weights."""
        if self._ldW is not None:
            return self._ldW
        return float(np.sum(np.log(self.weights))) if self.weights is not None else 0.0

    @property
    def Zt_matrix(self) -> sp.csr_matrix:
        """The sparse ``q × n`` matrix Zᵀ."""
        if self.design is None:
            return sp.csr_matrix(self.Zt)
        blocks = []
        for t in self.design.reterms:
            cols = t.refs[:, None] * t.nc + np.arange(t.nc)[None, :]
            rows = np.repeat(np.arange(t.z.shape[0]), t.nc)
            blocks.append(sp.csr_matrix((t.z.ravel(), (rows, cols.ravel())), shape=(t.z.shape[0], t.q)))
        return sp.hstack(blocks, format="csr").T.tocsr()

    def lambdat(self, theta: ArrayLike | None = None) -> sp.csc_matrix:
        """The sparse ``q × q`` matrix Λθᵀ (at ``theta0`` by default)."""
        th = self.theta0 if theta is None else np.asarray(theta, dtype=np.float64)
        if self.design is None:
            return sp.csc_matrix(self._lambdat_fn(th))
        return self._theta_map.lambdat(th)

    def objective(self, theta: ArrayLike, *, reml: bool | None = None) -> float:
        """The profiled REML criterion or deviance at θ (``inf`` where undefined)."""
        use_reml = self.reml if reml is None else bool(reml)
        return make_objective(self._system, reml=use_reml, ldW=self.ldW)(np.asarray(theta, dtype=np.float64))

    # ------------------------------------------------------------------ fit
    def fit(self, *, reml: bool | None = None, start: ArrayLike | None = None, maxeval: int = 10_000) -> LmmResult:
        """Minimise the profiled objective over θ and return the fit.

        Parameters
        ----------
        reml : bool, optional
            Override the model's REML flag for this fit.
        start : array-like, optional
            Start point (default: the model's ``theta0``; for large models whose
            terms are all scalar, a moment estimate, see
            :meth:`lmm.blocked.BlockedSystem.start_point`).
        maxeval : int
            Evaluation budget of each optimiser run.

        Returns
        -------
        LmmResult
        """
        use_reml = self.reml if reml is None else bool(reml)
        if use_reml and self.nobs <= self.X.shape[1]:
            raise DataError(f"REML needs more observations ({self.nobs}) than fixed effects ({self.X.shape[1]}).")
        objective = make_objective(self._system, reml=use_reml, ldW=self.ldW)
        system = self._system
        theta0 = self.theta0 if start is None else np.asarray(start, dtype=np.float64)
        step_scale = None
        if start is None and isinstance(system, BlockedSystem):
            # large all-scalar models start from a moment estimate (see BlockedSystem.start_point),
            # with L-BFGS-B's first step shortened to 0.1 so that it stays near that start
            moment = system.start_point()
            if moment is not None and moment.shape == self.theta0.shape:
                theta0, step_scale = moment, np.full(moment.shape, MOMENT_STEP)
        gradient = gradient_function(system, reml=use_reml, ldW=self.ldW)

        opt = optimize_theta(objective, theta0, self.lower, gradient=gradient, maxeval=maxeval, step_scale=step_scale if gradient else None)
        theta = opt.final
        if self.design is not None:
            theta = self._theta_map.rectify(theta)
        sol = self._system.solve(theta)
        return self._result(theta, sol, opt, use_reml)

    def _result(self, theta: NDArray[np.float64], sol: Solution, opt: Any, reml: bool) -> LmmResult:
        n, p = self.nobs, self.X.shape[1]
        sigma = math.sqrt(sol.pwrss / (n - p if reml else n))
        rinv = np.linalg.inv(sol.rx_lower) if p else np.zeros((0, 0))
        vcov = sigma**2 * rinv.T @ rinv
        fitted = self.X @ sol.beta + self._z_times(sol.b)
        if self.offset is not None:
            fitted = fitted + self.offset
        objective = profiled_deviance(sol.ldL2, sol.ldRX2, sol.pwrss, n, p, reml=reml, ldW=self.ldW)
        res = LmmResult(
            theta=theta,
            beta=sol.beta,
            sigma=sigma,
            b=sol.b,
            u=sol.u,
            objective=objective,
            reml=reml,
            nobs=n,
            xnames=tuple(self.xnames),
            vcov_matrix=vcov,
            terms=self._terms,
            theta_names=tuple(self.theta_names),
            lower=self.lower,
            opt=opt,
            ldL2=sol.ldL2,
            ldRX2=sol.ldRX2,
            pwrss=sol.pwrss,
            ldW=self.ldW,
            fitted_values=fitted,
            y=self.y,
            weights=self.weights,
            formula=self.formula,
            data_name=self.data_name,
            messages=self._messages(theta, opt),
            cond_cov=self._cond_cov(theta, sigma),
            model=self,
        )
        for msg in res.messages:
            warn(msg, SingularFitWarning if msg.startswith("boundary") else ConvergenceWarning)
        return res

    def _cond_cov(self, theta: NDArray[np.float64], sigma: float) -> tuple[NDArray[np.float64], ...] | None:
        if not isinstance(self._system, BlockedSystem):
            return None
        return tuple(sigma**2 * c for c in self._system.conditional_covariances(theta))

    def _messages(self, theta: NDArray[np.float64], opt: Any) -> tuple[str, ...]:
        out = []
        if not opt.converged:
            out.append(
                f"the optimiser did not converge ({opt.message}); the estimates may be inaccurate. "
                "Check fit.opt, or refit with another start (fit(start=...))."
            )
        diag = np.isfinite(self.lower)
        if not np.any(theta[diag] < BOUNDARY_TOL):
            return tuple(out)
        if not self._terms:
            names = [self.theta_names[i] for i in np.flatnonzero(diag & (theta < BOUNDARY_TOL))]
            out.append(f"boundary (singular) fit: {', '.join(names)} at the lower bound.")
            return tuple(out)
        pos = 0
        for t in self._terms:
            k = t.nc * (t.nc + 1) // 2
            rows, cols = tril_colmajor(t.nc)
            zero = [t.cnames[r] for r, c, v in zip(rows, cols, theta[pos : pos + k]) if r == c and v < BOUNDARY_TOL]
            pos += k
            if not zero:
                continue
            term = f"({t.expr} | {t.group})"
            if t.nc == 1:
                advice = f"its variance is estimated as zero: the model without {term} fits as well."
            else:
                advice = (
                    f"its covariance matrix is singular ({', '.join(zero)} explained by the other columns: "
                    "a zero variance or a correlation of +/-1). Try uncorrelated terms (||) or drop "
                    f"{', '.join(zero)} from the term."
                )
            out.append(f"boundary (singular) fit on the term {term}: {advice}")
        return tuple(out)

    def _z_times(self, b: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.design is None:
            zt = self.Zt
            return np.asarray(zt.T @ b).reshape(-1)
        out = np.zeros(self.y.shape[0])  # no rows are kept for chunked data
        pos = 0
        for t in self.design.reterms:
            bt = b[pos : pos + t.q].reshape(t.nl, t.nc)
            out += np.einsum("ij,ij->i", t.z, bt[t.refs])
            pos += t.q
        return out

    def __repr__(self) -> str:
        door = repr(self.formula) if self.formula else "matrix door"
        return f"<LinearMixedModel {door}: n={self.nobs}, p={self.X.shape[1]}, theta has {self.theta0.size} elements>"


def _term_infos(reterms: Any) -> tuple[TermInfo, ...]:
    seen: dict[str, int] = {}
    out = []
    pos = 0
    for t in reterms:
        k = seen.get(t.group, 0)
        seen[t.group] = k + 1
        name = t.group if k == 0 else f"{t.group}.{k}"
        out.append(TermInfo(name=name, group=t.group, cnames=t.cnames, levels=t.levels, offset=pos, expr=t.expr))
        pos += t.q
    return tuple(out)


def lmer(
    formula: str,
    data: pd.DataFrame,
    *,
    reml: bool = True,
    weights: str | ArrayLike | None = None,
    offset: str | ArrayLike | None = None,
    start: ArrayLike | None = None,
) -> LmmResult:
    """Fit a linear mixed model from an lme4 formula (REML by default).

    ``lmer(f, data)`` is ``LinearMixedModel.from_formula(f, data).fit()``.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : pandas.DataFrame
        The data; never modified.
    reml : bool
        REML (default) or maximum likelihood (``reml=False``).
    weights, offset : str or array-like, optional
        Prior weights and offset: a column name or one value per row.
    start : array-like, optional
        Start point for θ.

    Returns
    -------
    LmmResult
    """
    model = LinearMixedModel.from_formula(formula, data, reml=reml, weights=weights, offset=offset)
    return model.fit(start=start)
