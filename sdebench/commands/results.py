"""``sdebench results PATH``: consolidate a results store into one table (parquet + CSV) and summarize it."""

from __future__ import annotations

import sys

from sdebench.errors import ConfigError
from sdebench.io import check_output_file, check_writable, write_table
from sdebench.store import Store


def add_parser(sub):
    p = sub.add_parser("results", help="consolidate a results store into one parquet/CSV table",
                       description="Read every cell file of a store (corrupt or foreign files are reported by "
                                   "name and skipped), write one table and print a summary.")
    p.add_argument("path", help="store folder (written by `sdebench sweep`)")
    p.add_argument("--out", default=None, help="table to write (.parquet or .csv; default PATH/results.parquet "
                                               "and PATH/results.csv)")
    p.add_argument("--sweep", default=None, help="keep only the rows of this sweep name")
    return p


def summarize(df) -> str:
    lines = [f"{len(df)} rows"]
    if not len(df):
        return lines[0]
    counts = df["status"].value_counts()
    lines[0] += " (" + ", ".join(f"{v} {k}" for k, v in counts.items()) + ")"
    for col in ("sweep", "problem", "sde", "label", "nfe", "seed"):
        if col in df.columns:
            vals = df[col].dropna().unique().tolist()
            try:
                vals = sorted(vals)
            except TypeError:  # mixed types
                vals = sorted(vals, key=str)
            shown = ", ".join(map(str, vals[:12])) + (" ..." if len(vals) > 12 else "")
            lines.append(f"  {col:9s} {len(vals):4d}: {shown}")
    for col in ("sdebench_version", "git_commit", "torch_version", "device_name"):
        if col in df.columns:
            vals = sorted(df[col].dropna().astype(str).unique().tolist())
            lines.append(f"  {col:17s}: {', '.join(v[:12] for v in vals)}")
    return "\n".join(lines)


def main(args) -> int:
    store = Store(args.path, create=False)
    if args.out:
        check_writable(args.out)
    else:
        for o in ("results.parquet", "results.csv"):
            check_output_file(store.root / o)
    df, rep = store.consolidate()
    for line in rep.lines():
        print(f"{args.path}: {line}", file=sys.stderr)
    if args.sweep is not None:
        if not len(df) or args.sweep not in set(df["sweep"]):
            raise ConfigError(f"no rows of sweep {args.sweep!r} in {args.path!r}")
        df = df[df["sweep"] == args.sweep].reset_index(drop=True)
    print(summarize(df))
    if args.out:
        outs = [args.out]
    else:
        outs = [store.root / "results.parquet", store.root / "results.csv"]
    for o in outs:
        print(f"wrote {write_table(df, o)}")
    if rep.problems:
        print(f"{len(rep.problems)} file(s) skipped (listed on stderr); re-running the sweep moves its damaged "
              "cells into quarantine/ and recomputes them")
    return 0
