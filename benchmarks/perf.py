#!/usr/bin/env python
"""Performance of sdebench's samplers, measured side by side in one run; prints one markdown table.

    python benchmarks/perf.py                 # full run (a few minutes on 2 CPU cores)
    python benchmarks/perf.py --quick         # small sizes, one repeat: a smoke run (seconds)
    python benchmarks/perf.py --sections overhead,peers --out perf.md

Sections (rows of the one table; medians of ``--repeat`` timed runs after one untimed warm-up):

* ``overhead``: for every registered fixed-grid solver, wall time of one full ``spec.sample`` call
  (noise generation included) divided by (counted NFE x wall time of one ``model.score`` call on the
  same batch), on ``gmm2d-ring8`` (batch 100,000, float64) and on the digits U-Net (batch 256) when
  its checkpoint is committed. Target <= 1.15 (ring8) and <= 1.03 (U-Net).
* ``peers``: the same work done by the libraries people call directly, at equal NFE, batch, dtype
  and device, with the same analytic score: em vs ``torchsde.sdeint(method='euler')``, srk vs
  torchsde srk, euler / rk4 vs ``torchdiffeq.odeint`` on the same fixed grid, ddim and
  dpm-solver++2m vs a diffusers scheduler loop. ``max|diff|`` is the largest output difference when
  both are driven by the same x_T and (for SDEs) the same Brownian increments, which shows that the
  same computation is timed. Timed peers use their native noise (torchsde's BrownianInterval);
  a second torchsde row uses pre-sampled increments (a BaseBrownian over sdebench's NoiseSource).
* ``scaling``: one ``em`` sample call against batch (1e2..1e6), dimension (2..1024), mixture
  components (1..64) and NFE; the fitted exponent of time ~ size^p, over all points and over the
  upper points (where fixed per-call costs no longer matter).
* ``metrics``: exact W2 (POT network simplex), sliced W2, MMD against n; change-of-variables KL/TV
  against n and d, with fitted exponents.
* ``gpu``: with CUDA, the overhead table on the GPU, sampler throughput at NFE 20 for gmm-d32 at
  batch 1e6, the score's achieved memory bandwidth against the measured copy bandwidth, and
  CUDA-graph replay of a whole ODE sampling call for small batches (before/after). Without CUDA the
  rows say "not measured".
* ``sweep``: cells per second of ``sdebench sweep`` on ``sweeps/quick.toml`` (seeds trimmed to 1 and
  NFE to the first three budgets unless ``--sweep-full``) with 1 and 2 local workers, and where a
  cell's time goes (sampling vs metrics vs store I/O) from an in-process run.

This file is the command line (header, argument parsing, the run); the sections live in ``perf_overhead``,
``perf_peers``, ``perf_scaling`` (scaling and metrics), ``perf_gpu`` and ``perf_sweep``, their shared pieces
(sizes, table, clock, timing helpers) in ``perf_core``. ``python -m benchmarks.perf`` works too.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the benchmarks package importable
    sys.path.insert(0, str(ROOT))

from benchmarks.perf_core import (  # noqa: E402
    CLOCK,
    NOTES,
    QUICK,
    ROWS,
    Sizes,
    fit_exponent,
    fixed_grid_solvers,
    render,
    row,
    sample_call,
    setup,
    solver_nfe,
    timeit,
)
from benchmarks.perf_gpu import gpu, gpu_measure  # noqa: E402
from benchmarks.perf_overhead import overhead, unet_overhead  # noqa: E402
from benchmarks.perf_peers import diffusers_loop, diffusers_setup, grid_brownian, peers, torchsde_times  # noqa: E402
from benchmarks.perf_scaling import metric_costs, scaling, synthetic_gmm  # noqa: E402
from benchmarks.perf_sweep import _trimmed_sweep, sweep  # noqa: E402

__all__ = ["SECTIONS", "QUICK", "Sizes", "ROWS", "NOTES", "CLOCK", "row", "render", "timeit", "fit_exponent", "setup",
           "sample_call", "solver_nfe", "fixed_grid_solvers", "overhead", "unet_overhead", "peers", "torchsde_times",
           "grid_brownian", "diffusers_setup", "diffusers_loop", "scaling", "metric_costs", "synthetic_gmm", "gpu",
           "gpu_measure", "sweep", "_trimmed_sweep", "machine", "parse", "main"]

SECTIONS = ("overhead", "peers", "scaling", "metrics", "gpu", "sweep")


# ---- header and main ------------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = [ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")][0]
        mem = f"{int(mem.split()[1]) / 2**20:.1f} GiB RAM"
    except (OSError, IndexError):
        mem = "RAM ?"
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip()
    except OSError:
        commit = "?"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {mem}; GPU: {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} intra-op threads); commit {commit}; "
            f"load average {load}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat (smoke run)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {', '.join(SECTIONS)} (default: all)")
    p.add_argument("--repeat", type=int, default=None, help="timed repeats per figure (median; default 5, quick 1)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time (default) or this process's CPU time (for a machine shared with other jobs)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, as sweep workers)")
    p.add_argument("--sweep-full", action="store_true", help="time the whole quick sweep (default: trimmed)")
    p.add_argument("--out", default=None, help="also write the header and table to this markdown file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        print(f"perf.py: unknown section(s) {bad}; valid: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    if args.repeat is not None and args.repeat < 1:
        print(f"perf.py: --repeat must be >= 1, got {args.repeat}", file=sys.stderr)
        return 2
    if args.threads < 1:
        print(f"perf.py: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    CLOCK.update(fn=time.perf_counter if args.clock == "wall" else time.process_time, name=args.clock)
    sz = replace(QUICK) if args.quick else Sizes()
    if args.repeat is not None:
        sz.repeat = args.repeat
    ROWS.clear()
    NOTES.clear()
    head = machine()
    t0 = time.perf_counter()
    for s in sections:
        if s == "overhead":
            overhead(sz)
        elif s == "peers":
            peers(sz)
        elif s == "scaling":
            scaling(sz)
        elif s == "metrics":
            metric_costs(sz)
        elif s == "gpu":
            gpu(sz)
        elif s == "sweep":
            sweep(sz, args.sweep_full)
    total = time.perf_counter() - t0
    end_load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    text = [f"Machine: {head}",
            f"Run: {'--quick' if args.quick else 'full'}, sections {', '.join(sections)}, {CLOCK['name']} clock, "
            f"median of {sz.repeat} after 1 warm-up, {total:.0f} s; load average at the end {end_load}", "",
            render(), ""]
    if NOTES:
        text += ["Targets missed:"] + [f"- {n}" for n in NOTES]
    else:
        text += ["Every measured target held."]
    out = "\n".join(text)
    print(out)
    torch.set_num_threads(threads_before)
    if args.out:
        Path(args.out).write_text(out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
