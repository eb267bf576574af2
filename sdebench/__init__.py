"""sdebench: benchmark the numerical solvers of score-based diffusion models against exact ground truth.

Public API (small on purpose)::

    from sdebench import get_sde, make_grid, Model, NoiseSource, get_solver, get_problem, run_cell, CellConfig
    from sdebench import benchmark, check_order   # bring your own solver (sdebench.byos)
"""

from .errors import ConfigError, NFEBudgetError  # noqa: E402
from .model import Model  # noqa: E402
from .noise import NoiseSource  # noqa: E402
from .provenance import __version__  # noqa: E402
from .schedules import make_grid  # noqa: E402
from .sde import get_sde  # noqa: E402


def get_solver(name: str):
    from .solvers import get_solver as _get

    return _get(name)


def get_problem(name: str):
    from .problems import get_problem as _get

    return _get(name)


def __getattr__(name):
    if name in ("run_cell", "CellConfig"):
        from . import run

        return getattr(run, name)
    if name in ("benchmark", "check_order"):
        from . import byos

        return getattr(byos, name)
    raise AttributeError(name)


__all__ = ["__version__", "ConfigError", "NFEBudgetError", "Model", "NoiseSource", "make_grid", "get_sde",
           "get_solver", "get_problem", "run_cell", "CellConfig",
           "benchmark", "check_order"]
