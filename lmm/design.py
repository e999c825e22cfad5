"""From a parsed formula and a DataFrame to the model's matrices.

``build_design`` is the only place where data meet the formula. It selects the
complete cases (lme4's ``na.omit``), builds the response, the fixed-effects
matrix X (through formulaic, whose ``ModelSpec`` is kept for new data), and one
:class:`ReTerm` per random-effects term, sorted as lme4 sorts them (decreasing
number of levels, ties in the order written). It also runs lme4's checks on the
numbers of levels and random effects, and drops rank-deficient columns of X.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .errors import DataError, DesignError, FormulaError, MissingDataWarning, RankDeficiencyWarning, ScaleWarning, warn
from .formula import BarTerm, ParsedFormula

__all__ = ["ReTerm", "Design", "build_design", "r_column_name", "SCALE_TOL"]


@dataclass(frozen=True)
class ReTerm:
    """One random-effects term ``(expr | group)`` materialised on the data.

    Attributes
    ----------
    group : str
        The grouping factor's label (``"Subject"``, ``"cask:batch"``).
    expr : str
        The term's model formula as handed to formulaic (``"1 + Days"``).
    cnames : tuple of str
        Column names of the term's model matrix, lme4 style (``"(Intercept)"``, ``"Days"``).
    levels : tuple of str
        Labels of the grouping factor's levels present in the data, in order.
    refs : ndarray of intp, shape (n,)
        Level code of each observation.
    z : ndarray of float64, shape (n, nc)
        The term's model matrix (one row per observation).
    correlated : bool
        False for the pieces of an expanded ``||`` term.
    spec : Any
        formulaic ``ModelSpec`` of ``expr``, to rebuild ``z`` for new data.
    """

    group: str
    factors: tuple[str, ...]
    expr: str
    cnames: tuple[str, ...]
    levels: tuple[str, ...]
    refs: NDArray[np.intp]
    z: NDArray[np.float64]
    correlated: bool = True
    spec: Any = field(default=None, repr=False, compare=False)

    @property
    def nc(self) -> int:
        """Number of columns (random effects per level)."""
        return int(self.z.shape[1])

    @property
    def nl(self) -> int:
        """Number of levels of the grouping factor."""
        return len(self.levels)

    @property
    def q(self) -> int:
        """Number of random effects of the term, ``nc * nl``."""
        return self.nc * self.nl


@dataclass(frozen=True)
class Design:
    """The model's data in matrix form, after missing-value removal.

    Attributes
    ----------
    y : ndarray, shape (n,)
        Response (the offset is not subtracted).
    X : ndarray, shape (n, p)
        Fixed-effects matrix with full column rank.
    xnames : tuple of str
        Names of X's columns (lme4 style).
    reterms : tuple of ReTerm
        Random-effects terms in lme4's order (decreasing number of levels).
    weights, offset : ndarray or None
        Prior weights and offset, one per observation, or None.
    rows : ndarray of intp
        Positions (0-based) in the caller's data of the rows used.
    n_input : int
        Number of rows of the caller's data.
    dropped_columns : tuple of str
        Columns of X removed as linearly dependent.
    """

    y: NDArray[np.float64]
    X: NDArray[np.float64]
    xnames: tuple[str, ...]
    reterms: tuple[ReTerm, ...]
    weights: NDArray[np.float64] | None = None
    offset: NDArray[np.float64] | None = None
    rows: NDArray[np.intp] | None = None
    n_input: int = 0
    response: str = "y"
    dropped_columns: tuple[str, ...] = ()
    x_spec: Any = field(default=None, repr=False, compare=False)
    x_spec_columns: tuple[str, ...] = ()
    x_keep: tuple[int, ...] = ()
    x_levels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fixed_variables: tuple[str, ...] = ()
    offset_column: str | None = None

    @property
    def n(self) -> int:
        """Number of observations used."""
        return int(self.y.shape[0])

    @property
    def p(self) -> int:
        """Number of fixed effects (rank of X)."""
        return int(self.X.shape[1])


_BRACKET = re.compile(r"\[(?:T\.)?([^\]]*)\]")


def r_column_name(name: str) -> str:
    """Translate a formulaic column name to the name lme4 gives it.

    ``Intercept`` becomes ``(Intercept)`` and a dummy column ``f[T.b]`` or ``f[b]``
    becomes ``fb``, so ``recipe[T.B]:temperature[T.185]`` reads
    ``recipeB:temperature185`` as in R.
    """
    if name == "Intercept":
        return "(Intercept)"
    return _BRACKET.sub(lambda m: m.group(1), name).replace("`", "")


def _closest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


_BACKTICKED = re.compile(r"`([^`]+)`")


def _quote_dotted(expr: str, columns: list[str]) -> str:
    """Backtick column names with dots (``my.x``), which R users write bare but Python reads as attributes."""
    for name in sorted((c for c in columns if "." in c), key=len, reverse=True):
        pattern = rf"(?<![\w.`]){re.escape(name)}(?![\w.`(])"
        parts = re.split(r"(`[^`]*`)", expr)
        expr = "".join(p if p.startswith("`") else re.sub(pattern, f"`{name}`", p) for p in parts)
    return expr


def _required_variables(expr: str, columns: list[str], what: str) -> list[str]:
    """The data columns ``expr`` uses; a name that is not a column is an error."""
    import formulaic

    quoted = _BACKTICKED.findall(expr)
    placeholder = _BACKTICKED.sub(lambda m: f"__lmm_q{quoted.index(m.group(1))}__", expr)
    try:
        needed = {str(v) for v in formulaic.Formula(placeholder).required_variables}
    except Exception as exc:  # formulaic raises several types for bad syntax
        raise FormulaError(f"cannot read the {what} {expr!r}: {exc}") from None
    out = []
    for var in sorted(needed):
        match = re.fullmatch(r"__lmm_q(\d+)__", var)
        name = quoted[int(match.group(1))] if match else var
        if name not in columns:
            raise DataError(f"variable {name!r} in the {what} {expr!r} is not a column of the data." + _closest(name, columns))
        out.append(name)
    return out


def _vector_arg(value: Any, data: pd.DataFrame, what: str) -> tuple[NDArray[np.float64] | None, str | None]:
    """Resolve a ``weights=``/``offset=`` argument to an array, or a column name."""
    if value is None:
        return None, None
    if isinstance(value, str):
        if value not in data.columns:
            raise DataError(f"{what} column {value!r} is not in the data.{_closest(value, list(map(str, data.columns)))}")
        col = data[value]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise DataError(f"{what} column {value!r} must be numeric, not {col.dtype}.")
        return col.to_numpy(dtype=np.float64, na_value=np.nan), value
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be a column name or a numeric array.") from None
    if arr.shape[0] != len(data):
        raise DataError(f"{what} has length {arr.shape[0]} but the data have {len(data)} rows.")
    return arr, None


def _level_labels(values: pd.Series) -> tuple[NDArray[np.intp], list[str]]:
    """Codes and labels of a grouping column, unused levels dropped (lme4's ``factor``)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cat = values.cat.remove_unused_categories()
    else:
        uniq = pd.unique(values.to_numpy())
        try:
            ordered = sorted(uniq)
        except TypeError:
            ordered = sorted(uniq, key=str)
        cat = pd.Categorical(values.to_numpy(), categories=ordered)
        cat = pd.Series(cat, index=values.index)
    codes = np.asarray(cat.cat.codes, dtype=np.intp)
    labels = [str(c) for c in cat.cat.categories]
    return codes, labels


def _grouping_factor(bar: BarTerm, data: pd.DataFrame) -> tuple[NDArray[np.intp], tuple[str, ...]]:
    """Level codes and labels of ``bar.group``; interactions keep observed combinations only."""
    codes_list = []
    labels_list = []
    for name in bar.factors:
        codes, labels = _level_labels(data[name])
        codes_list.append(codes)
        labels_list.append(labels)
    if len(codes_list) == 1:
        return codes_list[0], tuple(labels_list[0])
    # first factor varies slowest, as R's `a:b` does; unused combinations dropped
    combined = np.zeros(len(data), dtype=np.int64)
    for codes, labels in zip(codes_list, labels_list):
        combined = combined * len(labels) + codes
    uniq, refs = np.unique(combined, return_inverse=True)
    out_labels = []
    for value in uniq:
        parts = []
        for labels in reversed(labels_list):
            value, rem = divmod(int(value), len(labels))
            parts.append(labels[rem])
        out_labels.append(":".join(reversed(parts)))
    return refs.astype(np.intp), tuple(out_labels)


def _materialise(expr: str, data: pd.DataFrame, what: str) -> Any:
    import formulaic

    try:
        return formulaic.model_matrix(expr, data, na_action="ignore")
    except Exception as exc:  # formulaic's own errors and errors of user transforms
        raise DataError(f"cannot build the {what} {expr!r} from the data: {exc}") from None


def _drop_rank_deficient(X: NDArray[np.float64], names: list[str]) -> tuple[NDArray[np.float64], list[str], list[str]]:
    """Keep the columns not linearly dependent on earlier ones, in order (as lme4's QR-based check).

    A column is dropped when its part orthogonal to the columns kept before it
    is below 1e-7 of its norm (R's ``qr`` tolerance).
    """
    n, p = X.shape
    keep: list[int] = []
    basis = np.zeros((n, 0))
    for j in range(p):
        col = X[:, j]
        norm = float(np.linalg.norm(col))
        if norm == 0.0:
            continue
        resid = col - basis @ (basis.T @ col)
        resid = resid - basis @ (basis.T @ resid)  # re-orthogonalise once for accuracy
        rnorm = float(np.linalg.norm(resid))
        if rnorm > 1e-7 * norm:
            keep.append(j)
            basis = np.column_stack([basis, resid / rnorm])
    if len(keep) == p:
        return X, names, []
    dropped = [names[j] for j in range(p) if j not in set(keep)]
    return X[:, keep], [names[j] for j in keep], dropped


def resolve_variables(parsed: ParsedFormula, columns: list[str]) -> tuple[ParsedFormula, list[str], list[str]]:
    """The formula with dotted column names quoted, the columns it uses, and those of its fixed part.

    Shared by in-memory and chunked data; raises an lmm error naming an unknown
    column or grouping factor, or a formula without random-effects terms.
    """
    if not parsed.bars:
        raise FormulaError(
            f"no random-effects terms in {parsed.formula!r}: add a term such as (1 | group), "
            "or fit a linear model instead."
        )
    parsed = ParsedFormula(
        formula=parsed.formula,
        response=_quote_dotted(parsed.response, columns),
        fixed=_quote_dotted(parsed.fixed, columns),
        bars=tuple(dataclasses.replace(b, expr=_quote_dotted(b.expr, columns)) for b in parsed.bars),
    )
    used = _required_variables(parsed.response, columns, "response")
    fixed_vars = _required_variables(parsed.fixed, columns, "fixed-effects formula")
    used += fixed_vars
    for bar in parsed.bars:
        used += _required_variables(bar.expr, columns, f"random-effects term ({bar.expr} | {bar.group})")
        for name in bar.factors:
            if name not in columns:
                raise DataError(
                    f"grouping factor {name!r} of the term ({bar.expr} | {bar.group}) is not a column of the data."
                    + _closest(name, columns)
                )
            used.append(name)
    return parsed, list(dict.fromkeys(used)), fixed_vars


def build_design(
    parsed: ParsedFormula,
    data: pd.DataFrame,
    *,
    weights: Any = None,
    offset: Any = None,
) -> Design:
    """Materialise ``parsed`` on ``data``.

    Parameters
    ----------
    parsed : ParsedFormula
        The formula, from :func:`lmm.formula.parse_formula`.
    data : pandas.DataFrame
        The data; never modified.
    weights, offset : str, array-like or None
        Prior weights (residual variance ``sigma**2 / w``) and an offset added to
        the linear predictor: a column name or one value per row of ``data``.

    Returns
    -------
    Design
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}.")
    if len(data) == 0:
        raise DataError("data has no rows.")
    parsed, used, fixed_vars = resolve_variables(parsed, [str(c) for c in data.columns])

    w_all, w_col = _vector_arg(weights, data, "weights")
    o_all, o_col = _vector_arg(offset, data, "offset")
    frame = data.loc[:, used] if used else pd.DataFrame(index=data.index)
    complete = ~frame.isna().any(axis=1).to_numpy()
    for arr in (w_all, o_all):
        if arr is not None:
            complete &= ~np.isnan(arr)
    n_input = len(data)
    rows = np.flatnonzero(complete)
    if rows.size == 0:
        raise DataError("every row has a missing value in a model variable; nothing is left to fit.")
    if rows.size < n_input:
        warn(
            f"{n_input - rows.size} of {n_input} rows dropped for missing values in the model's variables "
            f"({', '.join(c for c in used if frame[c].isna().any()) or 'weights/offset'}).",
            MissingDataWarning,
        )
    sub = data.iloc[rows].reset_index(drop=True)

    y = _response(parsed, sub)
    mm = _materialise(parsed.fixed, sub, "fixed-effects formula")
    x_spec = mm.model_spec
    x_spec_columns = tuple(str(c) for c in mm.columns)
    X = np.asarray(mm, dtype=np.float64)
    xnames = [r_column_name(c) for c in x_spec_columns]
    all_xnames = list(xnames)
    if not np.all(np.isfinite(X)):
        bad = [xnames[j] for j in range(X.shape[1]) if not np.all(np.isfinite(X[:, j]))]
        raise DataError(f"the fixed-effects columns {bad} have non-finite values.")
    X, xnames, dropped = _drop_rank_deficient(X, xnames)
    if dropped:
        warn(
            f"fixed-effect model matrix is rank deficient: dropping {len(dropped)} column(s) {dropped}. "
            "Remove the redundant terms from the formula to silence this.",
            RankDeficiencyWarning,
        )

    n = sub.shape[0]
    reterms = [_reterm(bar, sub) for bar in parsed.bars]
    order = sorted(range(len(reterms)), key=lambda i: -reterms[i].nl)
    reterms = [reterms[i] for i in order]
    _check_levels(reterms, n)
    _check_scales(y, parsed.response, reterms, has_fixed=X.shape[1] > 0)

    w = w_all[rows] if w_all is not None else None
    if w is not None:
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise DataError("weights must be finite and non-negative.")
        if not np.any(w > 0):
            raise DataError("weights are zero everywhere.")
        if np.any(w == 0):
            raise DataError("zero weights are not supported: drop those rows instead.")
    o = o_all[rows] if o_all is not None else None
    if o is not None and not np.all(np.isfinite(o)):
        raise DataError("offset must be finite.")
    x_levels = {
        c: tuple(str(v) for v in pd.unique(sub[c].astype(str)))
        for c in fixed_vars
        if not pd.api.types.is_numeric_dtype(sub[c]) or pd.api.types.is_bool_dtype(sub[c])
    }
    del w_col
    return Design(
        y=y,
        X=np.ascontiguousarray(X),
        xnames=tuple(xnames),
        reterms=tuple(reterms),
        weights=w,
        offset=o,
        rows=rows.astype(np.intp),
        n_input=n_input,
        response=parsed.response,
        dropped_columns=tuple(dropped),
        x_spec=x_spec,
        x_spec_columns=x_spec_columns,
        x_keep=tuple(all_xnames.index(name) for name in xnames),
        x_levels=x_levels,
        fixed_variables=tuple(fixed_vars),
        offset_column=o_col,
    )


def _response(parsed: ParsedFormula, sub: pd.DataFrame) -> NDArray[np.float64]:
    name = parsed.response
    if name.startswith("`") and name.endswith("`") and name.count("`") == 2:
        name = name[1:-1]
    if name in sub.columns:
        col = sub[name]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise DataError(f"the response {name!r} must be numeric, not {col.dtype}.")
        y = col.to_numpy(dtype=np.float64)
    else:
        mm = _materialise(name, sub, "response")
        arr = np.asarray(mm, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise DataError(f"the response {name!r} must be a single numeric column.")
        y = arr[:, 1] if mm.model_spec.column_names[0] == "Intercept" else arr[:, 0]
    if not np.all(np.isfinite(y)):
        bad = np.flatnonzero(~np.isfinite(y))
        raise DataError(f"the response {name!r} has infinite or undefined values (rows {bad[:5].tolist()} of the complete cases).")
    if y.size > 1 and np.ptp(y) == 0:
        raise DataError(f"the response {name!r} is constant ({y[0]:g}): there is no variation to model.")
    return np.ascontiguousarray(y)


def _reterm(bar: BarTerm, sub: pd.DataFrame) -> ReTerm:
    mm = _materialise(bar.expr, sub, f"random-effects term ({bar.expr} | {bar.group})")
    z = np.asarray(mm, dtype=np.float64)
    if z.shape[1] == 0:
        raise DesignError(f"the random-effects term ({bar.expr} | {bar.group}) has no columns.")
    if not np.all(np.isfinite(z)):
        raise DataError(f"the random-effects term ({bar.expr} | {bar.group}) has non-finite values.")
    refs, levels = _grouping_factor(bar, sub)
    cnames = tuple(r_column_name(str(c)) for c in mm.columns)
    return ReTerm(
        group=bar.group,
        factors=bar.factors,
        expr=bar.expr,
        cnames=cnames,
        levels=levels,
        refs=refs,
        z=np.ascontiguousarray(z),
        correlated=bar.correlated,
        spec=mm.model_spec,
    )


def _check_levels(reterms: list[ReTerm], n: int) -> None:
    """lme4's checkNlevels and checkZdims."""
    for t in reterms:
        if t.nl < 2:
            raise DesignError(
                f"grouping factor {t.group!r} has {t.nl} level in the data; it needs at least 2 "
                "(a random effect for a single group is not identifiable)."
            )
        if t.nl >= n:
            raise DesignError(
                f"grouping factor {t.group!r} has {t.nl} levels for {n} observations; the number of levels "
                "must be less than the number of observations (the random effects would be confounded "
                "with the residual)."
            )
        if t.q >= n:
            raise DesignError(
                f"the term ({t.expr} | {t.group}) has {t.q} random effects for {n} observations; "
                "the random-effects parameters and the residual variance are probably unidentifiable. "
                "Simplify the term."
            )


SCALE_TOL = 1e3
"""lme4's ``checkScaleX`` tolerance: a standard deviation outside [1/SCALE_TOL, SCALE_TOL] is flagged."""


def _check_scales(y: NDArray[np.float64], response: str, reterms: list[ReTerm], *, has_fixed: bool = False) -> None:
    """Warn about the scales that cost the fit accuracy (lme4's ``checkScaleX``, applied where it matters here).

    * A random-effects column (not 0/1) with standard deviation above ``SCALE_TOL`` or
      below ``1/SCALE_TOL`` puts the optimum of its θ near ``1/sd`` times a moderate
      number, far from the start at 1 and, for large columns, below the singularity
      tolerance: the optimiser stops short or reports a spurious singular fit.
    * A response whose mean is more than ``SCALE_TOL`` standard deviations from zero
      would lose about ``2 log10(mean/sd)`` digits in the cross-product ``y'y`` the
      blocked system is built from. With fixed effects the response is first
      centred on its least-squares fit (:meth:`lmm.blocked.BlockedSystem.from_data`),
      so only a model without fixed effects is warned.

    Fixed-effects columns are not checked: the profiled criterion is exactly
    equivariant under their scaling, and the fits agree to rounding (tested).
    """
    bad = []
    for t in reterms:
        for j, name in enumerate(t.cnames):
            col = t.z[:, j]
            if np.all((col == 0.0) | (col == 1.0)):
                continue
            sd = float(np.std(col, ddof=1)) if col.size > 1 else 0.0
            if sd > 0.0 and not (1.0 / SCALE_TOL <= sd <= SCALE_TOL):
                bad.append(f"{name!r} in ({t.expr} | {t.group}) has standard deviation {sd:.3g}")
    if bad:
        warn(
            "random-effects columns on extreme scales: "
            + "; ".join(bad)
            + ". Their variance parameters are hard to optimise: rescale these variables to a standard deviation "
            "near 1 (e.g. divide by the sd shown) and refit.",
            ScaleWarning,
        )
    if y.size > 1 and not has_fixed:
        sd = float(np.std(y, ddof=1))
        mean = float(np.mean(y))
        if sd > 0.0 and abs(mean) > SCALE_TOL * sd:
            warn(
                f"the response {response!r} has mean {mean:.6g} but standard deviation {sd:.3g}; the fit loses about "
                f"{2 * np.log10(abs(mean) / sd):.0f} digits to the location. Center it (subtract about {mean:.6g}) "
                "and refit; the fixed intercept shifts by that amount and nothing else changes.",
                ScaleWarning,
            )
