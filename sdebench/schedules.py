"""Time grids from T down to t_end: explicit float64 tensors with ``steps + 1`` points, both ends included.

Every schedule is t_i = phi(i / steps) for a fixed monotone phi, so the grid for N steps is a subset
of the grid for kN steps: Brownian increments on a coarse grid are exact sums of the fine grid's,
which is what common random numbers across step counts need.
"""

from __future__ import annotations

import torch

from .errors import ConfigError
from .sde import ForwardSDE

__all__ = ["SCHEDULES", "make_grid", "get_schedule"]


def _check(sde: ForwardSDE, steps: int, t_end: float):
    if int(steps) != steps or steps < 1:
        raise ConfigError(f"steps must be a positive integer, got {steps}")
    if not (0 < t_end < sde.T):
        raise ConfigError(f"t_end must lie in (0, T) = (0, {sde.T:g}), got {t_end}")


def uniform(sde: ForwardSDE, steps: int, t_end: float) -> torch.Tensor:
    """Uniform in t."""
    u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    return sde.T + (t_end - sde.T) * u


def logsnr(sde: ForwardSDE, steps: int, t_end: float) -> torch.Tensor:
    """Uniform in lambda = log(alpha/sigma) (DPM-Solver's default 'logSNR' grid)."""
    u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    lam_T = sde.lambda_(torch.tensor(sde.T, dtype=torch.float64))
    lam_e = sde.lambda_(torch.tensor(t_end, dtype=torch.float64))
    t = sde.t_of_lambda(lam_T + (lam_e - lam_T) * u)
    t[0], t[-1] = sde.T, t_end  # pin the ends exactly
    return t


def karras(sde: ForwardSDE, steps: int, t_end: float, rho: float = 7.0) -> torch.Tensor:
    """EDM/Karras: uniform in sigma^(1/rho) with sigma = sigma_t / alpha_t = e^-lambda, rho = 7."""
    u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    s_max = torch.exp(-sde.lambda_(torch.tensor(sde.T, dtype=torch.float64)))
    s_min = torch.exp(-sde.lambda_(torch.tensor(t_end, dtype=torch.float64)))
    s = (s_max ** (1 / rho) + u * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    t = sde.t_of_lambda(-torch.log(s))
    t[0], t[-1] = sde.T, t_end
    return t


def quadratic(sde: ForwardSDE, steps: int, t_end: float) -> torch.Tensor:
    """Quadratic in t (DDIM's 'quad'): points dense near t_end, t_i - t_end proportional to (1 - i/N)^2."""
    u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    return t_end + (sde.T - t_end) * (1 - u) ** 2


SCHEDULES = {
    "uniform": (uniform, "uniform in t"),
    "logsnr": (logsnr, "uniform in lambda = log(alpha_t / sigma_t)"),
    "edm": (karras, "Karras et al. sigma^(1/7) spacing, sigma = sigma_t / alpha_t"),
    "quadratic": (quadratic, "quadratic in t, dense near t_end"),
}


def get_schedule(name: str):
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    return SCHEDULES[name][0]


def make_grid(sde: ForwardSDE, steps: int, t_end: float, schedule: str = "uniform") -> torch.Tensor:
    """The time grid T = t_0 > t_1 > ... > t_steps = t_end as a float64 tensor."""
    fn = get_schedule(schedule)
    _check(sde, steps, t_end)
    grid = fn(sde, int(steps), float(t_end))
    grid[0], grid[-1] = sde.T, float(t_end)  # pin both ends exactly
    if not bool((grid[1:] < grid[:-1]).all()):
        raise ConfigError(f"schedule {schedule!r} produced a non-decreasing grid for {steps} steps")
    return grid
