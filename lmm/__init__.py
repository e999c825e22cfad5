"""lmm: linear mixed-effects models for pandas DataFrames, with lme4's formulas and numbers.

>>> import lmm
>>> fit = lmm.lmer("Reaction ~ Days + (Days | Subject)", data=lmm.datasets.load("sleepstudy"))
>>> print(fit.summary())  # doctest: +SKIP
"""

from __future__ import annotations

from . import datasets
from .errors import (
    ConvergenceWarning,
    DataError,
    DesignError,
    FitError,
    FormulaError,
    LmmError,
    LmmWarning,
    MissingDataWarning,
    RankDeficiencyWarning,
    ScaleWarning,
    SingularFitWarning,
)
from .formula import parse_formula
from .lrt import anova, drop1
from .model import LinearMixedModel, lmer
from .optimize import OptSummary
from .results import LmmResult, VarCorr

__version__ = "0.1.0"

__all__ = [
    "lmer",
    "anova",
    "drop1",
    "LinearMixedModel",
    "LmmResult",
    "VarCorr",
    "OptSummary",
    "parse_formula",
    "datasets",
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
    "__version__",
]
