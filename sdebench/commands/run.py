"""``sdebench run``: one problem x SDE x solver x schedule over a list of NFE budgets and seeds."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sdebench.distributed import WORKER_THREADS
from sdebench.errors import MAX_SEED, ConfigError, check_int
from sdebench.guidance import _scale
from sdebench.io import check_writable, write_table
from sdebench.perturb import check_score_error
from sdebench.run import DEFAULT_METRICS, METRICS, run_cell
from sdebench.sweep import SolverEntry, Sweep, expand

if TYPE_CHECKING:  # pandas loads when a table is made, not when the parser is built
    import pandas as pd


def int_list(text: str, what: str, lo: int | None = None, hi: int | None = None) -> list[int]:
    """Comma-separated integers, each in [lo, hi] (bounds optional); one-line ConfigError otherwise."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            v = int(part)
        except ValueError:
            raise ConfigError(f"{what} must be comma-separated integers, got {part!r}") from None
        out.append(check_int(v, what, lo, hi))
    return out


def parse_options(pairs: list[str] | None) -> dict:
    opts = {}
    for item in pairs or []:
        if "=" not in item:
            raise ConfigError(f"solver option must look like key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            v = float(v) if any(c in v for c in ".eE") or v.lstrip("-").isdigit() else v
        except ValueError:
            pass
        if isinstance(v, float) and v.is_integer() and "." not in item.split("=", 1)[1]:
            v = int(v)
        opts[k.strip()] = v
    return opts


def finite_float(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ConfigError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(v):
        raise ConfigError(f"{what} must be finite, got {text!r}")
    return v


def add_common_cell_args(p):
    p.add_argument("--problem", required=True, help="preset name (see `sdebench list`) or a .json/.toml target file")
    p.add_argument("--sde", default="vp", help="forward SDE (default vp)")
    p.add_argument("--schedule", default="uniform",
                   help="time grid: uniform, logsnr, edm, quadratic, file:GRID.json (a `sdebench tune` output), or "
                        "native (a diffusers: solver's own spacing)")
    p.add_argument("--t-end", default=None, help="final time (default: the SDE's, 1e-3 for VP)")
    p.add_argument("--T", default=None, help="horizon T (default: the SDE's)")
    p.add_argument("--init", default="exact", help="exact (x_T ~ p_T) or prior (the SDE's prior)")
    p.add_argument("--reference", default="t_end", help="judge against p_{t_end} (default) or 'data' (p_0)")
    p.add_argument("--dtype", default="float64", help="float64 (default) or float32")
    p.add_argument("--device", default="cpu", help="cpu or cuda")


def guidance_fields(args) -> dict:
    """CellConfig guidance fields from --guidance/--scale/--class/--cfg-param/--cfg-batched."""

    label = getattr(args, "class_label", None)
    if label is not None:
        try:
            label = int(label)
        except ValueError:
            raise ConfigError(f"--class must be an integer class label, got {label!r}") from None
    return {"guidance": getattr(args, "guidance", "none"), "scale": _scale(getattr(args, "scale", 0.0)),
            "class_label": label, "cfg_param": getattr(args, "cfg_param", "eps"),
            "cfg_batched": bool(getattr(args, "cfg_batched", False))}


def add_parser(sub):
    p = sub.add_parser("run", help="run a solver over NFE budgets and seeds; print and save the table",
                       description="Run one solver on one problem over NFE budgets and seeds.")
    add_common_cell_args(p)
    p.add_argument("--solver", required=True, help="solver name(s), comma-separated (see `sdebench list`)")
    p.add_argument("--nfe", default="5,10,20,40",
                   help="comma-separated NFE budgets (default 5,10,20,40): always the counted number of network "
                        "evaluations, guided or not (unbatched CFG at --nfe 20 makes 10 model calls)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--samples", default="2000", help="samples per cell (default 2000)")
    p.add_argument("--metrics", default=None, help="comma-separated metrics (default: all that apply)")
    p.add_argument("--option", "-o", action="append", metavar="KEY=VALUE", help="solver option, e.g. -o eta=0.5")
    p.add_argument("--score-error", default="0", metavar="EPS",
                   help="perturb the exact score by a shift of relative L2 size EPS under p_t (default 0)")
    p.add_argument("--guidance", default="none", help="none (default), classifier or cfg (labelled targets)")
    p.add_argument("--scale", default="0", help="guidance scale w >= 0 (default 0)")
    p.add_argument("--class", dest="class_label", default=None, help="target class of guided sampling")
    p.add_argument("--cfg-param", default="eps", help="CFG combination in eps (default) or x0")
    p.add_argument("--cfg-batched", action="store_true",
                   help="count a CFG call as 1 NFE (cond+uncond batched) instead of 2")
    p.add_argument("--final-denoise", action="store_true",
                   help="output the model's x0 prediction D(x, t_end) at the end (the diffusers / k-diffusion "
                        "last jump to sigma = 0), counted as one model call of the --nfe budget; compare with "
                        "--reference data (default: off)")
    p.add_argument("--no-crn", action="store_true", help="independent noise per NFE (default: common random numbers)")
    p.add_argument("--out", default=None, help="write rows to this .parquet or .csv file")
    p.add_argument("--threads", default=str(WORKER_THREADS),
                   help=f"torch intra-op threads (default {WORKER_THREADS}, as in sweep workers: the cells' small "
                        "tensor operations get slower, not faster, with threads competing for loaded cores)")
    return p


def request(args):
    """The ``sdebench run`` flags as a sweep request (:class:`sdebench.sweep.Sweep`), expanded into cells by
    the same :func:`sdebench.sweep.expand` as a sweep file."""

    nfes = int_list(args.nfe, "--nfe", lo=1)
    seeds = int_list(args.seeds, "--seeds", lo=0, hi=MAX_SEED)
    samples = int_list(args.samples, "--samples", lo=2)
    if len(samples) != 1:
        raise ConfigError(f"--samples takes one integer, got {args.samples!r}")
    t_end = None if args.t_end is None else finite_float(args.t_end, "--t-end")
    T = None if args.T is None else finite_float(args.T, "--T")
    metrics = DEFAULT_METRICS if not args.metrics else tuple(m.strip() for m in args.metrics.split(","))
    options = parse_options(args.option)
    score_error = check_score_error(getattr(args, "score_error", 0.0))
    guided = guidance_fields(args)
    return Sweep(name="run", out="", problems=[s.strip() for s in args.problem.split(",")], sdes=[args.sde],
                 schedules=[args.schedule], nfe=nfes, seeds=seeds, samples=samples[0], metrics=metrics,
                 solvers=[SolverEntry(s.strip(), dict(options)) for s in args.solver.split(",")], t_end=t_end, T=T,
                 init=args.init, dtype=args.dtype, device=args.device, reference=args.reference,
                 crn=not args.no_crn, final_denoise=bool(getattr(args, "final_denoise", False)),
                 score_error=score_error, guidance=guided["guidance"], scales=[guided["scale"]],
                 class_label=guided["class_label"], cfg_param=guided["cfg_param"],
                 cfg_batched=guided["cfg_batched"], wrap_errors=False, dedup_seeds=False)


def build_cells(args) -> list:
    """The CellConfigs of ``sdebench run`` (validated by :func:`sdebench.sweep.expand`)."""

    return [cfg for _, cfg, _ in expand(request(args))]


def summary_table(df: pd.DataFrame) -> str:
    import pandas as pd


    keys = ["problem", "sde", "solver", "schedule", "nfe"]
    cols = [c for c in METRICS if c in df.columns]
    nulls = [f"{c}_null" for c in cols if f"{c}_null" in df.columns]
    g = df.groupby(keys, sort=False)
    out = g[cols + nulls].mean(numeric_only=True)
    out.insert(0, "seeds", g.size())
    status = g["status"].agg(lambda s: "ok" if (s == "ok").all() else ",".join(sorted(set(s))))
    out["status"] = status
    with pd.option_context("display.width", 200, "display.max_columns", 40, "display.float_format", "{:.4g}".format):
        table = out.reset_index().to_string(index=False)
    legend = "metric columns: mean over seeds"
    if nulls:
        legend += ("; <metric>_null: its resolution limit, the smallest error it resolves (sampled metrics: the "
                   "same statistic between exact target samples; path_err / strong_err: the reference solve's own "
                   "error)")
    return f"{table}\n{legend}"


def main(args) -> int:
    import pandas as pd
    import torch

    threads = int_list(getattr(args, "threads", str(WORKER_THREADS)), "--threads", lo=1, hi=4096)
    if len(threads) != 1:
        raise ConfigError(f"--threads takes one integer, got {args.threads!r}")
    if args.out:
        check_writable(args.out)
    cells = build_cells(args)  # every bad input is reported before any work is done
    torch.set_num_threads(threads[0])
    rows = []
    for c in cells:
        rows.append(run_cell(c))
    df = pd.DataFrame(rows)
    print(summary_table(df))
    bad = df[df["status"] != "ok"]
    for _, r in bad.iterrows():
        print(f"{r['status']}: {r['solver']} nfe={r['nfe']} seed={r['seed']}: {r.get('error', '')}")
    if args.out:
        path = write_table(df, args.out)  # a failed write saves the rows to a fallback file and names it
        print(f"wrote {len(df)} rows to {path}")
    return 0
