"""``sdebench sweep FILE``: expand a TOML sweep file into cells, run the unfinished ones through Dask,
consolidate the store and write the report and figures."""

from __future__ import annotations

import sys
import time

from sdebench.cost import describe
from sdebench.distributed import execute
from sdebench.errors import ConfigError
from sdebench.io import check_output_dir, write_table
from sdebench.progress import Progress
from sdebench.store import Store
from sdebench.sweep import config_to_dict, load_sweep


def add_parser(sub):
    p = sub.add_parser("sweep", help="run a TOML sweep file (resumable, on Dask), then consolidate and report",
                       description="Run every cell of a sweep file that is not yet in its results store, "
                                   "then write results.parquet/.csv, report.md and figures/ into the store folder.")
    p.add_argument("file", help="sweep file, e.g. sweeps/quick.toml")
    p.add_argument("--out", default=None, help="store folder (default: the file's `out`)")
    p.add_argument("--workers", type=int, default=None,
                   help="local Dask workers, >= 1 (default: one per CPU core)")
    p.add_argument("--serial", action="store_true", help="run the cells in this process, one after the other, "
                                                         "without Dask (debugging)")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler, tcp://HOST:PORT")
    p.add_argument("--retries", type=int, default=2, help="extra attempts for a failing cell (default 2)")
    p.add_argument("--no-resume", action="store_true", help="recompute cells already in the store")
    p.add_argument("--retry-errors", action="store_true", help="recompute cells stored with status 'error'")
    p.add_argument("--dry-run", action="store_true", help="expand and validate, print the cell counts, run nothing")
    p.add_argument("--progress", default="auto", choices=["auto", "bar", "log", "quiet"],
                   help="progress display (default: a bar on a terminal, log lines otherwise)")
    p.add_argument("--no-report", action="store_true", help="skip the report and figures")
    return p


def main(args) -> int:
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers} (--serial runs the cells in this process)")
    if args.serial and (args.workers is not None or args.scheduler is not None):
        raise ConfigError("--serial runs in this process: it takes no --workers or --scheduler")
    if args.retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {args.retries}")
    if args.scheduler is not None and not args.scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise ConfigError(f"--scheduler must look like tcp://HOST:PORT, got {args.scheduler!r}")
    sweep = load_sweep(args.file)
    cells = sweep.cells()
    out = args.out or sweep.out
    check_output_dir(out)
    print(f"sweep {sweep.name!r}: {len(cells)} cells "
          f"({len(sweep.problems)} problems x {len(sweep.sdes)} SDEs x {len(sweep.solvers)} solvers x "
          f"{len(sweep.schedules)} schedules x {len(sweep.nfe)} NFE"
          + (f" x {len(sweep.scales)} guidance scales" if len(sweep.scales) > 1 else "")
          + f" x {len(sweep.seeds)} seeds"
          + (f", {len(sweep.skipped)} incompatible solver/SDE/schedule/NFE combinations left out"
             if sweep.skipped else "")
          + (f", {sweep.seed_dedup} seed repeats of seed-independent cells left out" if sweep.seed_dedup else "")
          + f") -> {out}")
    if args.dry_run:
        for line in describe(sweep, cells, workers=args.workers):
            print(line)
        return 0
    store = Store(out)
    store.write_manifest(sweep.name, [k for k, _, _ in cells], sweep.skipped, source=str(args.file),
                         report={"gaussian_analogue": True} if sweep.gaussian_analogue else None)
    done = set()
    if not args.no_resume:
        done, moved = store.resume({k: config_to_dict(cfg) for k, cfg, _ in cells})
        for name, reason, dest in moved:
            print(f"damaged cell {name} ({reason}): moved to {dest}, recomputing it", file=sys.stderr)
    if args.retry_errors:
        done = {k for k in done if store.status_of(k) != "error"}
    todo = [c for c in cells if c[0] not in done]
    skipped = len(cells) - len(todo)
    prog = Progress(len(cells), skipped=skipped, mode=args.progress, name=sweep.name, stream=sys.stderr)
    t0 = time.perf_counter()
    try:
        counts = execute(todo, store, workers=0 if args.serial else args.workers, scheduler=args.scheduler,
                         retries=args.retries, sweep=sweep.name, progress=prog)
    finally:
        prog.close()
    wall = time.perf_counter() - t0
    ran = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing to run"
    print(f"ran {len(todo)} cells in {wall:.1f} s ({ran}); {skipped} were already in the store")
    keys = {k for k, _, _ in cells}
    df, rep = store.consolidate()
    for line in rep.lines():
        print(line, file=sys.stderr)
    if len(df):
        df = df[df["cell_key"].isin(keys)].reset_index(drop=True)
    write_table(df, store.root / "results.parquet")
    write_table(df, store.root / "results.csv")
    print(f"wrote {len(df)} rows to {store.root / 'results.parquet'} and results.csv")
    from sdebench.report import is_guided

    if len(df) and (df.get("status") == "ok").any() and not is_guided(df):  # guided rows: see the report's w tables
        from sdebench.report import summary_text

        print(summary_text(df))
    if not args.no_report and len(df):
        from sdebench.report import store_gaussian, write_report

        manifest = store.manifest()
        path = write_report(df, store.root, manifest=manifest,
                            gaussian=store_gaussian(df, store.root, manifest, fresh=True))
        print(f"wrote {path}")
    return 0
