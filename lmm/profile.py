"""Likelihood profiles and profile confidence intervals (lme4's ``profile`` and ``confint``).

As lme4 does, the ML deviance is profiled, also for REML fits (which are
refitted by ML first). For a parameter fixed at a value v, the deviance is
minimised over all the others; ``zeta(v) = sign(v − v̂) sqrt(dev(v) − dev̂)``.

* Variance parameters are the sds, correlations and σ (:mod:`lmm.varpar`); the
  others are optimised by BOBYQA within their bounds, σ included.
* A fixed effect β_j fixed at v enters as an offset ``x_j v``; θ is optimised
  with σ and the other β profiled out, as in the fit itself.

Interval ends are the roots of ``zeta(v) = ±z``, found by bracketing and
Brent's method (no interpolation of a grid), so they are as precise as the
inner optimisations. An sd whose profile stays below z down to 0 has the
lower end 0; a correlation's ends are at most ±1.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import optimize, stats

from .errors import DataError, LmmWarning
from .optimize import optimize_theta
from .varpar import VarParMap

if TYPE_CHECKING:
    from .blocked import Solution
    from .results import LmmResult

__all__ = ["Profiler", "profile", "profile_confint"]


class Profiler:
    """Profiles of the ML deviance around an ML fit."""

    def __init__(self, fit: LmmResult) -> None:
        if fit.model is None or fit.model.design is None:
            raise DataError("profiles need a fit from a formula.")
        if fit.reml:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LmmWarning)
                fit = fit.update(reml=False)
        self.fit = fit
        self.model = fit.model
        self.system = self.model._system
        self.vmap = VarParMap.from_terms(fit.terms)
        self.phi_hat = self.vmap.from_theta(fit.theta, fit.sigma)
        self.dev_hat = fit.objective
        self.n = fit.nobs
        self.ldW = fit.ldW
        self._lower = self.vmap.lower()
        self._upper = self.vmap.upper()

    # ------------------------------------------------------ deviance pieces
    def deviance_phi(self, phi: NDArray[np.float64]) -> float:
        """ML deviance at φ, β profiled out."""
        theta, sigma = self.vmap.to_theta(phi)
        if not sigma > 0:
            return math.inf
        pieces = self.system.evaluate(theta)
        if pieces is None:
            return math.inf
        ldL2, _, pwrss = pieces
        return ldL2 + self.n * math.log(2.0 * math.pi * sigma**2) + pwrss / sigma**2 - self.ldW

    def _min_over_others(self, j: int, value: float, start: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        free = [i for i in range(self.phi_hat.size) if i != j]

        def full(x: NDArray[np.float64]) -> NDArray[np.float64]:
            phi = start.copy()
            phi[free] = x
            phi[j] = value
            return phi

        x0 = np.clip(start[free], self._lower[free], self._upper[free])

        def objective(x: NDArray[np.float64]) -> float:
            return self.deviance_phi(full(x))

        opt = optimize_theta(objective, x0, self._lower[free], upper=self._upper[free], restart_on_boundary=False)
        return float(opt.fmin), full(opt.final)

    def zeta_varpar(self, j: int, value: float, start: NDArray[np.float64] | None = None) -> tuple[float, NDArray[np.float64]]:
        """zeta of variance parameter j at ``value`` and the φ that attains it."""
        dev, phi = self._min_over_others(j, value, self.phi_hat if start is None else start)
        return self._zeta(dev, value - self.phi_hat[j]), phi

    def fit_beta_fixed(self, j: int, value: float) -> tuple[float, NDArray[np.float64], Solution]:
        """The ML fit with fixed effect j held at ``value``: its deviance, θ and solution (β without j)."""
        from .blocked import BlockedSystem
        from .deviance import make_objective
        from .gradient import gradient_function

        design = self.model.design
        X = np.delete(design.X, j, axis=1)
        y = design.y - design.X[:, j] * value
        if design.offset is not None:
            y = y - design.offset
        system = BlockedSystem.from_data(design.reterms, X, y, design.weights, self.model._theta_map)
        objective = make_objective(system, reml=False, ldW=self.ldW)
        grad = gradient_function(system, reml=False, ldW=self.ldW)
        opt = optimize_theta(objective, self.fit.theta, self.model.lower, gradient=grad, restart_on_boundary=False)
        return float(opt.fmin), opt.final, system.solve(opt.final)

    def zeta_beta(self, j: int, value: float) -> float:
        """zeta of fixed effect j at ``value``."""
        dev, _, _ = self.fit_beta_fixed(j, value)
        return self._zeta(dev, value - self.fit.beta[j])

    def _zeta(self, dev: float, direction: float) -> float:
        return math.copysign(math.sqrt(max(dev - self.dev_hat, 0.0)), direction)

    # ---------------------------------------------------------- intervals
    def _scale(self, kind: str, j: int) -> float:
        if kind == "beta":
            return float(np.sqrt(self.fit.vcov_matrix[j, j]))
        if self.vmap.is_cor[j]:
            return 0.2
        return max(0.25 * abs(self.phi_hat[j]), 0.05 * self.fit.sigma, 1e-6)

    def _zeta_fn(self, kind: str, j: int) -> Callable[[float], float]:
        if kind == "beta":
            return lambda v: self.zeta_beta(j, v)
        return lambda v: self.zeta_varpar(j, v)[0]

    def interval(self, kind: str, j: int, z: float) -> tuple[float, float]:
        """Values where zeta = −z and +z for parameter j (``kind`` "varpar" or "beta")."""
        centre = self.fit.beta[j] if kind == "beta" else self.phi_hat[j]
        zeta = self._zeta_fn(kind, j)
        lo_bound = -np.inf if kind == "beta" else self._lower[j]
        hi_bound = np.inf if kind == "beta" else self._upper[j]
        ends = []
        for sign in (-1.0, 1.0):
            target = sign * z
            step = self._scale(kind, j)
            a = centre
            found = None
            for _ in range(60):
                b = centre + sign * step
                if sign < 0 and b <= lo_bound:
                    b = lo_bound
                if sign > 0 and b >= hi_bound:
                    b = hi_bound
                zb = zeta(b)
                if (zb - target) * sign >= 0:
                    found = (a, b)
                    break
                if b in (lo_bound, hi_bound):
                    break
                a = b
                step *= 1.6
            if found is None:
                ends.append(b if np.isfinite(b) else np.nan)
                continue
            lo, hi = sorted(found)
            root = optimize.brentq(lambda v, t=target: zeta(v) - t, lo, hi, xtol=1e-10 * max(1.0, abs(centre)), rtol=1e-10)
            ends.append(root)
        return ends[0], ends[1]


def profile_confint(fit: LmmResult, level: float = 0.95) -> pd.DataFrame:
    """Profile confidence intervals with lme4's row names and order."""
    prof = Profiler(fit)
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    rows = {}
    for j, name in enumerate(prof.vmap.names):
        rows[name] = prof.interval("varpar", j, z)
    for j, name in enumerate(fit.xnames):
        rows[name] = prof.interval("beta", j, z)
    lo, hi = f"{100 * (1 - level) / 2:g} %", f"{100 * (1 + level) / 2:g} %"
    return pd.DataFrame.from_dict(rows, orient="index", columns=[lo, hi])


def profile(fit: LmmResult, *, npoints: int = 9, zmax: float = 2.6) -> pd.DataFrame:
    """The profile as data: for each parameter, ``npoints`` values spanning |zeta| ≤ zmax.

    Returns a long DataFrame with columns ``parameter``, ``value``, ``zeta``
    (rows ordered by parameter, then value), ready to plot zeta against value.
    """
    prof = Profiler(fit)
    records = []
    params = [("varpar", j, name) for j, name in enumerate(prof.vmap.names)] + [("beta", j, name) for j, name in enumerate(fit.xnames)]
    for kind, j, name in params:
        lo, hi = prof.interval(kind, j, zmax)
        centre = prof.fit.beta[j] if kind == "beta" else prof.phi_hat[j]
        values = np.unique(np.concatenate([np.linspace(lo, centre, npoints // 2 + 1), np.linspace(centre, hi, npoints // 2 + 1)]))
        zeta = prof._zeta_fn(kind, j)
        for v in values:
            if not np.isfinite(v):
                continue
            records.append((name, float(v), 0.0 if v == centre else zeta(float(v))))
    return pd.DataFrame(records, columns=["parameter", "value", "zeta"])
