"""Probability-flow ODE solvers in t: Euler, Heun, and DDIM (eta in [0, 1]).

Conventions: the grid runs T = t_0 > t_1 > ... > t_N = t_end; h_i = t_i - t_{i+1} > 0; the
probability-flow velocity is v(x, t) = f(t) x - g(t)^2 / 2 * score(x, t); lambda = log(alpha/sigma).
"""

from __future__ import annotations

from sdebench.errors import ConfigError

from ._common import coefficients_at, expm1, pf_drift, sqrt, step_size
from .base import Rule, register


@register("euler", kind="ode", order=1, nfe_per_step=1, family="ODE", paper="Song et al. 2021 (probability flow)",
          differentiable_grid=True)
def euler(model, x, grid, sde, noise):
    """Euler on the probability-flow ODE: x_{i+1} = x_i - h_i v(x_i, t_i). Order 1, 1 NFE per step.

    The model is only evaluated at the left point of each step, so a grid ending at t = 0 (sigma = 0)
    needs nothing special."""
    for i in range(len(grid) - 1):
        h = step_size(grid, i)
        x = x - pf_drift(model, sde, x, grid[i]).mul_(h)
    return x


def _heun_nfe(steps, grid):
    last_to_zero = grid is not None and float(grid[-1]) == 0.0
    return 2 * steps - (1 if last_to_zero else 0)


@register(
    "heun",
    kind="ode",
    order=2,
    nfe_per_step=2,
    family="ODE",
    paper="Karras et al. 2022 (EDM, Alg. 1)",
    nfe_for_steps=_heun_nfe,
    differentiable_grid=True,
)
def heun(model, x, grid, sde, noise):
    """Heun (explicit trapezoid) on the probability-flow ODE, EDM style. Order 2, 2 NFE per step.

    d_i = v(x_i, t_i);  x~ = x_i - h_i d_i;  x_{i+1} = x_i - h_i (d_i + v(x~, t_{i+1})) / 2.
    If the grid ends at t = 0 the last step is plain Euler (the velocity is singular there), so N
    steps cost 2N - 1 NFE on such a grid.
    """
    for i in range(len(grid) - 1):
        h = step_size(grid, i)
        d = pf_drift(model, sde, x, grid[i])
        x_pred = x - h * d
        if grid[i + 1] == 0.0:
            x = x_pred
            continue
        d2 = pf_drift(model, sde, x_pred, grid[i + 1])
        x = x - 0.5 * h * (d + d2)
    return x


def per_step_values(value, steps: int, solver: str, name: str) -> list:
    """A per-step option as ``steps`` values: a scalar repeated (the very same float each step), or a
    sequence of exactly ``steps`` values (``SolverSpec.per_step`` options)."""
    if isinstance(value, (list, tuple)):
        if len(value) != steps:
            raise ConfigError(f"{solver} {name} has {len(value)} per-step values, the grid has {steps} steps")
        return list(value)
    return [value] * steps


@register("ddim", kind="ode", order=1, nfe_per_step=1, family="DDIM", paper="Song, Meng & Ermon 2021 (DDIM)",
          deterministic=Rule("iff eta = 0", lambda o: o["eta"] == 0), differentiable_grid=True,
          per_step=("eta",))
def ddim(model, x, grid, sde, noise, eta: float = 0.0):
    """DDIM: x_t = alpha_t x0 + sqrt(sigma_t^2 - s^2) eps + s z, s = eta sigma_t sqrt(1 - e^{-2h}).

    From s = t_i to t = t_{i+1} with h = lambda_t - lambda_s, x0 = D(x_s, s) and
    eps = (x_s - alpha_s x0) / sigma_s. eta = 0 is the deterministic probability-flow
    discretization (identical to DPM-Solver-1); eta = 1 is ancestral DDPM sampling. z is the
    normalized Brownian increment dW / sqrt(t_i - t_{i+1}). Order 1 (weak order 1 for eta > 0),
    1 NFE per step. On a grid ending at t = 0 (sigma = 0) the last step is x_next = alpha_0 x0 (sigma_t = 0
    removes the eps and noise terms): the data prediction, as in diffusers. ``eta`` may be a sequence of
    one value per step (eta_i on the step from t_i to t_{i+1}).
    """
    etas = per_step_values(eta, len(grid) - 1, "ddim", "eta")
    for e in etas:
        if not (0.0 <= e <= 1.0):
            raise ConfigError(f"ddim eta must lie in [0, 1], got {e}")
    if max(etas, default=0.0) > 0 and noise is None:
        raise ValueError("ddim with eta > 0 needs a NoiseSource")
    for i in range(len(grid) - 1):
        eta = etas[i]
        s, t = coefficients_at(sde, grid[i]), coefficients_at(sde, grid[i + 1])
        x0 = model.x0(x, grid[i])
        eps = (x - x0 * s["alpha"]).div_(s["sigma"])
        h = t["lam"] - s["lam"]
        s_noise = eta * t["sigma"] * sqrt(-expm1(-2 * h))
        x = (x0 * t["alpha"]).add_(eps.mul_(sqrt(t["sigma"] ** 2 - s_noise**2)))
        if eta > 0:  # z = dW / sqrt(h) is a standard normal: it does not depend on the grid
            x = x + s_noise * noise.dW(i) / sqrt(step_size(grid.detach(), i))
    return x
