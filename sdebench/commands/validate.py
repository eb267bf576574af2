"""``sdebench validate``: run the theorem battery and print/write the PASS/FAIL table."""

from __future__ import annotations

import os
import time


def add_parser(sub):
    p = sub.add_parser("validate", help="run the theorem battery: predicted vs measured, PASS/FAIL per claim",
                       description="Run the fixed validation battery (see docs/validation.md) and write "
                                   "results/validation.md with figures under results/figures/.")
    p.add_argument("--quick", action="store_true", help="smaller grids and samples (CI variant, < 2 minutes)")
    p.add_argument("--out", default="results/validation.md", help="markdown report (default results/validation.md)")
    p.add_argument("--figures", default=None, help="figure folder (default: <out folder>/figures)")
    p.add_argument("--only", default=None, help="comma-separated substrings of check names (e.g. strong,density)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    return p


def main(args) -> int:
    from sdebench.errors import ConfigError
    from sdebench.validate import CHECKS, format_table, plot_claims, run_battery, write_markdown

    only = [s.strip() for s in args.only.split(",")] if args.only else None
    if only:
        names = [c.__name__ for c in CHECKS]
        bad = [o for o in only if not any(o in n for n in names)]
        if bad:
            raise ConfigError(f"--only {bad[0]!r} matches no check; checks: {', '.join(n.strip('_') for n in names)}")
    if not args.no_write:
        if not args.out.endswith(".md"):
            raise ConfigError(f"--out must be a .md file, got {args.out!r}")
        folder = os.path.dirname(os.path.abspath(args.out))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create output folder {folder!r}: {exc.strerror}") from None
    t0 = time.perf_counter()
    claims = run_battery(quick=args.quick, only=only, log=lambda s: print(s, flush=True))
    seconds = time.perf_counter() - t0
    print()
    print(format_table(claims))
    n_fail = sum(c.status == "FAIL" for c in claims)
    print(f"\n{sum(c.status == 'PASS' for c in claims)} PASS, {n_fail} FAIL, "
          f"{sum(c.status == 'SKIP' for c in claims)} SKIP in {seconds:.0f} s")
    if not args.no_write:
        figdir = args.figures or os.path.join(os.path.dirname(os.path.abspath(args.out)), "figures")
        figs = plot_claims(claims, figdir)
        write_markdown(claims, args.out, args.quick, seconds, figs)
        print(f"wrote {args.out} and {len(figs)} figure(s) under {figdir}")
    return 1 if n_fail else 0
