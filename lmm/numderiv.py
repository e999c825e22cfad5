"""Numerical derivatives by central differences with Richardson extrapolation.

The scheme of R's numDeriv (the one lmerTest uses): central differences at
steps ``h, h/2, h/4, h/8`` with ``h = d·|x|`` (``eps`` where x is 0), combined
by Richardson extrapolation, whose error falls as ``h⁸`` for smooth functions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

__all__ = ["hessian", "jacobian", "gradient"]


def _richardson(values: list[NDArray[np.float64]], v: float = 2.0) -> NDArray[np.float64]:
    """Richardson extrapolation of estimates at steps h, h/v, h/v², … (error O(h²))."""
    table = [np.asarray(x, dtype=float) for x in values]
    m = 1
    while len(table) > 1:
        factor = v ** (2 * m)
        table = [(factor * table[i + 1] - table[i]) / (factor - 1.0) for i in range(len(table) - 1)]
        m += 1
    return table[0]


def _steps(x: NDArray[np.float64], d: float, eps: float, r: int, v: float) -> list[NDArray[np.float64]]:
    h0 = np.where(np.abs(x) > 1e-7, d * np.abs(x), eps)
    return [h0 / v**k for k in range(r)]


def hessian(f: Callable[[NDArray[np.float64]], float], x: NDArray[np.float64], *, d: float = 0.1, eps: float = 1e-4, r: int = 4, v: float = 2.0) -> NDArray[np.float64]:
    """Hessian of a scalar function by extrapolated central differences."""
    n = x.size
    f0 = f(x)
    estimates = []
    for h in _steps(x, d, eps, r, v):
        H = np.empty((n, n))
        fp = np.empty(n)
        fm = np.empty(n)
        for i in range(n):
            e = np.zeros(n)
            e[i] = h[i]
            fp[i], fm[i] = f(x + e), f(x - e)
            H[i, i] = (fp[i] - 2.0 * f0 + fm[i]) / h[i] ** 2
        for i in range(n):
            for j in range(i):
                ei = np.zeros(n)
                ej = np.zeros(n)
                ei[i], ej[j] = h[i], h[j]
                val = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4.0 * h[i] * h[j])
                H[i, j] = H[j, i] = val
        estimates.append(H)
    return _richardson(estimates, v)


def jacobian(F: Callable[[NDArray[np.float64]], NDArray[np.float64]], x: NDArray[np.float64], *, d: float = 1e-4, eps: float = 1e-4, r: int = 4, v: float = 2.0) -> list[NDArray[np.float64]]:
    """Derivatives of an array-valued function, one array per element of x."""
    out = []
    steps = _steps(x, d, eps, r, v)
    for i in range(x.size):
        estimates = []
        for h in steps:
            e = np.zeros(x.size)
            e[i] = h[i]
            estimates.append((F(x + e) - F(x - e)) / (2.0 * h[i]))
        out.append(_richardson(estimates, v))
    return out


def gradient(f: Callable[[NDArray[np.float64]], float], x: NDArray[np.float64], *, d: float = 1e-4, eps: float = 1e-4, r: int = 4, v: float = 2.0) -> NDArray[np.float64]:
    """Gradient of a scalar function by extrapolated central differences."""
    return np.array([float(g) for g in jacobian(lambda z: np.array(f(z)), x, d=d, eps=eps, r=r, v=v)])
