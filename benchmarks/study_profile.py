"""Profile a stratified sample of a sweep's cells (every k-th cell of its expansion) the way a sweep worker runs
them (in this process, torch single-threaded), and estimate the full sweep's cost.

    python benchmarks/study_profile.py sweeps/paper.toml --every 59 --csv profile.csv   # profile (minutes)
    python benchmarks/study_profile.py sweeps/paper.toml --every 59 --csv profile.csv --fit-only
    python benchmarks/study_profile.py sweeps/paper.toml --from-results results/paper/results.parquet --csv all.csv

``--from-results``: no profiling; every cell of a finished sweep, its cost = the row's ``wall_s`` (sampling) +
``metrics_s`` (metrics; a cached reference solve or null draw counted in the cell that paid it), wall time of the
worker that ran it (on an idle machine, what the cell cost a core; cell set-up and the store write are not in it).

Prints the estimated full cost (the sample's CPU seconds x k: every k-th cell of an expansion ordered by
problem, SDE, schedule, solver and NFE is a systematic sample of every stratum; the first cell of each cache group
(problem, SDE, samples, t_end, reference; consistency samplers apart) is run twice, and its one-time
warm-up (the Monte Carlo nulls, the mixture consistency function) is counted once per worker, not k times),
the breakdown per solver family, per target and solver vs metric time, and the coefficients of
:mod:`sdebench.cost` fitted to the sample. CPU time (``time.process_time``) is measured as well as wall
time: on a loaded machine the wall time of a cell is its CPU time stretched by the load, while the CPU time is
what the cell costs an idle core.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import defaultdict

import numpy as np
import torch


def profile(path: str, every: int, out: str) -> None:
    import sdebench.run as runmod
    from sdebench.run import run_cell
    from sdebench.solvers import get_solver
    from sdebench.sweep import load_sweep

    torch.set_num_threads(1)
    sw = load_sweep(path)
    cells = sw.cells()
    sample = cells[::every]
    print(f"{len(cells)} cells; profiling every {every}th: {len(sample)}", flush=True)
    acc = {"metric": 0.0}
    real = runmod.compute_metrics

    def timed(ctx, **kw):
        t0 = time.process_time()
        try:
            return real(ctx, **kw)
        finally:
            acc["metric"] += time.process_time() - t0

    runmod.compute_metrics = timed
    try:
        with open(out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["block", "problem", "sde", "schedule", "solver", "family", "kind", "nfe", "samples",
                        "metrics", "cpu_s", "wall_s", "solver_wall_s", "metric_cpu_s", "status", "warmup_s"])
            seen = set()
            for key, cfg, _ in sample:
                group = (cfg.problem, cfg.sde, cfg.n_samples, cfg.t_end, cfg.reference,
                         cfg.solver if "consistency" in cfg.solver else "")
                warm = 0.0
                if group not in seen:
                    seen.add(group)
                    t0 = time.process_time()
                    run_cell(cfg, raise_config_errors=False)
                    warm = time.process_time() - t0
                acc["metric"] = 0.0
                t0, w0 = time.process_time(), time.perf_counter()
                row = run_cell(cfg, raise_config_errors=False)
                cpu, wall = time.process_time() - t0, time.perf_counter() - w0
                spec = get_solver(cfg.solver)
                w.writerow([sw.block_of.get(key, sw.name), cfg.problem, cfg.sde, cfg.schedule, cfg.solver,
                            spec.family, spec.kind_for(cfg.solver_options), cfg.nfe, cfg.n_samples,
                            "+".join(cfg.metrics), f"{cpu:.4f}", f"{wall:.4f}",
                            f"{row.get('wall_s', float('nan')):.4f}", f"{acc['metric']:.4f}", row.get("status"),
                            f"{max(warm - cpu, 0.0):.4f}" if warm else "0"])
                f.flush()
    finally:
        runmod.compute_metrics = real


def from_results(path: str, results: str, out: str) -> None:
    """Write the --csv rows of every cell of a finished sweep from its results (see the module docstring)."""
    import pandas as pd

    from sdebench.solvers import get_solver
    from sdebench.sweep import load_sweep

    sw = load_sweep(path)
    sw.cells()
    df = pd.read_parquet(results)
    if "metrics_s" not in df.columns:
        raise SystemExit(f"{results} has no metrics_s column (rows written before it existed)")
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["block", "problem", "sde", "schedule", "solver", "family", "kind", "nfe", "samples",
                    "metrics", "cpu_s", "wall_s", "solver_wall_s", "metric_cpu_s", "status", "warmup_s"])
        for r in df.itertuples(index=False):
            spec = get_solver(r.solver)
            cost = float(r.wall_s) + float(r.metrics_s)
            w.writerow([sw.block_of.get(r.cell_key, sw.name), r.problem, r.sde, r.schedule, r.solver, spec.family,
                        r.kind, r.nfe, r.n_samples, "", f"{cost:.4f}", f"{cost:.4f}", f"{float(r.wall_s):.4f}",
                        f"{float(r.metrics_s):.4f}", r.status, "0"])


def _table(rows, key, every, total):
    agg = defaultdict(lambda: [0, 0.0, 0.0])
    for r in rows:
        a = agg[key(r)]
        a[0] += 1
        a[1] += float(r["cpu_s"])
        a[2] += float(r["metric_cpu_s"])
    lines = ["| | cells (sample) | est. CPU s | share | metric share |", "|---|---|---|---|---|"]
    for k, (n, cpu, met) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        share = 100 * met / max(cpu, 1e-12)
        lines.append(f"| {k} | {n} | {cpu * every:.0f} | {100 * cpu / total:.1f} % | {share:.0f} % |")
    return lines


def fit(rows) -> dict:
    """(problem, kind, group) -> (a, b): least squares cpu = a + b nfe (a, b >= 0); group: the consistency
    sampler's name, or "" for every other solver."""
    groups = defaultdict(list)
    for r in rows:
        g = r["solver"] if r["solver"].startswith("consistency") else ""
        groups[(r["problem"], r["kind"], g)].append((float(r["nfe"]), float(r["cpu_s"])))
    out = {}
    for k, pts in sorted(groups.items()):
        x, y = np.array(pts).T
        if len(pts) >= 2 and np.ptp(x) > 0:
            b, a = np.polyfit(x, y, 1)
            if a < 0:
                a, b = 0.0, float((x @ y) / (x @ x))
            if b < 0:
                a, b = float(y.mean()), 0.0
        else:
            a, b = float(y.mean()), 0.0
        out[k] = (round(float(a), 5), round(float(b), 7))
    return out


def report(out: str, every: int, workers: int) -> None:
    rows = [r for r in csv.DictReader(open(out))]
    warm = sum(float(r.get("warmup_s") or 0) for r in rows)
    total = sum(float(r["cpu_s"]) for r in rows)
    metric = sum(float(r["metric_cpu_s"]) for r in rows)
    wall = sum(float(r["wall_s"]) for r in rows)
    print(f"sample: {len(rows)} cells, {total:.1f} CPU s ({wall:.1f} s wall: load factor {wall / total:.2f}); "
          f"metrics {100 * metric / total:.0f} % of the CPU time")
    est = total * every + warm * workers
    print(f"one-time warm-ups (caches, once per worker): {warm:.1f} CPU s per worker")
    print(f"estimated full sweep: {total:.1f} x {every} + {warm:.1f} x {workers} = {est:.0f} CPU s = "
          f"{est / workers / 60:.1f} min on {workers} idle cores (+ ~4 s Dask start-up); x{wall / total:.2f} at this "
          f"machine's load = {est * wall / total / workers / 60:.1f} min")
    print("\nper solver family:")
    print("\n".join(_table(rows, lambda r: r["family"] or r["solver"], every, total)))
    print("\nper target:")
    print("\n".join(_table(rows, lambda r: r["problem"], every, total)))
    print("\nper block:")
    print("\n".join(_table(rows, lambda r: r["block"], every, total)))
    print("\nper kind x target class:")
    print("\n".join(_table(rows, lambda r: (r["kind"], "gauss" if r["problem"].startswith("gauss") else "mixture"),
                           every, total)))
    top = sorted(rows, key=lambda r: -float(r["cpu_s"]))[:10]
    print("\nmost expensive sampled cells:")
    for r in top:
        print(f"  {r['cpu_s']} s: {r['problem']} {r['sde']} {r['schedule']} {r['solver']} nfe={r['nfe']} "
              f"n={r['samples']} metrics={r['metrics']} (metric {r['metric_cpu_s']} s)")
    over = [r for r in rows if float(r["metric_cpu_s"]) > float(r["cpu_s"]) - float(r["metric_cpu_s"])]
    print(f"\ncells whose metrics cost more than the rest of the cell (solver + setup): {len(over)} of {len(rows)}")
    print("\nsdebench.cost.COEFFS fitted to this sample:")
    print(fit(rows))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep")
    p.add_argument("--every", type=int, default=59)
    p.add_argument("--csv", default="study_profile.csv")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fit-only", action="store_true", help="read --csv, do not profile")
    p.add_argument("--from-results", metavar="PARQUET", help="every cell of a finished sweep (wall_s + metrics_s)")
    a = p.parse_args()
    if a.from_results:
        from_results(a.sweep, a.from_results, a.csv)
        a.every = 1
    elif not a.fit_only:
        profile(a.sweep, a.every, a.csv)
    report(a.csv, a.every, a.workers)


if __name__ == "__main__":
    main()
