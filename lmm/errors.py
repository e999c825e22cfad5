"""Exceptions and warnings raised by :mod:`lmm`.

Every error the package raises on bad input is a subclass of :class:`LmmError`,
which is itself a :class:`ValueError`, so ``except ValueError`` keeps working.
Warnings are subclasses of :class:`LmmWarning` (a :class:`UserWarning`) and can
be filtered by category.
"""

from __future__ import annotations

__all__ = [
    "LmmError",
    "FormulaError",
    "DataError",
    "DesignError",
    "FitError",
    "LmmWarning",
    "ConvergenceWarning",
    "SingularFitWarning",
    "RankDeficiencyWarning",
    "MissingDataWarning",
    "ScaleWarning",
]


class LmmError(ValueError):
    """Base class of every error raised by :mod:`lmm` on bad input or a failed fit."""


class FormulaError(LmmError):
    """A model formula cannot be parsed or refers to something that does not exist."""


class DataError(LmmError):
    """The data do not fit the formula: a missing column, a wrong type, bad weights."""


class DesignError(LmmError):
    """The model matrices are not usable: too many levels or random effects for the data."""


class FitError(LmmError):
    """The optimisation could not produce a fit (for example, no finite objective)."""


class LmmWarning(UserWarning):
    """Base class of the warnings issued by :mod:`lmm`."""


class ConvergenceWarning(LmmWarning):
    """The optimiser stopped without meeting its convergence criteria."""


class SingularFitWarning(LmmWarning):
    """The fit lies on the boundary of the parameter space (a variance of zero or a correlation of ±1)."""


class RankDeficiencyWarning(LmmWarning):
    """Columns of the fixed-effects matrix were dropped because they are linearly dependent."""


class MissingDataWarning(LmmWarning):
    """Rows with missing values in a model variable were dropped."""


class ScaleWarning(LmmWarning):
    """A variable's scale or location is extreme enough to cost the fit accuracy; the message says what to rescale."""


def warn(message: str, category: type[Warning]) -> None:
    """Issue a warning attributed to the first caller outside the :mod:`lmm` package."""
    import os
    import sys
    import warnings

    here = os.path.dirname(os.path.abspath(__file__))
    level = 2
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
