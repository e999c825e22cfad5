"""Likelihood-ratio tests between nested fits (lme4's ``anova(fit0, fit1, ...)``).

REML fits are refitted by maximum likelihood first (REML criteria of models
with different fixed effects are not comparable), as lme4 does, and the table
says so. Rows are ordered by the number of parameters.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from .errors import DataError, LmmWarning

if TYPE_CHECKING:
    from .results import LmmResult

__all__ = ["anova", "AnovaFrame"]


class AnovaFrame(pd.DataFrame):
    """A DataFrame that prints as R prints an anova table (with a heading)."""

    _metadata = ["heading"]

    @property
    def _constructor(self) -> type[AnovaFrame]:
        return AnovaFrame

    def __str__(self) -> str:
        return format_anova(self, getattr(self, "heading", ""))

    def __repr__(self) -> str:
        return self.__str__()


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return ""
    if p < 2.2e-16:
        return "< 2.2e-16"
    return f"{p:.4g}" if p >= 1e-4 else f"{p:.2e}"


def _stars(p: float) -> str:
    if not math.isfinite(p):
        return ""
    for cut, mark in [(0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")]:
        if p < cut:
            return mark
    return ""


def format_anova(table: pd.DataFrame, heading: str = "") -> str:
    """The table as R prints it: numbers to 4 significant digits, significance stars."""
    cols = list(table.columns)
    body = []
    for name, row in table.iterrows():
        cells = [str(name)]
        for c in cols:
            v = row[c]
            if c in {"npar", "Df", "NumDF"}:
                cells.append("" if pd.isna(v) else str(int(v)))
            elif c.startswith("Pr("):
                cells.append(_fmt_p(float(v)) if not pd.isna(v) else "")
            else:
                cells.append("" if pd.isna(v) else f"{float(v):.4g}" if abs(float(v)) < 1e5 else f"{float(v):.1f}")
        p_col = next((c for c in cols if c.startswith("Pr(")), None)
        cells.append(_stars(float(row[p_col])) if p_col and not pd.isna(row[p_col]) else "")
        body.append(cells)
    header = [""] + cols + [""]
    widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]
    lines = [heading] if heading else []
    for r in [header, *body]:
        lines.append(" ".join(r[0].ljust(widths[0]) if j == 0 else r[j].rjust(widths[j]) for j in range(len(r))).rstrip())
    if any(r[-1] for r in body):
        lines.append("---")
        lines.append("Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
    return "\n".join(lines)


def anova(*fits: LmmResult, names: list[str] | None = None, refit: bool = True) -> AnovaFrame:
    """Likelihood-ratio tests of nested models, as lme4's ``anova``.

    Parameters
    ----------
    *fits : LmmResult
        Two or more fits on the same observations.
    names : list of str, optional
        Row names (default: ``model1``, ``model2``… in the order given).
    refit : bool
        Refit REML fits by maximum likelihood first (default, as lme4).

    Returns
    -------
    AnovaFrame
        One row per model, ordered by the number of parameters, with columns
        npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq).
    """
    if len(fits) < 2:
        raise DataError("anova needs at least two fits to compare.")
    names = list(names) if names is not None else [f"model{i + 1}" for i in range(len(fits))]
    if len(names) != len(fits):
        raise DataError(f"{len(names)} names for {len(fits)} fits.")
    nobs = {f.nobs for f in fits}
    if len(nobs) > 1:
        raise DataError(f"the fits use different numbers of observations ({sorted(nobs)}); they are not nested.")
    refitted = False
    ml: list[Any] = []
    for f in fits:
        if f.reml and refit:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LmmWarning)
                ml.append(f.update(reml=False))
            refitted = True
        else:
            ml.append(f)
    order = sorted(range(len(ml)), key=lambda i: (ml[i].df, i))
    rows = []
    prev = None
    for i in order:
        f = ml[i]
        dev = f.objective if not f.reml else -2.0 * f.loglik
        row: dict[str, float] = {
            "npar": f.df,
            "AIC": f.aic,
            "BIC": f.bic,
            "logLik": f.loglik,
            "deviance": dev,
            "Chisq": np.nan,
            "Df": np.nan,
            "Pr(>Chisq)": np.nan,
        }
        if prev is not None:
            chisq = max(prev["deviance"] - dev, 0.0)
            df = f.df - prev["npar"]
            row["Chisq"] = chisq
            row["Df"] = df
            row["Pr(>Chisq)"] = float(stats.chi2.sf(chisq, df)) if df > 0 else np.nan
        rows.append(row)
        prev = row
    table = AnovaFrame(rows, index=[names[i] for i in order])
    heading = "Data: models compared by likelihood-ratio tests"
    if refitted:
        heading = "refitting model(s) with ML (instead of REML)\n" + heading
    table.heading = heading
    return table
