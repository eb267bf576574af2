"""Stochastic Runge-Kutta for the reverse SDE (additive noise): Roessler's SRA1, strong order 1.5.

In reverse time s = T - t the reverse SDE reads dx = a(s, x) ds + b(s) dW with
a(s, x) = -[f(t) x - g(t)^2 score(x, t)] and b(s) = g(t), t = T - s: the noise is additive, so a
Runge-Kutta scheme that also uses the iterated integral I_(1,0) = int (W_u - W_{s_n}) du reaches
strong order 1.5. The pair (dW, I_(1,0)) is drawn jointly by the noise source
(``noise.dW_I(i)`` returns dW and I = int (u - s_n) dW_u, and I_(1,0) = h dW - I).
"""

from __future__ import annotations

import math

from ._common import coefficients_at, reverse_sde_drift
from .base import register


@register(
    "srk",
    kind="sde",
    order=2,
    strong_order=1.5,
    nfe_per_step=2,
    family="SDE (stochastic Runge-Kutta)",
    paper="Roessler 2010 (SRA1, SIAM J. Numer. Anal.)",
    order_grid="uniform",
)
def srk(model, x, grid, sde, noise):
    """SRA1 stochastic Runge-Kutta for additive noise. Strong order 1.5, weak order 2; 2 NFE per step.

    With h = t_i - t_{i+1}, reverse time s_n, dW the Brownian increment and J = I_(1,0)/h:
        H = x + (3/4) h a(s_n, x) + (3/2) b(s_n + h) J
        x' = x + h [a(s_n, x)/3 + 2 a(s_n + 3h/4, H)/3] + b(s_n + h) (dW - J) + b(s_n) J
    The drift is evaluated at t_i and t_i - 3h/4 only (never at t_{i+1}), so a grid ending at t = 0 needs
    nothing special.
    """
    for i in range(len(grid) - 1):
        t0, t1 = float(grid[i]), float(grid[i + 1])
        h = t0 - t1
        b0 = math.sqrt(coefficients_at(sde, t0)["g2"])
        b1 = math.sqrt(coefficients_at(sde, t1)["g2"])
        dW, I = noise.dW_I(i)
        J = dW - I / h  # I_(1,0) / h
        a0 = -reverse_sde_drift(model, sde, x, grid[i])
        H = x + 0.75 * h * a0 + 1.5 * b1 * J
        a1 = -reverse_sde_drift(model, sde, H, t0 - 0.75 * h)
        x = x + h * (a0 / 3.0 + 2.0 * a1 / 3.0) + b1 * (dW - J) + b0 * J
    return x
