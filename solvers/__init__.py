"""Solver registry. ``get_solver(name)`` returns a :class:`SolverSpec`; ``SOLVERS`` maps names to specs.

Adding a solver: write one function with the shared signature in a module listed in ``MODULES`` and
decorate it with :func:`register`; add its order test.
"""

from __future__ import annotations

import importlib

from .base import SOLVERS, SolverSpec, get_solver, register

__all__ = ["SOLVERS", "SolverSpec", "get_solver", "register", "MODULES"]

# one module per family; each registers its solvers on import
MODULES = ["reverse_sde", "ode", "dpm_solver", "srk", "consistency", "backends", "unipc", "ipndm", "langevin",
           "edm_sde"]

_loaded = False


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for mod in MODULES:
        importlib.import_module(f"{__name__}.{mod}")
    _loaded = True


_load_all()
