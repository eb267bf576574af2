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
import torch

from .errors import ConfigError
from .guidance import exact_guided_law, guided_ode_law, solver_calls
from .io import write_table, write_text
from .leaderboard import leaderboard_lines
from .metrics import gaussian as gx
from .plot import (
    _LABELS,
    GAUSSIAN_FIGURE,
    GUIDED_FIGURE,
    plot_error_vs_nfe,
    plot_error_vs_w,
    solver_orders,
    with_primary,
)
from .problems import get_problem
from .problems.labelled import labelled
from .schedules import make_grid
from .sde import get_sde
from .solvers import get_solver
from .stats import bootstrap_mean_ci, fit_order

__all__ = ["SECTIONS", "leaderboard_section",
           "fixed_nfe_table", "nfe_to_tol_table", "order_table", "write_report", "DEFAULT_TOLS", "is_guided",
           "guided_section", "gaussian_table", "gaussian_section", "guided_figures"]

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


def _flagged(error, floor, flag=None) -> bool:
    """A point (its seeds' rows) at the resolution limit: the metric's own flag for at least half of the seeds
    where it has one (``flag``, from :func:`sdebench.plot.with_primary`), else mean < FLOOR_FACTOR x floor."""
    if flag is not None and pd.Series(flag).notna().any():
        return bool(pd.Series(flag).mean() >= 0.5)
    fl, m = pd.Series(floor).mean(), pd.Series(error).mean()
    return bool(math.isfinite(fl) and m < FLOOR_FACTOR * fl)


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
            mark = "*" if _flagged(c["error"], c["floor"], c.get("flag")) else ""
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


def _fit(nfe, Y, null, flags=None):
    """Fitted order; ``flags`` (per NFE, the metric's own at-the-limit test) replaces the null rule."""
    with warnings.catch_warnings():  # a missing (seed, NFE) cell is a NaN: means of all-NaN columns warn
        warnings.simplefilter("ignore", RuntimeWarning)
        f = fit_order(nfe, Y, null=null, fine_is_small=False, flags=flags)
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
        flags = None
        if "flag" in s.columns and s["flag"].notna().any():
            flags = (s.groupby("nfe")["flag"].mean().reindex(Y.columns) >= 0.5).to_numpy()
        order, lo, hi, npts, window = _fit(nfe, Y.to_numpy(), null, flags)
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
    if "metrics_s" in df.columns:
        ms = pd.to_numeric(df["metrics_s"], errors="coerce")
        lines.append(f"- metrics wall time summed over cells: {ms.sum():.1f} s (cached reference solves and null draws "
                     "counted in the cell that paid them)")
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
            if "flag" in g.columns and g["flag"].notna().any():  # the metric's own test (Metric.own_floor)
                own = g.pivot_table(index="label", columns="nfe", values="flag", aggfunc="mean")
                at_floor = (own.reindex_like(mean) >= 0.5).fillna(False)
            else:
                at_floor = (mean < FLOOR_FACTOR * floor.reindex_like(mean)).fillna(False)
            cells = cells.where(~at_floor, cells + "*")
        cells = cells.fillna("-")
        cells.columns = [f"NFE {int(c)}" for c in cells.columns]
        cells.index.name = None
        blocks.append(f"{problem} / {sde}: {_LABELS.get(metric, metric)} ({metric}), mean over seeds\n"
                      + cells.to_string())
    return "\n\n".join(blocks) + "\n\n" + SUMMARY_LEGEND


SUMMARY_LEGEND = (f"*: mean below {FLOOR_FACTOR:g}x the metric's resolution limit (<metric>_null: for sampled "
                  "metrics the Monte Carlo floor, the same statistic between exact target samples; for path_err "
                  "the reference solve's own error), i.e. not resolved; for weak_err_cv, no test function's error "
                  "passes its simultaneous test (weak_err_cv_at_floor); exact metrics (w2_exact, kl_exact) have no "
                  "limit; -: no cell")


def leaderboard_section(df: pd.DataFrame, out_dir, figures: bool, nfe=None, tol=None,
                        manifest: dict | None = None) -> list[str]:
    """The leaderboard (:mod:`sdebench.leaderboard`): per target, which solver + schedule at which NFE."""
    return leaderboard_lines(df, out_dir=out_dir, figures=figures, budgets=nfe, tols=tol, manifest=manifest)


# the report's sections before the per-problem detail, in order: each is called as
# section(df, out_dir=..., figures=..., nfe=..., tol=..., manifest=...) and returns markdown lines
# (an empty list where the rows hold nothing for it); another module adds its own by appending here
SECTIONS = [leaderboard_section]


def write_report(df: pd.DataFrame, out_dir, nfe=None, tol=None, figures: bool = True,
                 title: str = "sdebench report", manifest: dict | None = None,
                 gaussian: pd.DataFrame | None = None) -> Path:
    """Write ``out_dir/report.md`` (and figures); ``manifest`` (the store's manifest.json) adds how many
    of the sweep's cells are present. Rows of a guided sweep (:func:`is_guided`) get the error-vs-w
    section and figure instead of the error-vs-NFE ones, plus the exact Gaussian analogue's table and
    figure when ``gaussian`` (:func:`gaussian_table`) is given."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tols = tuple(tol) if tol else DEFAULT_TOLS
    lines = [f"# {title}", ""]
    lines += _completeness(df, manifest)
    lines += _provenance(df)
    lines.append("")
    if is_guided(df):
        lines += guided_report_lines(df, manifest, figures, out_dir, gaussian)
        return _write(out_dir, lines)
    for section in SECTIONS:
        lines += section(df, out_dir=out_dir, figures=figures, nfe=nfe, tol=tol, manifest=manifest)
    data = with_primary(df)
    lines.append("## Per problem and SDE: every solver")
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
        lines.append(f"### {problem} / {sde}  ({_LABELS.get(metric, metric)}, `{metric}`)")
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
    return _write(out_dir, lines)


def _write(out_dir: Path, lines: list[str]) -> Path:

    path = out_dir / "report.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


# ---- guided sweeps: error against the guidance scale w (sweeps/guidance.toml) ------------------------------

GUIDED_KEY = ["solver", "nfe", "scale"]  # nfe: the counted budget (= model_calls x guidance_cost)
_NFE_RULE = {True: "batched: 1 per guided call, so NFE = model calls",
             False: "unbatched: 2 per guided call, so NFE = 2 x model calls"}


def is_guided(df: pd.DataFrame) -> bool:
    """Rows of a guided sweep: guided cells at several guidance scales w."""
    return ("scale" in df.columns and "guidance" in df.columns and (df["guidance"].astype(str) != "none").any()
            and df["scale"].nunique() > 1)


def _gfmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.3g}"


def _guided_rows(df: pd.DataFrame, manifest: dict | None = None) -> pd.DataFrame:
    """The rows in expansion order (the manifest's key order; a table's own order otherwise), with ``nfe``
    the counted budget (rows written before it was: batched CFG, NFE = model calls)."""
    if "nfe" not in df:
        df = df.assign(nfe=df["model_calls"])
    if manifest and manifest.get("keys") and "cell_key" in df.columns:
        pos = {k: i for i, k in enumerate(manifest["keys"])}
        df = df.assign(_pos=df["cell_key"].map(pos)).sort_values("_pos", kind="stable").drop(columns="_pos")
    return df.reset_index(drop=True)


def _guided_cfg(df: pd.DataFrame) -> dict:
    """The guided sweep's common settings, read from its rows."""
    r = df.iloc[0]
    t_end = r.get("t_end")
    return {"problem": r["problem"], "class_label": int(r["class_label"]), "sde": r["sde"],
            "schedule": r["schedule"], "t_end": 1e-3 if t_end is None or pd.isna(t_end) else float(t_end),
            "guidance": r["guidance"], "cfg_param": r.get("cfg_param", "eps"),
            "cfg_batched": str(r.get("cfg_batched", False)) in ("True", "true", "1", "1.0")}


def guided_aggregate(ok: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of every numeric column, one row per (solver, NFE, w), solver order kept."""
    return ok.groupby(GUIDED_KEY, sort=False).mean(numeric_only=True).reset_index()


def guided_section(df: pd.DataFrame, fig_path: str) -> str:
    """The guided sweep's report section: pathwise error per NFE against w, mass in the target class,
    the full metric set at w = 0, and which solver holds its accuracy as w grows (from the rows)."""
    cfg = _guided_cfg(df)
    raw = df[df["status"] == "ok"]
    ok = guided_aggregate(raw)
    seeds = sorted(raw["seed"].unique()) if len(raw) else []
    lines = [f"## Guided sampling: error vs guidance scale ({cfg['problem']}, class {cfg['class_label']})", ""]
    lines.append(
        f"CFG ({cfg['cfg_param']} parametrization, NFE = the counted budget of network evaluations, "
        f"{_NFE_RULE[cfg['cfg_batched']]}), "
        f"SDE {cfg['sde']}, {cfg['schedule']} grid to t_end = {cfg['t_end']}, "
        f"x_T ~ p_T(x | c) exact, {int(ok['n_samples'].iloc[0]) if len(ok) else '?'} samples per cell, seeds "
        f"{', '.join(str(x) for x in seeds)} (tables: mean over seeds). Error = RMS over samples of "
        f"|x_solver - x_ref|, x_ref = dopri5 (rtol = atol = 1e-10) on the guided probability-flow ODE from the "
        f"same x_T. Figure: `{fig_path}`."
    )
    lines.append("")
    if len(seeds) > 1:
        ratio = raw.groupby(GUIDED_KEY)["path_err"].agg(lambda v: v.max() / v.min())
        worst = ratio.idxmax()
        lines.append(f"Seed spread of path_err (max / min over seeds, per cell): median {_gfmt(ratio.median())}, "
                     f"largest {_gfmt(ratio.max())} ({worst[0]}, NFE {worst[1]}, w = {worst[2]:g}).")
        lines.append("")
    bad = df[df["status"] != "ok"]
    for _, r in bad.iterrows():
        lines.append(f"- {r['solver']} NFE {r['nfe']} w = {r['scale']:g}: {r['status']} ({r.get('error', '')})")
    if len(bad):
        lines.append("")
    scales = sorted(ok["scale"].unique())
    for nfe in sorted(ok["nfe"].unique()):
        sub = ok[ok["nfe"] == nfe]
        lines.append(f"**Pathwise error at NFE {nfe}** (ratio = error at w = {scales[-1]:g} / error at w = "
                     f"{scales[0]:g})")
        lines.append("")
        lines.append("| solver | " + " | ".join(f"w = {w:g}" for w in scales)
                     + f" | ratio | median at w = {scales[-1]:g} |")
        lines.append("|---|" + "---|" * (len(scales) + 2))
        for s in dict.fromkeys(sub["solver"]):
            r = sub[sub["solver"] == s].set_index("scale")
            vals = [r["path_err"].get(w, float("nan")) for w in scales]
            ratio = vals[-1] / vals[0] if vals[0] > 0 else float("nan")
            med = r["path_err_med"].get(scales[-1], float("nan")) if "path_err_med" in r else float("nan")
            lines.append(f"| {s} | " + " | ".join(_gfmt(v) for v in vals) + f" | {_gfmt(ratio)} | {_gfmt(med)} |")
        lines.append("")
    if "class_mass" in ok and len(ok):
        lines.append("**Mass in the target class** (exact classifier at t_end; null on exact p(x | c) samples: "
                     f"{_gfmt(ok['class_mass_null'].iloc[0])})")
        lines.append("")
        lines.append("| NFE | solver | " + " | ".join(f"w = {w:g}" for w in scales) + " |")
        lines.append("|---|---|" + "---|" * len(scales))
        for nfe in sorted(ok["nfe"].unique()):
            sub = ok[ok["nfe"] == nfe]
            for s in dict.fromkeys(sub["solver"]):
                r = sub[sub["solver"] == s].set_index("scale")["class_mass"]
                lines.append(f"| {nfe} | {s} | " + " | ".join(_gfmt(r.get(w, float('nan'))) for w in scales) + " |")
        lines.append("")
    w0 = ok[ok["scale"] == 0]
    cols = [c for c in ("sliced_w2", "emd_w2", "kl", "tv", "mmd", "mode_mass") if c in w0 and w0[c].notna().any()]
    if len(w0) and cols:
        lines.append("**w = 0 (conditional sampling of p(x | c)): full metric set against p_{t_end}(x | c)** "
                     "(null = the same statistic on exact samples)")
        lines.append("")
        lines.append("| solver | NFE | " + " | ".join(f"{c} (null)" for c in cols) + " |")
        lines.append("|---|---|" + "---|" * len(cols))
        for _, r in w0.sort_values(["solver", "nfe"]).iterrows():
            cells_ = [f"{_gfmt(r[c])} ({_gfmt(r.get(c + '_null'))})" for c in cols]
            lines.append(f"| {r['solver']} | {r['nfe']} | " + " | ".join(cells_) + " |")
        lines.append("")
    lines.extend(closing_note(ok, scales))
    return "\n".join(lines) + "\n"


def closing_note(ok: pd.DataFrame, scales) -> list:
    """Which solver holds its accuracy best as w grows, with the numbers (measured, from the rows)."""
    if ok.empty or len(scales) < 2:
        return []
    out = ["**Which solver holds its accuracy as w grows** (ranked by RMS pathwise error; generated from the rows)",
           ""]
    for nfe in sorted(ok["nfe"].unique()):
        piv = ok[ok["nfe"] == nfe].pivot_table(index="solver", columns="scale", values="path_err")
        parts = []
        for w in scales[1:]:
            if w not in piv:
                continue
            col = piv[w].dropna().sort_values()
            parts.append(f"w = {w:g}: " + " < ".join(f"{s} {_gfmt(v)}" for s, v in col.items()))
        best = piv[scales[-1]].idxmin()
        out.append(f"- NFE {nfe}: best at w = {scales[-1]:g} is {best} ({_gfmt(piv.loc[best, scales[-1]])}, "
                   f"{_gfmt(piv.loc[best, scales[0]])} at w = {scales[0]:g}). " + "; ".join(parts) + ".")
    out.append("")
    return out


def gaussian_table(df: pd.DataFrame) -> pd.DataFrame:
    """The exact Gaussian analogue (:func:`gaussian_analogue_rows`) of a guided sweep's
    rows: the same problem, class, SDE, grid, scales, NFE budgets and (ok) solvers."""

    df = _guided_rows(df)
    cfg = _guided_cfg(df)
    ok = df[df["status"] == "ok"]
    return gaussian_analogue_rows(cfg["problem"], cfg["class_label"], sorted(df["scale"].unique()),
                                  sorted(int(n) for n in df["nfe"].unique()), list(dict.fromkeys(ok["solver"])),
                                  sde=cfg["sde"], t_end=cfg["t_end"], schedule=cfg["schedule"],
                                  guidance=cfg["guidance"], cfg_batched=cfg["cfg_batched"])


def gaussian_section(g: pd.DataFrame, cfg: dict, fig_path: str) -> str:
    if "nfe" not in g:  # tables written before the nfe column (batched CFG: NFE = model calls)
        g = g.assign(nfe=g["model_calls"])
    scales = sorted(g["scale"].unique())
    lines = ["### Exact Gaussian analogue (ground truth (c))", "",
             f"Conditional = the first Gaussian component of class {cfg['class_label']} "
             f"of {cfg['problem']}, unconditional = the moment-matched Gaussian of the "
             "whole target: the guided score is affine, so each solver's output law is exact "
             "(sdebench.exact.output_gaussian) and so is the guided ODE law (moment ODEs, dopri5 at 1e-11). "
             f"Entry = W2(output law, exact guided law) / sqrt(E|x|^2 under the exact law). Figure: `{fig_path}`.", ""]
    for nfe in sorted(g["nfe"].unique()):
        sub = g[g["nfe"] == nfe]
        lines.append(f"**Relative exact W2 at NFE {nfe}**")
        lines.append("")
        lines.append("| solver | " + " | ".join(f"w = {w:g}" for w in scales) + " |")
        lines.append("|---|" + "---|" * len(scales))
        for s in dict.fromkeys(sub["solver"]):
            r = sub[sub["solver"] == s].set_index("scale")["w2_rel"]
            lines.append(f"| {s} | " + " | ".join(_gfmt(r.get(w, float("nan"))) for w in scales) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def guided_figures(df: pd.DataFrame, fig_dir, gaussian: pd.DataFrame | None = None) -> list[Path]:
    """The error-vs-w figure of a guided sweep (mean over seeds, band min..max) and, with ``gaussian``,
    the exact Gaussian analogue's; written to ``fig_dir``."""

    df = _guided_rows(df)
    ok = df[df["status"] == "ok"]
    if ok.empty:
        raise ConfigError("results hold no rows with status 'ok'")
    cfg = _guided_cfg(ok)
    out = [plot_error_vs_w(guided_aggregate(ok), Path(fig_dir) / GUIDED_FIGURE,
                           f"{cfg['problem']} class {cfg['class_label']}, CFG, {cfg['sde']}, {cfg['schedule']} "
                           f"grid, mean over seeds {', '.join(str(x) for x in sorted(ok['seed'].unique()))} "
                           "(band: min..max)", raw=ok)]
    if gaussian is not None and len(gaussian):
        g = gaussian if "nfe" in gaussian else gaussian.assign(nfe=gaussian["model_calls"])
        out.append(plot_error_vs_w(g, Path(fig_dir) / GAUSSIAN_FIGURE,
                                   "exact Gaussian analogue: component of the class vs moment-matched target",
                                   value="w2_rel", ylabel="W2(output, exact guided law) / RMS size"))
    return out


def guided_report_lines(df: pd.DataFrame, manifest: dict | None, figures: bool, out_dir: Path,
                        gaussian: pd.DataFrame | None) -> list[str]:

    df = _guided_rows(df, manifest)
    if figures and (df["status"] == "ok").any():
        guided_figures(df, out_dir / "figures", gaussian)
    text = guided_section(df, f"figures/{GUIDED_FIGURE}")
    if gaussian is not None and len(gaussian):
        text += "\n" + gaussian_section(gaussian, _guided_cfg(df), f"figures/{GAUSSIAN_FIGURE}")
    return text.splitlines()


GAUSSIAN_TABLE = "results_gaussian.csv"  # the Gaussian analogue rows, beside a store's results.csv


def read_gaussian(path) -> pd.DataFrame | None:
    """A saved Gaussian analogue table, or None where there is none."""
    p = Path(path)
    return pd.read_csv(p) if p.is_file() else None


def store_gaussian(df: pd.DataFrame, root, manifest: dict | None, fresh: bool = False) -> pd.DataFrame | None:
    """The Gaussian analogue of a guided store whose sweep file sets ``gaussian_analogue = true``: read from
    ``root/results_gaussian.csv``, or (``fresh``, or the file missing) computed from the rows and saved there."""
    if not (manifest or {}).get("report", {}).get("gaussian_analogue") or not is_guided(df):
        return None
    if not (df["status"] == "ok").any():
        return None
    path = Path(root) / GAUSSIAN_TABLE
    if not fresh and path.is_file():
        return read_gaussian(path)

    g = gaussian_table(df)
    write_table(g, path)
    return g


def gaussian_analogue_rows(problem: str, class_label: int, scales, nfes, solvers, sde: str = "vp",
                           t_end: float | None = None, schedule: str = "logsnr", guidance: str = "cfg",
                           cfg_batched: bool = True):
    """The exact Gaussian analogue of a guided sweep (ground truth (c)): cond = the first Gaussian component
    of the class, uncond = the moment-matched Gaussian of the whole target; W2 of each solver's exact output
    law vs the exact guided ODE law, one row per (w, solver, NFE)."""
    prob = get_problem(problem)
    lab = labelled(prob)
    c = lab.check_class(class_label)
    k = int(lab.components(c)[0])
    cond = (prob.means[k], prob.covs[k])
    uncond = prob.moments()
    sde_obj = get_sde(sde)
    t_end = float(t_end or sde_obj.t_end_default)
    a, s2 = float(sde_obj.alpha(torch.tensor(sde_obj.T))), float(sde_obj.sigma2(torch.tensor(sde_obj.T)))
    m_T, P_T = a * cond[0], a * a * cond[1] + s2 * torch.eye(prob.d, dtype=torch.float64)
    rows = []
    for w in scales:
        m_ref, P_ref = guided_ode_law(sde_obj, cond, uncond, float(w), m_T, P_T, t_end, guidance)
        size = float(torch.sqrt(torch.trace(P_ref) + m_ref @ m_ref))
        for name in solvers:
            spec = get_solver(name)
            for nfe in nfes:
                # the counted budget -> model calls, the same rule as the sampled cells (sdebench.run.cell_budget)
                calls = solver_calls(int(nfe), guidance, bool(cfg_batched))
                grid = make_grid(sde_obj, spec.steps_for_nfe(calls), t_end, schedule)
                m, P = exact_guided_law(spec, sde_obj, grid, cond, uncond, float(w), m_T, P_T, guidance, nfe=calls)
                ok = bool(torch.isfinite(m).all() and torch.isfinite(P).all())
                w2 = gx.w2(m, P, m_ref, P_ref) if ok else float("nan")
                rows.append({"solver": name, "nfe": int(nfe), "model_calls": calls, "scale": float(w), "w2_exact": w2,
                             "w2_rel": w2 / size, "ref_std": float(torch.sqrt(torch.trace(P_ref)))})
    return pd.DataFrame(rows)
