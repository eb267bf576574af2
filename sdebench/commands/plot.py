"""``sdebench plot RESULTS``: log-log error-vs-NFE figures from a results table or store."""

from __future__ import annotations

from sdebench.io import check_output_dir


def add_parser(sub):
    p = sub.add_parser("plot", help="draw error-vs-NFE figures (seaborn, log-log) from results",
                       description="Error vs NFE, faceted by problem and SDE, hue by solver, bootstrap 95%% CI "
                                   "bands over seeds where the metric differs across seeds, the Monte Carlo "
                                   "floor as a grey band, reference slopes inside the data's range, and for "
                                   "path_err the reference solve's accuracy as a dotted line.")
    p.add_argument("results", help="results table (.parquet/.csv) or store folder")
    p.add_argument("--out", default=None, help="output folder (default: <results folder>/figures)")
    p.add_argument("--metric", default="auto",
                   help="metric column to plot, or 'auto' (per problem: w2_exact, else w2, else sliced_w2)")
    p.add_argument("--format", default="png", choices=["png", "pdf", "svg"], help="image format (default png)")
    return p


def main(args) -> int:
    from sdebench.plot import load_results, plot_error_vs_nfe

    df, base = load_results(args.results)
    out = check_output_dir(args.out or (base / "figures"))
    for path in plot_error_vs_nfe(df, out, metric=args.metric, fmt=args.format):
        print(f"wrote {path}")
    return 0
