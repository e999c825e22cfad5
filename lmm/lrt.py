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
from .formula import parse_formula

if TYPE_CHECKING:
    from .results import LmmResult

__all__ = ["anova", "drop1", "AnovaFrame"]


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


def format_anova(table: pd.DataFrame, heading: str = "") -> str:
    """The table as R prints an anova table.

    Numbers to 5 significant digits per column (R's ``digits - 2``), p-values
    to 4 (``format.pval``), counts as integers, missing cells blank,
    significance stars and their legend.
    """
    from .summary import SIGNIF_LEGEND, _format_pval, _stars, r_format

    cols = list(table.columns)
    p_col = next((c for c in cols if c.startswith("Pr(")), None)
    formatted: dict[str, list[str]] = {}
    for c in cols:
        values = table[c].to_numpy(dtype=float)
        ok = np.isfinite(values)
        cells = [""] * len(values)
        if ok.any():
            if c in {"npar", "Df", "NumDF"}:
                texts = [str(int(v)) for v in values[ok]]
            elif c == p_col:
                texts = _format_pval(values[ok], 4)
            else:
                texts = r_format(values[ok], 5)
            for i, s in zip(np.flatnonzero(ok), texts):
                cells[i] = s.strip()
        formatted[c] = cells
    body = []
    for k, name in enumerate(table.index):
        cells = [str(name)] + [formatted[c][k] for c in cols]
        pv = float(table[p_col].iloc[k]) if p_col else math.nan
        cells.append(_stars(pv).strip() if math.isfinite(pv) else "")
        body.append(cells)
    header = [""] + cols + [""]
    widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]
    lines = [heading] if heading else []
    for r in [header, *body]:
        lines.append(" ".join(r[0].ljust(widths[0]) if j == 0 else r[j].ljust(widths[j]) if j == len(r) - 1 else r[j].rjust(widths[j]) for j in range(len(r))))
    if any(r[-1] for r in body):
        lines.append("---")
        lines.append("Signif. codes:  " + SIGNIF_LEGEND)
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
    data_names = {f.data_name for f in fits}
    lines = ["refitting model(s) with ML (instead of REML)"] if refitted else []
    data_name = data_names.pop() if len(data_names) == 1 else None
    lines.append(f"Data: {data_name}" if data_name else "Data: (the same observations)")
    lines.append("Models:")
    lines.extend(f"{names[i]}: {fits[i].formula}" for i in order)
    heading = "\n".join(lines)
    table.heading = heading
    return table


def _droppable_terms(labels: list[str]) -> list[str]:
    """Terms not contained in a higher-order term (R's ``drop.scope``), in formula order."""
    factor_sets = {t: set(t.split(":")) for t in labels}
    return [t for t in labels if not any(o != t and factor_sets[t] < factor_sets[o] for o in labels)]


def drop1(fit: LmmResult) -> AnovaFrame:
    """Likelihood-ratio tests of dropping each fixed-effect term (lme4's ``drop1(fit, test = "Chisq")``).

    Only terms that no higher-order interaction contains are dropped (R's
    marginality rule). REML fits are refitted by maximum likelihood first, as
    likelihood-ratio tests of fixed effects need.

    Returns
    -------
    AnovaFrame
        Rows ``<none>`` and one per droppable term, with columns ``npar`` (the
        parameters dropped), ``AIC``, ``LRT`` and ``Pr(Chi)``.
    """
    model = fit.model
    if model is None or model.design is None or model.design.x_spec is None:
        raise DataError("drop1 needs a fit from a formula.")
    parsed = parse_formula(model.formula)
    labels = [str(t) for t in model.design.x_spec.formula]
    has_intercept = "1" in labels
    labels = [t for t in labels if t != "1"]
    droppable = _droppable_terms(labels)
    if not droppable:
        raise DataError("the model has no fixed-effect term to drop.")
    bars = " + ".join(f"({b.expr} | {b.group})" for b in parsed.bars)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmmWarning)
        full = fit.update(reml=False) if fit.reml else fit
        rows: dict[str, dict[str, float]] = {"<none>": {"npar": np.nan, "AIC": full.aic, "LRT": np.nan, "Pr(Chi)": np.nan}}
        for term in droppable:
            rest = [t for t in labels if t != term]
            fixed = " + ".join((["1"] if has_intercept else ["0"]) + rest)
            formula = f"{parsed.response} ~ {fixed} + {bars}"
            reduced = fit.update(formula=formula, reml=False)
            df = full.df - reduced.df
            lrt = max(reduced.objective - full.objective, 0.0)
            rows[term] = {"npar": df, "AIC": reduced.aic, "LRT": lrt, "Pr(Chi)": float(stats.chi2.sf(lrt, df)) if df > 0 else np.nan}
    table = AnovaFrame.from_dict(rows, orient="index")
    lines = ["refitting model(s) with ML (instead of REML)"] if fit.reml else []
    lines += ["Single term deletions", "", "Model:", str(model.formula)]
    table.heading = "\n".join(lines)
    return table
