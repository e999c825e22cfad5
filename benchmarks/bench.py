"""Time lmm against its peers on the same models, in one run, and print a table.

    python benchmarks/bench.py                 # the small models and InstEval
    python benchmarks/bench.py --quick         # small models, 3 repeats (what CI runs)
    python benchmarks/bench.py --movielens     # add the MovieLens-1M-sized model

Per model: rows, levels, then for lmm and each installed peer (statsmodels'
MixedLM and mixedlm from PyPI: ``pip install lmm[bench]``; lme4 through
``Rscript`` when R with lme4 is on the machine) the median wall time of N
fits in a warm process, the objective evaluations and the criterion (REML
criterion or deviance, -2 log-likelihood on lme4's scale), and the peer's time
as a multiple of lmm's. lmm's time is the whole ``lmm.lmer`` call: design,
cross-products, optimisation and results. Peers that are not installed, or
that cannot fit a model, show "—".
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import lmm

HERE = Path(__file__).resolve().parent


@dataclass
class Model:
    name: str
    dataset: str
    formula: str
    reml: bool
    statsmodels: dict[str, Any] | None = None  # arguments of statsmodels' MixedLM.from_formula
    big: bool = False


MODELS = [
    Model(
        "sleepstudy slope",
        "sleepstudy",
        "Reaction ~ Days + (Days | Subject)",
        True,
        {"formula": "Reaction ~ Days", "groups": "Subject", "re_formula": "~Days"},
    ),
    Model(
        "sleepstudy slope ML",
        "sleepstudy",
        "Reaction ~ Days + (Days | Subject)",
        False,
        {"formula": "Reaction ~ Days", "groups": "Subject", "re_formula": "~Days"},
    ),
    Model("Dyestuff", "Dyestuff", "Yield ~ 1 + (1 | Batch)", True, {"formula": "Yield ~ 1", "groups": "Batch"}),
    Model(
        "Penicillin (crossed)",
        "Penicillin",
        "diameter ~ 1 + (1 | plate) + (1 | sample)",
        True,
        {
            "formula": "diameter ~ 1",
            "groups": "one",
            "re_formula": "0",
            "vc_formula": {"plate": "0 + C(plate)", "sample": "0 + C(sample)"},
        },
    ),
    Model(
        "Pastes (nested)",
        "Pastes",
        "strength ~ 1 + (1 | batch/cask)",
        True,
        {"formula": "strength ~ 1", "groups": "batch", "vc_formula": {"cask": "0 + C(cask)"}},
    ),
    Model(
        "cake",
        "cake",
        "angle ~ recipe * temperature + (1 | recipe:replicate)",
        True,
        {"formula": "angle ~ recipe * temperature", "groups": "rr"},
    ),
    Model("InstEval", "InstEval", "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)", False, None, big=True),
]


def _median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run_lmm(m: Model, df: pd.DataFrame, repeat: int) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm.LmmWarning)
        lmm.lmer(m.formula, data=df, reml=m.reml)  # warm-up
        t, fit = _median_time(lambda: lmm.lmer(m.formula, data=df, reml=m.reml), repeat)
        model = lmm.LinearMixedModel.from_formula(m.formula, df, reml=m.reml)
        t_fit, _ = _median_time(model.fit, repeat)
    return {"seconds": t, "fit_only": t_fit, "feval": fit.opt.feval, "criterion": fit.objective}


def run_mixedlm(m: Model, df: pd.DataFrame, repeat: int) -> dict[str, Any] | None:
    try:
        import mixedlm
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mixedlm.lmer(m.formula, df, REML=m.reml)
        t, fit = _median_time(lambda: mixedlm.lmer(m.formula, df, REML=m.reml), repeat)
    crit = fit.REMLcrit if m.reml else fit.deviance
    crit = crit() if callable(crit) else crit
    return {"seconds": t, "feval": fit.function_evals, "criterion": float(crit)}


def run_statsmodels(m: Model, df: pd.DataFrame, repeat: int) -> dict[str, Any] | None:
    if m.statsmodels is None:
        return None
    try:
        import statsmodels.formula.api as smf
    except ImportError:
        return None
    data = df.copy()
    data["one"] = 1
    if m.dataset == "cake":
        data["rr"] = data["recipe"].astype(str) + ":" + data["replicate"].astype(str)
    spec = dict(m.statsmodels)
    formula = spec.pop("formula")

    def fit() -> Any:
        return smf.mixedlm(formula, data, **spec).fit(reml=m.reml)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            t, res = _median_time(fit, repeat)
        except Exception:  # statsmodels fails on some designs
            return None
    # statsmodels' llf is the (restricted) log-likelihood; lme4's criterion is -2 times it
    return {"seconds": t, "feval": None, "criterion": -2.0 * float(res.llf)}


def run_lme4(m: Model, df: pd.DataFrame, repeat: int, workdir: Path) -> dict[str, Any] | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    path = workdir / f"{m.dataset}.csv"
    if not path.exists():
        df.to_csv(path, index=False)
    factors = [c for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)]
    cmd = [
        rscript,
        str(HERE / "lme4_bench.R"),
        str(path),
        m.formula,
        "TRUE" if m.reml else "FALSE",
        str(repeat),
        ",".join(factors),
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, json.JSONDecodeError, IndexError):
        return None


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "—"
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small models only, 3 repeats")
    ap.add_argument("--repeat", type=int, default=None, help="fits per timing (median); default 20 small, 5 large")
    ap.add_argument("--movielens", action="store_true", help="add the MovieLens-1M-sized model (minutes)")
    ap.add_argument("--peers", default="statsmodels,mixedlm,lme4", help="comma-separated peers to run ('' for none)")
    ap.add_argument("--models", default=None, help="comma-separated model names (substring match)")
    args = ap.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]

    models = [m for m in MODELS if not (args.quick and m.big)]
    if args.movielens:
        sys.path.insert(0, str(HERE))
        import movielens_synth

        models.append(Model("MovieLens-1M size", "movielens", movielens_synth.FORMULA, False, None, big=True))
    if args.models:
        keys = [k.strip().lower() for k in args.models.split(",")]
        models = [m for m in models if any(k in m.name.lower() for k in keys)]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            if m.dataset == "movielens":
                df = movielens_synth.generate()
            else:
                df = lmm.datasets.load(m.dataset)
            repeat = args.repeat or (3 if args.quick else (1 if m.dataset == "movielens" else (5 if m.big else 20)))
            res = {"lmm": run_lmm(m, df, repeat)}
            if "mixedlm" in peers:
                res["mixedlm"] = run_mixedlm(m, df, 1 if m.dataset == "movielens" else repeat)
            if "statsmodels" in peers and not m.big:
                res["statsmodels"] = run_statsmodels(m, df, repeat)
            if "lme4" in peers:
                res["lme4"] = run_lme4(m, df, 1 if m.dataset == "movielens" else repeat, Path(tmp))
            model = lmm.LinearMixedModel.from_formula(m.formula, df, reml=m.reml)
            levels = " × ".join(str(t.nl) for t in model.design.reterms)
            rows.append((m, len(df), levels, repeat, res))
            _print_row(rows[-1], peers)
    return 0


_header_printed = False


def _print_row(row: tuple, peers: list[str]) -> None:
    global _header_printed
    m, n, levels, repeat, res = row
    if not _header_printed:
        print(
            f"{'model':<22} {'fit':<4} {'n':>9} {'levels':<18} {'N':>3}  {'tool':<12} {'time':>10} {'fit only':>10} {'evals':>6} {'criterion':>16} {'× lmm':>7} {'Δcrit':>9}"
        )
        _header_printed = True
    base = res["lmm"]
    for tool in ["lmm", *peers]:
        r = res.get(tool)
        first = tool == "lmm"
        prefix = f"{m.name:<22} {'REML' if m.reml else 'ML':<4} {n:>9} {levels:<18} {repeat:>3}" if first else " " * 61
        if r is None:
            print(f"{prefix}  {tool:<12} {'—':>10}")
            continue
        ratio = "" if first else f"{r['seconds'] / base['seconds']:.1f}"
        delta = "" if first else f"{r['criterion'] - base['criterion']:+.2e}"
        feval = "—" if r.get("feval") is None else str(r["feval"])
        crit = "nan" if r["criterion"] is None or not math.isfinite(r["criterion"]) else f"{r['criterion']:.6f}"
        fit_only = _fmt_time(r["fit_only"]) if "fit_only" in r else ""
        print(
            f"{prefix}  {tool:<12} {_fmt_time(r['seconds']):>10} {fit_only:>10} {feval:>6} {crit:>16} {ratio:>7} {delta:>9}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
