"""Dimension dependence of the SDE samplers' discretization error, and the KL bound of Chen, Lee & Lu (2023)
for the exponential integrator (docs/theory.md#kl-bound-of-the-exponential-integrator)."""

from __future__ import annotations

import time

import numpy as np
import torch

from ..exact import output_gaussian
from ..metrics import gaussian as gx
from ..model import Model
from ..problems.gmm import GaussianMixture
from ..schedules import make_grid
from ..sde import get_sde
from ..solvers import get_solver
from .core import Claim, _g, _slope_claim

ISO_MEAN, ISO_STD = 1.5, 0.5  # the isotropic target N(1.5 * 1, 0.25 I_d): gauss1d in every coordinate


def isotropic(d: int) -> GaussianMixture:
    return GaussianMixture([1.0], torch.full((1, d), ISO_MEAN, dtype=torch.float64),
                           (ISO_STD**2 * torch.eye(d, dtype=torch.float64))[None], name=f"iso{d}")


def exact_output(solver: str, problem: GaussianMixture, sde, grid):
    """(mean, cov) of ``solver``'s output started from the exact p_T, and (mean, cov) of p_{t_end}."""
    spec = get_solver(solver)
    a, s2 = float(sde.alpha(torch.tensor(sde.T))), float(sde.sigma2(torch.tensor(sde.T)))
    m_T = a * problem.means[0]
    P_T = a * a * problem.covs[0] + s2 * torch.eye(problem.d, dtype=torch.float64)
    with torch.no_grad():
        m, P = output_gaussian(spec, lambda: Model(sde, **problem.model_functions(sde)), sde, grid, m_T, P_T)
    target = problem.marginal(float(grid[-1]), sde)
    return m, P, target.means[0], target.covs[0]


def _dimension_claims(quick: bool) -> list[Claim]:
    dims = [1, 4, 16, 64, 256] if quick else [1, 4, 16, 64, 256, 1024]
    steps = 16
    sde = get_sde("vp")
    out = []
    for solver, label in (("em", "Euler-Maruyama"), ("ei", "exponential integrator")):
        t0 = time.perf_counter()
        grid = make_grid(sde, steps, sde.t_end_default, "uniform")
        kl, w2 = [], []
        for d in dims:
            m, P, mu, S = exact_output(solver, isotropic(d), sde, grid)
            kl.append(gx.kl(m, P, mu, S))
            w2.append(gx.w2(m, P, mu, S))
        dt = time.perf_counter() - t0
        x = np.array(dims, dtype=float)
        for name, y, pred in (("kl", np.array(kl), 1.0), ("w2", np.array(w2), 0.5)):
            c = Claim(id=f"{solver}-dimension-{name}",
                      statement=f"At a fixed step the discretization error of the {label} grows linearly with "
                                f"the dimension: {'KL ~ d' if name == 'kl' else 'W2 ~ sqrt(d)'}",
                      source="Chen, Lee & Lu 2023 and Benton et al. 2024 (KL bounds linear in d); "
                             "docs/theory.md#dimension-dependence",
                      metric=f"{'kl_exact' if name == 'kl' else 'w2_exact'} (exact law), N(1.5, 0.25 I_d), "
                             f"d = {dims[0]}..{dims[-1]}, VP, {steps} uniform steps, slope in d",
                      predicted=f"slope {pred:g}")
            _slope_claim(c, x, y, pred, 0.05, fine_is_small=False)
            c.detail += f"; {name} at d = {dims[0]}: {_g(y[0])}, at d = {dims[-1]}: {_g(y[-1])}"
            c.seconds = dt / 2
            c.figure = "validation_dimension.png"
            c.curves = [(f"{solver} {name.upper()}", x, y, None, "dimension d", "error at 16 steps", True)]
            out.append(c)
    return out


def chen_bound(sde, grid, d: int) -> float:
    """Discretization term of the KL bound of Chen, Lee & Lu (2023) for the exponential integrator, constant 1:
    d * sum_k h_k^2 / sigma_{t_{k+1}}^4 over the steps t_k -> t_{k+1} (h_k = t_k - t_{k+1}, forward time)
    of the OU process dX = -X dt + sqrt(2) dB, sigma_t^2 = 1 - exp(-2 t) (docs/theory.md)."""
    t = grid.to(torch.float64)
    h = (t[:-1] - t[1:]).numpy()
    s2 = sde.sigma2(t[1:]).numpy()
    return float(d * (h**2 / s2**2).sum())


def _chen_bound_claim(quick: bool) -> list[Claim]:
    t0 = time.perf_counter()
    sde = get_sde("ou")
    d = 4
    problem = isotropic(d)
    steps = [8, 16, 32, 64] if quick else [8, 16, 32, 64, 128, 256]
    measured, bound = [], []
    for n in steps:
        grid = make_grid(sde, n, sde.t_end_default, "logsnr")
        m, P, mu, S = exact_output("ei", problem, sde, grid)
        measured.append(gx.kl(mu, S, m, P))  # KL(p_t_end || q): the bound's direction
        bound.append(chen_bound(sde, grid, d))
    measured, bound = np.array(measured), np.array(bound)
    ratio = bound / measured
    holds = bool((ratio >= 1).all())
    c = Claim(id="ei-chen-kl-bound", statement="The KL bound of Chen, Lee & Lu (2023) for the exponential "
              "integrator holds, and how loose it is (ratio bound / measured per NFE)",
              source="Chen, Lee & Lu 2023 (Improved analysis of score-based generative modeling), discretization "
                     "term d sum h_k^2 / sigma^4 with constant 1; "
                     "docs/theory.md#kl-bound-of-the-exponential-integrator",
              metric=f"KL(p_t_end || q) of ei's exact output law, N(1.5, 0.25 I_{d}), OU (T = {sde.T:g}), logSNR "
                     f"grid (exponential-then-linear steps), exact p_T start and exact score; min over NFE of "
                     "bound / measured",
              predicted="bound / measured >= 1 at every NFE", measured=float(ratio.min()),
              rule="min over NFE of bound / measured >= 1", status="PASS" if holds else "FAIL")
    sb, sm = (float(np.polyfit(np.log(steps[-3:]), np.log(v[-3:]), 1)[0]) for v in (bound, measured))
    c.detail = ("ratio bound / measured per NFE: " + ", ".join(f"NFE {n}: {_g(r)}" for n, r in zip(steps, ratio))
                + f"; measured KL {', '.join(_g(v) for v in measured)}; bound {', '.join(_g(v) for v in bound)}; "
                f"log-log slopes over the last 3 NFE: bound {sb:.2f}, measured {sm:.2f} (so the bound is loose by "
                f"a factor growing like NFE^{sb - sm:.2f})")
    c.seconds = time.perf_counter() - t0
    c.figure = "validation_chen_bound.png"
    x = np.array(steps, dtype=float)
    c.curves = [("measured KL(p || q), ei", x, measured, None, "NFE (steps)", "KL", True),
                ("Chen-Lee-Lu bound, constant 1", x, bound, None, "NFE (steps)", "KL", True)]
    return [c]

