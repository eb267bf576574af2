"""``sdebench tune``: tune one solver's time grid against a metric and save it as a ``file:`` grid."""

from __future__ import annotations

import json
import shlex

from sdebench.commands.run import finite_float, int_list, parse_options
from sdebench.errors import MAX_SEED, ConfigError
from sdebench.io import check_output_file, write_text
from sdebench.tune import METHODS, check_tune_option, tune


def add_parser(sub):
    p = sub.add_parser("tune", help="tune a solver's time grid against a metric; save it for --schedule file:",
                       description="Tune the time grid of one solver at one NFE against a metric (the objective), "
                                   "by gradient, dynamic programming or policy gradient, on tuning seeds; report it "
                                   "on held-out seeds beside every hand-crafted grid; save it as JSON for "
                                   "`sdebench run --schedule file:GRID.json`.")
    p.add_argument("--problem", required=True, help="preset name or target file")
    p.add_argument("--sde", default="vp", help="forward SDE (default vp)")
    p.add_argument("--solver", required=True, help="solver name")
    p.add_argument("--nfe", required=True, help="NFE budget (one)")
    p.add_argument("--objective", required=True,
                   help="metric to minimize: w2_exact, kl_exact (Gaussian targets), path_err (ODE solvers), or "
                        "any sampled metric (policy-gradient)")
    p.add_argument("--method", required=True, help=f"one of {', '.join(METHODS)}")
    p.add_argument("--out", required=True, help="the tuned grid, a .json file")
    p.add_argument("--schedule", default="best",
                   help="initial grid: best (the best hand-crafted grid on the tuning seeds, default), uniform, "
                        "logsnr, edm, quadratic or file:GRID.json")
    p.add_argument("--budget", default="300", help="objective evaluations (cells) the method may spend (default 300)")
    p.add_argument("--samples", default="512", help="samples (x_T) per seed (default 512)")
    p.add_argument("--tune-seeds", default="0", help="seeds the grid is tuned on (default 0)")
    p.add_argument("--heldout-seeds", default="1,2", help="seeds it is reported on (default 1,2)")
    p.add_argument("--candidates", default="64", help="dp: candidate times, uniform in lambda (default 64)")
    p.add_argument("--t-end", default=None, help="final time (default: the SDE's)")
    p.add_argument("--option", "-o", action="append", metavar="KEY=VALUE", help="solver option, e.g. -o eta=0.5")
    p.add_argument("--seed", default="0", help="policy-gradient: seed of the policy's draws (default 0)")
    p.add_argument("--tune", default=None, metavar="OPTION",
                   help="policy-gradient: also tune this solver option per step, jointly with the grid (ddim: eta "
                        "in [0, 1]; edm-sde: S_churn); starts from its scalar value (-o or default); saved in the "
                        "file as step_options, which `sdebench run --schedule file:` applies")
    return p


def _one_int(text: str, what: str, lo: int) -> int:
    v = int_list(text, what, lo=lo)
    if len(v) != 1:
        raise ConfigError(f"{what} takes one integer, got {text!r}")
    return v[0]


def command_line(args) -> str:
    parts = ["sdebench", "tune", "--problem", args.problem, "--sde", args.sde, "--solver", args.solver,
             "--nfe", str(args.nfe), "--objective", args.objective, "--method", args.method,
             "--schedule", args.schedule, "--budget", str(args.budget), "--samples", str(args.samples),
             "--tune-seeds", args.tune_seeds, "--heldout-seeds", args.heldout_seeds]
    if args.method == "dp":
        parts += ["--candidates", str(args.candidates)]
    if args.method == "policy-gradient":
        parts += ["--seed", str(args.seed)]
    if args.tune is not None:
        parts += ["--tune", args.tune]
    if args.t_end is not None:
        parts += ["--t-end", str(args.t_end)]
    for o in args.option or []:
        parts += ["-o", o]
    return shlex.join(parts + ["--out", args.out])


def main(args) -> int:
    if args.method not in METHODS:
        raise ConfigError(f"unknown method {args.method!r}; valid: {', '.join(METHODS)}")
    check_tune_option(args.solver, args.method, args.tune)
    check_output_file(args.out, (".json",))
    nfe = _one_int(args.nfe, "--nfe", 1)
    rec = tune(args.problem, args.sde, args.solver, nfe, args.objective, args.method,
               samples=_one_int(args.samples, "--samples", 2),
               tune_seeds=int_list(args.tune_seeds, "--tune-seeds", lo=0, hi=MAX_SEED),
               heldout_seeds=int_list(args.heldout_seeds, "--heldout-seeds", lo=0, hi=MAX_SEED),
               budget=_one_int(args.budget, "--budget", 1), init=args.schedule, options=parse_options(args.option),
               t_end=None if args.t_end is None else finite_float(args.t_end, "--t-end"),
               candidates=_one_int(args.candidates, "--candidates", 2), seed=_one_int(args.seed, "--seed", 0),
               tune_option=args.tune)
    rec["command"] = command_line(args)
    path = write_text(args.out, json.dumps(rec, indent=1) + "\n")  # a failed write is saved to a fallback file
    m = rec["objective"]
    how = rec["method_details"].get("gradient")  # method gradient: "autograd" or "finite-difference"
    print(f"{rec['solver']} NFE {rec['nfe']} ({rec['steps']} steps) on {rec['problem']}, objective {m}, "
          f"method {rec['method']}" + (f" ({how} gradient)" if how else "")
          + f": {rec['evaluations']} evaluations, {rec['wall_s']:.1f} s")
    print(f"{'grid':<12} {'tune':>12} {'held-out':>12}")
    for name, v in rec["handcrafted"].items():
        mark = " (best hand-crafted)" if name == rec["best_handcrafted"] else ""
        print(f"{name:<12} {v['tune']:>12.5g} {v['heldout']:>12.5g}{mark}")
    print(f"{'tuned':<12} {rec['value']['tune']:>12.5g} {rec['value']['heldout']:>12.5g}"
          + (" (no better grid found: the initial one)" if rec["returned"] == "init" else ""))
    if "step_options" in rec:
        (k, v), = rec["step_options"].items()
        print(f"{k} per step (from {rec['step_init'][k]:g}): " + " ".join(f"{e:.3g}" for e in v))
    if "proxy" in rec:
        print(f"AYS proxy (KLUB) vs exact KL over the grids: Spearman {rec['proxy']['spearman']:.3f}")
    print(f"wrote {path}; use it with --schedule file:{path}")
    return 0
