"""Bounded minimisation of the profiled objective over θ.

Models whose random-effects terms are all scalar have an exact gradient of the
profiled objective (see :meth:`lmm.blocked.BlockedSystem.objective_and_gradient`)
and are fitted by L-BFGS-B; the others by BOBYQA (Powell's bound-constrained
quadratic-model method, through NLopt), the algorithm lme4 uses by default. A fit that ends on
the boundary is restarted from other points (the start, the boundary point with
its zero diagonal elements moved away from zero, and with Nelder–Mead from the
start), because a boundary end point is where lme4's own fits stop short of the
optimum; the best point found is kept and every run is recorded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["OptSummary", "optimize_theta", "FTOL_ABS", "XTOL_REL", "LBFGSB_FTOL", "LBFGSB_GTOL", "BOUNDARY_TOL"]

FTOL_ABS = 1e-10
"""Absolute tolerance on the objective between BOBYQA iterations."""

XTOL_REL = 1e-9
"""Relative tolerance on θ between BOBYQA iterations."""

LBFGSB_FTOL = 1e-11
"""Relative reduction of the objective at which L-BFGS-B stops."""

LBFGSB_GTOL = 1e-6
"""Largest projected gradient element at which L-BFGS-B stops."""

LBFGSB_STALL_GTOL_REL = 1e-6
"""A failed L-BFGS-B line search counts as converged when the projected gradient is below this times max(1, |f|)."""

COARSE_FTOL_ABS = 1e-5
COARSE_XTOL_REL = 1e-4
"""Tolerances of a derivative-free restart that only looks for a better basin (then polished with the gradient)."""

LBFGSB_GTOL_REL = 1e-9
"""Relative part of L-BFGS-B's projected-gradient tolerance: ``max(LBFGSB_GTOL, LBFGSB_GTOL_REL·|f|)``."""

BOUNDARY_TOL = 1e-4
"""A diagonal element of θ below this is on the boundary (lme4's ``isSingular`` tolerance)."""


@dataclass(frozen=True)
class OptSummary:
    """What the optimiser did.

    Attributes
    ----------
    method : str
        Optimiser of the run that gave the final point.
    initial, final : ndarray
        Start point and final θ.
    fmin : float
        Objective at ``final``.
    feval : int
        Objective evaluations over all runs (restarts included).
    converged : bool
        Whether the run that gave ``final`` met its stopping criteria.
    message : str
        The optimiser's own message for that run.
    restarts : tuple of (str, float)
        Each run after the first: what it started from and the objective it reached.
    seconds : float
        Wall time of the optimisation.
    """

    method: str
    initial: NDArray[np.float64]
    final: NDArray[np.float64]
    fmin: float
    feval: int
    converged: bool
    message: str
    restarts: tuple[tuple[str, float], ...] = ()
    seconds: float = 0.0
    fitlog: tuple[tuple[float, ...], ...] = field(default=(), repr=False)

    def __str__(self) -> str:
        lines = [
            f"optimizer:   {self.method}",
            f"evaluations: {self.feval}",
            f"converged:   {self.converged} ({self.message})",
            f"objective:   {self.fmin:.10g}",
            f"theta:       {np.array2string(self.final, precision=6)}",
        ]
        for what, value in self.restarts:
            lines.append(f"restart:     from {what}: {value:.10g}")
        return "\n".join(lines)


_NLOPT_MESSAGES = {
    1: "success",
    2: "stopval reached",
    3: "ftol reached",
    4: "xtol reached",
    5: "maxeval reached",
    6: "maxtime reached",
}


def _bobyqa(
    f: Callable[[NDArray[np.float64]], float],
    x0: NDArray[np.float64],
    lower: NDArray[np.float64],
    maxeval: int,
    upper: NDArray[np.float64] | None = None,
    coarse: bool = False,
) -> tuple[NDArray[np.float64], float, bool, str]:
    import nlopt

    n = x0.size
    best: list[Any] = [None, math.inf]

    def tracked(x: NDArray[np.float64], grad: NDArray[np.float64]) -> float:
        val = f(x)
        if val < best[1]:
            best[0], best[1] = np.array(x), val
        return val

    opt = nlopt.opt(nlopt.LN_BOBYQA, n)
    opt.set_lower_bounds(np.where(np.isfinite(lower), lower, -np.inf))
    if upper is not None:
        opt.set_upper_bounds(np.where(np.isfinite(upper), upper, np.inf))
    opt.set_min_objective(tracked)
    opt.set_ftol_abs(COARSE_FTOL_ABS if coarse else FTOL_ABS)
    opt.set_xtol_rel(COARSE_XTOL_REL if coarse else XTOL_REL)
    opt.set_maxeval(maxeval)
    step = np.where(np.abs(x0) > 0, 0.2 * np.abs(x0), 0.1)
    opt.set_initial_step(np.maximum(step, 0.05))
    try:
        x = opt.optimize(_clip(x0, lower, upper))
        code = opt.last_optimize_result()
    except nlopt.RoundoffLimited:
        # the objective cannot be decreased further at machine precision: keep the best point
        if best[0] is None:
            return np.asarray(x0), math.inf, False, "BOBYQA stopped: roundoff-limited"
        return best[0], float(best[1]), True, "roundoff-limited (converged to machine precision)"
    except (RuntimeError, ValueError) as exc:  # nlopt's failure results
        if best[0] is None:
            return np.asarray(x0), math.inf, False, f"BOBYQA failed: {exc}"
        return best[0], float(best[1]), False, f"BOBYQA failed: {exc}"
    fval = opt.last_optimum_value()
    return np.asarray(x), float(fval), 1 <= code <= 4, _NLOPT_MESSAGES.get(code, f"nlopt code {code}")


def _clip(x: NDArray[np.float64], lower: NDArray[np.float64], upper: NDArray[np.float64] | None) -> NDArray[np.float64]:
    out = np.maximum(x, np.where(np.isfinite(lower), lower, -np.inf))
    return out if upper is None else np.minimum(out, upper)


def _nelder_mead(f: Callable[[NDArray[np.float64]], float], x0: NDArray[np.float64], lower: NDArray[np.float64], maxeval: int) -> tuple[NDArray[np.float64], float, bool, str]:
    from scipy.optimize import Bounds, minimize

    bounds = Bounds(np.where(np.isfinite(lower), lower, -np.inf), np.full(x0.size, np.inf))
    res = minimize(f, x0, method="Nelder-Mead", bounds=bounds, options={"xatol": 1e-6, "fatol": 1e-8, "maxfev": maxeval})
    return np.asarray(res.x), float(res.fun), bool(res.success), str(res.message)


def _lbfgsb(
    fg: Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]],
    x0: NDArray[np.float64],
    lower: NDArray[np.float64],
    maxeval: int,
    upper: NDArray[np.float64] | None = None,
    scale: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64], float, bool, str]:
    from scipy.optimize import Bounds, minimize

    if scale is not None:
        # minimise over z = x / scale: L-BFGS-B's first step has length 1 in z, i.e. |scale| in x
        def fgz(z: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
            val, grad = fg(z * scale)
            return val, grad * scale

        z, fz, ok, msg = _lbfgsb(fgz, x0 / scale, lower / scale, maxeval, None if upper is None else upper / scale)
        return z * scale, fz, ok, msg
    bounds = Bounds(np.where(np.isfinite(lower), lower, -np.inf), np.full(x0.size, np.inf) if upper is None else upper)
    # The gradient cannot be driven below the rounding of f (~1e-16·|f| per term summed):
    # the tolerance on the projected gradient grows with |f| so that L-BFGS-B stops
    # there instead of failing line searches at the rounding level.
    first = fg(x0)
    cache = {x0.tobytes(): first}

    def fg_cached(x: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        hit = cache.pop(x.tobytes(), None)
        return hit if hit is not None else fg(x)

    gtol = max(LBFGSB_GTOL, LBFGSB_GTOL_REL * abs(first[0])) if math.isfinite(first[0]) and first[0] < 1e300 else LBFGSB_GTOL
    res = minimize(fg_cached, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"ftol": LBFGSB_FTOL, "gtol": gtol, "maxfun": maxeval})
    x, ok, msg = np.asarray(res.x), bool(res.success), str(res.message)
    if not ok and "ABNORMAL" in msg and res.jac is not None:
        # The line search failed: at the rounding level of f, or far from the optimum.
        # Tell them apart by the projected gradient at the end point.
        g = np.asarray(res.jac, dtype=np.float64)
        pg = np.where(np.isfinite(lower) & (x <= lower) & (g > 0), 0.0, g)
        if upper is not None:
            pg = np.where(np.isfinite(upper) & (x >= upper) & (g < 0), 0.0, pg)
        worst = float(np.max(np.abs(pg), initial=0.0))
        if worst <= LBFGSB_STALL_GTOL_REL * max(1.0, abs(float(res.fun))):
            ok, msg = True, f"line search stalled at the rounding level (projected gradient {worst:.1e})"
    return x, float(res.fun), ok, msg


def optimize_theta(
    objective: Callable[[NDArray[np.float64]], float],
    theta0: NDArray[np.float64],
    lower: NDArray[np.float64],
    *,
    gradient: Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]] | None = None,
    upper: NDArray[np.float64] | None = None,
    maxeval: int = 10_000,
    restart_on_boundary: bool = True,
    step_scale: NDArray[np.float64] | None = None,
) -> OptSummary:
    """Minimise ``objective`` over θ ≥ ``lower`` starting from ``theta0``.

    Parameters
    ----------
    objective : callable
        θ ↦ profiled objective (``inf`` where undefined).
    theta0, lower : ndarray
        Start point and lower bounds (``-inf`` for unbounded elements).
    maxeval : int
        Evaluation budget of each run.
    gradient : callable, optional
        θ ↦ (objective, gradient). When given, the first run is L-BFGS-B with
        this exact gradient instead of BOBYQA.
    upper : ndarray, optional
        Upper bounds (none by default).
    restart_on_boundary : bool
        Restart from other points when the first run ends on the boundary, and
        set tiny diagonal elements to zero when that does not raise the objective.
        Turn it off for problems whose bounded elements are not diagonals of λ.
    step_scale : ndarray, optional
        Positive scale of each element of θ for L-BFGS-B, which then works on
        θ / ``step_scale``: its first step (length 1 in those units) becomes
        ``|step_scale|`` long. For a start already near the optimum (default: 1).

    Returns
    -------
    OptSummary
    """
    t0 = time.perf_counter()
    count = [0]
    log: list[tuple[float, ...]] = []

    def f(x: NDArray[np.float64]) -> float:
        count[0] += 1
        val = objective(x)
        log.append((*x.tolist(), val))
        return val if math.isfinite(val) else 1e300

    def fg(x: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        assert gradient is not None
        count[0] += 1
        val, grad = gradient(x)
        log.append((*x.tolist(), val))
        if not math.isfinite(val) or not np.all(np.isfinite(grad)):
            return 1e300, np.zeros_like(x)
        return val, grad

    theta0 = np.asarray(theta0, dtype=np.float64)
    lower = np.asarray(lower, dtype=np.float64)
    if gradient is not None:
        x, fx, ok, msg = _lbfgsb(fg, _clip(theta0, lower, upper), lower, maxeval, upper, step_scale)
        method = "L-BFGS-B (exact gradient)"
    else:
        x, fx, ok, msg = _bobyqa(f, theta0, lower, maxeval, upper)
        method = "BOBYQA"
    if not math.isfinite(fx) or fx >= 1e300:
        from .errors import FitError

        raise FitError("the objective is not finite at any value of theta tried; check the data for degenerate columns.")
    restarts: list[tuple[str, float]] = []
    diag = np.isfinite(lower)
    on_boundary = bool(np.any(diag & (x <= lower + BOUNDARY_TOL)))
    if restart_on_boundary and (on_boundary or not ok):
        starts = []
        if on_boundary:
            moved = x.copy()
            moved[diag & (x <= lower + BOUNDARY_TOL)] = 1.0
            if gradient is not None:
                # f is even in each diagonal element of λ, so θ_k = 0 is always stationary and
                # a gradient method can stall there. Probe off the boundary at three scales and
                # restart from a probe that is lower; then one derivative-free restart from the
                # boundary point with those elements at 1, unless that is where the first run began.
                zero = diag & (x <= lower + BOUNDARY_TOL)
                best_probe, f_probe = None, fx
                for delta in (1e-1, 1e-2, 1e-3):
                    probe = x.copy()
                    probe[zero] = lower[zero] + delta
                    fp = f(probe)
                    if fp < f_probe - 1e-10:
                        best_probe, f_probe = probe, fp
                if best_probe is not None:
                    starts.append(("a lower point just off the boundary", "L-BFGS-B", best_probe))
                if not np.allclose(moved, _clip(theta0, lower, upper), rtol=0.0, atol=1e-3):
                    starts.append(("the boundary point with zero diagonal elements set to 1", "BOBYQA", moved))
            else:
                starts.append(("the boundary point with zero diagonal elements set to 1", "BOBYQA", moved))
                starts.append(("the initial point", "Nelder-Mead", theta0))
        else:
            starts.append(("the best point", "BOBYQA", x))
        for what, how, start in starts:
            if how == "L-BFGS-B":
                x2, f2, ok2, msg2 = _lbfgsb(fg, start, lower, maxeval, upper)
            elif how == "BOBYQA" and gradient is not None:
                # a coarse search for a better basin; a lower point is polished with the gradient
                x2, f2, ok2, msg2 = _bobyqa(f, start, lower, maxeval, upper, coarse=True)
                if f2 < fx - 1e-6:
                    x3, f3, ok3, msg3 = _lbfgsb(fg, x2, lower, maxeval, upper)
                    if f3 <= f2:
                        x2, f2, ok2, msg2 = x3, f3, ok3, msg3
                        how = "BOBYQA, then L-BFGS-B"
            else:
                run = _bobyqa if how == "BOBYQA" else _nelder_mead
                x2, f2, ok2, msg2 = run(f, start, lower, maxeval)
            if how == "Nelder-Mead" and f2 < fx:
                # polish the Nelder-Mead end point with BOBYQA
                x3, f3, ok3, msg3 = _bobyqa(f, x2, lower, maxeval)
                if f3 <= f2:
                    x2, f2, ok2, msg2 = x3, f3, ok3, msg3
                    how = "Nelder-Mead, then BOBYQA"
            restarts.append((f"{what} ({how})", f2))
            if f2 < fx - 1e-10:
                x, fx, ok, msg, method = x2, f2, ok2, msg2, how
            elif not ok and ok2 and abs(f2 - fx) <= 1e-9 * max(1.0, abs(fx)):
                # a run that stopped abnormally (a line search failing at the rounding level)
                # is confirmed by a converged restart reaching the same value
                ok, msg = True, f"{msg.strip()} (confirmed by a converged restart from {what})"
    # tiny diagonal elements that do not matter are set to exactly zero
    small = diag & (x > lower) & (x < 1e-5)
    if restart_on_boundary and np.any(small):
        x_zero = x.copy()
        x_zero[small] = 0.0
        f_zero = f(x_zero)
        if f_zero <= fx:
            x, fx = x_zero, f_zero
    return OptSummary(
        method=method,
        initial=theta0,
        final=x,
        fmin=fx,
        feval=count[0],
        converged=ok,
        message=msg,
        restarts=tuple(restarts),
        seconds=time.perf_counter() - t0,
        fitlog=tuple(log),
    )
