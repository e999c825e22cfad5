"""The profiled deviance and REML criterion (Bates et al. 2015, eqs. 34 and 41).

For a given θ the penalised least-squares system gives ``log|L|²`` (``ldL2``),
``log|RX|²`` (``ldRX2``) and the penalised weighted residual sum of squares
``pwrss``. With ``n`` observations, ``p`` fixed effects and prior weights
``w`` (``ldW = Σ log w``):

* ML:   ``ldL2 − ldW + n (1 + log(2π pwrss / n))``
* REML: ``ldL2 + ldRX2 − ldW + (n − p) (1 + log(2π pwrss / (n − p)))``
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = ["profiled_deviance", "make_objective", "PlsSystem"]


class PlsSystem(Protocol):
    """What the deviance needs of a penalised least-squares system."""

    n: int
    p: int

    def evaluate(self, theta: NDArray[np.float64]) -> tuple[float, float, float] | None:
        """``(ldL2, ldRX2, pwrss)`` at θ, or None where the system is singular."""
        ...


def profiled_deviance(ldL2: float, ldRX2: float, pwrss: float, n: int, p: int, *, reml: bool, ldW: float = 0.0) -> float:
    """The profiled objective from the pieces of the factorisation.

    Parameters
    ----------
    ldL2, ldRX2, pwrss : float
        ``log|L|²``, ``log|RX|²``, penalised weighted residual sum of squares.
    n, p : int
        Number of observations and of fixed effects.
    reml : bool
        REML criterion if True, else the deviance (−2 log-likelihood).
    ldW : float
        Sum of the logs of the prior weights (0 without weights).
    """
    if reml:
        nmp = n - p
        return ldL2 + ldRX2 - ldW + nmp * (1.0 + math.log(2.0 * math.pi * pwrss / nmp))
    return ldL2 - ldW + n * (1.0 + math.log(2.0 * math.pi * pwrss / n))


def make_objective(system: PlsSystem, *, reml: bool, ldW: float = 0.0) -> Callable[[NDArray[np.float64]], float]:
    """The function θ ↦ profiled objective; ``inf`` where the system is singular."""
    n, p = system.n, system.p

    def objective(theta: NDArray[np.float64]) -> float:
        pieces = system.evaluate(np.asarray(theta, dtype=np.float64))
        if pieces is None or not pieces[2] > 0:
            return math.inf
        ldL2, ldRX2, pwrss = pieces
        return profiled_deviance(ldL2, ldRX2, pwrss, n, p, reml=reml, ldW=ldW)

    return objective
