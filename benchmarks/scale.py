"""Fit a crossed model to data that never sit in memory: Parquet read by Dask.

    python benchmarks/scale.py --rows 10_000_000 --levels1 100000 --levels2 1000

writes a synthetic crossed data set as Parquet, one file per chunk of rows
(never holding all rows), then fits ``y ~ x + (1 | g1) + (1 | g2)`` through a
``distributed.LocalCluster`` and prints where the time goes (the two passes
over the data, the optimisation) and the peak memory of the main process and
of each worker. ``--keep DIR`` reuses a data set already written there.

The fit's memory is that of the cross-product blocks, not of the rows: the
rest block (the second factor's levels, the fixed effects and y) is a dense
``(levels2 + p + 1)²`` array of doubles, 0.8 GB at 10,000 levels, and every
evaluation factors it (``levels2³ / 3`` flops) and forms the Schur product,
whose cost grows with the number of distinct (g1, g2) pairs per g1 level.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import lmm

FORMULA = "y ~ x + (1 | g1) + (1 | g2)"


def write_parquet(path: Path, rows: int, levels1: int, levels2: int, chunk: int, seed: int = 1) -> float:
    """Write the data set in chunks of ``chunk`` rows; return the seconds taken."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    u = rng.normal(0.0, 0.5, levels1)
    v = rng.normal(0.0, 0.8, levels2)
    path.mkdir(parents=True, exist_ok=True)
    cats1 = pd.CategoricalDtype(np.arange(levels1))
    cats2 = pd.CategoricalDtype(np.arange(levels2))
    for k, start in enumerate(range(0, rows, chunk)):
        m = min(chunk, rows - start)
        g1 = rng.integers(0, levels1, m)
        g2 = rng.integers(0, levels2, m)
        x = rng.normal(0.0, 1.0, m)
        y = 2.0 + 0.3 * x + u[g1] + v[g2] + rng.normal(0.0, 1.0, m)
        frame = pd.DataFrame({"y": y, "x": x, "g1": pd.Series(g1).astype(cats1), "g2": pd.Series(g2).astype(cats2)})
        frame.to_parquet(path / f"part-{k:05d}.parquet", index=False)
    return time.perf_counter() - t0


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    ap.add_argument("--levels1", type=lambda s: int(s.replace("_", "")), default=100_000)
    ap.add_argument("--levels2", type=lambda s: int(s.replace("_", "")), default=1_000)
    ap.add_argument("--chunk", type=lambda s: int(s.replace("_", "")), default=2_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="directory for the Parquet files (kept; reused if present)")
    ap.add_argument("--reml", action="store_true")
    args = ap.parse_args(argv)

    import dask.dataframe as dd
    import distributed

    tmp = None
    if args.keep is None:
        tmp = tempfile.mkdtemp(prefix="lmm-scale-")
        path = Path(tmp)
    else:
        path = args.keep
    try:
        if not any(path.glob("*.parquet")):
            secs = write_parquet(path, args.rows, args.levels1, args.levels2, args.chunk)
            print(f"wrote {args.rows:,} rows ({args.levels1:,} × {args.levels2:,} levels) in {secs:.1f} s")
        size = sum(f.stat().st_size for f in path.glob("*.parquet")) / 2**20
        print(f"data: {size:,.0f} MiB of Parquet in {len(list(path.glob('*.parquet')))} files")
        with distributed.LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            with distributed.Client(cluster) as client:
                ddf = dd.read_parquet(str(path))
                t0 = time.perf_counter()
                model = lmm.LinearMixedModel.from_formula(FORMULA, ddf, reml=args.reml)
                t_pass = time.perf_counter() - t0
                rss_after_pass = _maxrss_mb()
                t0 = time.perf_counter()
                fit = model.fit()
                t_fit = time.perf_counter() - t0
                worker_rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        sys_ = model._system
        print(
            f"{'rows':>14} {'levels':>16} {'passes':>9} {'optimise':>9} {'evals':>6} {'strategy':>8} {'rest block':>11} {'peak main':>10} {'peak worker':>12}"
        )
        print(
            f"{fit.nobs:>14,} {args.levels1:>7,} × {args.levels2:<7,} {t_pass:>8.1f}s {t_fit:>8.1f}s {fit.opt.feval:>6} {sys_.strategy:>8} "
            f"{sys_.Q**2 * 8 / 2**20:>8.0f} MiB {_maxrss_mb():>6.0f} MiB {max(worker_rss.values()):>8.0f} MiB"
        )
        print(f"main process peak after the two passes: {rss_after_pass:.0f} MiB")
        print(
            f"criterion {fit.objective:.6f}, theta {np.round(fit.theta, 5)}, beta {np.round(fit.beta, 5)}, sigma {fit.sigma:.5f}"
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    raise SystemExit(main())
