"""Time grids from T down to t_end: explicit float64 tensors with ``steps + 1`` points, both ends included.

Every schedule is t_i = phi(i / steps) for a fixed monotone phi, so the grid for N steps is a subset
of the grid for kN steps: Brownian increments on a coarse grid are exact sums of the fine grid's,
which is what common random numbers across step counts need.

``file:PATH`` names a grid saved by ``sdebench tune`` (a JSON file with the grid ``t`` and the SDE, solver,
NFE and steps it was tuned for); a cell whose SDE, steps, ends or solver differ is a one-line ConfigError.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .errors import ConfigError
from .sde import ForwardSDE

__all__ = ["SCHEDULES", "make_grid", "get_schedule", "FILE_PREFIX", "load_grid_file", "check_grid_solver"]


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


FILE_PREFIX = "file:"


def load_grid_file(schedule: str) -> dict:
    """The JSON of a ``file:PATH`` schedule (a grid saved by ``sdebench tune``), its ``t`` checked: a list of
    at least two finite, strictly decreasing times. Bad files are a one-line ConfigError naming the path."""
    path = schedule[len(FILE_PREFIX):] if schedule.startswith(FILE_PREFIX) else schedule
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"grid file {path!r} (schedule {schedule!r}) does not exist")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"grid file {path!r} is not valid JSON: {exc}") from None
    t = data.get("t") if isinstance(data, dict) else None
    if (not isinstance(t, list) or len(t) < 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                          and math.isfinite(v) for v in t)
            or any(b >= a for a, b in zip(t[:-1], t[1:]))):
        raise ConfigError(f"grid file {path!r} needs 't': a list of at least 2 finite, strictly decreasing times")
    for key in ("sde", "solver"):
        if not isinstance(data.get(key), str):
            raise ConfigError(f"grid file {path!r} needs {key!r} (the {key.upper()} it was tuned for)")
    return data


def _file_schedule(schedule: str):
    def grid(sde: ForwardSDE, steps: int, t_end: float) -> torch.Tensor:
        data = load_grid_file(schedule)
        path = schedule[len(FILE_PREFIX):]
        t = data["t"]
        if data["sde"] != sde.name:
            raise ConfigError(f"grid file {path!r} was tuned for SDE {data['sde']!r}, not {sde.name!r}")
        if len(t) - 1 != steps:
            raise ConfigError(f"grid file {path!r} has {len(t) - 1} steps (solver {data['solver']}, NFE "
                              f"{data.get('nfe')}), the cell needs {steps}")
        if abs(t[0] - sde.T) > 1e-12 * max(1.0, sde.T) or abs(t[-1] - t_end) > 1e-12 * max(1.0, t_end):
            raise ConfigError(f"grid file {path!r} runs from T={t[0]:g} to t_end={t[-1]:g}, the cell from "
                              f"T={sde.T:g} to t_end={t_end:g}")
        return torch.tensor(t, dtype=torch.float64)

    return grid


def check_grid_solver(schedule: str, solver: str, nfe: int | None = None) -> None:
    """For a ``file:`` schedule: the solver (and NFE, when given) must be those the grid was tuned for."""
    if not str(schedule).startswith(FILE_PREFIX):
        return
    data = load_grid_file(schedule)
    path = schedule[len(FILE_PREFIX):]
    if data["solver"] != solver:
        raise ConfigError(f"grid file {path!r} was tuned for solver {data['solver']!r}, not {solver!r}")
    if nfe is not None and data.get("nfe") is not None and int(data["nfe"]) != int(nfe):
        raise ConfigError(f"grid file {path!r} was tuned for NFE {data['nfe']}, not {nfe}")


def get_schedule(name: str):
    if isinstance(name, str) and name.startswith(FILE_PREFIX):
        load_grid_file(name)  # a missing or malformed file is reported when the request is validated
        return _file_schedule(name)
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}, file:GRID.json")
    return SCHEDULES[name][0]


def make_grid(sde: ForwardSDE, steps: int, t_end: float, schedule: str = "uniform") -> torch.Tensor:
    """The time grid T = t_0 > t_1 > ... > t_steps = t_end as a float64 tensor."""
    fn = get_schedule(schedule)
    _check(sde, steps, t_end)
    grid = fn(sde, int(steps), float(t_end))
    if not str(schedule).startswith(FILE_PREFIX):
        grid[0], grid[-1] = sde.T, float(t_end)  # pin both ends exactly
    if not bool((grid[1:] < grid[:-1]).all()):
        raise ConfigError(f"schedule {schedule!r} produced a non-decreasing grid for {steps} steps")
    return grid
