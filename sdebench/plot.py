"""Seaborn log-log error-vs-NFE figures from results rows (never re-runs cells).

One figure per metric family: columns = problems, rows = SDEs, hue = solver label. Each line is the
mean over seeds with a bootstrap 95% CI band (seaborn's ``errorbar=("ci", 95)``, resampling seeds).
The Monte Carlo floor (the ``<metric>_null`` column: the same statistic between two target samples) is
drawn as a grey band (min..max of the null over seeds and NFE); exact metrics have no floor. Dashed
grey lines show the reference slopes NFE^-p for the verified orders p of the solvers in the panel
(``solver_orders``; 2p for KL, which scales like the square of W2).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ConfigError

__all__ = ["load_results", "primary_metric", "with_primary", "plot_error_vs_nfe", "solver_orders",
           "METRIC_PREFERENCE"]

# per problem, the first of these present (with finite values) is its headline error
METRIC_PREFERENCE = ("w2_exact", "w2", "sliced_w2", "emd_w2", "kl_exact", "w1", "tv_exact")
_LABELS = {"w2_exact": "exact W2", "kl_exact": "exact KL", "tv_exact": "TV", "w1": "W1 (exact 1-D)",
           "w2": "W2 (exact 1-D)", "sliced_w2": "sliced W2", "emd_w2": "empirical W2 (POT)"}


def load_results(path) -> tuple[pd.DataFrame, Path]:
    """A results table, or a store folder (consolidated afresh from its cell files, bad files reported on
    stderr; a folder without cells/ but with results.parquet is read from that). Returns the rows and
    the folder that outputs go to by default."""
    import sys

    from .io import read_table

    p = Path(path)
    if p.is_dir():
        if (p / "cells").is_dir():
            from .store import Store

            df, rep = Store(p, create=False).consolidate()
            for line in rep.lines():
                print(f"{p}: {line}", file=sys.stderr)
            return df, p
        if (p / "results.parquet").is_file():
            return read_table(p / "results.parquet"), p
        raise ConfigError(f"{str(p)!r} holds neither a cells/ store nor results.parquet")
    df = read_table(p)
    return df, p.parent


def _ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    if not len(df):
        raise ConfigError("results hold no rows")
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    if not len(df):
        raise ConfigError("results hold no rows with status 'ok'")
    df = df.copy()
    if "label" not in df.columns:
        df["label"] = df["solver"]
    df["label"] = df["label"].fillna(df["solver"])
    return df


def primary_metric(df: pd.DataFrame) -> str | None:
    for m in METRIC_PREFERENCE:
        if m in df.columns and np.isfinite(pd.to_numeric(df[m], errors="coerce")).any():
            return m
    return None


def with_primary(df: pd.DataFrame, metric: str = "auto") -> pd.DataFrame:
    """Rows with status ok, plus columns ``metric``, ``error`` and ``floor`` (NaN where the metric is exact),
    the metric chosen per problem (``auto``) or fixed."""
    df = _ok_rows(df)
    parts = []
    for _, g in df.groupby("problem", sort=False):
        m = primary_metric(g) if metric == "auto" else metric
        if m is None:
            continue
        if m not in g.columns:
            raise ConfigError(f"metric {m!r} is not in the results; columns: "
                              f"{', '.join(c for c in g.columns if c in _LABELS)}")
        g = g.copy()
        g["metric"] = m
        g["error"] = pd.to_numeric(g[m], errors="coerce")
        null = f"{m}_null"
        g["floor"] = pd.to_numeric(g[null], errors="coerce") if null in g.columns else np.nan
        parts.append(g)
    if not parts:
        raise ConfigError("no metric with finite values in the results")
    out = pd.concat(parts, ignore_index=True)
    return out[np.isfinite(out["error"]) & (out["error"] > 0)]


def solver_orders(names) -> dict:
    """Verified (weak) order of each registered solver name: the declared order that
    tests/test_registry_orders.py measures as an exact-W2 slope (``SolverSpec.verified_order``). Unknown
    names and solvers whose order is not verified as an NFE slope (consistency samplers, adaptive dopri5,
    batch-coupled pc) are left out."""
    from .solvers import SOLVERS

    return {n: SOLVERS[n].verified_order for n in names
            if n in SOLVERS and SOLVERS[n].verified_order is not None}


def _slope_lines(ax, sub: pd.DataFrame, metric: str):
    """Reference segments NFE^-p over the last two octaves of NFE, fanning out from one point below the
    lowest curve (so the slopes are compared, not the levels)."""
    orders = solver_orders(sub["solver"].unique())
    if not orders or sub.empty:
        return
    scale = 2.0 if metric.startswith("kl") else 1.0
    nmax = float(sub["nfe"].max())
    nfes = np.sort(sub["nfe"].unique().astype(float))
    nmin = float(nfes[nfes >= nmax / 4.0].min())
    if nmax <= nmin:
        return
    x = np.array([nmin, nmax])
    at_start = sub[sub["nfe"] == nmin].groupby("label")["error"].mean()
    y0 = float(at_start.min()) * 0.4
    for p in sorted(set(orders.values())):
        slope = -scale * p
        y = y0 * (x / x[0]) ** slope
        ax.plot(x, y, ls="--", lw=1.0, color="0.35", zorder=1)
        ax.annotate(f"NFE$^{{{slope:g}}}$", (x[1], y[1]), fontsize=7, color="0.3", xytext=(3, 0),
                    textcoords="offset points", ha="left", va="center")


def plot_error_vs_nfe(df: pd.DataFrame, out_dir, metric: str = "auto", fmt: str = "png",
                      name: str = "error_vs_nfe") -> list[Path]:
    """Draw the figure(s) and return their paths: one figure per metric in use (``auto``: per problem's
    headline metric, grouped so that problems sharing a metric share a figure)."""
    if "MPLCONFIGDIR" not in os.environ:
        import tempfile

        os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="sdebench-mpl-")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    data = with_primary(df, metric)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = data.copy()
    data["nfe"] = data["nfe"].astype(float)
    paths = []
    labels = sorted(data["label"].unique())
    palette = dict(zip(labels, sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))))
    for m, dm in data.groupby("metric", sort=False):
        problems = list(dict.fromkeys(dm["problem"]))
        sdes = list(dict.fromkeys(dm["sde"]))
        g = sns.relplot(data=dm, x="nfe", y="error", hue="label", hue_order=[lb for lb in labels
                                                                               if lb in set(dm["label"])],
                        col="problem", row="sde", col_order=problems, row_order=sdes, kind="line",
                        estimator="mean", errorbar=("ci", 95), n_boot=1000, seed=0, marker="o",
                        markersize=4, palette=palette, height=3.0, aspect=1.15,
                        facet_kws={"sharey": False, "sharex": True, "margin_titles": True})
        g.set(xscale="log", yscale="log")
        ticks = sorted(dm["nfe"].unique())
        if len(ticks) > 8:
            ticks = [t for t in ticks if np.isclose(np.log2(t), round(np.log2(t)))] or ticks[::2]
        for (sde, problem), ax in g.axes_dict.items():
            sub = dm[(dm["problem"] == problem) & (dm["sde"] == sde)]
            fl = sub["floor"].dropna()
            if len(fl):
                ax.axhspan(float(fl.min()), float(fl.max()), color="0.6", alpha=0.35, lw=0, zorder=0,
                           label="_floor")
                ax.axhline(float(fl.mean()), color="0.4", lw=0.8, zorder=0)
            _slope_lines(ax, sub, m)
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.grid(True, which="major", lw=0.3, alpha=0.5)
        g.set_axis_labels("NFE", _LABELS.get(m, m))
        g.set_titles(row_template="{row_name}", col_template="{col_name}")
        title = f"{_LABELS.get(m, m)} vs NFE (mean over seeds, bootstrap 95% CI"
        title += "; grey band: Monte Carlo floor)" if dm["floor"].notna().any() else ")"
        g.figure.suptitle(title, y=1.02, fontsize=10)
        if g.legend is not None:
            g.legend.set_title("solver")
        path = out_dir / f"{name}_{m}.{fmt}"
        g.figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(g.figure)
        paths.append(path)
    return paths
