"""Solver registry. ``get_solver(name)`` returns a :class:`SolverSpec`; ``SOLVERS`` maps names to specs.

Adding a solver: write one function with the shared signature, decorate it with :func:`register`, and
put it in a module of this package (every public module here except ``base`` is imported when the
registry loads; nothing lists them) or in a separate package that declares an entry point in the group
``sdebench.solvers`` (see :mod:`sdebench.plugins`). tests/test_registry_orders.py then verifies its order.
"""

from __future__ import annotations

import importlib
import pkgutil

from sdebench.plugins import load_solver_plugins

from .base import SOLVERS, SolverSpec, get_solver, register

__all__ = ["SOLVERS", "SolverSpec", "get_solver", "register", "MODULES"]


def _discover() -> tuple[str, ...]:
    """This package's solver modules: every module but ``base`` and private (``_``) ones, sorted."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                        if not m.name.startswith("_") and m.name != "base"))


# the built-in solver modules (computed, read-only); each registers its solvers on import
MODULES: tuple[str, ...] = _discover()

_loaded = False


def _load_all() -> None:
    """Import the built-in solver modules, then the ``sdebench.solvers`` entry points (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in MODULES:
        importlib.import_module(f"{__name__}.{mod}")
    load_solver_plugins(SOLVERS)


_load_all()
