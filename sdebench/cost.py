"""A cell's estimated cost: CPU seconds on one core of a single-threaded sweep worker, from a linear model in
the NFE fitted to a profile of the study (``benchmarks/study_profile.py``; the breakdown is in
docs/performance.md). ``sdebench sweep FILE --dry-run`` prints it per block.

cost(cell) = a + b * NFE * s, with (a, b) per (problem, solver kind, group) (group: the consistency
sampler's name, whose mixture consistency function is a dopri5 solve per call, or "" for every other solver)
and s = samples / the samples the profile ran with on mixtures (their solver and metric cost grows with the
batch), s = 1 on Gaussian targets
(their cost is the exact law, which does not depend on the batch). Metrics the profile did not see (the
metrics branch's weak_err, strong_err and path_err on analytic targets) are not in it: leave headroom.
"""

from __future__ import annotations

from .solvers import get_solver

__all__ = ["COEFFS", "PROFILE", "cell_cost", "describe"]

# machine and sample of the fit (docs/performance.md)
PROFILE = ("benchmarks/study_profile.py sweeps/paper.toml --every 47: 332 of 15604 cells, CPU time, "
           "2-core x86-64 machine, 2026-12-05")
PROFILE_SAMPLES = 500  # mixtures' samples in the profiled sweep
# (problem, kind, group) -> (a seconds, b seconds per NFE)
COEFFS: dict = {
    ('gauss-aniso16', 'ode', ''): (0.01176, 0.0005769),
    ('gauss-aniso16', 'sde', ''): (0.12028, 0.0013593),
    ('gauss-aniso16', 'sde', 'consistency-2step'): (0.0207, 0.0),
    ('gauss-aniso16', 'sde', 'consistency-ms'): (0.0058, 0.0007171),
    ('gauss1d', 'ode', ''): (0.0086, 0.0005171),
    ('gauss1d', 'sde', ''): (0.02916, 0.0010285),
    ('gauss1d', 'sde', 'consistency-ms'): (0.0953, 0.0),
    ('gmm-d32', 'ode', ''): (0.00321, 0.0004909),
    ('gmm-d32', 'ode', 'consistency'): (2.6165, 0.0),
    ('gmm-d32', 'sde', ''): (0.1333, 0.0003834),
    ('gmm-d32-close', 'ode', ''): (0.00015, 0.0007159),
    ('gmm-d32-close', 'sde', ''): (0.06082, 0.0010282),
    ('gmm-d32-close', 'sde', 'consistency-ms'): (0.3665, 0.0),
    ('gmm1d', 'ode', ''): (0.00308, 0.0008077),
    ('gmm1d', 'sde', ''): (0.01575, 0.0004432),
    ('gmm2d-close', 'ode', ''): (0.00305, 0.0023005),
    ('gmm2d-close', 'sde', ''): (0.03195, 0.0005278),
    ('gmm2d-close', 'sde', 'consistency-ms'): (0.7011, 0.0),
    ('gmm2d-imbalanced', 'ode', ''): (0.00622, 0.0010361),
    ('gmm2d-imbalanced', 'sde', ''): (0.07533, 0.0002702),
    ('gmm2d-imbalanced', 'sde', 'consistency-2step'): (0.8254, 0.0),
    ('gmm2d-ring8', 'ode', ''): (0.00582, 0.0009855),
    ('gmm2d-ring8', 'ode', 'consistency'): (0.6108, 0.0),
    ('gmm2d-ring8', 'sde', ''): (0.02831, 0.0008659),
    ('gmm2d-ring8', 'sde', 'consistency-ms'): (0.9273, 0.0),
}
_DEFAULT = (0.05, 0.001)  # unknown problems (target files, images): a mixture-like guess


def cell_cost(cfg, kind: str) -> float:
    """Estimated CPU seconds of one cell (``kind``: the solver's kind under the cell's options)."""
    group = cfg.solver if cfg.solver.startswith("consistency") else ""
    a, b = COEFFS.get((cfg.problem, kind, group)) or COEFFS.get((cfg.problem, kind, "")) or _DEFAULT
    gaussian = cfg.problem.startswith("gauss")
    scale = 1.0 if gaussian else cfg.n_samples / PROFILE_SAMPLES
    return max(a, 0.0) + max(b, 0.0) * cfg.nfe * scale


# Dask's cost per cell (scheduling, the task round trip; the worker writes the cell file), CPU seconds on the
# same cores: issue 13's measurement (about 24 ms a cell, 3-4 s to start a LocalCluster)
DASK_PER_CELL = 0.024


def describe(sweep, cells, workers: int | None = None) -> list[str]:
    """Lines for ``--dry-run``: per block (a sweep without blocks is one), its cells and estimated cost, then
    the total as wall time on ``workers`` cores (default 2, the study's budget machine)."""
    w = workers or 2
    names = [b.description for b in sweep.blocks] if sweep.blocks else [sweep.name]
    per: dict = {n: [0, 0.0] for n in names}
    for key, cfg, _ in cells:
        name = sweep.block_of.get(key, names[0]) if sweep.blocks else names[0]
        per[name][0] += 1
        per[name][1] += cell_cost(cfg, get_solver(cfg.solver).kind_for(cfg.solver_options))
    total = sum(v[1] for v in per.values())
    out = [f"  block {n!r}: {c} cells, estimated {s:.0f} CPU s ({100 * s / max(total, 1e-9):.0f} %)"
           for n, (c, s) in per.items()]
    dask = DASK_PER_CELL * len(cells)
    out.append(f"estimated cost: {total:.0f} CPU s in the cells + {dask:.0f} s of Dask overhead = "
               f"{(total + dask) / w / 60:.1f} min on {w} idle cores, plus about 4 s of Dask start-up and the report "
               f"(model fitted to {PROFILE})")
    return out
