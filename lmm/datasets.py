"""Data sets bundled with :mod:`lmm`: lme4's examples and the seed example.

``load(name)`` returns a fresh pandas DataFrame: factor columns are
``Categorical`` with a fixed level order (numeric order when every label is a
number, otherwise code-point order), numeric columns are float64, integer
columns (cake's ``angle``) int64. The frame's ``attrs["name"]`` holds the data
set's name, which the summary prints as lme4 prints ``Data:``.
"""

from __future__ import annotations

import difflib
import functools
import gzip
import io
import json
from importlib import resources
from typing import Any

import pandas as pd

from .errors import DataError

__all__ = ["load", "names", "describe"]


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    text = resources.files("lmm").joinpath("data/schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def names() -> list[str]:
    """Names of the bundled data sets."""
    return list(_schema())


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise DataError(f"a data set name must be a string, not {type(name).__name__}.")
    lookup = {n.lower(): n for n in _schema()}
    key = name.strip().lower()
    if key not in lookup:
        close = difflib.get_close_matches(key, list(lookup), n=1)
        hint = f" Did you mean {lookup[close[0]]!r}?" if close else ""
        raise DataError(f"no bundled data set named {name!r}.{hint} Available: {', '.join(names())}.")
    return lookup[key]


def describe(name: str) -> str:
    """One line saying what the data set is."""
    entry = _schema()[_canonical(name)]
    return f"{_canonical(name)}: {entry['rows']} rows; {entry['meaning']}"


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set (case-insensitive name) as a new DataFrame.

    Parameters
    ----------
    name : str
        One of :func:`names`: sleepstudy, Dyestuff, Dyestuff2, Penicillin,
        Pastes, cake, InstEval, seed_example.

    Returns
    -------
    pandas.DataFrame
    """
    canonical = _canonical(name)
    entry = _schema()[canonical]
    raw = resources.files("lmm").joinpath("data/" + entry["file"]).read_bytes()
    if entry["file"].endswith(".gz"):
        raw = gzip.decompress(raw)
    columns = entry["columns"]
    factor_cols = [c for c, t in columns.items() if t["type"] == "factor"]
    frame = pd.read_csv(io.BytesIO(raw), dtype={c: str for c in factor_cols})
    for col, spec in columns.items():
        if spec["type"] == "factor":
            frame[col] = pd.Categorical(frame[col], categories=spec["levels"])
        elif spec["type"] == "integer":
            frame[col] = frame[col].astype("int64")
        else:
            frame[col] = frame[col].astype("float64")
    frame.attrs["name"] = canonical
    return frame
