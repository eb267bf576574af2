"""Shared, seeded fixtures of the asv suite: every benchmark builds its inputs here, deterministically.

Accuracy benchmarks use the Gaussian targets, whose error is exact (the solver's output law propagated
in closed form: no Monte Carlo noise), so a tracked number changes only when a solver changes.
"""

from __future__ import annotations

import math

import torch

# the pieces of benchmarks/perf.py that its asv mirror (bench_perf.py) times: the asv files import this module only
from .perf_core import coeffs, sample_call, setup, solver_nfe  # noqa: F401
from .perf_peers import ReverseSDE, diffusers_loop, diffusers_setup, torchsde_times  # noqa: F401

ACC_PROBLEMS = ["gauss1d", "gauss-aniso16"]
ACC_SOLVERS = ["em", "ei", "ddpm", "euler", "ddim", "heun", "dpm-solver-2", "dpm-solver-3", "dpm-solver++2m"]
NFE_GRID = [6, 12, 24, 48, 96, 192]  # multiples of 6: every solver (1, 2, 3 NFE per step) can use each
FIXED_NFE = 24
FIT_NFE = [24, 48, 96, 192]
TOL = 1e-2
SEED = 0

TIME_SOLVERS = ["em", "ddim", "heun", "dpm-solver-2", "dpm-solver++2m"]
TIME_NFE = 24
BATCH = 1000
TIME_PROBLEM = "gauss-aniso16"


def available(solvers):
    from sdebench.solvers import SOLVERS

    return [s for s in solvers if s in SOLVERS]


def exact_w2(problem: str, solver: str, nfe: int) -> float:
    """Exact W2 between the solver's output law and p_{t_end} (VP, uniform grid, exact p_T start)."""
    from sdebench.run import CellConfig, run_cell

    row = run_cell(CellConfig(problem=problem, solver=solver, nfe=nfe, seed=SEED, n_samples=16,
                              metrics=("w2_exact",)))
    return float(row.get("w2_exact", math.nan)) if row["status"] == "ok" else math.nan


def accuracy_table() -> dict:
    """{(problem, solver): [w2 at each NFE of NFE_GRID]}: computed once per asv run (setup_cache)."""
    torch.set_num_threads(1)
    return {(p, s): [exact_w2(p, s, n) for n in NFE_GRID] for p in ACC_PROBLEMS for s in available(ACC_SOLVERS)}


def fitted_order(errors: list[float]) -> float:
    """Minus the log-log slope of W2 against NFE over FIT_NFE (least squares)."""
    import numpy as np

    x = np.array(FIT_NFE, dtype=float)
    y = np.array([errors[NFE_GRID.index(n)] for n in FIT_NFE], dtype=float)
    if not np.all(np.isfinite(y) & (y > 0)):
        return math.nan
    return float(-np.polyfit(np.log(x), np.log(y), 1)[0])


def nfe_to_tol(errors: list[float], tol: float = TOL) -> float:
    for n, e in zip(NFE_GRID, errors):
        if math.isfinite(e) and e <= tol:
            return float(n)
    return math.nan


def sampling_inputs(problem: str = TIME_PROBLEM, solver: str = "em", nfe: int = TIME_NFE, batch: int = BATCH):
    """(spec, model, x_T, grid, sde, noise) for one timed sample call."""
    from sdebench.model import Model
    from sdebench.noise import NoiseSource
    from sdebench.problems import get_problem
    from sdebench.schedules import make_grid
    from sdebench.sde import get_sde
    from sdebench.solvers import get_solver

    torch.set_num_threads(1)
    prob = get_problem(problem)
    sde = get_sde("vp")
    spec = get_solver(solver)
    grid = make_grid(sde, spec.steps_for_nfe(nfe), sde.t_end_default, "uniform")
    model = Model(sde, **prob.model_functions(sde))
    noise = NoiseSource(SEED, batch, (prob.d,), dtype=torch.float64)
    g = torch.Generator().manual_seed(SEED)
    x_T = prob.sample_t(batch, sde.T, sde, generator=g)
    return spec, model, x_T, grid, sde, noise


def target_samples(problem: str, n: int = BATCH, stream: int = 0) -> torch.Tensor:
    from sdebench.problems import get_problem

    g = torch.Generator().manual_seed(1000 * SEED + stream)
    return get_problem(problem).sample(n, generator=g)
