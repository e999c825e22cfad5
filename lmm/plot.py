"""Plots of a fit: lme4's lattice pictures drawn with matplotlib.

matplotlib is the optional extra ``lmm[plot]``. Neither ``import lmm`` nor
``import lmm.plot`` imports it; each function imports it when called and
raises :class:`PlotDependencyError` (an :class:`lmm.LmmError` and an
:class:`ImportError`) if it is missing.

Every function draws into the Axes (``ax=``) or Figure (``fig=``) it is given,
or into a new pyplot figure, and returns what it drew into: an Axes for a
single panel, the Figure for several panels.

=======================  ===================================================
``caterpillar``          lme4's ``dotplot(ranef(fit, condVar = TRUE))``
``qq_ranef``             lme4's ``qqmath(ranef(fit, condVar = TRUE))``
``residuals_vs_fitted``  lme4's ``plot(fit)``
``qq_residuals``         ``qqnorm(resid(fit, scaled = TRUE))``
``profile_zeta``         lme4's ``xyplot(profile(fit))``
``profile_pairs``        lme4's ``splom(profile(fit))``, contours approximate
``sparsity``             ``image(Zt)``, ``image(Lambdat)``: a spy plot
``subject_lines``        data, population line and per-level line per panel
=======================  ===================================================

The plots compute nothing a fit does not already hold, except
:func:`profile_traces`, which records the whole parameter vector along each
profile (:meth:`lmm.LmmResult.profile` keeps only zeta) for
:func:`profile_pairs`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from .errors import DataError, LmmError, LmmWarning

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .results import LmmResult

__all__ = [
    "PlotDependencyError",
    "caterpillar",
    "qq_ranef",
    "residuals_vs_fitted",
    "qq_residuals",
    "profile_zeta",
    "profile_traces",
    "profile_pairs",
    "sparsity",
    "subject_lines",
]

_LABEL_LIMIT = 60  # more levels than this: no tick labels by default


class PlotDependencyError(LmmError, ImportError):
    """matplotlib, needed by :mod:`lmm.plot`, is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised with a patched import
        raise PlotDependencyError("lmm.plot needs matplotlib: pip install lmm[plot]") from exc
    return plt


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise DataError(f"level must be between 0 and 1, not {level!r}.")
    return float(stats.norm.ppf(0.5 + level / 2.0))


def _pick_group(fit: LmmResult, group: str | None) -> str:
    groups = list(fit.ranef)
    if group is None:
        if len(groups) == 1:
            return groups[0]
        raise DataError(f"the fit has grouping factors {', '.join(map(repr, groups))}: choose one with group=.")
    if group not in groups:
        raise DataError(f"no grouping factor {group!r} in the fit; it has {', '.join(map(repr, groups))}.")
    return group


def _panels(n: int, fig: Figure | None, ncols: int, panel: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` panels (an existing one is cleared and reused)."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    if fig is None:
        fig = _pyplot().figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    else:
        fig.clear()
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = list(grid.ravel())
    for extra in axes[n:]:
        extra.remove()
    return fig, axes[:n]


def _new_ax(ax: Axes | None, size: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=size, layout="constrained")
    return ax


def _ppoints(n: int) -> NDArray[np.float64]:
    """R's ``ppoints(n)``: (i − a)/(n + 1 − 2a), a = 3/8 for n ≤ 10 and 1/2 above."""
    a = 0.375 if n <= 10 else 0.5
    return (np.arange(1, n + 1) - a) / (n + 1 - 2 * a)


# ----------------------------------------------------------- random effects
def caterpillar(
    fit: LmmResult,
    group: str | None = None,
    level: float = 0.95,
    ax: Axes | Sequence[Axes] | None = None,
    sort: bool = True,
    *,
    top: int | None = None,
    labels: bool | None = None,
) -> Figure:
    """Conditional modes with intervals, one row per level (lme4's ``dotplot(ranef(fit, condVar = TRUE))``).

    Each panel is one column of ``fit.ranef[group]`` (``(Intercept)``,
    ``Days``…): a dot at each level's conditional mode and a bar of
    ± z·(conditional sd), z the normal quantile of ``level``. All panels share
    the row order.

    Parameters
    ----------
    fit : LmmResult
        A fit from a formula (conditional variances are needed).
    group : str, optional
        Grouping factor, a key of ``fit.ranef``; may be omitted when there is one.
    level : float
        Coverage of the intervals (0.95: ± 1.96 sd).
    ax : Axes or sequence of Axes, optional
        One Axes per column of the random effects; by default a new figure.
    sort : bool
        Order the rows by the first column's mode (as lme4), else by level order.
    top : int, optional
        Show only the ``top`` levels with the largest absolute first-column
        mode (for factors with hundreds of levels).
    labels : bool, optional
        Label the rows with the level names; by default only when at most 60
        rows are shown.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the panels; the dots are the Line2D labelled
        ``"modes"`` and the bars the LineCollection labelled ``"intervals"``.

    Raises
    ------
    DataError
        If ``group`` is not a grouping factor of the fit, or ``level`` is not in (0, 1).
    """
    group = _pick_group(fit, group)
    z = _z(level)
    modes = fit.ranef[group]
    try:
        sds = fit.ranef_cond_sd[group]
    except AttributeError as exc:
        raise DataError(f"caterpillar needs conditional variances: {exc}") from exc
    order = np.arange(len(modes))
    first = modes.iloc[:, 0].to_numpy()
    if top is not None:
        if top < 1:
            raise DataError(f"top must be a positive number of levels, not {top!r}.")
        order = np.sort(np.argsort(-np.abs(first), kind="stable")[:top])
    if sort:
        order = order[np.argsort(first[order], kind="stable")]
    show_labels = len(order) <= _LABEL_LIMIT if labels is None else labels
    ncol = modes.shape[1]
    if ax is None:
        height = min(0.5 + 0.16 * len(order), 9.0) if show_labels else 3.5
        fig = _pyplot().figure(figsize=(1.0 + 2.6 * ncol, height), layout="constrained")
        axes = list(np.atleast_1d(fig.subplots(1, ncol, sharey=True, squeeze=False).ravel()))
    else:
        axes = [ax] if not isinstance(ax, Sequence | np.ndarray) else list(np.ravel(ax))
        if len(axes) != ncol:
            raise DataError(f"ranef[{group!r}] has {ncol} columns; got {len(axes)} Axes.")
        fig = axes[0].figure
    pos = np.arange(len(order))
    many = len(order) > _LABEL_LIMIT
    for k, a in enumerate(axes):
        m = modes.iloc[order, k].to_numpy()
        s = sds.iloc[order, k].to_numpy()
        a.axvline(0.0, color="0.6", lw=0.8, zorder=0)
        a.hlines(pos, m - z * s, m + z * s, color="C0", lw=0.6 if many else 1.2, alpha=0.35 if many else 1.0, label="intervals")
        a.plot(m, pos, "o", color="k" if many else "C3", ms=1.0 if many else 4, mew=0 if many else 1, label="modes")
        a.set_title(str(modes.columns[k]), fontsize="medium")
        a.set_ylim(-0.5 if not many else -1, len(order) - 0.5 if not many else len(order))
        if show_labels:
            a.set_yticks(pos, [str(v) for v in modes.index[order]], fontsize="small" if len(order) > 25 else "medium")
        else:
            a.set_yticks([])
    axes[0].set_ylabel(group if top is None else f"{group} ({len(order)} most extreme of {len(modes)})")
    return fig


def qq_ranef(fit: LmmResult, group: str | None = None, fig: Figure | None = None, *, level: float = 0.95) -> Figure:
    """Normal Q-Q plot of the conditional modes, one panel per column (lme4's ``qqmath(ranef(...))``).

    The sorted modes (y) against standard normal quantiles (x, R's
    ``ppoints``), each with a vertical bar of ± z·(conditional sd).

    Parameters
    ----------
    fit : LmmResult
        A fit from a formula.
    group : str, optional
        Grouping factor; may be omitted when there is one.
    fig : Figure, optional
        Figure to draw into (it is cleared); by default a new one.
    level : float
        Coverage of the bars.

    Returns
    -------
    matplotlib.figure.Figure
    """
    group = _pick_group(fit, group)
    z = _z(level)
    modes = fit.ranef[group]
    sds = fit.ranef_cond_sd[group]
    fig, axes = _panels(modes.shape[1], fig, 3, (3.2, 3.0))
    q = stats.norm.ppf(_ppoints(len(modes)))
    for k, a in enumerate(axes):
        order = np.argsort(modes.iloc[:, k].to_numpy(), kind="stable")
        m = modes.iloc[order, k].to_numpy()
        s = sds.iloc[order, k].to_numpy()
        a.vlines(q, m - z * s, m + z * s, color="C0", lw=0.8, label="intervals")
        a.plot(q, m, "o", color="C3", ms=3, label="modes")
        a.axhline(0.0, color="0.6", lw=0.8, zorder=0)
        a.set_title(f"{group}: {modes.columns[k]}", fontsize="medium")
        a.set_xlabel("standard normal quantiles")
    axes[0].set_ylabel("conditional mode")
    return fig


# --------------------------------------------------------------- residuals
def residuals_vs_fitted(fit: LmmResult, ax: Axes | None = None) -> Axes:
    """Pearson residuals against fitted values (lme4's ``plot(fit)``), with a line at zero.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _new_ax(ax, (4.5, 3.5))
    fitted = fit.fitted().to_numpy()
    resid = fit.residuals("pearson").to_numpy()
    ax.plot(fitted, resid, "o", ms=3, alpha=0.6 if fitted.size > 500 else 0.9, mfc="none", label="residuals")
    ax.axhline(0.0, color="0.4", lw=0.8)
    ax.set_xlabel("fitted values")
    ax.set_ylabel("Pearson residuals")
    return ax


def qq_residuals(fit: LmmResult, ax: Axes | None = None) -> Axes:
    """Normal Q-Q plot of the scaled residuals (``resid(fit, scaled = TRUE)``), with the line y = x.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _new_ax(ax, (4.0, 3.5))
    r = np.sort(fit.resid(scaled=True).to_numpy())
    q = stats.norm.ppf(_ppoints(r.size))
    ax.plot(q, r, "o", ms=3, mfc="none", label="residuals")
    lim = [min(q[0], r[0]), max(q[-1], r[-1])]
    ax.plot(lim, lim, color="0.4", lw=0.8, label="y = x")
    ax.set_xlabel("standard normal quantiles")
    ax.set_ylabel("scaled residuals")
    return ax


# ---------------------------------------------------------------- profiles
def _as_profile(fit_or_profile: Any) -> pd.DataFrame:
    if isinstance(fit_or_profile, pd.DataFrame):
        missing = {"parameter", "value", "zeta"} - set(fit_or_profile.columns)
        if missing:
            raise DataError(f"a profile needs the columns parameter, value and zeta; missing {sorted(missing)}.")
        return fit_or_profile
    if hasattr(fit_or_profile, "profile") and hasattr(fit_or_profile, "theta"):
        return fit_or_profile.profile()
    raise DataError(f"expected a fit or the DataFrame of fit.profile(), not {type(fit_or_profile).__name__}.")


def _pick_params(available: list[str], params: Sequence[str] | str | None) -> list[str]:
    if params is None:
        return available
    chosen = [params] if isinstance(params, str) else list(params)
    bad = [p for p in chosen if p not in available]
    if bad:
        raise DataError(f"no profiled parameter {bad[0]!r}; the profile has {', '.join(map(repr, available))}.")
    return chosen


def _crossing(values: NDArray[np.float64], zeta: NDArray[np.float64], target: float) -> float:
    """Where the piecewise-linear profile crosses ``target`` (NaN if it does not)."""
    side = zeta - target
    for i in range(len(side) - 1):
        if side[i] == 0.0:
            return float(values[i])
        if side[i] * side[i + 1] < 0:
            t = side[i] / (side[i] - side[i + 1])
            return float(values[i] + t * (values[i + 1] - values[i]))
    return float(values[-1]) if side[-1] == 0.0 else math.nan


def profile_zeta(
    fit_or_profile: LmmResult | pd.DataFrame,
    params: Sequence[str] | str | None = None,
    fig: Figure | None = None,
    *,
    levels: Sequence[float] = (0.95, 0.99),
    absolute: bool = False,
    ncols: int = 3,
) -> Figure:
    """zeta against the parameter's value, one panel per parameter (lme4's ``xyplot(profile(fit))``).

    A straight line means the deviance is quadratic in that parameter and Wald
    intervals are fine; curvature shows where they are not. Dashed horizontal
    lines mark ± z for each confidence level and vertical segments drop from
    the profile's crossings of them: the profile interval ends (read off the
    plotted points; :meth:`lmm.LmmResult.confint` finds them exactly).

    Parameters
    ----------
    fit_or_profile : LmmResult or DataFrame
        A fit (``fit.profile()`` is computed) or the DataFrame it returns:
        columns parameter, value, zeta.
    params : str or sequence of str, optional
        Parameters to show (names as in the profile), default all.
    fig : Figure, optional
        Figure to draw into (it is cleared); by default a new one.
    levels : sequence of float
        Confidence levels to mark.
    absolute : bool
        Plot ``|zeta|`` (lme4's ``absVal = TRUE``).
    ncols : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    prof = _as_profile(fit_or_profile)
    names = _pick_params(list(dict.fromkeys(prof["parameter"])), params)
    zs = [_z(lv) for lv in levels]
    fig, axes = _panels(len(names), fig, ncols, (2.8, 2.4))
    for a, name in zip(axes, names):
        part = prof[prof["parameter"] == name].sort_values("value")
        v = part["value"].to_numpy(dtype=float)
        zeta = part["zeta"].to_numpy(dtype=float)
        a.plot(v, np.abs(zeta) if absolute else zeta, "-o", ms=2.5, color="C0", label="zeta")
        for k, zq in enumerate(zs):
            style = {"color": "0.6", "lw": 0.7, "ls": "--" if k == 0 else ":"}
            for target in (-zq, zq):
                height = zq if absolute else target
                if target > 0 or not absolute:
                    a.axhline(height, **style)
                x = _crossing(v, zeta, target)
                if np.isfinite(x):
                    a.vlines(x, 0.0, height, **style)
        a.set_title(name, fontsize="small")
    for i, a in enumerate(axes):
        if i % max(1, min(ncols, len(names))) == 0:
            a.set_ylabel("|zeta|" if absolute else "zeta")
    return fig


def profile_traces(fit: LmmResult, *, npoints: int = 7, zmax: float = 2.6) -> pd.DataFrame:
    """The profile with its traces: the whole parameter vector at each profiled point.

    As :meth:`lmm.LmmResult.profile` (the ML deviance profiled, REML fits
    refitted by ML first), but each row also holds the values that all the
    other parameters take when the profiled one is fixed: lme4 keeps them in the
    profile object for ``splom``.

    Parameters
    ----------
    fit : LmmResult
        A fit from a formula.
    npoints : int
        Points per parameter, spanning ``|zeta| ≤ zmax``.
    zmax : float
        Extent of each profile in zeta.

    Returns
    -------
    DataFrame
        Columns ``parameter``, ``value``, ``zeta``, then one column per
        parameter (lme4's names: sds, correlations, sigma, fixed effects).
    """
    from .profile import Profiler

    prof = Profiler(fit)
    ml = prof.fit
    names = list(prof.vmap.names) + list(ml.xnames)
    nv = len(prof.vmap.names)
    centre_all = np.concatenate([prof.phi_hat, ml.beta])

    def varpar_point(j: int, value: float) -> tuple[float, NDArray[np.float64]]:
        zeta, phi = prof.zeta_varpar(j, value)
        theta, _ = prof.vmap.to_theta(phi)
        beta = prof.system.solve(theta).beta
        return zeta, np.concatenate([phi, beta])

    def beta_point(j: int, value: float) -> tuple[float, NDArray[np.float64]]:
        dev, theta, sol = prof.fit_beta_fixed(j, value)
        sigma = math.sqrt(sol.pwrss / prof.n)
        phi = prof.vmap.from_theta(theta, sigma)
        zeta = prof._zeta(dev, value - ml.beta[j])
        return zeta, np.concatenate([phi, np.insert(sol.beta, j, value)])

    records = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmmWarning)
        for i, name in enumerate(names):
            kind, j = ("varpar", i) if i < nv else ("beta", i - nv)
            lo, hi = prof.interval(kind, j, zmax)
            centre = centre_all[i]
            half = max(npoints // 2, 1) + 1
            grid = np.unique(np.concatenate([np.linspace(lo, centre, half), np.linspace(centre, hi, half)]))
            for v in grid:
                if not np.isfinite(v):
                    continue
                if v == centre:
                    zeta, point = 0.0, centre_all.copy()
                else:
                    zeta, point = varpar_point(j, float(v)) if kind == "varpar" else beta_point(j, float(v))
                records.append((name, float(v), float(zeta), *point))
    return pd.DataFrame(records, columns=["parameter", "value", "zeta", *names])


def _zeta_to_value(part: pd.DataFrame) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A parameter's own profile, as increasing (zeta, value) pairs for interpolation."""
    z = part["zeta"].to_numpy(dtype=float)
    v = part["value"].to_numpy(dtype=float)
    order = np.argsort(z, kind="stable")
    z, v = z[order], v[order]
    keep = np.concatenate([[True], np.diff(z) > 0])
    return z[keep], v[keep]


def profile_pairs(
    fit_or_traces: LmmResult | pd.DataFrame,
    params: Sequence[str] | None = None,
    fig: Figure | None = None,
    *,
    levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
    npoints: int = 7,
) -> Figure:
    """Profile pairs (lme4's ``splom(profile(fit))``), with approximate contours.

    Panel (row i, column j) of the lower triangle plots parameter i (y)
    against parameter j (x) on the original scale:

    * the two profile traces — where the best j lies as i is fixed along its
      profile (``+``) and where the best i lies as j is fixed (``x``); for a
      quadratic deviance they are straight lines through the estimate, and
      the angle between them shows the correlation of the estimates;
    * approximate joint confidence regions for ``levels`` (two degrees of
      freedom). **These are not lme4's contours**: they are the ellipses
      ``zᵀR⁻¹z = χ²₂(level)`` in the zeta scale, R having the correlation fitted
      to both traces, mapped back to the original scale through each
      parameter's own profile. So the marginal skewness of the profiles is kept,
      but any bending of the traces (a non-elliptical joint deviance) is not.

    The upper triangle shows the same in the zeta scale (where the traces and
    the ellipses are exactly what was fitted); the diagonal names the parameter.

    Parameters
    ----------
    fit_or_traces : LmmResult or DataFrame
        A fit (its traces are computed with :func:`profile_traces`, about as
        long as ``fit.profile()``) or the DataFrame that function returns.
    params : sequence of str, optional
        Parameters to show, default all.
    fig : Figure, optional
        Figure to draw into (it is cleared).
    levels : sequence of float
        Joint confidence levels of the contours.
    npoints : int
        Points per profile when computing the traces.

    Returns
    -------
    matplotlib.figure.Figure
    """
    traces = fit_or_traces if isinstance(fit_or_traces, pd.DataFrame) else profile_traces(fit_or_traces, npoints=npoints)
    available = list(dict.fromkeys(traces["parameter"]))
    if not set(available) <= set(traces.columns):
        raise DataError("profile_pairs needs the traces of profile_traces(fit), not fit.profile().")
    names = _pick_params(available, params)
    p = len(names)
    if p < 2:
        raise DataError("profile_pairs needs at least two parameters.")
    plt = _pyplot()
    if fig is None:
        side = min(1.9 * p, 10.0)
        fig = plt.figure(figsize=(side, side), layout="constrained")
    else:
        fig.clear()
    axes = fig.subplots(p, p, squeeze=False)
    parts = {n: traces[traces["parameter"] == n] for n in names}
    inv = {n: _zeta_to_value(parts[n]) for n in names}
    centre = {n: float(parts[n].loc[parts[n]["zeta"] == 0.0, "value"].iloc[0]) for n in names}

    def to_zeta(name: str, values: NDArray[np.float64]) -> NDArray[np.float64]:
        z, v = inv[name]
        order = np.argsort(v)
        return np.interp(values, v[order], z[order], left=np.nan, right=np.nan)

    def to_value(name: str, zeta: NDArray[np.float64]) -> NDArray[np.float64]:
        z, v = inv[name]
        return np.interp(zeta, z, v, left=np.nan, right=np.nan)

    t = np.linspace(0.0, 2.0 * np.pi, 181)
    radii = [math.sqrt(stats.chi2.ppf(lv, 2)) for lv in levels]
    for i, ni in enumerate(names):
        for j, nj in enumerate(names):
            a = axes[i, j]
            a.tick_params(labelsize="x-small")
            if i == j:
                a.text(0.5, 0.5, ni.replace("|", "\n|"), ha="center", va="center", fontsize="small", transform=a.transAxes)
                a.set_xticks([])
                a.set_yticks([])
                continue
            # traces: along i's profile (i fixed, j optimised), along j's profile
            ti, tj = parts[ni], parts[nj]
            xi, yi = ti[nj].to_numpy(float), ti[ni].to_numpy(float)
            xj, yj = tj[nj].to_numpy(float), tj[ni].to_numpy(float)
            zi_x, zi_y = to_zeta(nj, xi), to_zeta(ni, yi)
            zj_x, zj_y = to_zeta(nj, xj), to_zeta(ni, yj)
            # correlation fitted to both traces in the zeta scale: z_j = r z_i on i's, z_i = r z_j on j's
            num = np.nansum(zi_x * zi_y) + np.nansum(zj_x * zj_y)
            den = np.nansum(zi_y * zi_y) + np.nansum(zj_x * zj_x)
            r = float(np.clip(num / den, -0.99, 0.99)) if den > 0 else 0.0
            chol = np.linalg.cholesky(np.array([[1.0, r], [r, 1.0]]))
            upper = i < j
            for rad in radii:
                zx, zy = rad * (chol @ np.vstack([np.cos(t), np.sin(t)]))
                if upper:
                    a.plot(zx, zy, color="0.55", lw=0.7)
                else:
                    a.plot(to_value(nj, zx), to_value(ni, zy), color="0.55", lw=0.7)
            if upper:
                a.plot(zi_x, zi_y, "+-", color="C0", ms=3, lw=0.8)
                a.plot(zj_x, zj_y, "x-", color="C3", ms=3, lw=0.8)
                a.plot([0.0], [0.0], "k.", ms=4)
            else:
                a.plot(xi, yi, "+-", color="C0", ms=3, lw=0.8)
                a.plot(xj, yj, "x-", color="C3", ms=3, lw=0.8)
                a.plot([centre[nj]], [centre[ni]], "k.", ms=4)
            if j > 0 and not (i == 0 and j == 1):
                a.set_yticklabels([])
            if i < p - 1 and not (i == p - 2 and j == p - 1):
                a.set_xticklabels([])
    fig.suptitle("profile pairs: lower original scale, upper zeta scale", fontsize="small")
    return fig


# ------------------------------------------------------------------ design
def sparsity(matrix: Any, ax: Axes | None = None, title: str | None = None, *, markersize: float | None = None) -> Axes:
    """The pattern of a (sparse) matrix: one mark per stored element (lme4's ``image(getME(fit, "Zt"))``).

    Parameters
    ----------
    matrix : scipy.sparse matrix or array-like
        For instance ``model.Zt_matrix`` or ``model.lambdat(theta)``. For a
        sparse matrix every stored element is marked, zero or not (the pattern
        of Λθ at θ₀ shows where θ can put values); for a dense one, the non-zeros.
    ax : Axes, optional
        Axes to draw into; by default a new figure, its shape following the matrix.
    title : str, optional
        Title; the shape and number of marked elements are appended.
    markersize : float, optional
        Size of the marks, by default chosen from the matrix size.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import scipy.sparse as sp

    if sp.issparse(matrix):
        m = sp.coo_matrix(matrix)
        rows, cols = m.row, m.col
    else:
        arr = np.asarray(matrix)
        if arr.ndim != 2:
            raise DataError(f"sparsity needs a 2-d matrix, not an array of shape {arr.shape}.")
        m = arr
        rows, cols = np.nonzero(arr)
    nr, nc = m.shape
    if ax is None:
        w = 6.0
        h = float(np.clip(w * nr / max(nc, 1), 1.2, 6.0))
        _, ax = _pyplot().subplots(figsize=(w, h + 0.6), layout="constrained")
    if markersize is None:
        markersize = float(np.clip(300.0 / max(nr, nc, 1), 0.5, 6.0))
    ax.plot(cols, rows, "s", ms=markersize, color="k", mew=0, label="elements")
    ax.set_xlim(-0.5, nc - 0.5)
    ax.set_ylim(nr - 0.5, -0.5)
    ax.set_aspect("equal" if max(nr, nc) / max(min(nr, nc), 1) < 8 else "auto")
    ax.xaxis.tick_top()
    ax.tick_params(labelsize="x-small")
    label = f"{nr} × {nc}, {rows.size} stored"
    ax.set_title(f"{title}: {label}" if title else label, fontsize="small")
    return ax


# ------------------------------------------------------------------ data
def subject_lines(
    fit: LmmResult,
    x: str,
    group: str,
    fig: Figure | None = None,
    *,
    ncols: int = 6,
    levels: Sequence[Any] | None = None,
) -> Figure:
    """Each level's data with the population line and the level's own line (lme4's sleepstudy xyplot).

    In each panel: the observations of one level of ``group`` against ``x``,
    the population prediction (``predict(re_form="~0")``, grey) and the
    prediction with the level's random effects (the conditional line, blue).

    Parameters
    ----------
    fit : LmmResult
        A fit from a formula on a DataFrame.
    x : str
        Column of the data on the horizontal axis.
    group : str
        Grouping column, one panel per level.
    fig : Figure, optional
        Figure to draw into (it is cleared).
    ncols : int
        Panels per row.
    levels : sequence, optional
        Levels to show, in this order; by default all, in the factor's order.

    Returns
    -------
    matplotlib.figure.Figure
    """
    model = fit.model
    data = getattr(model, "data", None)
    if not isinstance(data, pd.DataFrame) or fit.formula is None:
        raise DataError("subject_lines needs a fit from a formula on a DataFrame.")
    for col in (x, group):
        if col not in data.columns:
            raise DataError(f"no column {col!r} in the data; it has {', '.join(map(repr, data.columns))}.")
    from .formula import parse_formula

    response = parse_formula(fit.formula).response
    used = data.loc[fit.fitted().index]
    pop = fit.predict(used, re_form="~0").to_numpy()
    cond = fit.fitted().to_numpy()
    g = used[group]
    all_levels = list(g.cat.categories) if isinstance(g.dtype, pd.CategoricalDtype) else list(pd.unique(g))
    show = all_levels if levels is None else list(levels)
    bad = [lv for lv in show if lv not in all_levels]
    if bad:
        raise DataError(f"no level {bad[0]!r} of {group!r} in the fitted data.")
    fig, axes = _panels(len(show), fig, ncols, (1.7, 1.6))
    xs = used[x].to_numpy(dtype=float)
    ys = used[response].to_numpy(dtype=float)
    gv = g.to_numpy()
    for a, lv in zip(axes, show):
        rows = np.flatnonzero(gv == lv)
        order = rows[np.argsort(xs[rows], kind="stable")]
        a.plot(xs[order], ys[order], "o", ms=2.5, color="k", mfc="none")
        a.plot(xs[order], pop[order], color="0.6", lw=1.0, label="population")
        a.plot(xs[order], cond[order], color="C0", lw=1.2, label=str(lv))
        a.set_title(str(lv), fontsize="x-small", pad=2)
        a.tick_params(labelsize="xx-small")
    ylim = (np.min(ys), np.max(ys))
    for a in axes:
        a.set_ylim(ylim[0] - 0.05 * np.ptp(ys), ylim[1] + 0.05 * np.ptp(ys))
    fig.supxlabel(x, fontsize="small")
    fig.supylabel(response, fontsize="small")
    return fig
