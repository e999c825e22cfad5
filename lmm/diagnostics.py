"""Convergence diagnostics at the optimum: gradient, Hessian, boundary, verdict.

lme4 checks a fit with a finite-difference gradient and Hessian of the
objective, scaled by the Hessian's Cholesky factor, and flags fits whose scaled
gradient exceeds 0.002 — with derivatives rough enough that converged fits are
flagged too (lme4 issue 783). Here the gradient is exact where the model has
the analytic gradient (all terms scalar) and otherwise Richardson-extrapolated
central differences, accurate to many digits; the Hessian is extrapolated the
same way. Parameters on their bound are judged by the sign of their derivative
(an optimum on the boundary may have a positive one) and left out of the
scaled-gradient test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from .errors import DataError
from .numderiv import gradient, hessian
from .optimize import BOUNDARY_TOL

if TYPE_CHECKING:
    from .results import LmmResult

__all__ = ["Diagnostics", "diagnose", "GRADIENT_TOL"]

GRADIENT_TOL = 1e-3
"""Largest scaled gradient (``|H⁻¹ g|`` in units of θ, lme4's measure) of a converged fit."""


@dataclass(frozen=True)
class Diagnostics:
    """The state of the fit at its optimum.

    Attributes
    ----------
    gradient : ndarray
        Gradient of the objective in θ.
    hessian : ndarray
        Hessian of the objective in θ.
    hessian_eigenvalues : ndarray
        Eigenvalues of the Hessian restricted to the interior parameters, ascending.
    scaled_gradient : float
        max |H⁻¹ g| over the interior parameters (lme4's "relative gradient").
    boundary : tuple of str
        Names of the parameters on their lower bound.
    converged : bool
        Interior gradient small, Hessian positive definite, boundary derivatives non-negative.
    verdict : str
        The same in words.
    """

    gradient: NDArray[np.float64]
    hessian: NDArray[np.float64]
    hessian_eigenvalues: NDArray[np.float64]
    scaled_gradient: float
    boundary: tuple[str, ...]
    converged: bool
    verdict: str

    def __str__(self) -> str:
        return self.verdict


def diagnose(fit: LmmResult) -> Diagnostics:
    """Gradient and Hessian checks of ``fit`` (see the module docs)."""
    model = fit.model
    if model is None:
        raise DataError("diagnostics need the fitted model.")
    theta = fit.theta

    def f(th: NDArray[np.float64]) -> float:
        return model.objective(th, reml=fit.reml)

    system = model._system
    if getattr(system, "has_gradient", False):
        _, g = system.objective_and_gradient(theta, reml=fit.reml, ldW=fit.ldW)
    else:
        g = gradient(f, theta)
    H = hessian(f, theta, d=1e-3, eps=1e-4)
    diag = np.isfinite(fit.lower)
    on_bound = diag & (theta <= fit.lower + BOUNDARY_TOL)
    interior = ~on_bound
    names = tuple(fit.theta_names[i] for i in np.flatnonzero(on_bound))
    Hi = H[np.ix_(interior, interior)]
    gi = g[interior]
    eig = np.linalg.eigvalsh(Hi) if Hi.size else np.zeros(0)
    if Hi.size and eig[0] > 0:
        scaled = float(np.max(np.abs(np.linalg.solve(Hi, gi))))
    elif Hi.size:
        scaled = float("inf")
    else:
        scaled = 0.0
    # on the boundary the objective must not decrease inwards: a negative slope, or
    # a zero slope (scalar terms are even in θ) with negative curvature, means it does
    tol = 1e-6 * max(1.0, abs(fit.objective))
    gb, hb = g[on_bound], np.diag(H)[on_bound]
    bound_ok = bool(np.all((gb > tol) | ((gb >= -tol) & (hb >= -tol))))
    problems = []
    if Hi.size and eig[0] <= 0:
        problems.append(f"the Hessian has a non-positive eigenvalue ({eig[0]:.3g}): the fit is not at a minimum")
    elif scaled > GRADIENT_TOL:
        problems.append(f"the scaled gradient is {scaled:.2g} (above {GRADIENT_TOL:g}): the optimiser stopped early")
    if not bound_ok:
        problems.append("the objective decreases into the interior from a parameter on the boundary")
    converged = not problems
    if converged:
        verdict = f"converged: scaled gradient {scaled:.1e}, Hessian positive definite (smallest eigenvalue {eig[0]:.3g})" if Hi.size else "converged"
        if names:
            verdict += f"; on the boundary: {', '.join(names)} (a singular fit, see the warning)"
    else:
        verdict = "not converged: " + "; ".join(problems) + ". Refit from another start with fit(start=...) or simplify the model."
    return Diagnostics(
        gradient=np.asarray(g),
        hessian=H,
        hessian_eigenvalues=eig,
        scaled_gradient=scaled,
        boundary=names,
        converged=converged,
        verdict=verdict,
    )
