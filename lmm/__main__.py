"""``python -m lmm`` / ``lmm``: fit a model from the shell and print its summary.

Usage: ``lmm fit "Reaction ~ Days + (Days | Subject)" --data sleepstudy [--ml] [--format text|json]``;
``--data`` takes a CSV file or the name of a bundled data set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import LmmResult

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the command line."""
    import pandas as pd

    from . import datasets
    from .errors import LmmError
    from .model import lmer

    parser = argparse.ArgumentParser(prog="lmm", description="Fit a linear mixed model (lme4 formula syntax).")
    sub = parser.add_subparsers(dest="command", required=True)
    fit_p = sub.add_parser("fit", help="fit a model and print its summary")
    fit_p.add_argument("formula", help='lme4 formula, e.g. "Reaction ~ Days + (Days | Subject)"')
    fit_p.add_argument("--data", required=True, help="a CSV file, or the name of a bundled data set")
    fit_p.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    fit_p.add_argument("--format", choices=["text", "json"], default="text", help="the summary (text) or the results as JSON")
    args = parser.parse_args(argv)
    try:
        if os.path.exists(args.data):
            data = pd.read_csv(args.data)
            data.attrs["name"] = os.path.splitext(os.path.basename(args.data))[0]
        else:
            data = datasets.load(args.data)
        fit = lmer(args.formula, data, reml=not args.ml)
    except LmmError as exc:
        print(f"lmm: error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(_as_json(fit), indent=2))
    else:
        print(fit.summary())
    return 0


def _as_json(fit: LmmResult) -> dict[str, object]:
    """The main results of a fit as plain JSON types."""
    vc = fit.varcorr.to_frame()
    return {
        "formula": fit.formula,
        "reml": fit.reml,
        "nobs": fit.nobs,
        "objective": fit.objective,
        "loglik": fit.loglik,
        "aic": fit.aic,
        "bic": fit.bic,
        "sigma": fit.sigma,
        "theta": dict(zip(fit.theta_names, fit.theta.tolist())),
        "fixef": fit.fixef.to_dict(),
        "std_errors": fit.std_errors.to_dict(),
        "varcorr": vc.astype(object).where(vc.notna(), None).to_dict(orient="records"),
        "ngroups": fit.ngroups,
        "optimizer": {"method": fit.opt.method, "feval": fit.opt.feval, "converged": fit.opt.converged},
        "messages": list(fit.messages),
    }


if __name__ == "__main__":
    sys.exit(main())
