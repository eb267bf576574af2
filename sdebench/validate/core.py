"""Shared pieces of the battery: the :class:`Claim` row, number formatting, the slope rule, and the
sweeps every topic reuses (exact-law sweeps through ``run_cell``, the exact probability-flow map of a
Gaussian target and pathwise error curves against it)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..model import Model
from ..problems import get_problem
from ..run import CellConfig, run_cell
from ..schedules import make_grid
from ..sde import get_sde
from ..solvers import SOLVERS, get_solver
from ..stats import fit_order


@dataclass
class Claim:
    id: str
    statement: str
    source: str
    metric: str
    predicted: str
    measured: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    status: str = "FAIL"  # PASS, FAIL or SKIP
    rule: str = ""
    detail: str = ""
    seconds: float = 0.0
    figure: str = ""
    curves: list = field(default_factory=list)  # (label, x, y, floor or None, xlabel, ylabel, logx)

    def measured_text(self) -> str:
        if self.status == "SKIP" or not math.isfinite(self.measured):
            return "n/a"
        ci = ""
        if math.isfinite(self.lo) and math.isfinite(self.hi):
            ci = f" [{_g(self.lo)}, {_g(self.hi)}]"
        return f"{_g(self.measured)}{ci}"


def _g(v: float) -> str:
    if not math.isfinite(v):
        return "nan"
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def _solver_available(name: str) -> bool:
    return name in SOLVERS


def _slope_claim(c: Claim, x, Y, predicted: float, tol: float, null=None, semilog=False, fine_is_small=True):
    fit = fit_order(x, Y, null=null, semilog=semilog, fine_is_small=fine_is_small)
    c.measured, c.lo, c.hi = fit.slope, fit.lo, fit.hi
    c.rule = f"|slope - {predicted:g}| <= {tol:g}"
    c.status = "PASS" if math.isfinite(fit.slope) and abs(fit.slope - predicted) <= tol else "FAIL"
    c.detail = (f"window x = {','.join(_g(v) for v in fit.window)}; {fit.n_floor} point(s) at floor; "
                f"CI: {fit.method}")
    return c


def _exact_sweep(solver, steps_list, problem="gauss1d", sde="vp", metrics=("w2_exact", "tv_exact", "kl_exact"),
                 **kw):
    spec = get_solver(solver)
    rows = []
    for steps in steps_list:
        nfe = spec.nfe_for_steps(steps)
        cfg = CellConfig(problem=problem, sde=sde, solver=solver, nfe=nfe, n_samples=2, metrics=tuple(metrics),
                         **kw)
        r = run_cell(cfg)
        if r["status"] != "ok":
            raise RuntimeError(f"{solver} steps={steps}: {r['status']} {r.get('error', '')}")
        rows.append(r)
    return rows


def _exact_flow(problem, sde, x, t_from: float, t_to: float) -> torch.Tensor:
    """Exact probability-flow ODE map of a Gaussian target, per eigen-direction
    (docs/theory.md#gaussian-consistency-function):
    x -> alpha_to mu + U diag(sqrt(v_to / v_from)) U^T (x - alpha_from mu), v_t = alpha_t^2 lam + sigma_t^2."""
    a = lambda t: float(sde.alpha(torch.tensor(t, dtype=torch.float64)))  # noqa: E731
    s2 = lambda t: float(sde.sigma2(torch.tensor(t, dtype=torch.float64)))  # noqa: E731
    mu, lam, U = problem.means[0], problem.eigvals[0], problem.U[0]
    v_from = a(t_from) ** 2 * lam + s2(t_from)
    v_to = a(t_to) ** 2 * lam + s2(t_to)
    y = (x.to(torch.float64) - a(t_from) * mu) @ U
    return a(t_to) * mu + (y * torch.sqrt(v_to / v_from)) @ U.T


def _pathwise_curves(solver, steps_list, seeds, n, schedule="uniform", problem_name="gauss1d", sde_name="vp"):
    """RMS |x_hat - x_exact| from the same x_T, one curve per seed."""
    problem, sde, spec = get_problem(problem_name), get_sde(sde_name), get_solver(solver)
    t_end = sde.t_end_default
    Y = np.zeros((len(seeds), len(steps_list)))
    for a, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(9_173 + seed)
        x_T = problem.sample_t(n, sde.T, sde, generator=g)
        exact = _exact_flow(problem, sde, x_T, sde.T, t_end)
        for b, steps in enumerate(steps_list):
            grid = make_grid(sde, steps, t_end, schedule)
            model = Model(sde, **problem.model_functions(sde))
            with torch.no_grad():
                x = spec.sample(model, x_T.clone(), grid, sde, None)
            Y[a, b] = float(((x - exact) ** 2).sum(1).mean().sqrt())
    return np.array([1.0 / s for s in steps_list]), Y
