"""Consistency-model samplers (Song et al. 2023): one step, two steps, multistep.

They call the model's consistency function f(x, t) -> x_{t_end} (``Model.consistency``; the problem
supplies it: the exact/ODE oracle for mixtures, a distilled network otherwise). Re-noising from the
current estimate x (a sample at t_end) to time tau uses the exact forward transition from t_end:
x_tau = (alpha_tau / alpha_e) x + sqrt(sigma_tau^2 - (alpha_tau / alpha_e)^2 sigma_e^2) z, so a sample of
p_{t_end} is mapped to a sample of p_tau. z is keyed noise ``noise.normal("consistency", i)``.

A grid ending at t = 0 asks for the consistency function to t_end = 0: the samplers never evaluate the
model at t = 0 themselves; the exact oracle maps to any t_end >= 0 and a distilled network refuses any
t_end but its own (one-line ConfigError).
"""

from __future__ import annotations

import math

from sdebench.errors import ConfigError, NFEBudgetError

from ._common import coefficients_at
from .base import register


def _renoise(x, sde, tau, t_end, z):
    c, e = coefficients_at(sde, tau), coefficients_at(sde, t_end)
    r = c["alpha"] / e["alpha"]
    var = c["sigma"] ** 2 - (r * e["sigma"]) ** 2
    return r * x + math.sqrt(max(var, 0.0)) * z


_NO_ORDER = ("a fixed number of consistency-function evaluations: its error is that of the consistency "
             "function (zero for the oracle), not a function of NFE")


def _only(n: int, name: str):
    def steps(nfe: int) -> int:
        if nfe != n:
            raise NFEBudgetError(f"{name} costs exactly {n} NFE, cannot use NFE={nfe}")
        return n

    return steps


@register("consistency", kind="ode", order=0, nfe_per_step=1, family="consistency",
          paper="Song et al. 2023 (consistency models)", steps_for_nfe=_only(1, "consistency"),
          budget_text="NFE = 1", order_check="none",
          order_note=_NO_ORDER)
def consistency(model, x, grid, sde, noise):
    """One-step consistency sampling: x_end = f(x_T, T). 1 NFE.

    Order: none in the step count (there is one step); its error is that of the consistency function,
    O(dt^p) for a model distilled from a teacher of order p (Song et al. 2023, Thm 1), zero for the oracle.
    """
    return model.consistency(x, grid[0], grid[-1])


@register("consistency-2step", kind="sde", order=0, nfe_per_step=1, family="consistency",
          paper="Song et al. 2023 (consistency models, Alg. 1)", steps_for_nfe=_only(2, "consistency-2step"),
          budget_text="NFE = 2", order_check="none",
          order_note=_NO_ORDER)
def consistency_2step(model, x, grid, sde, noise, t_mid: float = 0.0):
    """Two-step consistency sampling: x = f(x_T, T); x_mid = renoise(x, t_mid); x_end = f(x_mid, t_mid). 2 NFE.

    t_mid = 0 (default) takes the grid's middle point (the schedule's 1-step midpoint). Order: none (fixed
    two evaluations); exact for the oracle.
    """
    t_end = float(grid[-1])
    tau = float(grid[1]) if t_mid == 0.0 else float(t_mid)
    if not (t_end < tau < float(grid[0])):
        raise ConfigError(f"consistency-2step t_mid must lie in (t_end, T) = ({t_end:g}, {float(grid[0]):g}), "
                          f"got {t_mid}")
    x = model.consistency(x, grid[0], t_end)
    x = _renoise(x, sde, tau, t_end, noise.normal("consistency", 1))
    return model.consistency(x, tau, t_end)


@register("consistency-ms", kind="sde", order=0, nfe_per_step=1, family="consistency",
          paper="Song et al. 2023 (multistep consistency sampling, Alg. 1)", order_check="none",
          order_note="each step maps to t_end through the consistency function: the error is that function's, "
                     "not a function of NFE")
def consistency_ms(model, x, grid, sde, noise):
    """Multistep consistency sampling on the grid's points: x = f(x_T, T); for i = 1..N-1:
    x = f(renoise(x, t_i), t_i). N steps, N NFE (1 NFE per step). Order: none (error set by f)."""
    t_end = float(grid[-1])
    x = model.consistency(x, grid[0], t_end)
    for i in range(1, len(grid) - 1):
        x = _renoise(x, sde, float(grid[i]), t_end, noise.normal("consistency", i))
        x = model.consistency(x, grid[i], t_end)
    return x
