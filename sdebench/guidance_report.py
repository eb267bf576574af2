"""Guidance sweep: error at fixed NFE against the guidance scale w, one line per solver (issue 8).

Usage::

    python -m sdebench.guidance_report sweeps/guidance.toml [--out results/guidance] [--samples N]
    python -m sdebench.guidance_report sweeps/guidance.toml --replot   # redraw the figures from the rows

Reads the sweep file (keys below), runs every (solver, nfe, scale) cell through
:func:`sdebench.run.run_cell`, writes the rows to ``<out>.csv``, the report section to ``<out>.md``
and the figure (pathwise error vs w, one panel per NFE, one line per solver) to ``figure``. Solvers
named in the file but not registered are listed as missing in the report, not run.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import tomllib

from .errors import ConfigError

if TYPE_CHECKING:  # pandas loads where a table is made or read
    import pandas as pd

KEYS = {"name", "out", "figure", "problem", "class_label", "guidance", "cfg_param", "cfg_batched", "sde",
        "schedule", "t_end", "samples", "seed", "seeds", "scales", "nfe", "solvers", "metrics", "metrics_w0",
        "description", "gaussian_problem", "gaussian_class", "gaussian_figure"}
REQUIRED = ("problem", "class_label", "scales", "nfe", "solvers")


def load(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep file {str(p)!r} does not exist")
    try:
        cfg = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"sweep file {str(p)!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(cfg) - KEYS)
    if unknown:
        raise ConfigError(f"sweep file {str(p)!r}: unknown key(s) {unknown}; valid: {', '.join(sorted(KEYS))}")
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise ConfigError(f"sweep file {str(p)!r} is missing {', '.join(missing)}")
    return cfg


def cells(cfg: dict, samples: int | None = None):
    """(cells, missing solver names) of a guidance sweep; validates every cell up front."""
    from .run import DEFAULT_METRICS, CellConfig, prepare
    from .solvers import SOLVERS

    missing = [s for s in cfg["solvers"] if s not in SOLVERS]
    seeds = _seeds(cfg)
    metrics = tuple(cfg.get("metrics", DEFAULT_METRICS))
    out = []
    for solver in [s for s in cfg["solvers"] if s in SOLVERS]:
        for nfe in cfg["nfe"]:
            for w in cfg["scales"]:
                for seed in seeds:
                    m = DEFAULT_METRICS if (float(w) == 0 and cfg.get("metrics_w0") == "default") else metrics
                    c = CellConfig(problem=cfg["problem"], sde=cfg.get("sde", "vp"), solver=solver, nfe=int(nfe),
                                   seed=seed, n_samples=int(samples or cfg.get("samples", 500)),
                                   schedule=cfg.get("schedule", "logsnr"), t_end=cfg.get("t_end"), metrics=m,
                                   guidance=cfg.get("guidance", "cfg"), scale=float(w),
                                   class_label=int(cfg["class_label"]), cfg_param=cfg.get("cfg_param", "eps"),
                                   cfg_batched=bool(cfg.get("cfg_batched", True)))
                    prepare(c)
                    out.append(c)
    return out, missing


def _seeds(cfg: dict) -> list:
    seeds = cfg.get("seeds", [cfg.get("seed", 0)])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(seeds))
    if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) and x >= 0 for x in seeds):
        raise ConfigError(f"seeds must be a non-empty list of integers >= 0 (or a count), got {seeds!r}")
    return seeds


_RULE = {True: "batched: 1 per guided call, so NFE = model calls",
         False: "unbatched: 2 per guided call, so NFE = 2 x model calls"}
KEY = ["solver", "nfe", "scale"]  # nfe: the counted budget (= model_calls x guidance_cost)


def aggregate(ok: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of every numeric column, one row per (solver, NFE, w), solver order kept."""
    return ok.groupby(KEY, sort=False).mean(numeric_only=True).reset_index()


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.3g}"


# the w axis is symlog (linear on [0, 1], logarithmic above): w = 0 cannot go on a log axis, and the
# sweep's scales (0, 1, 3, 7, 15) are spaced roughly geometrically
W_AXIS_LABEL = "guidance scale w (symlog axis: linear for w \u2264 1, log above)"


def figure(df: pd.DataFrame, path: str, title: str, value: str = "path_err",
           ylabel: str = "RMS pathwise error vs dopri5 (tol 1e-10)", raw: pd.DataFrame | None = None) -> None:
    """One panel per NFE, one line per solver (mean over seeds); band = min..max over seeds if ``raw``."""
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
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(df: pd.DataFrame, cfg: dict, missing: list, fig_path: str) -> str:
    raw = df[df["status"] == "ok"]
    ok = aggregate(raw)
    seeds = sorted(raw["seed"].unique()) if len(raw) else []
    lines = [f"## Guided sampling: error vs guidance scale ({cfg['problem']}, class {cfg['class_label']})", ""]
    lines.append(
        f"CFG ({cfg.get('cfg_param', 'eps')} parametrization, NFE = the counted budget of network evaluations, "
        f"{_RULE[bool(cfg.get('cfg_batched', True))]}), "
        f"SDE {cfg.get('sde', 'vp')}, {cfg.get('schedule', 'logsnr')} grid to t_end = {cfg.get('t_end', 1e-3)}, "
        f"x_T ~ p_T(x | c) exact, {int(ok['n_samples'].iloc[0]) if len(ok) else '?'} samples per cell, seeds "
        f"{', '.join(str(x) for x in seeds)} (tables: mean over seeds). Error = RMS over samples of "
        f"|x_solver - x_ref|, x_ref = dopri5 (rtol = atol = 1e-10) on the guided probability-flow ODE from the "
        f"same x_T. Figure: `{fig_path}`."
    )
    lines.append("")
    if len(seeds) > 1:
        ratio = raw.groupby(KEY)["path_err"].agg(lambda v: v.max() / v.min())
        worst = ratio.idxmax()
        lines.append(f"Seed spread of path_err (max / min over seeds, per cell): median {_fmt(ratio.median())}, "
                     f"largest {_fmt(ratio.max())} ({worst[0]}, NFE {worst[1]}, w = {worst[2]:g}).")
        lines.append("")
    if missing:
        lines.append(f"Solvers not registered when the sweep ran (left out): {', '.join(missing)}.")
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
            lines.append(f"| {s} | " + " | ".join(_fmt(v) for v in vals) + f" | {_fmt(ratio)} | {_fmt(med)} |")
        lines.append("")
    if "class_mass" in ok:
        lines.append("**Mass in the target class** (exact classifier at t_end; null on exact p(x | c) samples: "
                     f"{_fmt(ok['class_mass_null'].iloc[0])})")
        lines.append("")
        lines.append("| NFE | solver | " + " | ".join(f"w = {w:g}" for w in scales) + " |")
        lines.append("|---|---|" + "---|" * len(scales))
        for nfe in sorted(ok["nfe"].unique()):
            sub = ok[ok["nfe"] == nfe]
            for s in dict.fromkeys(sub["solver"]):
                r = sub[sub["solver"] == s].set_index("scale")["class_mass"]
                lines.append(f"| {nfe} | {s} | " + " | ".join(_fmt(r.get(w, float('nan'))) for w in scales) + " |")
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
            cells_ = [f"{_fmt(r[c])} ({_fmt(r.get(c + '_null'))})" for c in cols]
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
            parts.append(f"w = {w:g}: " + " < ".join(f"{s} {_fmt(v)}" for s, v in col.items()))
        best = piv[scales[-1]].idxmin()
        out.append(f"- NFE {nfe}: best at w = {scales[-1]:g} is {best} ({_fmt(piv.loc[best, scales[-1]])}, "
                   f"{_fmt(piv.loc[best, scales[0]])} at w = {scales[0]:g}). " + "; ".join(parts) + ".")
    out.append("")
    return out


def gaussian_rows(cfg: dict, solvers: list) -> pd.DataFrame:
    """(c) exact analogue: cond = the first Gaussian component of the class, uncond = the moment-matched
    Gaussian of the whole target; W2 of each solver's exact output law vs the exact guided ODE law."""
    import pandas as pd
    import torch

    from .guidance import exact_guided_law, guided_ode_law, solver_calls
    from .metrics import gaussian as gx
    from .problems import get_problem
    from .problems.labelled import labelled
    from .schedules import make_grid
    from .sde import get_sde
    from .solvers import get_solver

    prob = get_problem(cfg.get("gaussian_problem", cfg["problem"]))
    lab = labelled(prob)
    c = lab.check_class(cfg.get("gaussian_class", cfg["class_label"]))
    k = int(lab.components(c)[0])
    cond = (prob.means[k], prob.covs[k])
    uncond = prob.moments()
    sde = get_sde(cfg.get("sde", "vp"))
    t_end = float(cfg.get("t_end") or sde.t_end_default)
    a, s2 = float(sde.alpha(torch.tensor(sde.T))), float(sde.sigma2(torch.tensor(sde.T)))
    m_T, P_T = a * cond[0], a * a * cond[1] + s2 * torch.eye(prob.d, dtype=torch.float64)
    rows = []
    for w in cfg["scales"]:
        m_ref, P_ref = guided_ode_law(sde, cond, uncond, float(w), m_T, P_T, t_end, cfg.get("guidance", "cfg"))
        size = float(torch.sqrt(torch.trace(P_ref) + m_ref @ m_ref))
        for name in solvers:
            spec = get_solver(name)
            for nfe in cfg["nfe"]:
                # the counted budget -> model calls, the same rule as the sampled cells (sdebench.run.cell_budget)
                calls = solver_calls(int(nfe), cfg.get("guidance", "cfg"), bool(cfg.get("cfg_batched", True)))
                steps = spec.steps_for_nfe(calls)
                grid = make_grid(sde, steps, t_end, cfg.get("schedule", "logsnr"))
                m, P = exact_guided_law(spec, sde, grid, cond, uncond, float(w), m_T, P_T,
                                        cfg.get("guidance", "cfg"), nfe=calls)
                ok = bool(torch.isfinite(m).all() and torch.isfinite(P).all())
                w2 = gx.w2(m, P, m_ref, P_ref) if ok else float("nan")
                rows.append({"solver": name, "nfe": int(nfe), "model_calls": calls, "scale": float(w), "w2_exact": w2,
                             "w2_rel": w2 / size, "ref_std": float(torch.sqrt(torch.trace(P_ref)))})
    return pd.DataFrame(rows)


def gaussian_section(g: pd.DataFrame, cfg: dict, fig_path: str) -> str:
    if "nfe" not in g:  # tables written before the nfe column (batched CFG: NFE = model calls)
        g = g.assign(nfe=g["model_calls"])
    scales = sorted(g["scale"].unique())
    lines = ["### Exact Gaussian analogue (ground truth (c))", "",
             f"Conditional = the first Gaussian component of class {cfg.get('gaussian_class', cfg['class_label'])} "
             f"of {cfg.get('gaussian_problem', cfg['problem'])}, unconditional = the moment-matched Gaussian of the "
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
            lines.append(f"| {s} | " + " | ".join(_fmt(r.get(w, float("nan"))) for w in scales) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def path_figure(ok: pd.DataFrame, cfg: dict, path: str) -> None:
    """The pathwise-error figure from the ok rows of the sweep (all seeds)."""
    figure(aggregate(ok), path, f"{cfg['problem']} class {cfg['class_label']}, CFG, "
           f"{cfg.get('sde', 'vp')}, {cfg.get('schedule', 'logsnr')} grid, mean over seeds "
           f"{', '.join(str(x) for x in sorted(ok['seed'].unique()))} (band: min..max)", raw=ok)


def gaussian_figure(g: pd.DataFrame, path: str) -> None:
    figure(g, path, "exact Gaussian analogue: component of the class vs moment-matched target", value="w2_rel",
           ylabel="W2(output, exact guided law) / RMS size")


def replot(cfg: dict, stem: str, fig_path: str) -> list:
    """Redraw the figures from the stored rows (``<stem>.csv``, ``<stem>_gaussian.csv``); runs nothing."""
    import pandas as pd

    rows = Path(f"{stem}.csv")
    if not rows.is_file():
        raise ConfigError(f"--replot needs the sweep's rows; {str(rows)!r} does not exist")
    df = pd.read_csv(rows)
    if "nfe" not in df:  # rows written before nfe was the counted budget (batched CFG: NFE = model calls)
        df = df.assign(nfe=df["model_calls"])
    ok = df[df["status"] == "ok"]
    if ok.empty:
        raise ConfigError(f"{str(rows)!r} holds no rows with status 'ok'")
    path_figure(ok, cfg, fig_path)
    out = [fig_path]
    gpath = Path(f"{stem}_gaussian.csv")
    if cfg.get("gaussian_figure") and gpath.is_file():
        g = pd.read_csv(gpath)
        if "nfe" not in g:  # tables written before the nfe column (batched CFG: NFE = model calls)
            g = g.assign(nfe=g["model_calls"])
        gaussian_figure(g, cfg["gaussian_figure"])
        out.append(cfg["gaussian_figure"])
    return out


def main(argv=None) -> int:
    import pandas as pd

    ap = argparse.ArgumentParser(prog="python -m sdebench.guidance_report", description=__doc__.splitlines()[0])
    ap.add_argument("sweep", help="sweep file, e.g. sweeps/guidance.toml")
    ap.add_argument("--out", default=None, help="output stem (default: the file's 'out')")
    ap.add_argument("--samples", type=int, default=None, help="override the samples per cell")
    ap.add_argument("--figure", default=None, help="figure path (default: the file's 'figure')")
    ap.add_argument("--replot", action="store_true",
                    help="run nothing: redraw the figures from <out>.csv and <out>_gaussian.csv")
    args = ap.parse_args(argv)
    try:
        from .run import run_cell

        cfg = load(args.sweep)
        stem = args.out or cfg.get("out", "results/guidance")
        fig_path = args.figure or cfg.get("figure", "results/figures/guidance_error_vs_w.png")
        from .io import check_output_file, write_table, write_text

        for path in [f"{stem}.csv", f"{stem}.md", fig_path] + ([f"{stem}_gaussian.csv", cfg["gaussian_figure"]]
                                                              if cfg.get("gaussian_figure") else []):
            check_output_file(path, None)  # before any cell runs
        if args.replot:
            for path in replot(cfg, stem, fig_path):
                print(f"wrote {path}")
            return 0
        todo, missing = cells(cfg, args.samples)
        rows = []
        for i, c in enumerate(todo):
            row = run_cell(c, raise_config_errors=False)
            rows.append(row)
            print(f"[{i + 1}/{len(todo)}] {c.solver} nfe={c.nfe} w={c.scale:g}: {row['status']} "
                  f"path_err={row.get('path_err', float('nan')):.3g} wall={row.get('wall_s', 0):.2f}s", flush=True)
        df = pd.DataFrame(rows)
        write_table(df, f"{stem}.csv")
        ok = df[df["status"] == "ok"]
        if not ok.empty:
            path_figure(ok, cfg, fig_path)
        text = report(df, cfg, missing, fig_path)
        present = list(dict.fromkeys(c.solver for c in todo))
        if present and cfg.get("gaussian_figure"):
            g = gaussian_rows(cfg, present)
            g.to_csv(f"{stem}_gaussian.csv", index=False)
            gaussian_figure(g, cfg["gaussian_figure"])
            text += "\n" + gaussian_section(g, cfg, cfg["gaussian_figure"])
        write_text(f"{stem}.md", text)
        print(text)
        print(f"wrote {stem}.csv, {stem}.md, {fig_path}")
    except ConfigError as exc:
        sys.stderr.write(f"sdebench: error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)  # small batches: one thread is about 10x faster on a shared machine
    raise SystemExit(main())
