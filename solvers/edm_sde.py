"""Stochastic Heun samplers: ``heun-sde`` on the reverse SDE and EDM's stochastic sampler ``edm-sde``.

EDM variables for any SDE: y = x / alpha_t, sbar = sigma_t / alpha_t = e^{-lambda_t}, denoiser
D(x, t) = x0 prediction; the probability-flow ODE is dy/dsbar = (y - D) / sbar.
"""

from __future__ import annotations

import math

import torch

from sdebench.errors import ConfigError

from ._common import coefficients_at, ends_at_zero, reverse_sde_drift
from .base import Rule, register
from .ode import per_step_values


def _heun_sde_nfe(steps, grid):
    return 2 * steps - (1 if grid is not None and ends_at_zero(grid) else 0)


@register("heun-sde", kind="sde", order=1, strong_order=1.0, nfe_per_step=2, family="SDE (stochastic Heun)",
          paper="Kloeden & Platen 1992; Jolicoeur-Martineau et al. 2021", nfe_for_steps=_heun_sde_nfe,
          order_grid="uniform", order_gaussian=2)  # weak order 2 on a Gaussian target (linear drift)
def heun_sde(model, x, grid, sde, noise):
    """Stochastic Heun (improved Euler) on the reverse SDE, additive noise. 2 NFE per step.

    With h = t_i - t_{i+1}, F(x, t) = f(t) x - g(t)^2 score(x, t), dW = Brownian increment:
        x~ = x - h F(x, t_i) + g(t_i) dW
        x' = x - (h/2) [F(x, t_i) + F(x~, t_{i+1})] + (g(t_i) + g(t_{i+1}))/2 dW.
    Strong order 1 and weak order 1 in general (weak order 2 for linear drift); the drift part is
    second order. If the grid ends at t = 0 (sigma = 0, where the score is singular) the last step is
    plain Euler-Maruyama x' = x~, so N steps cost 2N - 1 NFE on such a grid.
    """
    for i in range(len(grid) - 1):
        h = float(grid[i] - grid[i + 1])
        g0 = math.sqrt(coefficients_at(sde, grid[i])["g2"])
        g1 = math.sqrt(coefficients_at(sde, grid[i + 1])["g2"])
        dW = noise.dW(i)
        F0 = reverse_sde_drift(model, sde, x, grid[i])
        xp = x - h * F0 + g0 * dW
        if float(grid[i + 1]) == 0.0:
            x = xp
            continue
        F1 = reverse_sde_drift(model, sde, xp, grid[i + 1])
        x = x - 0.5 * h * (F0 + F1) + 0.5 * (g0 + g1) * dW
    return x


def _edm_nfe(steps, grid):
    return 2 * steps - (1 if grid is not None and float(grid[-1]) == 0.0 else 0)


@register("edm-sde", kind="sde", order=1, nfe_per_step=2, family="EDM", paper="Karras et al. 2022 (EDM, Alg. 2)",
          nfe_for_steps=_edm_nfe, order_nfe=(80, 160, 320),
          deterministic=Rule("iff S_churn = 0, S_noise = 0 or S_tmin > S_tmax",
                             lambda o: o["S_churn"] == 0 or o["S_noise"] == 0 or o["S_tmin"] > o["S_tmax"]),
          per_step=("S_churn",))
def edm_sde(model, x, grid, sde, noise, S_churn: float = 40.0, S_tmin: float = 0.05, S_tmax: float = 50.0,
            S_noise: float = 1.003):
    """EDM stochastic sampler (Karras et al. Alg. 2): churn, then a Heun step. 2 NFE per step.

    In y = x/alpha, sbar = sigma/alpha: gamma = min(S_churn/N, sqrt(2) - 1) if S_tmin <= sbar_i <= S_tmax
    else 0; sbar^ = sbar_i (1 + gamma); y^ = y_i + sqrt(sbar^2 - sbar_i^2) S_noise z (z from
    ``noise.normal('churn', i)``); d = (y^ - D(x^, t^))/sbar^, t^ the time with sbar = sbar^;
    y' = y^ + (sbar_{i+1} - sbar^) d; Heun correction with d' = (y' - D(x', t_{i+1}))/sbar_{i+1}:
    y_{i+1} = y^ + (sbar_{i+1} - sbar^)(d + d')/2. S_churn = 0 gives the deterministic EDM Heun
    sampler in sbar. On contractive SDEs (cVP, cOU) sbar is bounded; a churned level beyond every sbar the
    SDE reaches is replaced by sbar(T). Weak order 1 with churn (the churn noise is a first-order SDE
    step); 2 NFE per step. On a grid ending at t = 0 (sbar = 0) the last step is Euler in sbar, which is
    x_next = alpha_0 D(x^, t^) (EDM's convention), so N steps cost 2N - 1 NFE. ``S_churn`` may be a sequence
    of one value per step (gamma_i = min(S_churn_i / N, sqrt(2) - 1) on the step from t_i).
    """
    steps = len(grid) - 1
    churns = per_step_values(S_churn, steps, "edm-sde", "S_churn")
    for name, v in (("S_churn", min(churns, default=0.0)), ("S_tmin", S_tmin), ("S_tmax", S_tmax),
                    ("S_noise", S_noise)):
        if v < 0:
            raise ConfigError(f"edm-sde {name} must be >= 0, got {v}")
    gammas = [min(c / steps, math.sqrt(2.0) - 1.0) for c in churns]
    for i in range(steps):
        s, t = coefficients_at(sde, grid[i]), coefficients_at(sde, grid[i + 1])
        sb_i, sb_n = s["sigma"] / s["alpha"], t["sigma"] / t["alpha"]
        y = x / s["alpha"]
        gamma = gammas[i] if S_tmin <= sb_i <= S_tmax else 0.0
        if gamma > 0:  # churn (a deterministic move to sb_hat where S_noise = 0: no noise drawn)
            sb_hat = sb_i * (1.0 + gamma)
            try:
                t_hat = sde.t_of_lambda(torch.tensor(-math.log(sb_hat), dtype=torch.float64))
            except ConfigError:  # contractive SDEs: sbar is bounded, the churned level may not exist
                t_hat = torch.tensor(sde.T, dtype=torch.float64)
                sb_hat = float(sde.sigma(t_hat) / sde.alpha(t_hat))
            a_hat = float(sde.alpha(t_hat))
            if S_noise > 0:
                y = y + math.sqrt(sb_hat**2 - sb_i**2) * S_noise * noise.normal("churn", i)
        else:
            sb_hat, t_hat, a_hat = sb_i, grid[i], s["alpha"]
        d = (y - model.x0(a_hat * y, t_hat)) / sb_hat
        y_next = y + (sb_n - sb_hat) * d
        if float(grid[i + 1]) != 0.0:
            d2 = (y_next - model.x0(t["alpha"] * y_next, grid[i + 1])) / sb_n
            y_next = y + (sb_n - sb_hat) * 0.5 * (d + d2)
        x = t["alpha"] * y_next
    return x
