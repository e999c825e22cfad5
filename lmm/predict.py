"""Predictions and simulations from a fitted model (lme4's ``predict`` and ``simulate``).

New data are encoded with the formulaic model specs kept at fit time, so
categorical columns get exactly the fit's columns. ``re_form`` chooses the
random effects: ``None`` all of them (``predict``) , ``"~0"`` none, or a formula
naming the terms to keep, as in lme4.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .errors import DataError, FormulaError

if TYPE_CHECKING:
    from .design import Design, ReTerm
    from .results import LmmResult

__all__ = ["predict", "simulate", "selected_terms"]


def selected_terms(design: Design, re_form: str | None) -> list[int]:
    """Indices of the random-effects terms that ``re_form`` keeps."""
    if re_form is None:
        return list(range(len(design.reterms)))
    if not isinstance(re_form, str):
        raise FormulaError(f"re_form must be None, '~0' or a formula string, not {type(re_form).__name__}.")
    text = re_form.strip()
    if text in {"~0", "~ 0", "NA", "~-1", "~ -1"}:
        return []
    from .formula import parse_formula

    rhs = text[1:] if text.startswith("~") else text
    parsed = parse_formula(f"_response_ ~ {rhs}")
    groups = {b.group for b in parsed.bars}
    known = {t.group for t in design.reterms}
    unknown = groups - known
    if unknown:
        raise FormulaError(f"re_form names grouping factors {sorted(unknown)} that are not in the model (it has {sorted(known)}).")
    return [i for i, t in enumerate(design.reterms) if t.group in groups]


def _check_columns(newdata: pd.DataFrame, needed: list[str]) -> None:
    missing = [c for c in needed if c not in newdata.columns]
    if missing:
        raise DataError(f"newdata lacks the column(s) {missing} that the model uses.")


def _fixed_part(design: Design, newdata: pd.DataFrame) -> NDArray[np.float64]:
    _check_columns(newdata, list(design.fixed_variables))
    for col, levels in design.x_levels.items():
        values = pd.unique(newdata[col].dropna().astype(str))
        unseen = sorted(set(values) - set(levels))
        if unseen:
            raise DataError(f"newdata column {col!r} has level(s) {unseen} not seen when the model was fitted (it saw {list(levels)}).")
    try:
        mm = design.x_spec.get_model_matrix(newdata, na_action="ignore")
    except Exception as exc:  # formulaic's and user transforms' errors
        raise DataError(f"cannot build the fixed-effects columns for newdata: {exc}") from None
    X = np.asarray(mm, dtype=np.float64)
    return X[:, list(design.x_keep)]


def _group_refs(term: ReTerm, newdata: pd.DataFrame, allow_new_levels: bool) -> NDArray[np.intp]:
    """Codes of newdata's rows in the term's levels; -1 for new levels (when allowed)."""
    _check_columns(newdata, list(term.factors))
    labels = newdata[term.factors[0]].astype(str).to_numpy(dtype=object)
    for name in term.factors[1:]:
        labels = labels + ":" + newdata[name].astype(str).to_numpy(dtype=object)
    index = {lab: i for i, lab in enumerate(term.levels)}
    refs = np.array([index.get(lab, -1) for lab in labels], dtype=np.intp)
    if not allow_new_levels and np.any(refs < 0):
        new = sorted({str(lab) for lab, r in zip(labels, refs) if r < 0})
        raise DataError(
            f"newdata has level(s) {new[:10]} of {term.group!r} not in the fit; "
            "pass allow_new_levels=True to predict them at the population level."
        )
    return refs


def predict(
    fit: LmmResult,
    newdata: pd.DataFrame | None = None,
    *,
    re_form: str | None = None,
    allow_new_levels: bool = False,
) -> pd.Series:
    """Predictions on the response scale (see :meth:`lmm.results.LmmResult.predict`)."""
    model = fit.model
    if model is None or model.design is None:
        raise DataError("predict needs a fit from a formula (the matrix door has no model specs).")
    design: Design = model.design
    keep = selected_terms(design, re_form)
    if newdata is None:
        eta = design.X @ fit.beta
        if design.offset is not None:
            eta = eta + design.offset
        pos = np.cumsum([0] + [t.q for t in design.reterms])
        for k in keep:
            t = design.reterms[k]
            bt = fit.b[pos[k] : pos[k + 1]].reshape(t.nl, t.nc)
            eta = eta + np.einsum("ij,ij->i", t.z, bt[t.refs])
        index = model.data.index[design.rows] if model.data is not None else pd.RangeIndex(eta.size)
        return pd.Series(eta, index=index, name="fit")
    if not isinstance(newdata, pd.DataFrame):
        raise DataError(f"newdata must be a pandas DataFrame, not {type(newdata).__name__}.")
    eta = _fixed_part(design, newdata) @ fit.beta
    if design.offset_column is not None:
        _check_columns(newdata, [design.offset_column])
        eta = eta + newdata[design.offset_column].to_numpy(dtype=np.float64)
    elif design.offset is not None:
        raise DataError("the model's offset was given as an array; give it as a column name to predict on new data.")
    pos = np.cumsum([0] + [t.q for t in design.reterms])
    for k in keep:
        t = design.reterms[k]
        refs = _group_refs(t, newdata, allow_new_levels)
        try:
            z = np.asarray(t.spec.get_model_matrix(newdata, na_action="ignore"), dtype=np.float64)
        except Exception as exc:  # formulaic's errors
            raise DataError(f"cannot build the columns of ({t.expr} | {t.group}) for newdata: {exc}") from None
        bt = fit.b[pos[k] : pos[k + 1]].reshape(t.nl, t.nc)
        contrib = np.einsum("ij,ij->i", z, bt[np.maximum(refs, 0)])
        eta = eta + np.where(refs >= 0, contrib, 0.0)
    return pd.Series(eta, index=newdata.index, name="fit")


def simulate(fit: LmmResult, nsim: int = 1, *, seed: Any = None, re_form: str | None = None) -> pd.DataFrame:
    """Responses simulated from the fitted model (see :meth:`lmm.results.LmmResult.simulate`)."""
    model = fit.model
    if model is None or model.design is None:
        raise DataError("simulate needs a fit from a formula.")
    if not isinstance(nsim, int | np.integer) or nsim < 1:
        raise DataError(f"nsim must be a positive integer, not {nsim!r}.")
    design: Design = model.design
    rng = np.random.default_rng(seed)
    keep = set(selected_terms(design, re_form)) if re_form is not None else set()
    n = design.n
    base = design.X @ fit.beta
    if design.offset is not None:
        base = base + design.offset
    out = np.empty((n, nsim))
    lams = fit._term_lambdas()
    pos = np.cumsum([0] + [t.q for t in design.reterms])
    sd_resid = fit.sigma / np.sqrt(design.weights) if design.weights is not None else np.full(n, fit.sigma)
    for j in range(nsim):
        eta = base.copy()
        for k, t in enumerate(design.reterms):
            if k in keep:  # condition on the conditional modes
                bt = fit.b[pos[k] : pos[k + 1]].reshape(t.nl, t.nc)
            else:  # new random effects: b = sigma * lambda * u, u standard normal
                bt = fit.sigma * rng.standard_normal((t.nl, t.nc)) @ lams[k].T
            eta += np.einsum("ij,ij->i", t.z, bt[t.refs])
        out[:, j] = eta + sd_resid * rng.standard_normal(n)
    index = model.data.index[design.rows] if model.data is not None else pd.RangeIndex(n)
    return pd.DataFrame(out, index=index, columns=[f"sim_{j + 1}" for j in range(nsim)])
