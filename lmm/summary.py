"""lme4's ``summary()`` of a fit, as data and as text or HTML.

:class:`Summary` holds the sections as plain values and DataFrames; the
``render_*`` functions only format them, in lme4's section order.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .results import LmmResult, VarCorr

__all__ = ["Summary", "format_varcorr"]


def _signif(x: float, digits: int) -> str:
    if not np.isfinite(x):
        return "NaN" if np.isnan(x) else ("Inf" if x > 0 else "-Inf")
    return f"{float(f'{x:.{digits}g}'):g}" if abs(x) < 1e15 else f"{x:.{digits}g}"


def _format_column(values: np.ndarray, digits: int) -> list[str]:
    """Format a column as R's ``format(x, digits=)``: enough decimals for ``digits`` significant digits of the smallest."""
    vals = np.asarray(values, dtype=float)
    finite = vals[np.isfinite(vals) & (vals != 0)]
    if finite.size == 0:
        decimals = 0
    else:
        needed = [max(0, digits - 1 - int(np.floor(np.log10(abs(v) * (1 + 1e-12))))) for v in finite]
        decimals = min(max(needed), 15)
        # drop trailing decimals that are zero for every value
        while decimals > 0 and all(abs(round(v, decimals - 1) - round(v, decimals)) < 1e-15 * max(1.0, abs(v)) for v in finite):
            decimals -= 1
    out = []
    for v in vals:
        if np.isnan(v):
            out.append("NaN")
        else:
            out.append(f"{v:.{decimals}f}")
    return out


def _table(rows: list[list[str]], header: list[str], align_left: set[int] | None = None) -> list[str]:
    align_left = align_left or set()
    ncol = len(header)
    widths = [max(len(header[j]), *(len(r[j]) for r in rows)) if rows else len(header[j]) for j in range(ncol)]
    lines = []
    for r in [header, *rows]:
        cells = [r[j].ljust(widths[j]) if j in align_left else r[j].rjust(widths[j]) for j in range(ncol)]
        lines.append(" ".join(cells))
    return lines


def format_varcorr(vc: VarCorr, digits: int = 4) -> str:
    """The "Random effects" table: Groups, Name, Variance, Std.Dev. and correlations."""
    rows: list[list[str]] = []
    any_corr = any(len(c.cnames) > 1 for c in vc.components)
    var_all = np.concatenate([np.diag(c.cov) for c in vc.components] + [np.array([vc.residual_sd**2])])
    sd_all = np.sqrt(var_all)
    var_s = _format_column(var_all, digits)
    sd_s = _format_column(sd_all, digits)
    k = 0
    maxc = max((len(c.cnames) for c in vc.components), default=1)
    for c in vc.components:
        corr = c.corr
        for i, name in enumerate(c.cnames):
            cells = [c.name if i == 0 else "", name, var_s[k], sd_s[k]]
            if any_corr:
                cs = [f"{corr[i, j]:.2f}" if np.isfinite(corr[i, j]) else "NaN" for j in range(i)]
                cells.append(" ".join(s.rjust(5) for s in cs).ljust(6 * (maxc - 1)))
            rows.append(cells)
            k += 1
    cells = ["Residual", "", var_s[k], sd_s[k]]
    if any_corr:
        cells.append("")
    rows.append(cells)
    header = ["Groups", "Name", "Variance", "Std.Dev."] + (["Corr"] if any_corr else [])
    return "\n".join(" " + line for line in _table(rows, header, align_left={0, 1, 4}))


@dataclass(frozen=True)
class Summary:
    """The sections of lme4's ``summary()`` as data.

    Attributes
    ----------
    title : str
        "Linear mixed model fit by REML" or "... by maximum likelihood".
    formula, data_name : str or None
    criteria : pandas.Series
        REML criterion, or AIC, BIC, logLik, deviance, df.resid.
    scaled_residuals : pandas.Series
        Min, 1Q, Median, 3Q, Max of the scaled (Pearson) residuals.
    varcorr : VarCorr
    nobs : int
    ngroups : dict
    coefficients : pandas.DataFrame
        Estimate, Std. Error, t value.
    correlation : pandas.DataFrame
        Correlation of the fixed effects.
    messages : tuple of str
        The fit's warnings.
    """

    title: str
    formula: str | None
    data_name: str | None
    reml: bool
    criteria: pd.Series
    scaled_residuals: pd.Series
    varcorr: VarCorr
    nobs: int
    ngroups: dict[str, int]
    coefficients: pd.DataFrame
    correlation: pd.DataFrame
    messages: tuple[str, ...]

    @classmethod
    def from_result(cls, fit: LmmResult) -> Summary:
        """Collect the sections of ``fit``."""
        resid = fit.residuals()
        if fit.weights is not None:
            resid = resid * np.sqrt(fit.weights)
        scaled = resid / fit.sigma
        q = np.quantile(scaled, [0.0, 0.25, 0.5, 0.75, 1.0])
        if fit.reml:
            criteria = pd.Series({"REML criterion at convergence": fit.objective})
        else:
            criteria = pd.Series(
                {"AIC": fit.aic, "BIC": fit.bic, "logLik": fit.loglik, "deviance": fit.objective, "df.resid": fit.df_resid}
            )
        se = np.sqrt(np.diag(fit.vcov_matrix))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = fit.vcov_matrix / np.outer(se, se)
        names = list(fit.xnames)
        return cls(
            title="Linear mixed model fit by " + ("REML" if fit.reml else "maximum likelihood"),
            formula=fit.formula,
            data_name=fit.data_name,
            reml=fit.reml,
            criteria=criteria,
            scaled_residuals=pd.Series(q, index=["Min", "1Q", "Median", "3Q", "Max"]),
            varcorr=fit.varcorr,
            nobs=fit.nobs,
            ngroups=fit.ngroups,
            coefficients=fit.coef_table(),
            correlation=pd.DataFrame(corr, index=names, columns=names),
            messages=fit.messages,
        )

    def render_text(self) -> str:
        """The summary as lme4 prints it."""
        out = [self.title]
        if self.formula:
            out.append(f"Formula: {self.formula}")
        if self.data_name:
            out.append(f"   Data: {self.data_name}")
        out.append("")
        if self.reml:
            out.append(f"REML criterion at convergence: {self.criteria.iloc[0]:.1f}")
        else:
            c = self.criteria
            vals = [f"{c['AIC']:.1f}", f"{c['BIC']:.1f}", f"{c['logLik']:.1f}", f"{c['deviance']:.1f}", f"{int(c['df.resid'])}"]
            names = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
            w = [max(len(a), len(b)) for a, b in zip(names, vals)]
            out.append(" ".join(n.rjust(x) for n, x in zip(names, w)) + " ")
            out.append(" ".join(v.rjust(x) for v, x in zip(vals, w)) + " ")
        out.append("")
        out.append("Scaled residuals: ")
        sr = _format_column(self.scaled_residuals.to_numpy(), 4)
        w = max(len(s) for s in sr + list(self.scaled_residuals.index))
        out.append(" ".join(n.rjust(w) for n in self.scaled_residuals.index) + " ")
        out.append(" ".join(s.rjust(w) for s in sr) + " ")
        out.append("")
        out.append("Random effects:")
        out.append(format_varcorr(self.varcorr))
        groups = "; ".join(f"{g}, {n}" for g, n in self.ngroups.items())
        out.append(f"Number of obs: {self.nobs}, groups:  {groups}")
        out.append("")
        out.append("Fixed effects:")
        cf = self.coefficients
        cols = {c: _format_column(cf[c].to_numpy(), 4) for c in cf.columns}
        rows = [[name] + [cols[c][i] for c in cf.columns] for i, name in enumerate(cf.index)]
        out.extend(_table(rows, [""] + list(cf.columns), align_left={0}))
        p = len(cf.index)
        if 1 < p <= 12:
            out.append("")
            out.append("Correlation of Fixed Effects:")
            abbrev = [_abbreviate(n) for n in cf.index]
            corr = self.correlation.to_numpy()
            crow = []
            for i in range(1, p):
                crow.append([abbrev[i] if False else str(cf.index[i])] + [f"{corr[i, j]:.3f}" for j in range(i)] + [""] * (p - 1 - i))
            out.extend(_table(crow, [""] + abbrev[: p - 1], align_left={0}))
        for msg in self.messages:
            out.append(msg)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render_text()

    def _repr_html_(self) -> str:
        parts = [f"<p><b>{html.escape(self.title)}</b><br>"]
        if self.formula:
            parts.append(f"Formula: <code>{html.escape(self.formula)}</code><br>")
        parts.append(f"Number of obs: {self.nobs}; groups: " + html.escape(", ".join(f"{g} ({n})" for g, n in self.ngroups.items())))
        parts.append("</p>")
        parts.append("<p><b>Random effects</b></p>" + self.varcorr.to_frame().to_html(index=False, na_rep=""))
        parts.append("<p><b>Fixed effects</b></p>" + self.coefficients.to_html(float_format=lambda v: f"{v:.4g}"))
        for msg in self.messages:
            parts.append(f"<p><i>{html.escape(msg)}</i></p>")
        return "\n".join(parts)


def _abbreviate(name: str) -> str:
    """R's ``abbreviate(name, 6)`` as lme4 uses it for the correlation header (approximately)."""
    if name == "(Intercept)":
        return "(Intr)"
    if len(name) <= 6:
        return name
    first, rest = name[0], name[1:]
    kept = first + "".join(ch for ch in rest if ch.lower() not in "aeiou")
    return kept[:6]
