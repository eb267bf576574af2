"""Reverse-SDE samplers: Euler-Maruyama, the exponential integrator with frozen score, DDPM ancestral.

Reverse SDE (time running T -> t_end): dx = [f(t) x - g(t)^2 score(x, t)] dt + g(t) dW-bar.
Grid T = t_0 > ... > t_N = t_end, h_i = t_i - t_{i+1}; dW_i is the Brownian increment of step i
(variance h_i) from the injected noise source, z_i = dW_i / sqrt(h_i).
"""

from __future__ import annotations

import math

from ._common import brownian_increment, coefficients_at, ei_score_coeff, sqrt, step_size
from .base import register


@register(
    "em",
    kind="sde",
    order=1,
    strong_order=1.0,
    nfe_per_step=1,
    family="SDE",
    paper="Maruyama 1955; Song et al. 2021 (reverse SDE)",
    order_grid="uniform",
    differentiable_grid=True,
)
def em(model, x, grid, sde, noise):
    """Euler-Maruyama on the reverse SDE: x_{i+1} = x_i - h_i [f x_i - g^2 s(x_i, t_i)] + g(t_i) dW_i.

    Weak order 1; strong order 1 (the noise is additive). 1 NFE per step. The model is only evaluated at
    the left point of each step, so a grid ending at t = 0 needs nothing special.
    """
    for i in range(len(grid) - 1):
        c = coefficients_at(sde, grid[i])
        h = step_size(grid, i)
        # x - h (f x - g2 s) + g dW, the same roundings with 4 batch-sized temporaries instead of 7
        drift = (x * c["f"]).sub_(model.score(x, grid[i]) * c["g2"])
        x = (x - drift.mul_(h)).add_(brownian_increment(noise, grid, i) * sqrt(c["g2"]))
    return x


@register(
    "ei",
    kind="sde",
    order=1,
    strong_order=1.0,
    nfe_per_step=1,
    family="SDE",
    paper="Chen et al. 2023 (DDPM-type exponential integrator)",
    order_grid="uniform",
)
def ei(model, x, grid, sde, noise):
    """Exponential integrator with the score frozen at the left point, linear part solved exactly.

    x_{i+1} = (alpha_{i+1}/alpha_i) x_i + c_i s(x_i, t_i) + sigma_{i+1} sqrt(expm1(2 h)) z_i,
    c_i = int_{t_{i+1}}^{t_i} (alpha_{i+1}/alpha_u) g(u)^2 du, h = lambda_{i+1} - lambda_i.
    (The noise variance int (alpha_{i+1}/alpha_u)^2 g^2 du equals sigma_{i+1}^2 expm1(2h).)
    Weak order 1, 1 NFE per step. A step to t = 0 (sigma = 0, h = inf) uses the limit of that variance,
    (alpha_{i+1} sigma_i / alpha_i)^2 - sigma_{i+1}^2 = (alpha_{i+1} sigma_i / alpha_i)^2.
    """
    for i in range(len(grid) - 1):
        s, t = coefficients_at(sde, grid[i]), coefficients_at(sde, grid[i + 1])
        hstep = float(grid[i] - grid[i + 1])
        c_score = ei_score_coeff(sde, s["t"], t["t"])
        if t["sigma"] == 0.0:  # step to sigma = 0: sigma_t^2 expm1(2h) -> (alpha_t sigma_s / alpha_s)^2
            std = t["alpha"] * s["sigma"] / s["alpha"]
        else:
            std = t["sigma"] * math.sqrt(math.expm1(2 * (t["lam"] - s["lam"])))
        x = (x * (t["alpha"] / s["alpha"])).add_(model.score(x, grid[i]) * c_score)
        x = x.add_((noise.dW(i) * std).div_(math.sqrt(hstep)))
    return x


@register("ddpm", kind="sde", order=1, nfe_per_step=1, family="DDPM", paper="Ho, Jain & Abbeel 2020",
          order_nfe=(40, 80, 160))
def ddpm(model, x, grid, sde, noise):
    """Ancestral DDPM: draw x_t from the Gaussian posterior q(x_t | x_s, x_0 = D(x_s, s)), t < s.

    With a_{s|t} = alpha_s/alpha_t and v_{s|t} = sigma_s^2 - a_{s|t}^2 sigma_t^2:
    mean = (alpha_t v_{s|t} / sigma_s^2) x0 + (a_{s|t} sigma_t^2 / sigma_s^2) x_s,
    var  = v_{s|t} sigma_t^2 / sigma_s^2. (Equal to DDIM with eta = 1.) Weak order 1, 1 NFE per step.
    On a grid ending at t = 0 (sigma = 0) the last step is x_next = alpha_0 x0 with no noise (var = 0).
    """
    for i in range(len(grid) - 1):
        s, t = coefficients_at(sde, grid[i]), coefficients_at(sde, grid[i + 1])
        hstep = float(grid[i] - grid[i + 1])
        x0 = model.x0(x, grid[i])
        a_st = s["alpha"] / t["alpha"]
        # v_{s|t} = sigma_s^2 (1 - e^{-2h}) computed without cancellation
        v_st = s["sigma"] ** 2 * -math.expm1(-2 * (t["lam"] - s["lam"]))
        mean = (x0 * (t["alpha"] * v_st / s["sigma"] ** 2)).add_(x * (a_st * t["sigma"] ** 2 / s["sigma"] ** 2))
        std = math.sqrt(v_st) * t["sigma"] / s["sigma"]
        x = mean.add_((noise.dW(i) * std).div_(math.sqrt(hstep)))
    return x
