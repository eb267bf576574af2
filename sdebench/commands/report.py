"""``sdebench report RESULTS``: markdown report (error at fixed NFE, NFE to tolerance, fitted orders) + figures."""

from __future__ import annotations

from sdebench.commands.run import finite_float, int_list
from sdebench.errors import ConfigError
from sdebench.io import check_output_dir, check_output_file
from sdebench.peers_report import report_command as peers_report_command
from sdebench.store import Store


def add_parser(sub):
    p = sub.add_parser("report", help="write a markdown report with tables and figures from results",
                       description="A leaderboard per target (best solver + schedule at NFE 5, 10, 20, 50 with "
                                   "the runner-up, NFE to reach 1e-2/1e-3/1e-4, fitted vs declared orders, SDE vs "
                                   "ODE, t_end, final denoising, VP/VE/EDM), then per problem and SDE: error at "
                                   "fixed NFE (mean and bootstrap 95%% CI over seeds), NFE needed to reach error "
                                   "tolerances, fitted orders; plus figures.")
    p.add_argument("results", help="results table (.parquet/.csv) or store folder")
    p.add_argument("--out", default=None, help="output folder (default: the results folder)")
    p.add_argument("--nfe", default=None, help="comma-separated NFE budgets of the leaderboard and columns of "
                                               "the fixed-NFE table (default: 5,10,20,50 for the leaderboard, "
                                               "up to 5 NFE values present in the results for the table)")
    p.add_argument("--tol", default=None, help="comma-separated error tolerances (default 1e-2,1e-3,1e-4 in the "
                                               "leaderboard, 1e-1,1e-2,1e-3 in the per-problem tables)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--peers", default=None, metavar="DIGITS_STORE",
                   help="write the diffusers peers report instead: RESULTS is the sweeps/peers.toml store, "
                        "DIGITS_STORE the sweeps/peers-digits.toml one, --out the .md file (default results/peers.md)")
    return p


def main(args) -> int:
    if args.peers is not None:  # issue 15: diffusers schedulers beside sdebench's solvers (sdebench.peers_report)
        return peers_report_command(args.results, args.peers, args.out)
    from sdebench.plot import load_results
    from sdebench.report import write_report

    df, base = load_results(args.results)
    nfe = None
    if args.nfe:
        nfe = int_list(args.nfe, "--nfe", lo=1)
    tol = None
    if args.tol:
        tol = [finite_float(t, "--tol") for t in args.tol.split(",")]
        if min(tol) <= 0:
            raise ConfigError(f"--tol must be positive error tolerances, got {args.tol!r}")
    out = check_output_dir(args.out or base)
    check_output_file(out / "report.md", None)
    if not args.no_figures:
        check_output_dir(out / "figures")

    manifest = Store(base, create=False).manifest() if (base / "cells").is_dir() else None
    from pathlib import Path

    from sdebench.report import GAUSSIAN_TABLE, read_gaussian, store_gaussian

    src = Path(args.results)
    if src.is_file():  # a guided sweep's table: its Gaussian analogue rows, if saved beside it (<stem>_gaussian.csv)
        gaussian = read_gaussian(src.with_name(src.stem + "_gaussian.csv"))
    else:
        gaussian = store_gaussian(df, base, manifest) if manifest else read_gaussian(base / GAUSSIAN_TABLE)
    path = write_report(df, out, nfe=nfe, tol=tol, figures=not args.no_figures, manifest=manifest,
                        gaussian=gaussian)
    print(f"wrote {path}")
    return 0
