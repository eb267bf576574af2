"""``sdebench orders RESULTS``: convergence orders with bootstrap CIs from a results table.

For each (problem, sde, solver, schedule, solver options, init, t_end, score error) group and each metric, the
mean error curve over seeds is fitted as log(error) against log(step size h = (T - t_end) / steps) and
against log(NFE), over the asymptotic window with points at their Monte Carlo floor excluded
(:mod:`sdebench.stats`); the 95% CI resamples seeds keeping each seed's curve whole.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from sdebench.errors import ConfigError
from sdebench.io import check_writable, read_table, write_table
from sdebench.metrics.registry import own_floor
from sdebench.run import METRICS
from sdebench.stats import fit_order, flag_values, point_summary

if TYPE_CHECKING:  # pandas loads when a table is read, not when the parser is built
    import pandas as pd

GROUP = ["problem", "sde", "solver", "schedule", "solver_options", "init", "t_end", "T", "score_error", "n_samples"]


def add_parser(sub):
    p = sub.add_parser("orders", help="fit convergence orders (error vs step size and NFE) with bootstrap CIs",
                       description="Fit log(error) against log(step size) and log(NFE) per solver and metric.")
    p.add_argument("results", help="results table (.parquet or .csv) written by `sdebench run --out`")
    p.add_argument("--metrics", default=None, help="comma-separated metrics (default: every metric column present)")
    p.add_argument("--bootstrap", default="1000", help="bootstrap replicates (default 1000)")
    p.add_argument("--points", action="store_true",
                   help="also print every point: mean over seeds, bootstrap 95%% CI, null and at_floor")
    p.add_argument("--out", default=None, help="also write the fits to this .csv or .parquet file")
    return p


def fit_table(df: pd.DataFrame, metrics=None, B: int = 1000) -> pd.DataFrame:
    import pandas as pd

    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    for col in ("solver", "steps", "seed"):
        if col not in df.columns:
            raise ConfigError(f"results table has no {col!r} column; is it a `sdebench run --out` table?")
    if df.empty:
        raise ConfigError("results table has no rows with status 'ok'")
    present = [m for m in METRICS if m in df.columns]
    if metrics:
        bad = [m for m in metrics if m not in df.columns]
        if bad:
            raise ConfigError(f"metric {bad[0]!r} is not a column of the results table; present: {', '.join(present)}")
        present = list(metrics)
    keys = [k for k in GROUP if k in df.columns]
    df = df.copy()
    for k in keys:
        df[k] = df[k].fillna("").astype(str) if df[k].dtype == object else df[k]
    out = []
    for gkey, g in df.groupby(keys, sort=False, dropna=False):
        info = dict(zip(keys, gkey if isinstance(gkey, tuple) else (gkey,)))
        steps = np.sort(g["steps"].unique())
        if len(steps) < 2:
            continue
        T = float(g["T"].iloc[0]) if "T" in g else 1.0
        t_end = float(g["t_end"].iloc[0]) if "t_end" in g else 0.0
        h = (T - t_end) / steps.astype(float)
        nfe = g.groupby("steps")["nfe"].mean().reindex(steps).to_numpy(dtype=float)
        for m in present:
            vals = g.pivot_table(index="seed", columns="steps", values=m, aggfunc="mean").reindex(columns=steps)
            if vals.isna().all().all():
                continue
            null = None
            if f"{m}_null" in g:
                null = g.pivot_table(index="seed", columns="steps", values=f"{m}_null",
                                     aggfunc="mean").reindex(columns=steps).to_numpy()
            null_sd = None
            if null is not None and f"{m}_null_sd" in g:
                null_sd = g.pivot_table(index="seed", columns="steps", values=f"{m}_null_sd",
                                        aggfunc="mean").reindex(columns=steps).to_numpy()
            flags = None
            if own_floor(m) and f"{m}_at_floor" in g:  # the metric's own test replaces the null rule
                flags = g.assign(_f=(flag_values(g[f"{m}_at_floor"]) == 1.0).astype(float)).pivot_table(
                    index="seed", columns="steps", values="_f", aggfunc="mean").reindex(columns=steps).to_numpy()
            Y = vals.to_numpy()
            fh = fit_order(h, Y, null=null, fine_is_small=True, B=B, null_sd=null_sd, flags=flags)
            fn = fit_order(nfe, Y, null=null, fine_is_small=False, B=B, null_sd=null_sd, flags=flags)
            out.append({**info, "metric": m, "order_h": fh.slope, "order_h_lo": fh.lo, "order_h_hi": fh.hi,
                        "slope_nfe": fn.slope, "slope_nfe_lo": fn.lo, "slope_nfe_hi": fn.hi, "points": fh.n_points,
                        "at_floor": fh.n_floor, "seeds": fh.n_seeds, "ci": fh.method,
                        "window_h": fh.as_dict()["window"]})
    if not out:
        raise ConfigError("no group has two or more step counts with finite errors: nothing to fit")
    return pd.DataFrame(out)


def main(args) -> int:
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    try:
        B = int(args.bootstrap)
    except ValueError:
        raise ConfigError(f"--bootstrap must be an integer, got {args.bootstrap!r}") from None
    if B < 10:
        raise ConfigError(f"--bootstrap must be >= 10, got {B}")
    if args.out:
        check_writable(args.out)
    df = read_table(args.results)
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    fits = fit_table(df, metrics, B)
    show = fits.copy()
    for a in ("order_h", "slope_nfe"):
        show[a] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if math.isfinite(v) else "nan"
                   for v, lo, hi in zip(fits[a], fits[f"{a}_lo"], fits[f"{a}_hi"])]
    cols = [c for c in ("problem", "sde", "solver", "schedule", "metric", "order_h", "slope_nfe", "points",
                        "at_floor", "seeds", "ci") if c in show.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 40):
        print(show[cols].to_string(index=False))
    if args.points:
        ok = df[df["status"] == "ok"] if "status" in df.columns else df
        keys = [k for k in GROUP if k in ok.columns] + ["nfe"]
        pts = point_summary(ok, sorted(set(fits["metric"])), keys, B=B)
        cols = [c for c in ("problem", "sde", "solver", "schedule", "nfe", "metric", "mean", "ci_lo", "ci_hi", "null",
                            "seeds", "at_floor") if c in pts.columns]
        with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format",
                               "{:.4g}".format):
            print()
            print(pts[cols].to_string(index=False))
    if args.out:
        write_table(fits, args.out)
        print(f"wrote {len(fits)} fits to {args.out}")
    return 0
