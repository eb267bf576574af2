"""``sdebench validate``: run the theorem battery and print/write the PASS/FAIL table."""

from __future__ import annotations

import os
import time

from sdebench.errors import ConfigError
from sdebench.io import check_output_dir, check_output_file
from sdebench.validate import CHECKS, format_table, plot_claims, run_battery, write_markdown


def add_parser(sub):
    p = sub.add_parser("validate", help="run the theorem battery: predicted vs measured, PASS/FAIL per claim",
                       description="Run the fixed validation battery (see docs/validation.md) and write "
                                   "runs/validation.md (or --out) with figures under its figures/ folder. The "
                                   "committed results/validation.md is rewritten only when named: "
                                   "--out results/validation.md.")
    p.add_argument("--quick", action="store_true", help="smaller grids and samples (CI variant, < 2 minutes)")
    p.add_argument("--out", default=None, help="markdown report (default runs/validation.md, with --quick "
                                                "runs/validation-quick.md)")
    p.add_argument("--figures", default=None, help="figure folder (default: <out folder>/figures)")
    p.add_argument("--only", default=None, help="comma-separated substrings of check names (e.g. strong,density)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    return p


def main(args) -> int:
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    if only:
        names = [c.__name__ for c in CHECKS]
        bad = [o for o in only if not any(o in n for n in names)]
        if bad:
            raise ConfigError(f"--only {bad[0]!r} matches no check; checks: {', '.join(n.strip('_') for n in names)}")
    out = args.out or os.path.join("runs", "validation-quick.md" if args.quick else "validation.md")
    figdir = args.figures or os.path.join(os.path.dirname(os.path.abspath(out)), "figures")
    if not args.no_write:
        if not out.endswith(".md"):
            raise ConfigError(f"--out must be a .md file, got {out!r}")
        check_output_file(out, (".md",))
        check_output_dir(figdir)
    t0 = time.perf_counter()
    claims = run_battery(quick=args.quick, only=only, log=lambda s: print(s, flush=True))
    seconds = time.perf_counter() - t0
    print()
    print(format_table(claims))
    n_fail = sum(c.status == "FAIL" for c in claims)
    print(f"\n{sum(c.status == 'PASS' for c in claims)} PASS, {n_fail} FAIL, "
          f"{sum(c.status == 'SKIP' for c in claims)} SKIP in {seconds:.0f} s")
    if not args.no_write:
        try:
            figs = plot_claims(claims, figdir)
        except OSError as exc:  # the table is the result: still write it, then report the figures
            figs, fig_error = [], f"cannot write figures under {figdir!r} ({exc.strerror or exc})"
        else:
            fig_error = None
        write_markdown(claims, out, args.quick, seconds, figs)
        print(f"wrote {out} and {len(figs)} figure(s) under {figdir}")
        if fig_error:
            raise ConfigError(fig_error)
    return 1 if n_fail else 0
