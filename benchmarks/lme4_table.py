"""Print, as a Markdown table, every reference fit beside lme4's.

    python benchmarks/lme4_table.py

For each model in ``tests/reference`` (lme4 1.1-31): lme4's criterion (the
better of its default fit and a tight BOBYQA refit), lmm's, their difference
(negative: lmm is lower), lme4's and lmm's objective evaluations, and the
largest difference in fixed effects, in units of their standard errors.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

import lmm

REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "reference"


def main() -> int:
    rows = []
    for path in sorted(REFERENCE.glob("*_*ML.json")):
        ref = json.loads(path.read_text())
        if "formula" not in ref:
            continue
        reml = bool(ref["REML"])
        data = lmm.datasets.load(ref["dataset"])
        kwargs = {}
        for key in ("weights", "offset"):
            if ref.get(key) is not None:
                kwargs[key] = np.asarray(ref[key], dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lmm.LmmWarning)
            fit = lmm.lmer(ref["formula"], data=data, reml=reml, **kwargs)
        best = min(float(ref["objective"]), float(ref["optimum_check"]["objective"]))
        beta = ref["beta"] if isinstance(ref["beta"], dict) else dict(zip(ref["beta_names"], ref["beta"]))
        se = ref["se"] if isinstance(ref["se"], dict) else dict(zip(ref["beta_names"], ref["se"]))
        dbeta = max(abs(fit.fixef[k] - float(beta[k])) / float(se[k]) for k in beta)
        rows.append(
            (
                ref["id"],
                "REML" if reml else "ML",
                best,
                fit.objective,
                fit.objective - best,
                ref["optimizer"]["feval"],
                fit.opt.feval,
                dbeta,
            )
        )
    print("| model | fit | lme4 criterion | lmm criterion | lmm − lme4 | lme4 evals | lmm evals | max abs Δβ / SE |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.6f} | {r[3]:.6f} | {r[4]:+.1e} | {r[5]} | {r[6]} | {r[7]:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
