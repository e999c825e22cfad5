"""Read lme4's reference results committed in ``tests/reference/``.

Non-finite numbers are stored as the strings "NA", "NaN", "Inf", "-Inf"; they
become floats where they stand for numbers.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"

_NONFINITE = {"NaN": math.nan, "Inf": math.inf, "-Inf": -math.inf}


def _convert(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _convert(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_convert(v) for v in value]
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    return value


def reference_ids() -> list[tuple[str, bool]]:
    """(model id, REML flag) of every reference fit."""
    index = json.loads((REFERENCE_DIR / "index.json").read_text())
    return [(f["id"], bool(f["REML"])) for f in index["fits"]]


@functools.cache
def _load(model_id: str, reml: bool) -> str:
    return (REFERENCE_DIR / f"{model_id}_{'REML' if reml else 'ML'}.json").read_text()


def load_reference(model_id: str, reml: bool) -> dict[str, Any]:
    """The reference JSON of one fit (a fresh dict each call)."""
    return _convert(json.loads(_load(model_id, reml)))


def load_summary(model_id: str, reml: bool) -> str:
    """lme4's printed summary of one fit (the part before lmerTest's)."""
    text = (REFERENCE_DIR / "summaries" / f"{model_id}_{'REML' if reml else 'ML'}.txt").read_text()
    return text.split("---- lmerTest")[0]
