"""The leaderboard of a study: which solver and schedule to use on each target at a given NFE.

Computed from stored rows only (never re-running a cell). Per target problem, on its primary error metric
(:func:`primary_metrics`):

* **winners**: at each NFE budget (default 5, 10, 20, 50) and SDE, the solver + schedule with the lowest
  error and the runner-up. A configuration competes at budget B with its largest measured NFE in
  (2B/3, B] (solvers with 2 or 3 evaluations per step cannot always hit B exactly; the entry then names
  the NFE used). Only resolved points compete: a point at its resolution limit (``<metric>_at_floor``) is
  never a winner; the entry counts the configurations that sat there instead.
* **NFE to tolerance**: the NFE at which each solver x schedule curve first crosses 1e-2, 1e-3, 1e-4,
  interpolated on log-log between the two measured (resolved) points around the crossing, never
  extrapolated: ``<= n`` when the first point is already below, ``not reached (> n)`` when no resolved point
  is, ``below resolution (NFE >= n)`` when the curve reaches its resolution limit first.
* **orders**: minus the log-log slope of error against NFE on the asymptotic window of resolved points
  (:func:`sdebench.stats.fit_order`; points at the floor excluded), 95% CI, beside the declared order.
* **SDE vs ODE samplers** at equal NFE, the effect of **t_end** and of the **final denoising step**, and
  **VP vs VE vs EDM**: each section only where the rows hold that slice.

A point = one (problem, sde, solver label, schedule, t_end, final_denoise, nfe): the mean over seeds with a
bootstrap 95% CI where the seeds differ; at its resolution limit when at least half of its seeds are flagged
``<metric>_at_floor`` (rows without that column: :func:`sdebench.stats.at_floor` of the row against
``<metric>_null`` / ``<metric>_null_sd``, and exact metrics below float64 rounding).

The consistency samplers (registry family ``consistency``) are drawn and tabulated but never ranked: their
error is that of the consistency function they are given (on an analytic target the exact one, an oracle:
zero error on a Gaussian whatever the NFE), not that of a sampling scheme, so they would win every budget.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ConfigError
from .metrics.registry import own_floor
from .plot import plot_leaderboard
from .solvers import SOLVERS
from .stats import asymptotic_window, at_floor, bootstrap_mean_ci, fit_order, flag_values

__all__ = ["BUDGETS", "TOLS", "PRIMARY_FALLBACK", "primary_metrics", "points", "main_slice", "budget_points",
           "winners_table", "nfe_to_tol", "tol_table", "order_fits", "sde_vs_ode_table", "t_end_table",
           "final_denoise_table", "parametrization_table", "leaderboard_lines", "FLOOR_MARK"]

BUDGETS = (5, 10, 20, 50)
TOLS = (1e-2, 1e-3, 1e-4)
PRIMARY_FALLBACK = ("w2", "sliced_w2", "kl", "mmd")  # mixtures without weak_err
FLOOR_MARK = "*"
FIT_BOOTSTRAP = 200  # bootstrap replicates of an order fit's seed CI (a study has thousands of fits)
AGREE_TOL = 0.25  # |fitted - declared| of an order that agrees (the registry test's tolerance)
POINT_KEYS = ["problem", "sde", "label", "solver", "schedule", "t_end", "final_denoise", "reference"]
CONFIG = ["label", "schedule"]  # what the leaderboard names: solver (label) + schedule


def _finite(df: pd.DataFrame, col: str) -> bool:
    return col in df.columns and bool(np.isfinite(pd.to_numeric(df[col], errors="coerce")).any())


def primary_metrics(g: pd.DataFrame, setting=None) -> list[tuple[str, str]]:
    """The leaderboard metrics of one target's rows: ``[(metric, scope)]``, scope 'all' or 'ode'.

    ``setting`` (the sweep's ``[report] primary_metric``: a name, or a table problem -> name) wins; else
    ``w2_exact`` on Gaussian targets (where it is finite), else ``weak_err_cv`` (or ``weak_err``) for every solver plus
    ``path_err`` as an ODE-only table, else the first of w2, sliced_w2, kl, mmd present."""
    problem = str(g["problem"].iloc[0])
    if isinstance(setting, dict):
        setting = setting.get(problem)
    if "primary_metric" in g.columns and g["primary_metric"].notna().any():
        setting = setting or str(g["primary_metric"].dropna().iloc[0])
    if setting:
        if not _finite(g, setting):
            raise ConfigError(f"primary metric {setting!r} of {problem} has no finite values in the results")
        return [(setting, "all")]
    if _finite(g, "w2_exact"):
        return [("w2_exact", "all")]
    out = []
    for m in ("weak_err_cv", "weak_err"):  # the coupled weak error resolves far below weak_err's floor
        if _finite(g, m):
            out.append((m, "all"))
            break
    if _finite(g, "path_err"):
        out.append(("path_err", "ode"))
    if out:
        return out
    for m in PRIMARY_FALLBACK:
        if _finite(g, m):
            return [(m, "all")]
    return []


def _kind(df: pd.DataFrame) -> pd.Series:
    by_name = df["solver"].map(lambda n: getattr(SOLVERS.get(n), "kind", None))
    if "kind" in df.columns:
        return df["kind"].where(df["kind"].notna(), by_name)
    return by_name


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    if "status" in df.columns:
        df = df[df["status"] == "ok"].copy()
    if "label" not in df.columns:
        df["label"] = df["solver"]
    df["label"] = df["label"].fillna(df["solver"])
    if "schedule" not in df.columns:
        df["schedule"] = "uniform"
    df["final_denoise"] = (df["final_denoise"].map(lambda v: str(v) in ("True", "true", "1", "1.0"))
                           if "final_denoise" in df.columns else False)
    if "t_end" not in df.columns:
        df["t_end"] = np.nan
    df["t_end"] = pd.to_numeric(df["t_end"], errors="coerce").round(12)
    if "seed" not in df.columns:
        df["seed"] = 0
    # what the samples are judged against: p_{t_end} (default) or the data law p_0 (`reference = "data"`)
    df["reference"] = df["reference"].fillna("t_end").astype(str) if "reference" in df.columns else "t_end"
    df["kind"] = _kind(df)
    df["nfe"] = pd.to_numeric(df["nfe"], errors="coerce")
    return df


def _row_floor(g: pd.DataFrame, metric: str) -> np.ndarray:
    flag = f"{metric}_at_floor"
    if flag in g.columns and g[flag].notna().any():
        f = flag_values(g[flag]) == 1.0
        return f | ~np.isfinite(g["value"].to_numpy(dtype=float))
    null = pd.to_numeric(g[f"{metric}_null"], errors="coerce").to_numpy() if f"{metric}_null" in g else None
    sd = pd.to_numeric(g[f"{metric}_null_sd"], errors="coerce").to_numpy() if f"{metric}_null_sd" in g else None
    return np.asarray(at_floor(g["value"].to_numpy(dtype=float), null, null_sd=sd), dtype=bool)


def points(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per point (:data:`POINT_KEYS` + nfe) of ``metric``: mean, CI over seeds, null, at_floor."""
    df = _normalise(df)
    if metric not in df.columns:
        return pd.DataFrame()
    df = df.assign(value=pd.to_numeric(df[metric], errors="coerce"))
    df = df[np.isfinite(df["value"])]
    if df.empty:
        return pd.DataFrame()
    null, sd, se = f"{metric}_null", f"{metric}_null_sd", f"{metric}_se"
    num = lambda c: pd.to_numeric(df[c], errors="coerce") if c in df else np.nan  # noqa: E731
    df = df.assign(_floor=_row_floor(df, metric).astype(float), _null=num(null), _sd=num(sd), _se=num(se),
                   _lo=num(f"{metric}_lo"), _hi=num(f"{metric}_hi"))
    keys = POINT_KEYS + ["nfe"]
    grouped = df.groupby(keys, sort=False, dropna=False)
    agg = grouped.agg(kind=("kind", "first"), mean=("value", "mean"), vmin=("value", "min"), vmax=("value", "max"),
                      seeds=("value", "size"), null=("_null", "mean"), null_sd=("_sd", "mean"),
                      floor=("_floor", "mean"), se=("_se", "first"), ilo=("_lo", "first"),
                      ihi=("_hi", "first")).reset_index()
    # one seed: the metric's own 95% interval: <metric>_lo .. _hi where it writes them (weak_err_cv's
    # simultaneous interval), else value -/+ 1.96 <metric>_se clipped at 0 where it reports a standard error
    one = agg["seeds"] == 1
    own = one & np.isfinite(agg["ilo"]) & np.isfinite(agg["ihi"])
    sym = one & ~own & np.isfinite(agg["se"]) & (agg["se"] > 0)
    agg["lo"] = np.where(own, agg["ilo"], np.where(sym, (agg["mean"] - 1.96 * agg["se"]).clip(lower=0.0), np.nan))
    agg["hi"] = np.where(own, agg["ihi"], np.where(sym, agg["mean"] + 1.96 * agg["se"], np.nan))
    agg = agg.drop(columns=["se", "ilo", "ihi"])
    spread = (agg["seeds"] > 1) & ((agg["vmax"] - agg["vmin"]) > 1e-12 * agg["mean"].abs().clip(lower=1e-300))
    if spread.any():
        values = grouped["value"].apply(lambda v: v.to_numpy(dtype=float)).reset_index(drop=True)
        for i in np.nonzero(spread.to_numpy())[0]:
            _, agg.at[i, "lo"], agg.at[i, "hi"] = bootstrap_mean_ci(values.iloc[i])
    agg["metric"] = metric
    agg["at_floor"] = agg.pop("floor") >= 0.5
    return agg.drop(columns=["vmin", "vmax"])


def main_slice(p: pd.DataFrame) -> pd.DataFrame:
    """The points the winners, tolerance and order tables use: no final denoising, judged against p_{t_end}
    (where any point is; a study judged only against the data law keeps those), and per (problem, SDE) the most
    common t_end (the SDE's default in a study; the t_end section covers the others)."""
    if p.empty:
        return p
    p = p[~p["final_denoise"].astype(bool)]
    if (p["reference"] == "t_end").any():
        p = p[p["reference"] == "t_end"]
    keep = []
    for _, g in p.groupby(["problem", "sde"], sort=False):
        t = g["t_end"]
        if t.notna().any():
            mode = t.value_counts().idxmax()
            g = g[np.isclose(t.fillna(-1.0), mode)]
        keep.append(g)
    return pd.concat(keep, ignore_index=True) if keep else p.iloc[:0]


def _fmt(v) -> str:
    if v is None or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
        return "-"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.2e}"


def _val(r) -> str:
    """A point's error as a table cell: mean, '*' at the resolution limit, CI over seeds where there is one (one
    seed: the metric's own 95% interval, from its standard error)."""
    s = _fmt(r["mean"]) + (FLOOR_MARK if r["at_floor"] else "")
    if math.isfinite(r["lo"]) and _fmt(r["lo"]) != _fmt(r["hi"]):
        lo = "0" if r["lo"] == 0 else _fmt(r["lo"])
        s += f" [{lo}, {_fmt(r['hi'])}]"
    return s


def _name(r) -> str:
    return f"{r['label']} / {r['schedule']}"


def budget_points(p: pd.DataFrame, budget: int) -> pd.DataFrame:
    """Each configuration's point at budget B: its largest NFE in (2B/3, B]."""
    sub = p[(p["nfe"] <= budget) & (p["nfe"] > 2 * budget / 3)]
    if sub.empty:
        return sub
    keys = [k for k in POINT_KEYS if k in sub.columns]
    idx = sub.groupby(keys, dropna=False, sort=False)["nfe"].idxmax()
    return sub.loc[idx.to_numpy()]


def choose_budgets(p: pd.DataFrame, budgets=None) -> list[int]:
    """The NFE budgets of the winners table: ``budgets`` (default 5, 10, 20, 50) where some configuration
    has a point for them; when fewer than two do (a sweep on another NFE ladder), up to four of the
    measured NFEs spread over their range."""
    want = list(budgets) if budgets else list(BUDGETS)
    have = [b for b in want if not budget_points(p, b).empty]
    if budgets or len(have) >= 2:
        return have
    vals = sorted(set(int(v) for v in p["nfe"]))
    if len(vals) <= 4:
        return vals
    idx = np.unique(np.round(np.linspace(0, len(vals) - 1, 4)).astype(int))
    return [vals[i] for i in idx]


def _overlap(a, b) -> bool:
    return (math.isfinite(a["hi"]) and math.isfinite(b["lo"]) and b["lo"] <= a["hi"]) or \
           (math.isfinite(a["hi"]) and not math.isfinite(b["lo"]) and b["mean"] <= a["hi"]) or \
           (math.isfinite(b["lo"]) and not math.isfinite(a["hi"]) and b["lo"] <= a["mean"])


# never ranked: their error is that of the consistency function they are handed (an oracle on analytic targets)
UNRANKED = frozenset(n for n, s in SOLVERS.items() if getattr(s, "family", "") == "consistency")


def _ranked(bp: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    bp = bp[~bp["solver"].isin(UNRANKED)]
    resolved = bp[~bp["at_floor"]].sort_values(["mean", "label", "schedule"], kind="stable")
    return resolved, bp[bp["at_floor"]]


def winners_table(p: pd.DataFrame, budgets) -> pd.DataFrame:
    """Per budget and SDE: best and runner-up (resolved points only), with the count of points at the limit."""
    rows = []
    for b in budgets:
        for sde, g in p.groupby("sde", sort=False):
            bp = budget_points(g, b)
            if bp.empty:
                continue
            resolved, floor = _ranked(bp)
            r = {"NFE": b, "SDE": sde}
            if len(resolved):
                w = resolved.iloc[0]
                r["best (solver / schedule)"] = _name(w) + (f" (NFE {int(w['nfe'])})" if w["nfe"] != b else "")
                r["error"] = _val(w)
            else:
                r["best (solver / schedule)"] = "none resolved"
                r["error"] = "-"
            if len(resolved) > 1:
                u = resolved.iloc[1]
                r["runner-up"] = _name(u) + (f" (NFE {int(u['nfe'])})" if u["nfe"] != b else "")
                r["runner-up error"] = _val(u) + (" (CIs overlap)" if _overlap(resolved.iloc[0], u) else "")
            else:
                r["runner-up"], r["runner-up error"] = "-", "-"
            r["at resolution limit"] = "0"
            if len(floor):
                low = floor.sort_values(["mean", "label", "schedule"], kind="stable").iloc[0]
                r["at resolution limit"] = f"{len(floor)} (lowest: {_name(low)} {_val(low)})"
            rows.append(r)
    return pd.DataFrame(rows)


def nfe_to_tol(nfe, err, floor, tol: float) -> tuple[float, str]:
    """(NFE, text) at which a curve reaches ``tol``: log-log interpolation between the measured points around
    the first crossing; points at the resolution limit end the resolved part of the curve (never used)."""
    nfe = np.asarray(nfe, dtype=float)
    err = np.asarray(err, dtype=float)
    floor = np.asarray(floor, dtype=bool)
    o = np.argsort(nfe)
    nfe, err, floor = nfe[o], err[o], floor[o]
    if not len(nfe):
        return math.nan, "-"
    if floor[0]:
        return math.nan, f"below resolution (NFE >= {int(nfe[0])})"
    if err[0] <= tol:
        return math.nan, f"<= {int(nfe[0])}"
    for i in range(len(nfe) - 1):
        if floor[i + 1]:
            return math.nan, f"below resolution (NFE >= {int(nfe[i + 1])})"
        if err[i + 1] <= tol:
            x0, x1, y0, y1 = map(math.log, (nfe[i], nfe[i + 1], err[i], err[i + 1]))
            n = math.exp(x0 + (math.log(tol) - y0) * (x1 - x0) / (y1 - y0))
            return n, f"{n:.3g}"
    return math.nan, f"not reached (> {int(nfe[-1])})"


def tol_table(p: pd.DataFrame, tols=TOLS) -> pd.DataFrame:
    rows = []
    for (sde, label, sched), g in p.groupby(["sde", "label", "schedule"], sort=True):
        g = g.sort_values("nfe")
        r = {"SDE": sde, "solver / schedule": f"{label} / {sched}"}
        for tol in tols:
            r[f"tol {tol:g}"] = nfe_to_tol(g["nfe"], g["mean"], g["at_floor"], tol)[1]
        rows.append(r)
    return pd.DataFrame(rows)


def declared_order(solver: str, gaussian: bool) -> float:
    spec = SOLVERS.get(solver)
    if spec is None or spec.order_check != "exact" or not spec.order:
        return math.nan
    return float(spec.order_gaussian if gaussian and spec.order_gaussian is not None else spec.order)


def order_fits(p: pd.DataFrame, raw: pd.DataFrame | None, metric: str) -> pd.DataFrame:
    """Fitted order per (SDE, solver, schedule): the points at the resolution limit are left out of the window;
    the CI bootstraps whole seed curves where ``raw`` (the rows) hold several seeds."""
    scale = 2.0 if metric.startswith("kl") else 1.0
    gaussian = metric in ("w2_exact", "kl_exact", "tv_exact")
    rows = []
    curves = None  # per (sde, label, schedule, t_end): one error curve per seed (rows = seed, columns = nfe)
    if raw is not None:
        norm = _normalise(raw)
        norm = norm[~norm["final_denoise"].astype(bool)].assign(value=pd.to_numeric(norm[metric], errors="coerce"))
        if norm["seed"].nunique() > 1:
            curves = norm.groupby(["sde", "label", "schedule", "t_end", "seed", "nfe"], dropna=False)["value"] \
                .mean().unstack("nfe")
    for (sde, label, sched), g in p.groupby(["sde", "label", "schedule"], sort=True):
        g = g.sort_values("nfe")
        if len(g) < 2:
            continue
        x = g["nfe"].to_numpy(dtype=float)
        Y = g["mean"].to_numpy(dtype=float)[None, :]
        key = (sde, label, sched, g["t_end"].iloc[0])
        if curves is not None and key in curves.index.droplevel("seed"):
            piv = curves.loc[key].reindex(columns=x).to_numpy(dtype=float)
            if len(piv) > 1 and np.nanmax(np.nanmax(piv, 0) - np.nanmin(piv, 0)) > 0:  # seeds that differ
                Y = piv
        null = g["null"].to_numpy(dtype=float)
        fl = g["at_floor"].to_numpy(dtype=bool)
        if not own_floor(metric):  # a seed mean below 3x its null is at the limit too
            fl = fl | at_floor(g["mean"].to_numpy(), null if np.isfinite(null).any() else None)
        mask = asymptotic_window(x, g["mean"].to_numpy(dtype=float), fl, fine_is_small=False)
        decl = declared_order(str(g["solver"].iloc[0]), gaussian) * scale
        r = {"SDE": sde, "solver / schedule": f"{label} / {sched}", "declared": _fmt(decl)}
        if mask.sum() < 2:
            r.update({"fitted": "-", "95% CI": "-", "NFE window": "-", "agrees": "-",
                      "points at limit": int(fl.sum())})
            rows.append(r)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            f = fit_order(x, Y, fine_is_small=False, window=mask, B=FIT_BOOTSTRAP)
        order, lo, hi = -f.slope, -f.hi, -f.lo
        ci = f"[{_fmt(lo)}, {_fmt(hi)}]" if math.isfinite(lo) else "-"
        if not math.isfinite(decl):
            agrees = "-"
        elif abs(order - decl) <= AGREE_TOL:
            agrees = "yes"
        elif math.isfinite(lo) and lo <= decl <= hi:
            agrees = "within CI"
        else:
            agrees = "above" if order > decl else "no"
        r.update({"fitted": _fmt(order), "95% CI": ci,
                  "NFE window": f"{int(min(f.window))}-{int(max(f.window))}", "agrees": agrees,
                  "points at limit": int(fl.sum())})
        rows.append(r)
    return pd.DataFrame(rows)


def _best(bp: pd.DataFrame):
    resolved, floor = _ranked(bp)
    return (resolved.iloc[0] if len(resolved) else None), len(floor)


def sde_vs_ode_table(p: pd.DataFrame, budgets) -> pd.DataFrame:
    """Best SDE sampler against best ODE sampler at equal NFE (per SDE parametrization)."""
    rows = []
    kinds = p["kind"].astype(str)
    if not ((kinds == "sde").any() and (kinds == "ode").any()):
        return pd.DataFrame()
    for b in budgets:
        for sde, g in p.groupby("sde", sort=False):
            bp = budget_points(g, b)
            if bp.empty:
                continue
            s, ns = _best(bp[bp["kind"] == "sde"])
            o, no = _best(bp[bp["kind"] == "ode"])
            if s is None and o is None:
                continue
            ratio = s["mean"] / o["mean"] if s is not None and o is not None else math.nan
            rows.append({"NFE": b, "SDE": sde,
                         "best SDE sampler": _name(s) if s is not None else f"none resolved ({ns} at limit)",
                         "SDE error": _val(s) if s is not None else "-",
                         "best ODE sampler": _name(o) if o is not None else f"none resolved ({no} at limit)",
                         "ODE error": _val(o) if o is not None else "-",
                         "SDE / ODE": _fmt(ratio)})
    return pd.DataFrame(rows)


def _effect_nfe(p: pd.DataFrame, budgets) -> int | None:
    for b in sorted(budgets, reverse=True):
        if not budget_points(p, b).empty:
            return b
    return None


def t_end_table(p_all: pd.DataFrame, budgets) -> pd.DataFrame:
    """Error at the largest common budget for each t_end, per (SDE, solver, schedule) run at several t_end."""
    p = p_all[~p_all["final_denoise"].astype(bool)]
    if (p["reference"] == "t_end").any():  # each t_end judged against its own p_{t_end}
        p = p[p["reference"] == "t_end"]
    if p["t_end"].nunique() < 2:
        return pd.DataFrame()
    rows = []
    ts = sorted(p["t_end"].dropna().unique())
    for (sde, label, sched), g in p.groupby(["sde", "label", "schedule"], sort=True):
        if g["t_end"].nunique() < 2:
            continue
        b = _effect_nfe(g, budgets) or int(g["nfe"].max())
        r = {"SDE": sde, "solver / schedule": f"{label} / {sched}", "NFE": b}
        for t in ts:
            bp = budget_points(g[np.isclose(g["t_end"], t)], b)
            r[f"t_end = {t:g}"] = _val(bp.iloc[0]) if len(bp) else "-"
        rows.append(r)
    return pd.DataFrame(rows)


def final_denoise_table(p_all: pd.DataFrame, budgets) -> pd.DataFrame:
    """Error without and with the final denoising step at each budget, per (SDE, solver, schedule, t_end)."""
    if p_all["final_denoise"].nunique() < 2:
        return pd.DataFrame()
    rows = []
    groups = p_all.groupby(["sde", "label", "schedule", "t_end", "reference"], sort=True, dropna=False)
    for (sde, label, sched, t, _ref), g in groups:
        if g["final_denoise"].nunique() < 2:
            continue
        for b in budgets:
            off = budget_points(g[~g["final_denoise"]], b)
            on = budget_points(g[g["final_denoise"]], b)
            if off.empty or on.empty:
                continue
            a, c = off.iloc[0], on.iloc[0]
            ratio = c["mean"] / a["mean"] if not (a["at_floor"] or c["at_floor"]) else math.nan
            rows.append({"SDE": sde, "solver / schedule": f"{label} / {sched}", "t_end": _fmt(t), "NFE": b,
                         "without": _val(a), "with final denoise": _val(c),
                         "with / without": _fmt(ratio) if math.isfinite(ratio) else "- (at limit)"})
    return pd.DataFrame(rows)


def parametrization_table(p: pd.DataFrame, budgets) -> pd.DataFrame:
    """Best solver + schedule under each SDE parametrization at each budget, side by side."""
    sdes = list(dict.fromkeys(p["sde"]))
    if len(sdes) < 2:
        return pd.DataFrame()
    rows = []
    for b in budgets:
        r = {"NFE": b}
        found = False
        for sde in sdes:
            bp = budget_points(p[p["sde"] == sde], b)
            w, nf = _best(bp) if len(bp) else (None, 0)
            r[sde] = (f"{_val(w)} ({_name(w)})" if w is not None else
                      (f"none resolved ({nf} at limit)" if len(bp) else "-"))
            found |= w is not None
        if found:
            rows.append(r)
    return pd.DataFrame(rows)


def md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        out.append("| " + " | ".join(str(r[c]).replace("|", "/") for c in cols) + " |")
    return "\n".join(out) + "\n"


LEGEND = (f"Leaderboard cells: error = mean over seeds [bootstrap 95% CI over seeds, where the seeds differ; with "
          "one seed, the metric's own 95% interval: `<metric>_lo`..`_hi` where it writes them (weak_err_cv: the "
          "simultaneous interval of the true maximum over its test functions, which excludes 0 exactly when the "
          "point is resolved), else value -/+ 1.96 `<metric>_se` clipped at 0]; "
          f"`{FLOOR_MARK}` = at the metric's resolution limit (`<metric>_at_floor` for at least half of the seeds): "
          "such a point is never picked as a winner nor used in an order fit. A configuration competes at NFE B "
          "with its largest measured NFE in (2B/3, B] (named when it is not B); the consistency samplers are not "
          "ranked (their error is that of the consistency function they are given: the exact one, an oracle, on "
          "analytic targets). NFE to tolerance: log-log "
          "interpolation between the measured points around the first crossing, never extrapolated.")


def _section(title: str, df: pd.DataFrame, note: str = "") -> list[str]:
    if df is None or df.empty:
        return []
    out = [f"**{title}**", ""]
    if note:
        out += [note, ""]
    return out + [md_table(df)]


def leaderboard_lines(df: pd.DataFrame, out_dir=None, figures: bool = True, budgets=None, tols=None,
                      manifest: dict | None = None) -> list[str]:
    """The report's leaderboard section (markdown lines) and, with ``figures``, one error-vs-NFE figure per
    target under ``out_dir/figures`` (hue solver, style schedule, resolution limits as bands)."""
    data = _normalise(df)
    if data.empty:
        return []
    setting = ((manifest or {}).get("report") or {}).get("primary_metric")
    tols = tuple(tols) if tols else TOLS
    lines = ["## Leaderboard", "", LEGEND, ""]
    any_target = False
    for problem, g in data.groupby("problem", sort=False):
        specs = primary_metrics(g, setting)
        if not specs:
            continue
        any_target = True
        for i, (metric, scope) in enumerate(specs):
            sub = g[g["kind"] == "ode"] if scope == "ode" else g
            p_all = points(sub, metric)
            if p_all.empty:
                continue
            p = main_slice(p_all)
            bud = choose_budgets(p, budgets)
            what = "primary" if i == 0 else "ODE samplers only"
            lines += [f"### {problem}: `{metric}` ({what})", ""]
            tend = sorted(p["t_end"].dropna().unique())
            lines += [f"{int(p['at_floor'].sum())} of {len(p)} points at the resolution limit. Tables and figure: "
                      f"t_end {', '.join(f'{t:g}' for t in tend) or 'default'}, without the final denoising "
                      "step.", ""]
            if figures and out_dir is not None:
                stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"leaderboard_{problem}_{metric}")  # target files: paths
                path = plot_leaderboard(p, Path(out_dir) / "figures" / f"{stem}.png",
                                        f"{problem}: {metric}" + (" (ODE samplers)" if scope == "ode" else ""))
                lines += [f"![leaderboard {problem} {metric}](figures/{path.name})", ""]
            lines += _section("Best solver + schedule at each NFE", winners_table(p, bud))
            lines += _section("NFE to reach the tolerance", tol_table(p, tols))
            lines += _section("Fitted order (error ~ NFE^-order) beside the declared order", order_fits(p, sub, metric),
                              "declared: the registry's order (its order on a Gaussian where it declares one; x2 "
                              f"for KL); agrees: 'yes' when |fitted - declared| <= {AGREE_TOL:g}, 'within CI' when "
                              "not but the declared order lies inside the CI, 'above' when the fit is steeper, "
                              "'no' when it is shallower.")
            if scope == "all":
                lines += _section("SDE vs ODE samplers at equal NFE", sde_vs_ode_table(p, bud))
                lines += _section("VP vs VE vs EDM parametrization (best solver + schedule of each)",
                                  parametrization_table(p, bud))
            lines += _section("Effect of t_end", t_end_table(p_all, bud),
                              "each column is judged against p_{t_end} of its own t_end.")
            lines += _section("Effect of the final denoising step", final_denoise_table(p_all, bud))
    return lines if any_target else []
