"""Markdown report from results rows: per problem and SDE, error at fixed NFE, NFE needed to reach an
error tolerance, fitted orders; with the error-vs-NFE figures.

Every number is computed from stored rows (never re-running cells):

* error at fixed NFE: mean over seeds of the problem's headline metric (see :mod:`sdebench.plot`) and
  its percentile-bootstrap 95% CI over seeds; ``*`` marks a value below 3x its Monte Carlo floor.
* NFE to tolerance: the smallest NFE whose seed-mean error is <= tol; ``floor`` when the metric's
  Monte Carlo floor is above tol (the estimator cannot certify it), ``>N`` when never reached.
* fitted order: minus the log-log slope of the seed-mean error against NFE on the asymptotic window
  (points above the floor), with a bootstrap 95% CI over seeds (whole curves resampled). Uses
  :func:`sdebench.stats.fit_order`.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .io import write_text
from .plot import _LABELS, plot_error_vs_nfe, solver_orders, with_primary
from .stats import bootstrap_mean_ci, fit_order

__all__ = ["fixed_nfe_table", "nfe_to_tol_table", "order_table", "write_report", "DEFAULT_TOLS"]

DEFAULT_TOLS = (1e-1, 1e-2, 1e-3)
FLOOR_FACTOR = 3.0


def _fmt(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.2e}"


def _mean_ci(values) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=float)
    return bootstrap_mean_ci(v[np.isfinite(v)])


def pick_nfe(values, k: int = 5) -> list[int]:
    vals = sorted(set(int(v) for v in values))
    if len(vals) <= k:
        return vals
    idx = np.unique(np.round(np.linspace(0, len(vals) - 1, k)).astype(int))
    return [vals[i] for i in idx]


def fixed_nfe_table(g: pd.DataFrame, nfe: list[int]) -> pd.DataFrame:
    rows = []
    for label, s in g.groupby("label", sort=True):
        r = {"solver": label}
        for n in nfe:
            c = s[s["nfe"] == n]
            if not len(c):
                r[f"NFE {n}"] = "-"
                continue
            m, lo, hi = _mean_ci(c["error"])
            fl = c["floor"].mean()
            mark = "*" if math.isfinite(fl) and m < FLOOR_FACTOR * fl else ""
            ci = f" [{_fmt(lo)}, {_fmt(hi)}]" if math.isfinite(lo) and _fmt(lo) != _fmt(hi) else ""
            r[f"NFE {n}"] = f"{_fmt(m)}{mark}{ci}"
        rows.append(r)
    return pd.DataFrame(rows)


def nfe_to_tol_table(g: pd.DataFrame, tols) -> pd.DataFrame:
    rows = []
    for label, s in g.groupby("label", sort=True):
        curve = s.groupby("nfe")[["error", "floor"]].mean().sort_index()
        r = {"solver": label}
        for tol in tols:
            fl = curve["floor"].max()
            hit = curve.index[curve["error"] <= tol]
            if math.isfinite(fl) and fl > tol / FLOOR_FACTOR:
                r[f"tol {tol:g}"] = "floor"
            elif len(hit):
                r[f"tol {tol:g}"] = str(int(hit.min()))
            else:
                r[f"tol {tol:g}"] = f">{int(curve.index.max())}"
        rows.append(r)
    return pd.DataFrame(rows)


def _fit(nfe, Y, null):
    with warnings.catch_warnings():  # a missing (seed, NFE) cell is a NaN: means of all-NaN columns warn
        warnings.simplefilter("ignore", RuntimeWarning)
        f = fit_order(nfe, Y, null=null, fine_is_small=False)
    return -f.slope, -f.hi, -f.lo, f.n_points, f.window


def order_table(g: pd.DataFrame) -> pd.DataFrame:
    rows = []
    metric = g["metric"].iloc[0]
    scale = 2.0 if metric.startswith("kl") else 1.0
    for label, s in g.groupby("label", sort=True):
        Y = s.pivot_table(index="seed", columns="nfe", values="error", aggfunc="mean")
        nfe = Y.columns.to_numpy(dtype=float)
        null = None
        if s["floor"].notna().any():
            null = s.pivot_table(index="seed", columns="nfe", values="floor", aggfunc="mean")
            null = null.reindex(index=Y.index, columns=Y.columns).to_numpy()
        if len(nfe) < 2:
            continue
        order, lo, hi, npts, window = _fit(nfe, Y.to_numpy(), null)
        theory = solver_orders([s["solver"].iloc[0]]).get(s["solver"].iloc[0], math.nan) * scale
        win = f"{int(min(window))}-{int(max(window))}" if len(window) else "-"
        rows.append({"solver": label, "fitted order": _fmt(order),
                     "95% CI": f"[{_fmt(lo)}, {_fmt(hi)}]" if math.isfinite(lo) and _fmt(lo) != _fmt(hi) else "-",
                     "theory": _fmt(theory), "NFE window": win, "points": npts, "seeds": len(Y.index)})
    return pd.DataFrame(rows)


def _md(df: pd.DataFrame) -> str:
    if not len(df):
        return "(no rows)\n"
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        out.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(out) + "\n"


def _provenance(df: pd.DataFrame) -> list[str]:
    lines = []
    counts = df["status"].value_counts() if "status" in df.columns else pd.Series(dtype=int)
    lines.append(f"- rows: {len(df)} (" + ", ".join(f"{v} {k}" for k, v in counts.items()) + ")")
    for col, what in (("sweep", "sweep"), ("sdebench_version", "sdebench"), ("git_commit", "git commit"),
                      ("torch_version", "torch"), ("device_name", "device")):
        if col in df.columns:
            vals = sorted(df[col].dropna().astype(str).unique())
            lines.append(f"- {what}: " + ", ".join(f"`{v[:12] if col == 'git_commit' else v}`" for v in vals))
    if "n_samples" in df.columns:
        lines.append(f"- samples per cell: {', '.join(map(str, sorted(df['n_samples'].dropna().unique())))}")
    if "wall_s" in df.columns:
        lines.append(f"- sampler wall time summed over cells: {pd.to_numeric(df['wall_s']).sum():.1f} s")
    return lines


def _completeness(df: pd.DataFrame, manifest: dict | None) -> list[str]:
    if not manifest or "keys" not in manifest or "cell_key" not in df.columns:
        return []
    keys = set(manifest["keys"])
    have = int(df["cell_key"].isin(keys).sum())
    line = f"- cells of sweep `{manifest.get('sweep', '')}`: {have} of {len(keys)} present"
    if have < len(keys):
        line += " (**partial**: the sweep has not finished; re-run it to resume)"
    if manifest.get("skipped"):
        line += f"; {len(manifest['skipped'])} incompatible solver/SDE/NFE combinations left out"
    return [line]


def summary_text(df: pd.DataFrame) -> str:
    """Plain-text tables for a terminal: per problem and SDE, the headline metric's mean over seeds
    for every solver (rows) and NFE (columns); ``*`` marks a mean below 3x its Monte Carlo floor, which
    the closing legend line (:data:`SUMMARY_LEGEND`) says."""
    data = with_primary(df)
    blocks = []
    for (problem, sde), g in data.groupby(["problem", "sde"], sort=False):
        metric = g["metric"].iloc[0]
        mean = g.pivot_table(index="label", columns="nfe", values="error", aggfunc="mean")
        floor = g.pivot_table(index="label", columns="nfe", values="floor", aggfunc="mean")
        cells = mean.map(_fmt).astype(object)
        if floor.notna().any().any():
            at_floor = (mean < FLOOR_FACTOR * floor.reindex_like(mean)).fillna(False)
            cells = cells.where(~at_floor, cells + "*")
        cells = cells.fillna("-")
        cells.columns = [f"NFE {int(c)}" for c in cells.columns]
        cells.index.name = None
        blocks.append(f"{problem} / {sde}: {_LABELS.get(metric, metric)} ({metric}), mean over seeds\n"
                      + cells.to_string())
    return "\n\n".join(blocks) + "\n\n" + SUMMARY_LEGEND


SUMMARY_LEGEND = (f"*: mean below {FLOOR_FACTOR:g}x the Monte Carlo floor (<metric>_null: the same statistic "
                  "between two exact target samples), i.e. not resolved from sampling noise; exact metrics "
                  "(w2_exact, kl_exact) have no floor; -: no cell")


def write_report(df: pd.DataFrame, out_dir, nfe=None, tol=None, figures: bool = True,
                 title: str = "sdebench report", manifest: dict | None = None) -> Path:
    """Write ``out_dir/report.md`` (and figures); ``manifest`` (the store's manifest.json) adds how many
    of the sweep's cells are present."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tols = tuple(tol) if tol else DEFAULT_TOLS
    data = with_primary(df)
    lines = [f"# {title}", ""]
    lines += _completeness(df, manifest)
    lines += _provenance(df)
    lines.append("")
    lines.append("Errors are the mean over seeds with a bootstrap 95% CI over seeds where the seeds differ "
                 "(exact metrics are identical for every seed: no CI); `*` = below 3x the "
                 "Monte Carlo floor (the same statistic between two target samples). Exact metrics "
                 "(`w2_exact`, `kl_exact`) are computed from the solver's exact Gaussian output law and have "
                 "no floor. Fitted order = minus the log-log slope of error vs NFE on the asymptotic window "
                 "(points above the floor), bootstrap 95% CI over seeds; theory = the solver's declared "
                 "order (x2 for KL).")
    lines.append("")
    if figures:
        for p in plot_error_vs_nfe(df, out_dir / "figures"):
            lines.append(f"![{p.stem}](figures/{p.name})")
            lines.append("")
    for (problem, sde), g in data.groupby(["problem", "sde"], sort=False):
        metric = g["metric"].iloc[0]
        lines.append(f"## {problem} / {sde}  ({_LABELS.get(metric, metric)}, `{metric}`)")
        lines.append("")
        cols = nfe if nfe else pick_nfe(g["nfe"])
        lines.append("**Error at fixed NFE**")
        lines.append("")
        lines.append(_md(fixed_nfe_table(g, cols)))
        lines.append("**NFE to reach the error tolerance**")
        lines.append("")
        lines.append(_md(nfe_to_tol_table(g, tols)))
        lines.append("**Fitted order**")
        lines.append("")
        lines.append(_md(order_table(g)))
    if "status" in df.columns:
        bad = df[df["status"] != "ok"]
        if len(bad):
            lines.append(f"## Cells not ok ({len(bad)})")
            lines.append("")
            keep = [c for c in ("problem", "sde", "label", "nfe", "seed", "status", "error") if c in bad.columns]
            lines.append(_md(bad[keep].head(50)))
    path = out_dir / "report.md"

    write_text(path, "\n".join(lines) + "\n")
    return path
