"""Fitting from data that never sit in memory at once: chunks, Parquet, Dask.

A linear mixed model needs its data only through the cross-products of
``[Z X y]`` (:class:`lmm.blocked.CrossProducts`), which add up over row
chunks. So the data are read twice, chunk by chunk:

1. a cheap pass over the model's columns collects the levels of the grouping
   factors and of the categorical predictors (and the combinations present of
   interaction groups), and counts the complete rows;
2. each chunk, its factors set to those global levels, is encoded with the
   formulaic specs of the first chunk and reduced to its cross-products, which
   are summed.

Then the small system is fitted as usual. The rows are not kept: fitted values
and residuals come from :meth:`lmm.results.LmmResult.predict` on each chunk.

Sources: a list or tuple of pandas DataFrames; a function returning a fresh
iterator of DataFrames (each call starts the data again: a reader of CSV
chunks, say); a Parquet file or directory (read in record batches with
pyarrow); a Dask DataFrame (each partition reduced by Dask where it lives, on
its workers). A one-shot iterator is refused, since the data are read twice.

Transforms whose state depends on all the data (``center``, ``scale``,
``poly``, splines) are refused: compute those columns beforehand.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .blocked import CrossProducts, crossproducts
from .design import Design, ReTerm, _check_levels, r_column_name, resolve_variables
from .errors import DataError, FormulaError, MissingDataWarning, RankDeficiencyWarning, warn
from .formula import ParsedFormula

__all__ = ["is_chunked_source", "chunked_design", "predict_chunks"]

_STATEFUL = re.compile(r"\b(center|scale|poly|bs|cr|cs|cc|te|hashed|standardize)\s*\(")


def is_chunked_source(data: Any) -> bool:
    """Whether ``data`` is a source of chunks rather than one DataFrame."""
    if isinstance(data, pd.DataFrame):
        return False
    if isinstance(data, (str, os.PathLike)):
        return True
    if type(data).__module__.startswith("dask"):
        return True
    return callable(data) or isinstance(data, Iterable)


# ----------------------------------------------------------------- sources
def _reader(data: Any, columns: list[str]) -> Callable[[], Iterator[pd.DataFrame]]:
    """A function giving a fresh iterator of chunks."""
    if isinstance(data, (str, os.PathLike)):
        try:
            import pyarrow.dataset as ds
        except ImportError:
            raise DataError("reading Parquet needs pyarrow: pip install lmm[chunked]") from None
        path = os.fspath(data)
        if not os.path.exists(path):
            raise DataError(f"no Parquet file or directory at {path!r}.")
        dataset = ds.dataset(path, format="parquet")
        missing = [c for c in columns if c not in dataset.schema.names]
        if missing:
            raise DataError(f"the Parquet data lack the column(s) {missing}.")

        def parquet_chunks() -> Iterator[pd.DataFrame]:
            for batch in dataset.to_batches(columns=columns or None):
                yield batch.to_pandas()

        return parquet_chunks
    if isinstance(data, (list, tuple)):
        return lambda: iter(data)
    if callable(data):
        return lambda: iter(data())
    raise DataError(
        "chunked data are read twice (levels first, then cross-products), and a one-shot iterator can be read "
        "only once: pass a list of DataFrames, a function returning a fresh iterator of them, a Parquet path "
        "or a Dask DataFrame."
    )


def _check_chunk(chunk: Any, columns: list[str], k: int) -> pd.DataFrame:
    if not isinstance(chunk, pd.DataFrame):
        raise DataError(f"chunk {k} is a {type(chunk).__name__}, not a pandas DataFrame.")
    missing = [c for c in columns if c not in chunk.columns]
    if missing:
        raise DataError(f"chunk {k} lacks the column(s) {missing}.")
    return chunk


# ------------------------------------------------------------------- plan
@dataclass
class _Plan:
    """What pass 1 learns and pass 2 needs; picklable, for Dask workers."""

    parsed: ParsedFormula
    used: list[str]
    levels: dict[str, list[Any]]  # raw level values of each factor-like column, in order
    combos: dict[str, list[tuple[Any, ...]]] = field(
        default_factory=dict
    )  # observed combinations of interaction groups
    weights: str | None = None
    offset: str | None = None
    x_spec: Any = None
    term_specs: list[Any] = field(default_factory=list)
    term_order: list[int] = field(default_factory=list)
    n: int = 0
    n_total: int = 0


def _level_order(values: set[Any], categories: list[Any] | None) -> list[Any]:
    """The levels present, in the categories' order; values outside the categories after them, sorted."""

    def _sorted(vals: set[Any]) -> list[Any]:
        try:
            return sorted(vals)
        except TypeError:
            return sorted(vals, key=str)

    if categories is not None:
        known = set(categories)
        return [c for c in categories if c in values] + _sorted({v for v in values if v not in known})
    return _sorted(values)


def _factor_like(series: pd.Series) -> bool:
    return (
        isinstance(series.dtype, pd.CategoricalDtype)
        or not pd.api.types.is_numeric_dtype(series)
        or pd.api.types.is_bool_dtype(series)
    )


def _complete(chunk: pd.DataFrame, plan: _Plan) -> pd.DataFrame:
    cols = plan.used + [c for c in (plan.weights, plan.offset) if c]
    return chunk.loc[~chunk[cols].isna().any(axis=1)]


def _typed(chunk: pd.DataFrame, plan: _Plan) -> pd.DataFrame:
    """The chunk with every factor-like column set to the global levels."""
    out = chunk.copy()
    for col, levels in plan.levels.items():
        out[col] = pd.Categorical(out[col].to_numpy(), categories=levels)
    return out.reset_index(drop=True)


@dataclass
class _Levels:
    """What one chunk says about the levels: picklable, and merged by ``+``."""

    n_total: int = 0
    n: int = 0
    seen: dict[str, set[Any]] = field(default_factory=dict)
    cats: dict[str, list[Any] | None] = field(default_factory=dict)
    combos: dict[tuple[str, ...], set[tuple[Any, ...]]] = field(default_factory=dict)

    def __add__(self, other: _Levels) -> _Levels:
        out = _Levels(
            self.n_total + other.n_total,
            self.n + other.n,
            {k: set(v) for k, v in self.seen.items()},
            dict(self.cats),
            {k: set(v) for k, v in self.combos.items()},
        )
        for col, values in other.seen.items():
            out.seen.setdefault(col, set()).update(values)
            mine, theirs = out.cats.get(col), other.cats.get(col)
            if mine is None:
                out.cats[col] = theirs
            elif theirs is not None and theirs != mine:  # chunks may carry different categories
                known = set(mine)
                out.cats[col] = list(mine) + [c for c in theirs if c not in known]
        for g, values in other.combos.items():
            out.combos.setdefault(g, set()).update(values)
        return out


def _chunk_levels(chunk: pd.DataFrame, plan: _Plan, group_cols: list[tuple[str, ...]], k: int = 0) -> _Levels:
    """Levels, interaction-group combinations and complete rows of one chunk."""
    out = _Levels(n_total=len(chunk))
    chunk = _complete(_check_chunk(chunk, plan.used, k), plan)
    out.n = len(chunk)
    grouping = {c for g in group_cols for c in g}
    for col in plan.used:
        s = chunk[col]
        if col in grouping or _factor_like(s):  # integer grouping factors are factors too
            out.cats[col] = list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype) else None
            out.seen[col] = set(pd.unique(s.to_numpy()).tolist())
    for g in group_cols:
        if len(g) > 1:
            out.combos[g] = set(map(tuple, chunk[list(g)].drop_duplicates().to_numpy().tolist()))
    return out


def _apply_levels(plan: _Plan, lv: _Levels) -> None:
    plan.n, plan.n_total = lv.n, lv.n_total
    plan.levels = {col: _level_order(lv.seen[col], lv.cats.get(col)) for col in lv.seen}
    plan.combos = {
        ":".join(g): sorted(v, key=lambda t, g=g: tuple(plan.levels[c].index(x) for c, x in zip(g, t)))
        for g, v in lv.combos.items()
    }


def _pass_one(chunks: Iterable[pd.DataFrame], plan: _Plan, group_cols: list[tuple[str, ...]]) -> None:
    total = _Levels()
    for k, chunk in enumerate(chunks):
        total = total + _chunk_levels(chunk, plan, group_cols, k)
    _apply_levels(plan, total)


def _group_refs(chunk: pd.DataFrame, factors: tuple[str, ...], plan: _Plan) -> np.ndarray:
    if len(factors) == 1:
        return np.asarray(chunk[factors[0]].cat.codes, dtype=np.intp)
    index = {t: i for i, t in enumerate(plan.combos[":".join(factors)])}
    keys = map(tuple, chunk[list(factors)].astype(object).to_numpy().tolist())
    return np.fromiter((index[t] for t in keys), dtype=np.intp, count=len(chunk))


def _group_labels(factors: tuple[str, ...], plan: _Plan) -> tuple[str, ...]:
    if len(factors) == 1:
        return tuple(str(v) for v in plan.levels[factors[0]])
    return tuple(":".join(str(v) for v in t) for t in plan.combos[":".join(factors)])


def _materialise_specs(first: pd.DataFrame, plan: _Plan) -> None:
    import formulaic

    try:
        mm = formulaic.model_matrix(plan.parsed.fixed, first, na_action="ignore")
        plan.x_spec = mm.model_spec
        plan.term_specs = [
            formulaic.model_matrix(b.expr, first, na_action="ignore").model_spec for b in plan.parsed.bars
        ]
    except Exception as exc:  # formulaic's errors
        raise DataError(f"cannot build the model matrices from the first chunk: {exc}") from None


def _chunk_crossproducts(chunk: pd.DataFrame, plan: _Plan) -> CrossProducts:
    """Reduce one chunk to its cross-products (runs on Dask workers too)."""
    chunk = _typed(_complete(chunk, plan), plan)
    X = np.asarray(plan.x_spec.get_model_matrix(chunk, na_action="ignore"), dtype=np.float64)
    y = _response(chunk, plan)
    if plan.offset:
        y = y - chunk[plan.offset].to_numpy(dtype=np.float64)
    w = chunk[plan.weights].to_numpy(dtype=np.float64) if plan.weights else None
    terms = []
    for i in plan.term_order:
        bar = plan.parsed.bars[i]
        z = np.asarray(plan.term_specs[i].get_model_matrix(chunk, na_action="ignore"), dtype=np.float64)
        terms.append(
            ReTerm(
                group=bar.group,
                factors=bar.factors,
                expr=bar.expr,
                cnames=(),
                levels=_group_labels(bar.factors, plan),
                refs=_group_refs(chunk, bar.factors, plan),
                z=z,
            )
        )
    return crossproducts(tuple(terms), X, y, w)


def _response(chunk: pd.DataFrame, plan: _Plan) -> np.ndarray:
    name = plan.parsed.response
    bare = name[1:-1] if name.startswith("`") and name.endswith("`") else name
    if bare in chunk.columns:
        col = chunk[bare]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise DataError(f"the response {bare!r} must be numeric, not {col.dtype}.")
        return col.to_numpy(dtype=np.float64)
    import formulaic

    arr = np.asarray(formulaic.model_matrix(f"{name} ~ 1", chunk).lhs, dtype=np.float64)
    return arr[:, 0]


def _sum_dask(data: Any, plan: _Plan) -> CrossProducts:
    import dask

    parts = data[plan.used + [c for c in (plan.weights, plan.offset) if c]].to_delayed()
    tasks = [dask.delayed(_chunk_crossproducts)(part, plan) for part in parts]
    # sum pairwise on the workers (a tree), so that one set of blocks reaches this process
    while len(tasks) > 1:
        paired = [dask.delayed(_add)(tasks[i], tasks[i + 1]) for i in range(0, len(tasks) - 1, 2)]
        if len(tasks) % 2:
            paired.append(tasks[-1])
        tasks = paired
    (total,) = dask.compute(tasks[0])
    return total


def _add(a: CrossProducts, b: CrossProducts) -> CrossProducts:
    return a + b


def _dask_pass_one(data: Any, plan: _Plan, group_cols: list[tuple[str, ...]]) -> None:
    """Pass one on Dask: each partition summarised where it lives, summaries merged here (no shuffle)."""
    import dask

    parts = data[plan.used + [c for c in (plan.weights, plan.offset) if c]].to_delayed()
    results = dask.compute(*[dask.delayed(_chunk_levels)(part, plan, group_cols, k) for k, part in enumerate(parts)])
    total = _Levels()
    for r in results:
        total = total + r
    _apply_levels(plan, total)


# -------------------------------------------------------------------- main
def chunked_design(
    parsed: ParsedFormula, data: Any, *, weights: Any = None, offset: Any = None
) -> tuple[Design, CrossProducts]:
    """Two passes over a chunked source: the model's layout and its summed cross-products.

    Returns a :class:`Design` without rows (``y`` and ``X`` empty; specs and
    levels kept for ``predict``) and the :class:`CrossProducts` of all the data.
    """
    for arg, what in ((weights, "weights"), (offset, "offset")):
        if arg is not None and not isinstance(arg, str):
            raise DataError(f"with chunked data, {what} must be a column name, not an array.")
    for text in [parsed.response, parsed.fixed] + [b.expr for b in parsed.bars]:
        m = _STATEFUL.search(text)
        if m:
            raise FormulaError(
                f"{m.group(1)}() needs the whole data to fix its state, which chunked fitting never holds; "
                "compute that column before fitting."
            )
    is_dask = type(data).__module__.startswith("dask")
    if is_dask:
        columns = [str(c) for c in data.columns]
    elif isinstance(data, (str, os.PathLike)):
        try:
            import pyarrow.dataset as ds
        except ImportError:
            raise DataError("reading Parquet needs pyarrow: pip install lmm[chunked]") from None
        if not os.path.exists(os.fspath(data)):
            raise DataError(f"no Parquet file or directory at {os.fspath(data)!r}.")
        columns = list(ds.dataset(os.fspath(data), format="parquet").schema.names)
    else:
        first = next(iter(_reader(data, [])()), None)
        if first is None:
            raise DataError("the chunked data source is empty.")
        if not isinstance(first, pd.DataFrame):
            raise DataError(f"chunks must be pandas DataFrames, not {type(first).__name__}.")
        columns = [str(c) for c in first.columns]
    parsed, used, fixed_vars = resolve_variables(parsed, columns)
    for col in (weights, offset):
        if col is not None and col not in columns:
            raise DataError(f"column {col!r} is not in the data.")
    plan = _Plan(parsed=parsed, used=used, levels={}, weights=weights, offset=offset)
    group_cols = [b.factors for b in parsed.bars]

    if is_dask:
        _dask_pass_one(data, plan, group_cols)
        first_chunk = data[plan.used + [c for c in (weights, offset) if c]].head(1000, npartitions=-1)
    else:
        reader = _reader(data, plan.used + [c for c in (weights, offset) if c])
        _pass_one(reader(), plan, group_cols)
        first_chunk = next(iter(reader()))
        if plan.n_total > plan.n:
            warn(
                f"{plan.n_total - plan.n} of {plan.n_total} rows dropped for missing values in the model's variables.",
                MissingDataWarning,
            )
    if plan.n == 0:
        raise DataError("no complete rows in the chunked data.")
    first_typed = _typed(_complete(first_chunk, plan), plan)
    if len(first_typed) == 0:
        raise DataError("the first chunk has no complete rows; the model's columns cannot be encoded from it.")
    _materialise_specs(first_typed, plan)

    # term layout (lme4's order), then the cross-products
    labels = [_group_labels(b.factors, plan) for b in parsed.bars]
    plan.term_order = sorted(range(len(parsed.bars)), key=lambda i: -len(labels[i]))
    if is_dask:
        cp = _sum_dask(data, plan)
    else:
        cp = None
        for chunk in reader():
            part = _chunk_crossproducts(chunk, plan)
            cp = part if cp is None else cp + part
        assert cp is not None
    x_cols = tuple(str(c) for c in plan.x_spec.get_model_matrix(first_typed.iloc[:1], na_action="ignore").columns)
    xnames = [r_column_name(c) for c in x_cols]
    cp, keep, dropped = _drop_rank_deficient_gram(
        cp, xnames, sum(len(labels[i]) * len(plan.term_specs[i].column_names) for i in plan.term_order[1:])
    )
    if dropped:
        warn(
            f"fixed-effect model matrix is rank deficient: dropping {len(dropped)} column(s) {dropped}.",
            RankDeficiencyWarning,
        )
    reterms = []
    for i in plan.term_order:
        bar = parsed.bars[i]
        cnames = tuple(r_column_name(c) for c in plan.term_specs[i].column_names)
        reterms.append(
            ReTerm(
                group=bar.group,
                factors=bar.factors,
                expr=bar.expr,
                cnames=cnames,
                levels=labels[i],
                refs=np.zeros(0, dtype=np.intp),
                z=np.zeros((0, len(cnames))),
                correlated=bar.correlated,
                spec=plan.term_specs[i],
            )
        )
    _check_levels(reterms, plan.n)
    x_levels = {c: tuple(str(v) for v in plan.levels[c]) for c in fixed_vars if c in plan.levels}
    design = Design(
        y=np.zeros(0),
        X=np.zeros((0, len(keep))),
        xnames=tuple(xnames[j] for j in keep),
        reterms=tuple(reterms),
        n_input=plan.n,
        response=parsed.response,
        dropped_columns=tuple(dropped),
        x_spec=plan.x_spec,
        x_spec_columns=x_cols,
        x_keep=tuple(keep),
        x_levels=x_levels,
        fixed_variables=tuple(fixed_vars),
        offset_column=offset,
    )
    return design, cp


def _drop_rank_deficient_gram(
    cp: CrossProducts, xnames: list[str], qr: int
) -> tuple[CrossProducts, list[int], list[str]]:
    """Drop X columns dependent on earlier ones, judged from XᵀWX (as the in-memory check)."""
    p = cp.p
    xtx = cp.a_rr[qr : qr + p, qr : qr + p]
    keep: list[int] = []
    for j in range(p):
        d = xtx[j, j]
        if d <= 0:
            continue
        if keep:
            K = xtx[np.ix_(keep, keep)]
            c = xtx[keep, j]
            resid = d - c @ np.linalg.solve(K, c)
        else:
            resid = d
        if resid > 1e-14 * d:
            keep.append(j)
    if len(keep) == p:
        return cp, keep, []
    rows = list(range(qr)) + [qr + j for j in keep] + [qr + p]
    new = CrossProducts(
        a11=cp.a11,
        a_r1=cp.a_r1[rows].tocsr(),
        a_rr=np.ascontiguousarray(cp.a_rr[np.ix_(rows, rows)]),
        n=cp.n,
        p=len(keep),
        ldw=cp.ldw,
    )
    return new, keep, [xnames[j] for j in range(p) if j not in keep]


# ------------------------------------------------------------ after the fit
def _predict_frame(chunk: pd.DataFrame, fit: Any, re_form: str | None, allow_new_levels: bool) -> pd.DataFrame:
    """Fitted values and residuals of one chunk; rows with missing values get NaN (lme4's na.exclude)."""
    design = fit.model.design
    cols = [c for c in design.fixed_variables] + [c for t in design.reterms for c in t.factors]
    cols += [c for c in (design.offset_column,) if c]
    cols = [c for c in dict.fromkeys(cols) if c in chunk.columns]
    ok = ~chunk[cols].isna().any(axis=1) if cols else pd.Series(True, index=chunk.index)
    out = pd.DataFrame({"fitted": np.nan, "residual": np.nan}, index=chunk.index)
    if ok.any():
        fitted = fit.predict(chunk.loc[ok], re_form=re_form, allow_new_levels=allow_new_levels)
        out.loc[ok, "fitted"] = fitted.to_numpy()
        name = design.response[1:-1] if design.response.startswith("`") else design.response
        if name in chunk.columns:
            out["residual"] = chunk[name].to_numpy(dtype=np.float64) - out["fitted"].to_numpy()
    return out


def predict_chunks(fit: Any, data: Any, *, re_form: str | None = None, allow_new_levels: bool = False) -> Any:
    """Fitted values and residuals of ``fit`` on chunked data, one chunk at a time.

    Parameters
    ----------
    fit : LmmResult
        A fit from a formula (in memory or chunked).
    data : list of DataFrames, callable, Parquet path or Dask DataFrame
        The rows to predict, read as :func:`chunked_design` reads them.
    re_form, allow_new_levels
        As :meth:`lmm.results.LmmResult.predict`.

    Returns
    -------
    iterator of DataFrame, or dask DataFrame
        Per chunk, a DataFrame on the chunk's index with columns ``fitted`` and
        ``residual`` (response minus fitted; NaN where the response is absent
        or a row has missing values). For a Dask DataFrame the result is a lazy
        Dask DataFrame with those columns, computed partition by partition.
    """
    if fit.model is None or fit.model.design is None:
        raise DataError("predict_chunks needs a fit from a formula.")
    if type(data).__module__.startswith("dask"):
        meta = pd.DataFrame({"fitted": pd.Series(dtype=float), "residual": pd.Series(dtype=float)})
        return data.map_partitions(_predict_frame, fit, re_form, allow_new_levels, meta=meta)
    if isinstance(data, pd.DataFrame):
        data = [data]
    if isinstance(data, Iterator):  # one pass is enough here
        data = (lambda it: lambda: it)(data)
    reader = _reader(data, [])

    def generate() -> Iterator[pd.DataFrame]:
        for chunk in reader():
            yield _predict_frame(chunk, fit, re_form, allow_new_levels)

    return generate()
