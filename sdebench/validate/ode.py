"""Probability-flow ODE solvers: orders in law (Heun, DPM-Solver-2), the pathwise order of DPM-Solver-3,
and DDIM = DPM-Solver-1."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..model import Model
from ..problems import get_problem
from ..schedules import make_grid
from ..sde import get_sde
from ..solvers import get_solver
from .core import Claim, _exact_sweep, _pathwise_curves, _slope_claim, _solver_available


def _ode_order_claims(quick: bool) -> list[Claim]:
    out = []
    for solver, pred, source, steps in (
        ("heun", 2.0, "Karras et al. 2022 (EDM, Alg. 1): Heun is order 2", [4, 8, 16, 32] if quick else
         [8, 16, 32, 64, 128]),
        ("dpm-solver-2", 2.0, "Lu et al. 2022 (DPM-Solver, Thm 3.2): DPM-Solver-2 is order 2",
         [4, 8, 16, 32] if quick else [8, 16, 32, 64, 128]),
    ):
        c = Claim(id=f"{solver}-order", statement=f"{solver} converges with order {pred:g} (W2 of the output law)",
                  source=source, metric="w2_exact (exact law), gauss1d, VP, slope in h", predicted=f"slope {pred:g}")
        if not _solver_available(solver):
            c.status, c.detail = "SKIP", f"solver {solver!r} is not registered"
            out.append(c)
            continue
        t0 = time.perf_counter()
        sched = "logsnr" if solver.startswith("dpm") else "uniform"
        rows = _exact_sweep(solver, steps, metrics=("w2_exact",), schedule=sched)
        h = np.array([1.0 / r["steps"] for r in rows])
        y = np.array([r["w2_exact"] for r in rows])
        _slope_claim(c, h, y, pred, 0.25)
        c.seconds = time.perf_counter() - t0
        c.figure = "validation_ode_orders.png"
        c.curves = [(solver, h, y, None, "step size h (1/N)", "W2 (exact law)", True)]
        out.append(c)
    return out


def _dpm3_claim(quick: bool) -> list[Claim]:
    c = Claim(id="dpm-solver-3-pathwise", statement="DPM-Solver-3 is pathwise order 3: |x_hat - x_exact| = O(h^3) "
              "against the exact ODE solution from the same x_T", source="Lu et al. 2022 (DPM-Solver), Thm 3.2",
              metric="RMS pathwise error, gauss1d, VP, logSNR grid, slope in h", predicted="slope 3")
    if not _solver_available("dpm-solver-3"):
        c.status, c.detail = "SKIP", "solver 'dpm-solver-3' is not registered"
        return [c]
    t0 = time.perf_counter()
    steps = [6, 12, 24, 48] if quick else [6, 12, 24, 48, 96, 192]
    h, Y = _pathwise_curves("dpm-solver-3", steps, seeds=range(3 if quick else 5), n=128, schedule="logsnr")
    _slope_claim(c, h, Y, 3.0, 0.3)
    c.seconds = time.perf_counter() - t0
    c.figure = "validation_ode_orders.png"
    c.curves = [("dpm-solver-3 (pathwise)", h, Y.mean(0), None, "step size h (1/N)", "error", True)]
    return [c]


def _ddim_claim(quick: bool) -> list[Claim]:
    """DDIM (eta = 0) against DPM-Solver-1 (registered) or the closed form of docs/theory.md#exponential-integrators."""
    t0 = time.perf_counter()
    problem, sde = get_problem("gmm1d"), get_sde("vp")
    grid = make_grid(sde, 10, sde.t_end_default, "uniform")
    g = torch.Generator().manual_seed(5)
    x_T = problem.sample_t(500, sde.T, sde, generator=g)
    model = Model(sde, **problem.model_functions(sde))
    with torch.no_grad():
        ddim = get_solver("ddim").sample(model, x_T.clone(), grid, sde, None)
        if _solver_available("dpm-solver-1"):
            other = get_solver("dpm-solver-1").sample(Model(sde, **problem.model_functions(sde)), x_T.clone(), grid,
                                                      sde, None)
            what = "registered dpm-solver-1"
        else:
            x = x_T.clone()
            m2 = Model(sde, **problem.model_functions(sde))
            for i in range(len(grid) - 1):
                s, t = grid[i], grid[i + 1]
                hl = float(sde.lambda_(t) - sde.lambda_(s))
                x = float(sde.alpha(t) / sde.alpha(s)) * x - float(sde.sigma(t)) * math.expm1(hl) * m2.eps(x, s)
            other, what = x, ("closed-form DPM-Solver-1 update (docs/theory.md#exponential-integrators; "
                              "dpm-solver-1 not registered)")
    diff = float((ddim - other).abs().max() / x_T.abs().max())
    c = Claim(id="ddim-equals-dpm1", statement="DDIM (eta = 0) equals DPM-Solver-1 step for step",
              source="Lu et al. 2022 (DPM-Solver), Sec. 4.1; docs/theory.md#exponential-integrators",
              metric="max |x_ddim - x_dpm1| / max |x_T|, gmm1d, VP, 10 steps, 500 samples",
              predicted="0 (rounding)", measured=diff,
              rule="measured <= 1e-12", status="PASS" if diff <= 1e-12 else "FAIL", detail=f"compared with {what}")
    c.seconds = time.perf_counter() - t0
    return [c]
