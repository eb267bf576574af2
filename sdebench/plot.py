"""Seaborn log-log error-vs-NFE figures from results rows (never re-runs cells).

One figure per metric family: columns = problems, rows = SDEs, hue = solver label. Each line is the
mean over seeds; where the metric varies across seeds (sample-based metrics) it carries a bootstrap
95% CI band over seeds (seaborn's ``errorbar=("ci", 95)``), and the title says so; where it does not
(exact metrics of a deterministic output law, or one seed) no band is drawn and the title says why.
The Monte Carlo floor (the ``<metric>_null`` column: the same statistic between two target samples) is
drawn as a grey band (mean -/+ 2 sd over its independent target draws, the ``<metric>_at_floor`` rule;
min..max of the null for older rows without ``<metric>_null_sd``); exact metrics have no floor. Dashed
grey lines show the reference slopes NFE^-p for the verified orders p of the solvers in the panel
(``solver_orders``; 2p for KL, which scales like the square of W2), kept inside the data's y-range so that they never
stretch the axis. For ``path_err`` (error against a reference ODE solve) the reference's own accuracy
is marked: the band min..max of ``path_ref_err`` where the rows carry that estimate, else a dotted line
at the reference's stated tolerance (``path_ref_rtol``, else the images metric's ``LEGACY_REF_RTOL``,
that of rows that predate the column), below which the metric cannot resolve a solver's error.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ConfigError
from .io import read_table
from .metrics.images import LEGACY_REF_RTOL
from .metrics.registry import LABELS, own_floor
from .solvers import SOLVERS
from .stats import flag_values
from .store import Store

__all__ = ["load_results", "primary_metric", "with_primary", "plot_error_vs_nfe", "plot_leaderboard", "solver_orders",
           "seed_spread", "reference_accuracy", "METRIC_PREFERENCE", "labels"]

# per problem, the first of these present (with finite values) is its headline error (path_err: a network without data)
METRIC_PREFERENCE = ("w2_exact", "w2", "sliced_w2", "sliced_w2_data", "emd_w2", "kl_exact", "w1", "tv_exact",
                     "path_err")
_LABELS = LABELS  # metric name -> plot label: a live view of the metric registry


def labels() -> dict:
    """metric name -> plot label, from the metric registry (sdebench.metrics.registry)."""
    return dict(LABELS)


def load_results(path) -> tuple[pd.DataFrame, Path]:
    """A results table, or a store folder (consolidated afresh from its cell files, bad files reported on
    stderr; a folder without cells/ but with results.parquet is read from that). Returns the rows and
    the folder that outputs go to by default."""
    import sys

    p = Path(path)
    if p.is_dir():
        if (p / "cells").is_dir():
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
        sd = f"{m}_null_sd"  # spread of the null over independent target draws (absent in older rows)
        g["floor_sd"] = pd.to_numeric(g[sd], errors="coerce") if sd in g.columns else np.nan
        flag = f"{m}_at_floor"  # the metric's own test where it has one (Metric.own_floor), else NaN
        g["flag"] = flag_values(g[flag]) if own_floor(m) and flag in g.columns else np.nan
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
    return {n: SOLVERS[n].verified_order for n in names
            if n in SOLVERS and SOLVERS[n].verified_order is not None}


def _common_limit(null: pd.Series) -> bool:
    """Whether a panel's points share one resolution limit (within 10x), so that one grey band draws it. A
    metric whose limit is per point (weak_err_cv: the cell's own standard error, from 1e-7 for an ODE solver to
    1e11 for a diverging sampler) gets no band; its points at the limit are drawn hollow."""
    v = pd.to_numeric(null, errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return bool(len(v)) and float(v.max()) <= 10 * float(v.min())


def floor_band(sub: pd.DataFrame) -> tuple[float, float]:
    """The grey floor band of a panel: null mean -/+ 2 sd over the independent target draws where the rows
    carry ``<metric>_null_sd`` (the rule of ``<metric>_at_floor``), else min..max of the null column."""
    fl = sub["floor"].to_numpy(dtype=float)
    sd = sub["floor_sd"].to_numpy(dtype=float) if "floor_sd" in sub.columns else np.full_like(fl, np.nan)
    ok = np.isfinite(fl)
    if ok.any() and np.isfinite(sd[ok]).all():
        lo, hi = fl[ok] - 2 * sd[ok], fl[ok] + 2 * sd[ok]
        return float(max(lo.min(), 0.25 * fl[ok].min())), float(hi.max())
    return float(np.nanmin(fl)), float(np.nanmax(fl))


def _data_range(sub: pd.DataFrame) -> tuple[float, float]:
    """(lowest, highest) of what a panel draws: the seed-mean curves and the floor band."""
    means = sub.groupby(["label", "nfe"])["error"].mean()
    vals = [means.to_numpy(dtype=float)]
    if "floor" in sub.columns and sub["floor"].notna().any():
        vals.append(np.array(floor_band(sub)))
    v = np.concatenate(vals)
    v = v[np.isfinite(v) & (v > 0)]
    return (float(v.min()), float(v.max())) if len(v) else (np.nan, np.nan)


def _slope_lines(ax, sub: pd.DataFrame, metric: str, extra=()):
    """Reference segments NFE^-p fanning out from one point, all over the same NFE span starting at the
    last two octaves of NFE (so the slopes are compared, not the levels). Every segment stays inside the
    panel's data range (seed-mean curves, floor band and the values in ``extra``, e.g. a reference-accuracy
    line), so reference lines never stretch the axis: the fan goes below the lowest curve (from 0.4x its
    value down to the lowest value drawn) or, where that leaves less room (curves sitting on a Monte Carlo
    floor), above the highest curve (from 10x its value, at most the top of the range, down to the highest
    curve right of the fan's start). The span is shortened until the steepest segment fits; orders whose
    segment would span less than 1.25x in NFE are left out."""
    orders = solver_orders(sub["solver"].unique())
    if not orders or sub.empty:
        return
    scale = 2.0 if metric.startswith("kl") else 1.0
    nmax = float(sub["nfe"].max())
    nfes = np.sort(sub["nfe"].unique().astype(float))
    nmin = float(nfes[nfes >= nmax / 4.0].min())
    if nmax <= nmin:
        return
    ylo, yhi = _data_range(sub)
    ex = np.asarray([v for v in extra if np.isfinite(v) and v > 0], dtype=float)
    if len(ex):
        ylo, yhi = min(ylo, float(ex.min())), max(yhi, float(ex.max()))
    if not np.isfinite(ylo):
        return
    means = sub.groupby(["label", "nfe"])["error"].mean()
    at_start = means.xs(nmin, level="nfe")
    right = means[means.index.get_level_values("nfe") >= nmin]
    below = (0.4 * float(at_start.min()), ylo)  # (fan start, lowest end)
    above = (min(yhi, 10.0 * float(at_start.max())), float(right.max()))
    ps = sorted(set(orders.values()))

    def span(place, p):
        top, bottom = place
        return min(nmax / nmin, (top / bottom) ** (1.0 / (scale * p))) if top > bottom else 1.0

    while ps:
        y0, bottom = below if span(below, ps[-1]) >= min(1.5, span(above, ps[-1])) else above
        width = span((y0, bottom), ps[-1])
        if width >= 1.25:
            break
        ps.pop()
    for p in ps:
        slope = -scale * p
        x = np.array([nmin, nmin * width])
        y = y0 * (x / x[0]) ** slope
        ax.plot(x, y, ls="--", lw=1.0, color="0.35", zorder=1, label="_slope")
        ax.annotate(f"NFE$^{{{slope:g}}}$", (x[1], y[1]), fontsize=7, color="0.3", xytext=(3, 0),
                    textcoords="offset points", ha="left", va="center")


def seed_spread(dm: pd.DataFrame) -> str:
    """'spread' where the metric differs across seeds in some (problem, SDE, solver, NFE) cell (then a
    bootstrap CI over seeds means something), 'none' where every cell has >= 2 seeds with the same value
    (an exact metric of a deterministic output law), 'single' where every cell has one seed."""
    keys = [k for k in ("problem", "sde", "label", "schedule", "nfe") if k in dm.columns]
    g = dm.groupby(keys)["error"]
    n = g.count()
    if (n < 2).all():
        return "single"
    rel = (g.max() - g.min()) / g.mean().abs()
    return "spread" if bool((rel[n >= 2] > 1e-12).any()) else "none"


def _title(m: str, dm: pd.DataFrame, spread: str) -> str:
    seeds = int(dm["seed"].nunique()) if "seed" in dm.columns else 1
    what = _LABELS.get(m, m)
    if spread == "spread":
        body = f"mean over {seeds} seeds, bootstrap 95% CI over seeds"
    elif spread == "none":
        body = f"identical for all {seeds} seeds (exact metric, no seed spread): no CI"
    else:
        body = "1 seed: no CI"
    extra = []
    if dm["floor"].notna().any():
        spread = "floor_sd" in dm.columns and dm["floor_sd"].notna().any()
        if m == "strong_err":  # its <metric>_null is the reference solve's own error
            extra.append("grey band: resolution limit (the reference's own error)")
        elif m != "path_err":  # path_err's null (path_ref_err) is named by the dotted/dark band below
            extra.append("grey band: Monte Carlo floor" + (", mean -/+ 2 sd of independent target draws" if spread
                                                           else ""))
    if m == "path_err":
        recorded = "path_ref_err" in dm.columns and pd.to_numeric(dm["path_ref_err"], errors="coerce").gt(0).any()
        extra.append("dotted/dark band: reference solve's own error" if recorded
                     else "dotted: reference solve's stated tolerance")
    return f"{what} vs NFE ({body}" + "".join(f"; {e}" for e in extra) + ")"


def reference_accuracy(sub: pd.DataFrame, metric: str) -> tuple[float, float, str] | None:
    """(low, high, label) of the accuracy of the reference that ``metric`` is measured against, or None:
    for ``path_err``, the min..max of ``path_ref_err`` (an estimate of the reference's own error) where
    the rows carry it, else the reference's stated tolerance (``path_ref_rtol``, else the images metric's
    LEGACY_REF_RTOL, the tolerance of rows that predate path_ref_rtol). A solver's error below this is not
    resolved."""
    if metric != "path_err":
        return None
    if "path_ref_err" in sub.columns:
        v = pd.to_numeric(sub["path_ref_err"], errors="coerce")
        v = v[np.isfinite(v) & (v > 0)]
        if len(v):
            return float(v.min()), float(v.max()), "reference solve's own error (path_ref_err)"
    rtol = np.nan
    if "path_ref_rtol" in sub.columns:
        v = pd.to_numeric(sub["path_ref_rtol"], errors="coerce")
        v = v[np.isfinite(v) & (v > 0)]
        rtol = float(v.max()) if len(v) else np.nan
    if not np.isfinite(rtol):  # rows that predate path_ref_rtol: the images metric's tolerance then

        rtol = float(LEGACY_REF_RTOL)
    return rtol, rtol, f"reference's stated tolerance rtol = {rtol:g}\n(its global error is larger)"


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
        spread = seed_spread(dm)
        one_sde = len(sdes) == 1  # then no row facets: the SDE goes into the panel titles
        # several schedules: one line per (solver, schedule), never a mean and a CI across schedules
        style = "schedule" if "schedule" in dm.columns and dm["schedule"].nunique() > 1 else None
        g = sns.relplot(data=dm, x="nfe", y="error", hue="label", hue_order=[lb for lb in labels
                                                                               if lb in set(dm["label"])],
                        style=style,
                        col="problem", row=None if one_sde else "sde", col_order=problems,
                        row_order=None if one_sde else sdes, kind="line",
                        estimator="mean", errorbar=("ci", 95) if spread == "spread" else None, n_boot=1000,
                        seed=0, marker="o",
                        markersize=4, palette=palette, height=3.0, aspect=1.15,
                        facet_kws={"sharey": False, "sharex": True, "margin_titles": True})
        g.set(xscale="log", yscale="log")
        ticks = sorted(dm["nfe"].unique())
        if len(ticks) > 8:
            ticks = [t for t in ticks if np.isclose(np.log2(t), round(np.log2(t)))] or ticks[::2]
        panels = {(sdes[0], k): ax for k, ax in g.axes_dict.items()} if one_sde else g.axes_dict
        for (sde, problem), ax in panels.items():
            sub = dm[(dm["problem"] == problem) & (dm["sde"] == sde)]
            fl = sub["floor"].dropna()
            if len(fl):
                lo, hi = floor_band(sub)
                ax.axhspan(lo, hi, color="0.6", alpha=0.35, lw=0, zorder=0, label="_floor")
                ax.axhline(float(fl.mean()), color="0.4", lw=0.8, zorder=0)
            ref = reference_accuracy(sub, m)
            if ref is not None:
                lo, hi, text = ref
                if hi > lo:
                    ax.axhspan(lo, hi, color="0.2", alpha=0.15, lw=0, zorder=0, label="_ref")
                ax.axhline(hi, color="0.2", lw=1.0, ls=":", zorder=1, label="_ref")
                ax.annotate(text, (0.02, hi), xycoords=("axes fraction", "data"), xytext=(0, 2),
                            textcoords="offset points", fontsize=6.5, color="0.2", va="bottom", ha="left")
            _slope_lines(ax, sub, m, extra=ref[:2] if ref is not None else ())
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.grid(True, which="major", lw=0.3, alpha=0.5)
        g.set_axis_labels("NFE", _LABELS.get(m, m))
        if one_sde:
            g.set_titles(col_template="{col_name} / " + str(sdes[0]))
        else:
            g.set_titles(row_template="{row_name}", col_template="{col_name}")
        g.figure.suptitle(_title(m, dm, spread), y=1.02, fontsize=10)
        if g.legend is not None:
            g.legend.set_title("solver")
        path = out_dir / f"{name}_{m}.{fmt}"
        g.figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(g.figure)
        paths.append(path)
    return paths


def _panel_top(values, q: float = 0.9, headroom: float = 100.0):
    """The y-axis top of a log panel: ``headroom`` x the ``q`` quantile of its values, or None where that is
    above the largest value (nothing to clip). A sampler that diverges (values up to 1e12 against 1e-6..1 for
    the rest) would otherwise squeeze every other curve into the bottom of the panel."""
    v = pd.to_numeric(pd.Series(values), errors="coerce")
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) < 10:
        return None
    top = float(v.quantile(q)) * headroom
    return top if top < float(v.max()) else None


def plot_leaderboard(pts: pd.DataFrame, path, title: str) -> Path:
    """One target's leaderboard figure from its points (:func:`sdebench.leaderboard.points`: one row per
    SDE, solver label, schedule and NFE, mean over seeds): error vs NFE on log-log axes, one panel per SDE,
    hue = solver, line style = schedule, the resolution limit (``null`` -/+ 2 ``null_sd``, the
    ``<metric>_at_floor`` rule) as a grey band, points at their limit drawn hollow with a grey cross."""
    if "MPLCONFIGDIR" not in os.environ:
        import tempfile

        os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="sdebench-mpl-")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, NullLocator

    pts = pts.copy()
    pts["nfe"] = pts["nfe"].astype(float)
    sdes = list(dict.fromkeys(pts["sde"]))
    labels = sorted(pts["label"].unique())
    scheds = sorted(pts["schedule"].unique())
    colors = dict(zip(labels, sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))))
    dashes = ["-", "--", ":", "-."]
    styles = {s: dashes[i % len(dashes)] for i, s in enumerate(scheds)}
    fig, axes = plt.subplots(1, len(sdes), figsize=(4.8 * len(sdes) + 2.2, 4.2), squeeze=False, sharey=False)
    metric = str(pts["metric"].iloc[0]) if "metric" in pts.columns else ""
    clipped = 0
    for ax, sde in zip(axes[0], sdes):
        sub = pts[pts["sde"] == sde]
        band = sub.rename(columns={"null": "floor", "null_sd": "floor_sd"})
        if _common_limit(band["floor"]):
            lo, hi = floor_band(band)
            ax.axhspan(lo, hi, color="0.6", alpha=0.35, lw=0, zorder=0)
        for (lab, sch), g in sub.groupby(["label", "schedule"], sort=True):
            g = g.sort_values("nfe")
            ax.plot(g["nfe"], g["mean"], ls=styles[sch], color=colors[lab], lw=1.2, marker="o", ms=3.5, zorder=2)
            f = g[g["at_floor"].astype(bool)]
            if len(f):
                ax.plot(f["nfe"], f["mean"], ls="none", marker="o", ms=6, mfc="white", mec=colors[lab], zorder=3)
                ax.plot(f["nfe"], f["mean"], ls="none", marker="x", ms=4, color="0.3", zorder=4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        top = _panel_top(sub["mean"])
        if top is not None:
            ax.set_ylim(top=top)
            clipped += int((sub["mean"] > top).sum())
        ticks = sorted(sub["nfe"].unique())
        if len(ticks) > 8:
            ticks = [t for t in (4, 5, 10, 20, 50, 100, 200, 500, 1000) if ticks[0] <= t <= ticks[-1]] or ticks[::2]
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.grid(True, which="major", lw=0.3, alpha=0.5)
        ax.set_title(str(sde), fontsize=9)
        ax.set_xlabel("NFE")
    axes[0][0].set_ylabel(_LABELS.get(metric, metric))
    handles = [Line2D([], [], color=colors[lb], lw=2, label=lb) for lb in labels]
    handles += [Line2D([], [], color="0.2", ls=styles[s], label=f"schedule {s}") for s in scheds]
    if pts["at_floor"].astype(bool).any():
        handles.append(Line2D([], [], ls="none", marker="o", mfc="white", mec="0.2", label="at resolution limit"))
    if any(_common_limit(pts[pts["sde"] == sde]["null"]) for sde in sdes):
        handles.append(Patch(color="0.6", alpha=0.35, label="resolution limit (null -/+ 2 sd)"))
    elif pts["null"].notna().any():
        handles.append(Line2D([], [], ls="none", label="(limits differ per point: no band)"))
    if clipped:
        handles.append(Line2D([], [], ls="none",
                              label=f"({clipped} point{'s' if clipped > 1 else ''} above the top: 100x a panel's "
                                    "90th percentile)"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False,
               ncol=1 if len(handles) <= 24 else 2)
    fig.suptitle(f"{title}: error vs NFE (mean over seeds; hue solver, line style schedule)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


# ---- guided sweeps: error against the guidance scale w ---------------------------------------------------

# the w axis is symlog (linear on [0, 1], logarithmic above): w = 0 cannot go on a log axis, and the
# guidance sweep's scales (0, 1, 3, 7, 15) are spaced roughly geometrically
W_AXIS_LABEL = "guidance scale w (symlog axis: linear for w \u2264 1, log above)"
GUIDED_FIGURE = "guidance_error_vs_w.png"
GAUSSIAN_FIGURE = "guidance_gaussian_w2_vs_w.png"


def plot_error_vs_w(df: pd.DataFrame, path, title: str, value: str = "path_err",
                    ylabel: str = "RMS pathwise error vs dopri5 (tol 1e-10)", raw: pd.DataFrame | None = None) -> Path:
    """One panel per NFE, one line per solver (``df``: one row per solver, NFE and w, e.g. the mean over
    seeds); band = min..max over seeds when ``raw`` (the per-seed rows) holds several seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    nfes = sorted(df["nfe"].unique())
    fig, axes = plt.subplots(1, len(nfes), figsize=(4.6 * len(nfes), 4.0), sharey=True)
    axes = [axes] if len(nfes) == 1 else list(axes)
    solvers = list(dict.fromkeys(df["solver"]))
    markers = "osD^v<>p"
    for ax, nfe in zip(axes, nfes):
        sub = df[df["nfe"] == nfe]
        for i, s in enumerate(solvers):
            r = sub[sub["solver"] == s].sort_values("scale")
            line = ax.plot(r["scale"], r[value], marker=markers[i % len(markers)], label=s)[0]
            if raw is not None and raw["seed"].nunique() > 1:
                rr = raw[(raw["nfe"] == nfe) & (raw["solver"] == s)].groupby("scale")[value]
                ax.fill_between(rr.min().index, rr.min().values, rr.max().values, color=line.get_color(),
                                alpha=0.15, linewidth=0)
        ax.set_xscale("symlog", linthresh=1.0, linscale=1.0)
        ax.set_yscale("log")
        ax.set_xticks(sorted(df["scale"].unique()))
        ax.set_xticklabels([f"{w:g}" for w in sorted(df["scale"].unique())])
        ax.xaxis.set_minor_locator(NullLocator())  # grid lines only at the labelled w values
        ax.set_xlabel(W_AXIS_LABEL)
        ax.set_title(f"NFE {nfe}")
        ax.grid(True, which="major", axis="x", alpha=0.3)
        ax.grid(True, which="both", axis="y", alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
