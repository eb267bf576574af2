"""DPM-Solver family (Lu et al. 2022, "DPM-Solver"; Lu et al. 2022b, "DPM-Solver++").

All updates are written in the half log-SNR lambda = log(alpha/sigma), so they apply to every SDE
through ``sde.alpha``, ``sde.sigma``, ``sde.lambda_`` and ``sde.t_of_lambda``. For a step from
s = t_i to t = t_{i+1} (t < s), h = lambda_t - lambda_s > 0.

* Singlestep ``dpm-solver-1/2/3`` use the noise prediction eps; their intermediate points s_k have
  lambda_{s_k} = lambda_s + r_k h (r = 1/2 for order 2, r = 1/3, 2/3 for order 3).
* Multistep ``dpm-solver++2m/3m`` and ``dpm-solver++2m-sde`` use the data prediction x0 = D(x, t)
  and reuse the predictions of previous steps (1 NFE per step). The first steps are lower order
  (warm-up: 1 for the first step, 2 for the second in 3M); ``lower_order_final=True`` also lowers
  the order of the last step(s) (order 1 on the last step, order <= 2 on the one before), as
  diffusers does for short schedules.

Grids ending at t = 0 (sigma = 0, lambda = +inf; the diffusers / k-diffusion convention): the last step
is first order, and in the limit h -> inf every update above reduces to x_next = alpha_0 x0(x_s, s),
the data prediction at the previous point (diffusers does the same with ``final_sigmas_type="zero"``).
The model is never evaluated at t = 0. Singlestep solvers on such a grid spend 1 NFE on the last step.
"""

from __future__ import annotations

import math

import torch

from sdebench.errors import ConfigError

from ._common import coefficients_at, ends_at_zero, expm1
from .base import register

_PAPER1 = "Lu et al. 2022 (DPM-Solver)"
_PAPER2 = "Lu et al. 2022b (DPM-Solver++)"


def _t_at(sde, lam: float) -> torch.Tensor:
    return sde.t_of_lambda(torch.tensor(lam, dtype=torch.float64))


# ---- singlestep ---------------------------------------------------------------------------------
def singlestep_orders(nfe: int, order: int) -> list[int]:
    """Lu et al.'s split of an NFE budget into singlestep orders (DPM-Solver 'fast' variant).

    order 3: K = nfe // 3 + 1 steps, orders [3]*(K-2) + [2, 1] if nfe % 3 == 0, [3]*(K-1) + [1] if
    nfe % 3 == 1, [3]*(K-1) + [2] if nfe % 3 == 2. order 2: [2]*(nfe//2) (+ [1] if nfe is odd).
    order 1: [1]*nfe. The orders always sum to nfe.
    """
    if order == 1:
        return [1] * nfe
    if order == 2:
        return [2] * (nfe // 2) + ([1] if nfe % 2 else [])
    K = nfe // 3 + 1
    if nfe % 3 == 0:
        return [3] * (K - 2) + [2, 1]
    if nfe % 3 == 1:
        return [3] * (K - 1) + [1]
    return [3] * (K - 1) + [2]


def _single_step(model, x, sde, s_t, t_t, order: int):
    """One singlestep DPM-Solver update of the given order from time s_t to t_t (eps prediction)."""
    s, t = coefficients_at(sde, s_t), coefficients_at(sde, t_t)
    h = t["lam"] - s["lam"]
    eps_s = model.eps(x, s_t)
    if t["sigma"] == 0.0:  # step to sigma = 0 (h = inf): the limit of the first-order update is alpha_t x0
        if order != 1:
            raise ValueError("a singlestep DPM-Solver step to sigma = 0 must be first order")
        return (x - eps_s * s["sigma"]) * (t["alpha"] / s["alpha"])
    base = (t["alpha"] / s["alpha"]) * x - t["sigma"] * math.expm1(h) * eps_s
    if order == 1:
        return base
    if order == 2:
        r1 = 0.5
        s1_t = _t_at(sde, s["lam"] + r1 * h)
        s1 = coefficients_at(sde, s1_t)
        u1 = (s1["alpha"] / s["alpha"]) * x - s1["sigma"] * math.expm1(r1 * h) * eps_s
        d1 = model.eps(u1, s1_t) - eps_s
        return base - t["sigma"] / (2 * r1) * math.expm1(h) * d1
    r1, r2 = 1.0 / 3.0, 2.0 / 3.0
    s1_t, s2_t = _t_at(sde, s["lam"] + r1 * h), _t_at(sde, s["lam"] + r2 * h)
    s1, s2 = coefficients_at(sde, s1_t), coefficients_at(sde, s2_t)
    u1 = (s1["alpha"] / s["alpha"]) * x - s1["sigma"] * math.expm1(r1 * h) * eps_s
    d1 = model.eps(u1, s1_t) - eps_s
    phi_r2 = math.expm1(r2 * h) / (r2 * h) - 1.0
    u2 = (s2["alpha"] / s["alpha"]) * x - s2["sigma"] * math.expm1(r2 * h) * eps_s \
        - s2["sigma"] * (r2 / r1) * phi_r2 * d1
    d2 = model.eps(u2, s2_t) - eps_s
    return base - t["sigma"] / r2 * (math.expm1(h) / h - 1.0) * d2


def _single_run(model, x, grid, sde, nfe, order):
    steps = len(grid) - 1
    orders = singlestep_orders(nfe, order)
    zero = ends_at_zero(grid)
    full = order * (steps - 1) + 1 if zero else order * steps  # K steps of the given order, last one first order
    if len(orders) != steps:
        if nfe == full:
            orders = [order] * (steps - 1) + [1 if zero else order]
        else:
            raise ConfigError(
                f"dpm-solver-{order}: NFE={nfe} does not fit a {steps}-step grid (need {len(orders)} steps "
                f"or NFE = {full})"
            )
    if zero and orders[-1] != 1:
        raise ConfigError(
            f"dpm-solver-{order}: the grid ends at t = 0 (sigma = 0), where only a first-order last step is "
            f"defined, but NFE={nfe} ends with an order-{orders[-1]} step; use NFE = {full} on this {steps}-step grid"
        )
    for i, k in enumerate(orders):
        x = _single_step(model, x, sde, grid[i], grid[i + 1], k)
    return x


def _steps_for(order):
    def fn(nfe: int) -> int:
        return len(singlestep_orders(nfe, order))

    return fn


def _nfe_for(order):
    def fn(steps: int, grid=None) -> int:
        if grid is not None and ends_at_zero(grid):
            return order * (steps - 1) + 1  # first-order last step to sigma = 0
        return order * steps

    return fn


@register("dpm-solver-1", kind="ode", order=1, nfe_per_step=1, family="DPM-Solver", paper=_PAPER1)
def dpm_solver_1(model, x, grid, sde, noise):
    """DPM-Solver-1: x_t = (alpha_t/alpha_s) x_s - sigma_t expm1(h) eps(x_s, s), h = lambda_t - lambda_s.

    Identical to DDIM with eta = 0. Order 1, 1 NFE per step. A step to t = 0 (sigma = 0) is its limit
    h -> inf: x_next = alpha_0 x0(x_s, s), x0 = (x_s - sigma_s eps) / alpha_s.
    """
    for i in range(len(grid) - 1):
        x = _single_step(model, x, sde, grid[i], grid[i + 1], 1)
    return x


@register(
    "dpm-solver-2",
    kind="ode",
    order=2,
    nfe_per_step=2,
    family="DPM-Solver",
    paper=_PAPER1,
    steps_for_nfe=_steps_for(2),
    nfe_for_steps=_nfe_for(2),
    budget_text="any NFE >= 1 (nfe//2 second-order steps, plus one first-order step if nfe is odd)",
)
def dpm_solver_2(model, x, grid, sde, noise, nfe: int = 0):
    """Singlestep DPM-Solver-2 (midpoint, r = 1/2). Order 2, 2 NFE per step.

    u = (alpha_u/alpha_s) x_s - sigma_u expm1(h/2) eps_s at lambda_u = lambda_s + h/2;
    x_t = (alpha_t/alpha_s) x_s - sigma_t expm1(h) eps_s - sigma_t expm1(h) (eps(u) - eps_s).
    An odd budget ends with one DPM-Solver-1 step (Lu et al.'s split). On a grid ending at t = 0
    (sigma = 0) the last step must be that first-order step, x_next = alpha_0 x0(x_s, s): N steps cost
    2N - 1 NFE; an even budget on such a grid is refused (ConfigError).
    """
    return _single_run(model, x, grid, sde, nfe, 2)


@register(
    "dpm-solver-3",
    kind="ode",
    order=3,
    nfe_per_step=3,
    family="DPM-Solver",
    paper=_PAPER1,
    steps_for_nfe=_steps_for(3),
    nfe_for_steps=_nfe_for(3),
    budget_text="any NFE >= 1 (Lu et al.'s split: K = nfe//3 + 1 steps, last one or two of lower order)",
    order_nfe=(62, 122, 242),  # nfe = 3m + 2: the split ends with one second-order step, not a first-order one
)
def dpm_solver_3(model, x, grid, sde, noise, nfe: int = 0):
    """Singlestep DPM-Solver-3 (r1 = 1/3, r2 = 2/3). Order 3, 3 NFE per step.

    u1 = (a_1/a_s) x - s_1 expm1(r1 h) eps_s;  D1 = eps(u1) - eps_s;
    u2 = (a_2/a_s) x - s_2 expm1(r2 h) eps_s - s_2 (r2/r1) (expm1(r2 h)/(r2 h) - 1) D1;  D2 = eps(u2) - eps_s;
    x_t = (alpha_t/alpha_s) x - sigma_t expm1(h) eps_s - (sigma_t/r2) (expm1(h)/h - 1) D2.
    The NFE budget is split as in Lu et al.: nfe % 3 == 0 ends with orders [2, 1], == 1 with [1],
    == 2 with [2]; a grid of K steps with NFE = 3K runs K third-order steps. On a grid ending at t = 0
    (sigma = 0) the last step must be first order (x_next = alpha_0 x0(x_s, s)): K steps cost 3K - 2 NFE,
    and a budget whose split ends with an order-2 step is refused (ConfigError).
    """
    return _single_run(model, x, grid, sde, nfe, 3)


# ---- multistep, data prediction -----------------------------------------------------------------
def _step_order(i: int, steps: int, order: int, lower_order_final: bool) -> int:
    k = min(order, i + 1)  # warm-up
    if lower_order_final:
        k = min(k, steps - i)
    return k


COEFFS = {"taylor": 2.0, "reference": 1.0}


def _pp_update(x, s, t, ms, lams, k, c3=2.0):
    """DPM-Solver++ multistep update of order k from s to t; ms[-1] is x0 at s, lams their lambdas.

    Third order: x0(lambda) ~ m0 + D1 u/h + D2 u^2/h^2 (u = lambda - lambda_s) integrated exactly gives
    the D2 coefficient -2 alpha_t phi_3, phi_3 = (phi_1 + h)/h^2 - 1/2 (``c3 = 2``). The DPM-Solver
    and diffusers reference code use -alpha_t phi_3 (``c3 = 1``), which leaves an O(h^3) local error.
    """
    h = t["lam"] - s["lam"]
    em1 = expm1(-h)  # e^{-h} - 1
    m0 = ms[-1]
    out = (t["sigma"] / s["sigma"]) * x - t["alpha"] * em1 * m0
    if k == 1:
        return out
    r0 = (lams[-1] - lams[-2]) / h
    d1_0 = (m0 - ms[-2]) / r0
    if k == 2:
        return out - 0.5 * t["alpha"] * em1 * d1_0
    r1 = (lams[-2] - lams[-3]) / h
    d1_1 = (ms[-2] - ms[-3]) / r1
    d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
    d2 = (d1_0 - d1_1) / (r0 + r1)
    return out + t["alpha"] * (em1 / h + 1.0) * d1 - c3 * t["alpha"] * ((em1 + h) / h**2 - 0.5) * d2


def _multistep(model, x, grid, sde, order, lower_order_final, coeff="taylor"):
    if coeff not in COEFFS:
        raise ConfigError(f"coeff must be one of {tuple(COEFFS)}, got {coeff!r}")
    c3 = COEFFS[coeff]
    steps = len(grid) - 1
    ms, lams = [], []
    for i in range(steps):
        s, t = coefficients_at(sde, grid[i]), coefficients_at(sde, grid[i + 1])
        ms.append(model.x0(x, grid[i]))
        lams.append(s["lam"])
        ms, lams = ms[-order:], lams[-order:]
        k = 1 if t["sigma"] == 0.0 else _step_order(i, steps, order, lower_order_final)
        x = _pp_update(x, s, t, ms, lams, k, c3)
    return x


@register("dpm-solver++2m", kind="ode", order=2, nfe_per_step=1, family="DPM-Solver", paper=_PAPER2,
          order_nfe=(40, 80, 160), differentiable_grid=True)
def dpm_solver_pp2m(model, x, grid, sde, noise, lower_order_final: bool = False):
    """DPM-Solver++(2M), multistep, data prediction. Order 2, 1 NFE per step.

    x_t = (sigma_t/sigma_s) x_s - alpha_t expm1(-h) [(1 + 1/(2r)) D_s - 1/(2r) D_prev],
    r = h_prev / h, D = x0 prediction. First step (and the last if lower_order_final) is order 1.
    On a grid ending at t = 0 (sigma = 0) the last step is first order: x_next = alpha_0 D(x_s, s).
    """
    return _multistep(model, x, grid, sde, 2, lower_order_final)


# on a uniform-logSNR grid 3M superconverges on a Gaussian (measured 4); the Karras grid shows its order 3
@register("dpm-solver++3m", kind="ode", order=3, nfe_per_step=1, family="DPM-Solver", paper=_PAPER2,
          order_grid="edm", order_nfe=(40, 80, 160), differentiable_grid=True)
def dpm_solver_pp3m(model, x, grid, sde, noise, lower_order_final: bool = False, coeff: str = "taylor"):
    """DPM-Solver++(3M), multistep, data prediction. Order 3, 1 NFE per step.

    With r0 = h_0/h, r1 = h_1/h (previous two step sizes in lambda), D1_0 = (D_0 - D_1)/r0,
    D1_1 = (D_1 - D_2)/r1, D1 = D1_0 + r0/(r0+r1) (D1_0 - D1_1), D2 = (D1_0 - D1_1)/(r0+r1):
    x_t = (sigma_t/sigma_s) x_s - alpha_t phi_1 D_0 + alpha_t (phi_1/h + 1) D1 - c alpha_t ((phi_1 + h)/h^2 - 1/2) D2,
    phi_1 = expm1(-h); c = 2 (coeff="taylor", the exact integral of the quadratic interpolant: order 3)
    or c = 1 (coeff="reference": the coefficient of the DPM-Solver and diffusers code, measured
    globally order 2). Warm-up orders 1, 2 (their error is weighted by alpha_T, tiny: the global order
    stays 3); lower_order_final lowers the last two steps to orders 2, 1. On a grid ending at t = 0
    (sigma = 0) the last step is first order: x_next = alpha_0 D(x_s, s).
    """
    return _multistep(model, x, grid, sde, 3, lower_order_final, coeff)


@register(
    "dpm-solver++2m-sde",
    kind="sde",
    order=1,
    nfe_per_step=1,
    family="DPM-Solver",
    paper=_PAPER2 + "; diffusers sde-dpmsolver++",
    order_nfe=(40, 80, 160),
    order_gaussian=2,  # weak order 2 on a Gaussian target (linear drift)
)
def dpm_solver_pp2m_sde(model, x, grid, sde, noise, lower_order_final: bool = False):
    """DPM-Solver++(2M) SDE (midpoint form), stochastic multistep, data prediction. 1 NFE per step.

    x_t = (sigma_t/sigma_s) e^{-h} x_s + alpha_t (1 - e^{-2h}) [D_0 + (D_0 - D_1)/(2 r)]
          + sigma_t sqrt(1 - e^{-2h}) z,   r = h_prev/h, z = dW_i / sqrt(t_i - t_{i+1}).
    The exact solution of the reverse SDE's linear part with x0 extrapolated linearly in lambda.
    Weak order 1 (the noise is integrated exactly; the x0 term is second order). First step order 1.
    On a grid ending at t = 0 (sigma = 0) the last step is x_next = alpha_0 D_0 (first order, no noise).
    """
    steps = len(grid) - 1
    prev = None
    for i in range(steps):
        s, t = coefficients_at(sde, grid[i]), coefficients_at(sde, grid[i + 1])
        h = t["lam"] - s["lam"]
        m0 = model.x0(x, grid[i])
        one_m = -math.expm1(-2 * h)  # 1 - e^{-2h}
        if t["sigma"] == 0.0:  # last step to sigma = 0: first order, no noise (the limit h -> inf)
            x = t["alpha"] * m0
            continue
        d = m0
        if prev is not None and _step_order(i, steps, 2, lower_order_final) == 2:
            r = (s["lam"] - prev[1]) / h
            d = m0 + (m0 - prev[0]) / (2 * r)
        z = noise.dW(i) / math.sqrt(float(grid[i] - grid[i + 1]))
        x = (t["sigma"] / s["sigma"]) * math.exp(-h) * x + t["alpha"] * one_m * d + t["sigma"] * math.sqrt(one_m) * z
        prev = (m0, s["lam"])
    return x
