"""lme4's ``summary()`` of a fit, as data and as text or HTML.

:class:`Summary` holds the sections as plain values and DataFrames; the
renderers only format them, in lme4's section order. The text reproduces what
R prints for ``summary(lmer(...))`` (and, with ``ddf="Satterthwaite"``, for
lmerTest's summary) line for line, so it can be compared with R's output cell
by cell. The number formatting follows R's observed behaviour, written here
from scratch:

* ``format(x, digits=d)`` on a vector: every element is rounded to ``d``
  significant digits, trailing zeros dropped; the column then gets the
  largest number of decimals any element needs, and all elements are padded
  to a common width (scientific notation only when it is narrower);
* ``printCoefmat``: estimates, standard errors (and lmerTest's df) are
  rounded together to enough decimals for ``digits`` significant digits of
  the smallest of them, then formatted as one block; t values are rounded to
  ``digits - 1`` decimals first; p-values below 1e-3 are formatted one by one,
  the others together, and those below machine epsilon print as ``<2e-16``;
* ``abbreviate``: lower-case vowels are dropped from the right (word ends
  first), then lower-case letters, then anything but a word's first letter,
  until the name is short enough; clashing abbreviations get longer;
* matrices wrap their columns at R's console width (80).
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .results import LmmResult, VarCorr

__all__ = ["Summary", "format_varcorr", "r_format", "abbreviate"]

DIGITS = 4
"""R's ``max(3, getOption("digits") - 3)``: the digits lme4's summary prints with."""

WIDTH = 80
"""R's default console width, at which titles and wide matrices wrap."""

COR_MAX = 12
"""Largest number of fixed effects whose correlation matrix is printed by default (lme4's ``lme4.summary.cor.max``)."""

EPS = float(np.finfo(float).eps)

SIGNIF_LEGEND = "0 \u2018***\u2019 0.001 \u2018**\u2019 0.01 \u2018*\u2019 0.05 \u2018.\u2019 0.1 \u2018 \u2019 1"


# --------------------------------------------------------------- R formats
def _sig(x: float, digits: int) -> tuple[int, int]:
    """(exponent, significant digits) of ``|x|`` rounded to ``digits`` significant digits."""
    mant, exp = f"{abs(x):.{digits - 1}e}".split("e")
    nsig = len(mant.replace(".", "").rstrip("0"))
    return int(exp), max(nsig, 1)


def _nonfinite(x: float) -> str:
    if np.isnan(x):
        return "NaN"
    return "Inf" if x > 0 else "-Inf"


def r_format(values: object, digits: int = 7, nsmall: int = 0) -> list[str]:
    """Format numbers together as R's ``format(x, digits=, nsmall=)``.

    Parameters
    ----------
    values : array-like of float
        The numbers, formatted as one vector (common decimals and width).
    digits : int
        Significant digits the element needing most decimals gets.
    nsmall : int
        At least this many decimals in fixed notation.

    Returns
    -------
    list of str
        One string per value, right-justified to a common width.
    """
    vals = [float(v) for v in np.asarray(values, dtype=float).reshape(-1)]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        out = [_nonfinite(v) for v in vals]
    else:
        rgt, left, mxns, neg, mxe = 0, 1, 1, 0, 0
        for v in finite:
            if v == 0.0:
                exp, nsig = 0, 1
            else:
                exp, nsig = _sig(v, digits)
            neg = max(neg, int(v < 0))
            left = max(left, exp + 1)
            rgt = max(rgt, nsig - exp - 1)
            mxns = max(mxns, nsig)
            mxe = max(mxe, abs(exp))
        width_fixed = neg + left + rgt + (rgt > 0)
        width_sci = neg + (mxns > 1) + mxns + 4 + (mxe >= 100)
        if width_fixed <= width_sci:
            dec = max(rgt, nsmall)
            out = [f"{v:.{dec}f}" if math.isfinite(v) else _nonfinite(v) for v in vals]
        else:
            out = [_r_sci(v, mxns - 1) if math.isfinite(v) else _nonfinite(v) for v in vals]
    width = max(len(s) for s in out)
    return [s.rjust(width) for s in out]


def _r_sci(x: float, dec: int) -> str:
    mant, exp = f"{x:.{dec}e}".split("e")
    e = int(exp)
    return f"{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"


def _r_round(x: np.ndarray, digits: float) -> np.ndarray:
    """R's ``round(x, digits)``; a fractional ``digits`` is rounded to the nearest integer first."""
    return np.round(np.asarray(x, dtype=float), int(math.floor(digits + 0.5)))


def _zapsmall(x: np.ndarray, digits: int) -> np.ndarray:
    """R's ``zapsmall``: round to ``digits - log10(max |x|)`` decimals."""
    x = np.asarray(x, dtype=float)
    fin = x[np.isfinite(x)]
    mx = float(np.max(np.abs(fin))) if fin.size else 0.0
    return _r_round(x, max(0.0, digits - math.log10(mx)) if mx > 0 else digits)


def _format_pval(pv: np.ndarray, digits: int, eps: float = EPS) -> list[str]:
    """R's ``format.pval``: below-1e-3 values one by one, the rest together, tiny ones as ``<eps``."""
    pv = np.asarray(pv, dtype=float)
    out = ["NA"] * pv.size
    ok = np.flatnonzero(np.isfinite(pv))
    tiny = [i for i in ok if pv[i] < eps]
    rest = [i for i in ok if pv[i] >= eps]
    fixp = [i for i in rest if pv[i] == 0 or math.floor(math.log10(pv[i])) >= -3]
    small = [i for i in rest if i not in fixp]
    if fixp:
        for i, s in zip(fixp, r_format(pv[fixp], digits)):
            out[i] = s
    for i in small:
        out[i] = r_format([pv[i]], digits)[0]
    if tiny:
        edig = max(1, digits - 2)
        if rest:
            nc = max(len(out[i]) for i in rest)
            if edig > 1 and edig + 6 > nc:
                edig = max(1, nc - 7)
            sep = "" if edig == 1 and nc <= 6 else " "
        else:
            sep = "" if edig == 1 else " "
        text = "<" + sep + r_format([eps], edig)[0]
        for i in tiny:
            out[i] = text
    return out


def _stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    for cut, sym in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p <= cut:
            return sym
    return " "


def _coefmat(cf: pd.DataFrame, digits: int = DIGITS) -> tuple[list[str], list[list[str]], bool]:
    """Cells of R's ``printCoefmat``: (header, rows, whether the significance legend follows)."""
    cols = list(cf.columns)
    has_p = bool(cols) and cols[-1].startswith("Pr(")
    tcol = cols.index("t value") if "t value" in cols else None
    cs = [j for j in range(len(cols)) if j != tcol and not (has_p and j == len(cols) - 1)]
    dig_tst = max(1, min(5, digits - 1))
    xm = cf.to_numpy(dtype=float)
    cells = [[""] * len(cols) for _ in range(len(cf))]
    if cs:
        block = xm[:, cs]
        acs = np.abs(block[np.isfinite(block) & (block != 0)])
        digmin = 1 + (math.floor(math.log10(float(acs.min()))) if acs.size else 0)
        dec = max(1, digits - digmin)
        formatted = r_format(_r_round(block, dec).T.reshape(-1), digits)
        nrow = len(cf)
        for k, j in enumerate(cs):
            for i in range(nrow):
                s = formatted[k * nrow + i]
                x = xm[i, j]
                if np.isfinite(x) and x != 0 and float(s) == 0.0:
                    s = r_format([x], max(1, digits - 1))[0]
                cells[i][j] = s
    if tcol is not None:
        for i, s in enumerate(r_format(_r_round(xm[:, tcol], dig_tst), digits)):
            cells[i][tcol] = s
    header = list(cols)
    legend = False
    if has_p:
        pv = xm[:, -1]
        for i, s in enumerate(_format_pval(pv, dig_tst)):
            cells[i][-1] = s
        fin = pv[np.isfinite(pv)]
        if fin.size and np.any(fin < 0.1):
            stars = [_stars(p) for p in pv]
            w = max(len(s) for s in stars)
            for i, s in enumerate(stars):
                cells[i].append(s.ljust(w))
            header.append("")
            legend = True
    return header, cells, legend


# ------------------------------------------------------------ abbreviate
def _abbreviate_one(name: str, minlength: int) -> str:
    chars = list(name.lstrip(" "))
    if len(chars) <= minlength:
        return "".join(chars)
    while chars and chars[-1] == " ":
        chars.pop()
    nspace = sum(c == " " for c in chars)

    def short() -> bool:
        return len(chars) - nspace <= minlength

    def first_of_word(i: int) -> bool:
        return chars[i - 1] == " "

    def last_of_word(i: int) -> bool:
        return chars[i - 1] != " " and (i + 1 == len(chars) or chars[i + 1] == " ")

    stages = [
        lambda i: chars[i] in "aeiou" and last_of_word(i),
        lambda i: chars[i] in "aeiou" and not first_of_word(i),
        lambda i: chars[i].islower() and chars[i].isascii() and last_of_word(i),
        lambda i: chars[i].islower() and chars[i].isascii() and not first_of_word(i),
        lambda i: chars[i] != " " and not first_of_word(i),
    ]
    if not short():
        for drop in stages:
            for i in range(len(chars) - 1, 0, -1):
                if i < len(chars) and drop(i):
                    del chars[i]
                if short():
                    break
            if short():
                break
    if len(chars) > minlength:
        chars = chars[:1] + [c for c in chars[1:] if c != " "]
    return "".join(chars)


def abbreviate(names: list[str], minlength: int = 4) -> list[str]:
    """Abbreviate names as R's ``abbreviate(names, minlength)``.

    Lower-case vowels are dropped from the right (those ending a word first),
    then lower-case letters, then any character but a word's first, until at
    most ``minlength`` characters remain; a word's first character is kept.
    Names whose abbreviations clash are abbreviated again with a larger
    ``minlength`` until all differ.

    Parameters
    ----------
    names : list of str
    minlength : int

    Returns
    -------
    list of str
    """
    unique = list(dict.fromkeys(names))
    abbr = {n: _abbreviate_one(n, minlength) for n in unique}
    todo = unique
    length = minlength
    while True:
        seen: dict[str, int] = {}
        for n in unique:
            seen[abbr[n]] = seen.get(abbr[n], 0) + 1
        todo = [n for n in unique if seen[abbr[n]] > 1]
        if not todo or length > max(len(n) for n in unique):
            break
        length += 1
        for n in todo:
            abbr[n] = _abbreviate_one(n, length)
    return [abbr[n] for n in names]


# --------------------------------------------------------- text layouts
def _print_matrix(
    rownames: list[str], header: list[str], rows: list[list[str]], *, right: bool, width: int = WIDTH
) -> list[str]:
    """A character matrix as R's ``print(m, quote = FALSE, right = right)``, columns wrapped at ``width``."""
    w0 = max((len(r) for r in rownames), default=0)
    ncol = len(header)
    widths = [max(len(header[j]), *(len(r[j]) for r in rows)) if rows else len(header[j]) for j in range(ncol)]

    def cell(s: str, w: int) -> str:
        return s.rjust(w) if right else s.ljust(w)

    lines: list[str] = []
    start = 0
    while start < ncol or (ncol == 0 and not lines):
        end, used = start, w0
        while end < ncol and (end == start or used + 1 + widths[end] <= width):
            used += 1 + widths[end]
            end += 1
        span = range(start, end)
        lines.append(" " * w0 + "".join(" " + cell(header[j], widths[j]) for j in span))
        for name, r in zip(rownames, rows):
            lines.append(name.ljust(w0) + "".join(" " + cell(r[j], widths[j]) for j in span))
        if ncol == 0:
            break
        start = end
    return lines


def _print_named(names: list[str], values: list[str], width: int = WIDTH) -> list[str]:
    """A named vector as R prints it: common right-justified width, a space after each field."""
    w = max(len(s) for s in [*names, *values])
    per_line = max(1, width // (w + 1))
    lines = []
    for k in range(0, len(names), per_line):
        lines.append("".join(n.rjust(w) + " " for n in names[k : k + per_line]))
        lines.append("".join(v.rjust(w) + " " for v in values[k : k + per_line]))
    return lines


def _varcorr_cells(vc: VarCorr, digits: int = DIGITS) -> tuple[list[str], list[list[str]]]:
    """Header and rows of lme4's random-effects table (Groups, Name, Variance, Std.Dev., Corr…)."""
    var_all = np.concatenate([np.diag(c.cov) for c in vc.components] + [np.array([vc.residual_sd**2])])
    var_s = r_format(var_all, digits)
    sd_s = r_format(np.sqrt(var_all), digits)
    maxc = max((len(c.cnames) for c in vc.components), default=1)
    ncorr = maxc - 1
    rows: list[list[str]] = []
    k = 0
    dig = max(2, digits - 2)
    for c in vc.components:
        corr = c.corr
        nc = len(c.cnames)
        cc = r_format(_r_round(corr, dig).reshape(-1), nsmall=dig) if nc > 1 else []
        for i, name in enumerate(c.cnames):
            corr_cells = [cc[i * nc + j] if j < i else "" for j in range(ncorr)]
            rows.append([c.name if i == 0 else "", name, var_s[k], sd_s[k], *corr_cells])
            k += 1
    rows.append(["Residual", "", var_s[k], sd_s[k]] + [""] * ncorr)
    header = ["Groups", "Name", "Variance", "Std.Dev."] + (["Corr"] + [""] * (ncorr - 1) if ncorr else [])
    return header, rows


def format_varcorr(vc: VarCorr, digits: int = DIGITS) -> str:
    """The "Random effects" table as lme4 prints it: Groups, Name, Variance, Std.Dev. and correlations.

    Parameters
    ----------
    vc : VarCorr
    digits : int
        Significant digits of the Variance and Std.Dev. columns (each
        formatted as one vector, as R's ``format(x, digits=)``).

    Returns
    -------
    str
    """
    header, rows = _varcorr_cells(vc, digits)
    return "\n".join(_print_matrix([""] * len(rows), header, rows, right=False))


def _expand_double_bars(formula: str) -> str:
    """The formula with each ``(a + b || g)`` written out as lme4 stores it: ``((1 | g) + (0 + a | g) + (0 + b | g))``."""
    out, pos = [], 0
    for m in re.finditer(r"\(", formula):
        start = m.start()
        if start < pos:
            continue
        depth, end = 0, None
        for j in range(start, len(formula)):
            depth += {"(": 1, ")": -1}.get(formula[j], 0)
            if depth == 0:
                end = j
                break
        if end is None:
            break
        inner = formula[start + 1 : end]
        if "||" not in inner or "(" in inner:
            continue
        lhs, group = (part.strip() for part in inner.split("||", 1))
        terms = [t.strip() for t in lhs.split("+") if t.strip()]
        if any(t.startswith("-") and t != "-1" for t in terms):
            continue  # anything unusual: keep the user's spelling
        intercept = not any(t in {"0", "-1"} for t in terms)
        kept = [t for t in terms if t not in {"0", "1", "-1"}]
        bars = (["(1 | " + group + ")"] if intercept else []) + [f"(0 + {t} | {group})" for t in kept]
        out.append(formula[pos:start] + "(" + " + ".join(bars) + ")")
        pos = end + 1
    out.append(formula[pos:])
    return "".join(out)


# ------------------------------------------------------------- Summary
@dataclass(frozen=True)
class Summary:
    """The sections of lme4's (or lmerTest's) ``summary()`` as data.

    Print it (``str``/``render_text``) for R's text, or display it in a
    notebook (``_repr_html_``) for HTML tables.

    Attributes
    ----------
    reml : bool
        REML or maximum-likelihood fit.
    ddf : str or None
        None for lme4's table; "Satterthwaite" or "Kenward-Roger" for
        lmerTest's, with df and p-values.
    formula, data_name : str or None
        The model formula and the data set's name (``DataFrame.attrs["name"]``).
    weights_name, offset_name : str or None
        The column named for ``weights``/``offset``, ``"(array)"`` when values
        were given, None without.
    criteria : pandas.Series
        "REML criterion at convergence", or AIC, BIC, logLik, deviance, df.resid.
    scaled_residuals : pandas.Series or None
        Min, 1Q, Median, 3Q, Max of the scaled Pearson residuals (None for a
        fit from chunked data, which keeps no rows).
    varcorr : VarCorr
        The variance components.
    random_effects : pandas.DataFrame
        ``varcorr`` as lme4's ``as.data.frame(VarCorr(fit))``.
    nobs : int
    ngroups : dict
        Levels per grouping factor.
    coefficients : pandas.DataFrame
        Estimate, Std. Error, (df,) t value (, Pr(>|t|)).
    correlation : pandas.DataFrame
        Correlation of the fixed-effects estimates.
    show_correlation : bool
        Whether the correlation is printed (by default when there are at most
        12 fixed effects).
    optimizer : str
        The optimiser that gave the final point.
    converged, singular : bool
        Whether it converged; whether the fit is on the boundary (lme4's ``isSingular``).
    messages : tuple of str
        The fit's own warnings, in full.
    width : int
        Console width at which the text wraps (R's default 80).
    """

    reml: bool
    ddf: str | None
    formula: str | None
    data_name: str | None
    weights_name: str | None
    offset_name: str | None
    criteria: pd.Series
    scaled_residuals: pd.Series | None
    varcorr: VarCorr
    random_effects: pd.DataFrame
    nobs: int
    ngroups: dict[str, int]
    coefficients: pd.DataFrame
    correlation: pd.DataFrame
    show_correlation: bool
    optimizer: str = ""
    converged: bool = True
    singular: bool = False
    messages: tuple[str, ...] = ()
    width: int = field(default=WIDTH)

    @classmethod
    def from_result(cls, fit: LmmResult, *, ddf: str | None = None, correlation: bool | None = None) -> Summary:
        """Collect the sections of ``fit``.

        Parameters
        ----------
        fit : LmmResult
        ddf : {None, "Satterthwaite", "Kenward-Roger"}
            lme4's summary (None) or lmerTest's with df and p-values.
        correlation : bool, optional
            Print the correlation of the fixed effects; by default only with
            at most 12 fixed effects, as lme4.
        """
        if ddf is not None:
            key = ddf.lower()
            if key == "satterthwaite":
                ddf = "Satterthwaite"
            elif key in {"kenward-roger", "kr"}:
                ddf = "Kenward-Roger"
            else:
                raise ValueError(f"ddf must be None, 'Satterthwaite' or 'Kenward-Roger', not {ddf!r}.")
        scaled: pd.Series | None = None
        if fit.y.size == fit.nobs:
            resid = fit.y - fit.fitted_values
            if fit.weights is not None:
                resid = resid * np.sqrt(fit.weights)
            q = np.quantile(resid / fit.sigma, [0.0, 0.25, 0.5, 0.75, 1.0])
            scaled = pd.Series(q, index=["Min", "1Q", "Median", "3Q", "Max"], name="scaled residuals")
        if fit.reml:
            criteria = pd.Series({"REML criterion at convergence": fit.objective})
        else:
            criteria = pd.Series(
                {
                    "AIC": fit.aic,
                    "BIC": fit.bic,
                    "logLik": fit.loglik,
                    "deviance": fit.objective,
                    "df.resid": float(fit.df_resid),
                }
            )
        coefs = fit.coef_table(ddf)
        if ddf is None:
            coefs = coefs[["Estimate", "Std. Error", "t value"]]
        names = list(fit.xnames)
        se = np.sqrt(np.diag(fit.vcov_matrix))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = fit.vcov_matrix / np.outer(se, se)
        show = len(names) <= COR_MAX if correlation is None else bool(correlation)
        args = getattr(fit.model, "_args", None) or {}
        return cls(
            reml=fit.reml,
            ddf=ddf,
            formula=fit.formula,
            data_name=fit.data_name,
            weights_name=_arg_name(args.get("weights")),
            offset_name=_arg_name(args.get("offset")),
            criteria=criteria,
            scaled_residuals=scaled,
            varcorr=fit.varcorr,
            random_effects=fit.varcorr.to_frame(),
            nobs=fit.nobs,
            ngroups=fit.ngroups,
            coefficients=coefs,
            correlation=pd.DataFrame(corr, index=names, columns=names),
            show_correlation=show,
            optimizer=fit.opt.method,
            converged=bool(fit.opt.converged),
            singular=fit.singular,
            messages=tuple(fit.messages),
        )

    # ------------------------------------------------------------ pieces
    @property
    def title(self) -> str:
        """The first line, as lme4 (or lmerTest) prints it, unwrapped."""
        method = "REML" if self.reml else "maximum likelihood "
        if self.ddf is None:
            return f"Linear mixed model fit by {method} ['lmerMod']"
        return f"Linear mixed model fit by {method}. t-tests use {self.ddf}'s method [lmerModLmerTest]"

    def _title_lines(self) -> list[str]:
        # R prints the title with cat(..., fill = TRUE): too long for the console,
        # it breaks before the class name.
        title = self.title
        if self.ddf is not None and len(title) > self.width:
            head, tail = title.split("[", 1)
            return [head + "[", tail]
        return [title]

    def _shown_formula(self) -> str | None:
        if self.formula is None:
            return None
        # lme4 keeps the formula with || written out; lmerTest shows the call's.
        return _expand_double_bars(self.formula) if self.ddf is None else self.formula

    def _header_pairs(self) -> list[tuple[str, str]]:
        pairs = []
        shown = self._shown_formula()
        if shown:
            pairs.append(("Formula", shown))
        for label, value in (("Data", self.data_name), ("Weights", self.weights_name), ("Offset", self.offset_name)):
            if value:
                pairs.append((label, value))
        return pairs

    def _criteria_cells(self) -> tuple[list[str], list[str]]:
        c = self.criteria
        if self.reml:
            value = float(c.iloc[0])
            return [str(c.index[0])], [r_format([float(_r_round(np.array([value]), 1)[0])], 7)[0].strip()]
        names = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
        four = _r_round(np.array([float(c[n]) for n in names[:4]]), 1)
        vals = [v.strip() for v in r_format(four, 7)] + [r_format([float(c["df.resid"])], 7)[0]]
        return names, vals

    def _residual_cells(self) -> list[str]:
        assert self.scaled_residuals is not None
        q = _zapsmall(self.scaled_residuals.to_numpy(), DIGITS + 1)
        return [s.strip() for s in r_format(q, DIGITS)]

    def _corr_cells(self) -> tuple[list[str], list[str], list[list[str]]]:
        names = list(self.correlation.index)
        p = len(names)
        cf = r_format(_r_round(self.correlation.to_numpy(), 3).reshape(-1), nsmall=3)
        cells = [[cf[i * p + j] if j < i else "" for j in range(p - 1)] for i in range(1, p)]
        return abbreviate(names[1:], 11) if p > 1 else [], abbreviate(names, 6)[: p - 1], cells

    def _warning_lines(self) -> list[str]:
        others = [m for m in self.messages if not m.startswith("boundary")]
        if self.converged and not self.singular and not others:
            return []
        code = 0 if self.converged else 1
        lines = [f"optimizer ({self.optimizer}) convergence code: {code} ({'OK' if self.converged else 'failed'})"]
        if self.singular:
            lines.append("boundary (singular) fit: see fit.singular_terms() and fit.diagnostics")
        lines.extend(others)
        lines.append("")
        return lines

    # ------------------------------------------------------------ text
    def render_text(self) -> str:
        """The summary as lme4 prints it (lmerTest's layout when ``ddf`` is set)."""
        out = self._title_lines()
        for label, value in self._header_pairs():
            out.append(f"{label.rjust(7)}: {value}")
        out.append("")
        names, vals = self._criteria_cells()
        if self.reml:
            out.append(f"{names[0]}: {vals[0]}")
        else:
            out.extend(_print_named(names, vals, self.width))
        out.append("")
        out.append("Scaled residuals: ")
        if self.scaled_residuals is None:
            out.append("(not available: a fit from chunked data keeps no rows)")
        else:
            out.extend(_print_named(list(self.scaled_residuals.index), self._residual_cells(), self.width))
        out.append("")
        out.append("Random effects:")
        header, rows = _varcorr_cells(self.varcorr)
        out.extend(_print_matrix([""] * len(rows), header, rows, right=False, width=self.width))
        line = f"Number of obs: {self.nobs}"
        if self.ngroups:
            line += ", groups:  " + "; ".join(f"{g}, {n}" for g, n in self.ngroups.items())
        out.append(line)
        out.append("")
        out.append("Fixed effects:")
        header, cells, legend = _coefmat(self.coefficients)
        out.extend(
            _print_matrix([str(n) for n in self.coefficients.index], header, cells, right=True, width=self.width)
        )
        if legend:
            out.append("---")
            out.append("Signif. codes:  " + SIGNIF_LEGEND)
        if self.show_correlation and len(self.correlation) > 1:
            out.append("")
            out.append("Correlation of Fixed Effects:")
            rn, cn, cells = self._corr_cells()
            out.extend(_print_matrix(rn, cn, cells, right=False, width=self.width))
        out.extend(self._warning_lines())
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render_text()

    # ------------------------------------------------------------ HTML
    def _repr_html_(self) -> str:
        """The summary as HTML tables (criteria, residuals, random and fixed effects, correlation, warnings)."""
        e = html.escape
        parts = ['<div class="lmm-summary">', f"<p><strong>{e(self.title)}</strong></p>"]
        pairs = self._header_pairs()
        if pairs:
            parts.append('<table class="lmm-call"><tbody>')
            parts.extend(
                f'<tr><th style="text-align:left">{e(k)}</th><td style="text-align:left"><code>{e(v)}</code></td></tr>'
                for k, v in pairs
            )
            parts.append("</tbody></table>")
        names, vals = self._criteria_cells()
        parts.append(_html_table(names, [vals], caption=None, cls="lmm-criteria"))
        if self.scaled_residuals is not None:
            parts.append(
                _html_table(
                    list(self.scaled_residuals.index),
                    [self._residual_cells()],
                    caption="Scaled residuals",
                    cls="lmm-residuals",
                )
            )
        header, rows = _varcorr_cells(self.varcorr)
        parts.append(
            _html_table(
                header, [[c.strip() for c in r] for r in rows], caption="Random effects", cls="lmm-varcorr", left=2
            )
        )
        groups = "; ".join(f"{g}, {n}" for g, n in self.ngroups.items())
        parts.append(f"<p>Number of obs: {self.nobs}" + (f", groups: {e(groups)}" if groups else "") + "</p>")
        header, cells, legend = _coefmat(self.coefficients)
        rows = [[str(n), *(c.strip() for c in r)] for n, r in zip(self.coefficients.index, cells)]
        caption = "Fixed effects" + (f" (t-tests use {self.ddf}'s method)" if self.ddf else "")
        parts.append(_html_table(["", *header], rows, caption=caption, cls="lmm-fixef", left=1))
        if legend:
            parts.append(f"<p><small>Signif. codes: {e(SIGNIF_LEGEND)}</small></p>")
        if self.show_correlation and len(self.correlation) > 1:
            rn, cn, cells = self._corr_cells()
            rows = [[r, *(c.strip() for c in row)] for r, row in zip(rn, cells)]
            parts.append(_html_table(["", *cn], rows, caption="Correlation of fixed effects", cls="lmm-corr", left=1))
        elif len(self.correlation) > COR_MAX:
            parts.append(
                f"<p><small>Correlation of fixed effects not shown (p = {len(self.correlation)} &gt; {COR_MAX}); use summary(correlation=True).</small></p>"
            )
        notes = list(self.messages)
        if not self.converged and not notes:
            notes.append(f"The optimiser ({self.optimizer}) did not converge.")
        if notes:
            parts.append(
                '<div class="lmm-warning" style="border-left:4px solid #d9822b;background:#fff5e6;padding:4px 8px;margin:6px 0">'
                + "".join(f"<p>&#9888; {e(m)}</p>" for m in notes)
                + "</div>"
            )
        parts.append("</div>")
        return "\n".join(parts)


def _arg_name(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else "(array)"


def _html_table(header: list[str], rows: list[list[str]], *, caption: str | None, cls: str, left: int = 0) -> str:
    """An HTML table of already formatted cells; the first ``left`` columns left-aligned, numbers right."""
    e = html.escape

    def style(j: int) -> str:
        return "text-align:left" if j < left else "text-align:right"

    out = [f'<table class="{cls}">']
    if caption:
        out.append(f'<caption style="text-align:left;font-weight:bold">{e(caption)}</caption>')
    out.append(
        "<thead><tr>" + "".join(f'<th style="{style(j)}">{e(h)}</th>' for j, h in enumerate(header)) + "</tr></thead>"
    )
    out.append("<tbody>")
    for r in rows:
        out.append("<tr>" + "".join(f'<td style="{style(j)}">{e(c)}</td>' for j, c in enumerate(r)) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)
