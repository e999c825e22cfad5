"""Confidence intervals: Wald, likelihood profile and parametric bootstrap.

Row names follow lme4's ``confint(oldNames = FALSE)``.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from .errors import DataError, LmmWarning
from .varpar import VarParMap

if TYPE_CHECKING:
    from .results import LmmResult

__all__ = ["confint", "bootstrap"]


def _columns(level: float) -> tuple[str, str]:
    return f"{100 * (1 - level) / 2:g} %", f"{100 * (1 + level) / 2:g} %"


def confint(fit: LmmResult, *, method: str = "profile", level: float = 0.95, nsim: int = 500, seed: Any = None) -> pd.DataFrame:
    """Confidence intervals (see :meth:`lmm.results.LmmResult.confint`)."""
    if not 0.0 < level < 1.0:
        raise DataError(f"level must be between 0 and 1, not {level!r}.")
    method = method.lower()
    if method == "profile":
        from .profile import profile_confint

        return profile_confint(fit, level)
    if method == "wald":
        lo, hi = _columns(level)
        z = float(stats.norm.ppf(0.5 + level / 2.0))
        vmap = VarParMap.from_terms(fit.terms)
        se = np.sqrt(np.diag(fit.vcov_matrix))
        rows = {name: (np.nan, np.nan) for name in vmap.names}
        for name, b, s in zip(fit.xnames, fit.beta, se):
            rows[name] = (b - z * s, b + z * s)
        return pd.DataFrame.from_dict(rows, orient="index", columns=[lo, hi])
    if method == "boot":
        draws = bootstrap(fit, nsim, seed=seed)
        lo, hi = _columns(level)
        q = draws.quantile([(1 - level) / 2, (1 + level) / 2]).T
        q.columns = [lo, hi]
        return q
    raise DataError(f"method must be 'profile', 'wald' or 'boot', not {method!r}.")


def _params_of(fit: LmmResult, vmap: VarParMap) -> NDArray[np.float64]:
    return np.concatenate([vmap.from_theta(fit.theta, fit.sigma), fit.beta])


def _one_blas_thread() -> None:
    """In a bootstrap worker: one BLAS thread, so that n_jobs workers do not oversubscribe the cores."""
    from threadpoolctl import threadpool_limits

    global _LIMITS
    _LIMITS = threadpool_limits(limits=1)


_LIMITS: Any = None


def _refit_many(model: Any, ys: NDArray[np.float64], theta: NDArray[np.float64], reml: bool, vmap: VarParMap) -> NDArray[np.float64]:
    out = np.empty((ys.shape[1], len(vmap.names) + model.X.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmmWarning)
        for k in range(ys.shape[1]):
            f = model.with_response(ys[:, k]).fit(reml=reml, start=theta)
            out[k] = _params_of(f, vmap)
    return out


def bootstrap(fit: LmmResult, nsim: int = 500, *, seed: Any = None, n_jobs: int = 1, progress: bool | None = None) -> pd.DataFrame:
    """Parametric bootstrap (see :meth:`lmm.results.LmmResult.bootstrap`)."""
    if fit.model is None or fit.model.design is None:
        raise DataError("the bootstrap needs a fit from a formula.")
    vmap = VarParMap.from_terms(fit.terms)
    ys = fit.simulate(nsim, seed=seed).to_numpy()
    names = list(vmap.names) + list(fit.xnames)
    n_jobs = max(1, min(int(n_jobs) if n_jobs > 0 else (os.cpu_count() or 1), nsim))
    chunks = np.array_split(np.arange(nsim), max(n_jobs * 4, 1) if n_jobs > 1 else max(1, nsim // 25))
    bar = _progress(nsim, progress)
    results: list[NDArray[np.float64]] = []
    if n_jobs == 1:
        for idx in chunks:
            results.append(_refit_many(fit.model, ys[:, idx], fit.theta, fit.reml, vmap))
            bar(len(idx))
    else:
        with ProcessPoolExecutor(max_workers=n_jobs, initializer=_one_blas_thread) as pool:
            futures = [pool.submit(_refit_many, fit.model, ys[:, idx], fit.theta, fit.reml, vmap) for idx in chunks]
            for fut in futures:
                results.append(fut.result())
                bar(results[-1].shape[0])
    bar(0, close=True)
    return pd.DataFrame(np.vstack(results), columns=names)


def _progress(total: int, progress: bool | None) -> Any:
    """A callable advancing a tqdm bar when tqdm is installed and the run is long."""
    show = progress if progress is not None else total >= 200
    if not show:
        return lambda k, close=False: None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return lambda k, close=False: None
    bar = tqdm(total=total, desc="bootstrap")

    def advance(k: int, close: bool = False) -> None:
        bar.update(k)
        if close:
            bar.close()

    return advance
