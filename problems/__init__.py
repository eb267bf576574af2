"""Problems: targets a sampler is judged against. ``get_problem(name_or_path)``; ``PROBLEMS`` lists presets.

Each ``PROBLEMS`` entry is a :class:`ProblemEntry`: name, one-line description and builder. Calling the
entry builds the problem; ``describe(name)`` reads the description without building anything (the
image problems' descriptions come from their checkpoint's small JSON config, never from the weights or
the data), so ``sdebench list`` loads neither scikit-learn nor the U-Net.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdebench.errors import ConfigError
from sdebench.plugins import load_problem_plugins

from .files import load_target
from .gmm import GaussianMixture
from .network import DiscreteVP, NetworkProblem, diffusers_unet, from_network, is_factory_spec, load_factory

__all__ = ["GaussianMixture", "PROBLEMS", "ProblemEntry", "describe", "get_problem", "load_target",
           "register_problem", "from_network", "diffusers_unet", "NetworkProblem", "DiscreteVP", "register_network",
           "problem_name"]


@dataclass(frozen=True)
class ProblemEntry:
    """A named problem: ``description`` is a string or a cheap zero-argument callable returning one;
    ``build`` makes the problem (``entry()`` is ``entry.build()``)."""

    name: str
    build: Callable
    description: str | Callable[[], str] = ""

    def __call__(self):
        return self.build()

    def describe(self) -> str:
        d = self.description
        return d() if callable(d) else d


# name -> ProblemEntry; other modules and tests add entries with register_problem
PROBLEMS: dict[str, ProblemEntry] = {}


def register_problem(name: str, factory: Callable, description: str | Callable[[], str] = "") -> None:
    PROBLEMS[name] = ProblemEntry(name, factory, description)


def problem_modules() -> list:
    """The modules of this package that define problems: each with ``ENTRIES`` (name -> (builder,
    description)), ordered by its module-level ``ORDER`` (then name). A new problem module is one file."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            if isinstance(getattr(module, "ENTRIES", None), dict):
                found.append(module)
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


for _module in problem_modules():
    for _name, (_build, _description) in _module.ENTRIES.items():
        register_problem(_name, _build, _description)


def get_problem(name: str):
    if name in PROBLEMS:
        return PROBLEMS[name]()
    if not isinstance(name, str):
        raise ConfigError(f"a problem is named by a string, got {type(name).__name__} (register a network problem "
                          "with problem.register() or pass it where a problem object is accepted)")
    if name.endswith((".json", ".toml")) or Path(name).is_file():
        return load_target(name)
    if is_factory_spec(name):  # pkg.module:factory, a zero-argument callable returning a problem
        return load_factory(name)
    raise ConfigError(f"unknown problem {name!r}; valid: {', '.join(PROBLEMS)}, a .json/.toml target file or "
                      "pkg.module:factory")


_NETWORKS: set = set()  # names registered by register_network (a later network may take such a name over)


def register_network(problem, name: str | None = None) -> str:
    """Register a problem object (e.g. from :func:`from_network`) under ``name`` (default ``problem.name``) for
    this process, so that cells, sweeps and :func:`sdebench.benchmark` can name it; returns the name. A name of
    a built-in problem is refused; a name registered by an earlier call is taken over."""
    name = str(problem.name if name is None else name)
    if name in PROBLEMS and name not in _NETWORKS:
        raise ConfigError(f"problem name {name!r} is taken by a built-in problem; pass name='...'")
    problem.name = name
    _NETWORKS.add(name)
    register_problem(name, lambda: problem, getattr(problem, "description", ""))
    return name


def problem_name(problem) -> str:
    """A problem's name for a cell: a string is returned as is; a problem object is registered
    (:func:`register_network`) under its name."""
    return problem if isinstance(problem, str) else register_network(problem)


def describe(name: str) -> str:
    """The one-line description of a registered problem, without building it."""
    try:
        return PROBLEMS[name].describe()
    except (ConfigError, OSError, ValueError, KeyError) as exc:  # a problem whose files are missing still gets listed
        return f"(unavailable: {exc})"


def _plugin_description(factory) -> str:
    """A plugin problem's description: plugins state it on the problem, so describing one builds it."""
    return getattr(factory(), "description", "")


def _load_plugins() -> None:  # third-party problems: entry points in the group sdebench.problems
    found = dict(PROBLEMS)
    for name in load_problem_plugins(found):  # registers names only; the plugin is imported when built
        register_problem(name, found[name], functools.partial(_plugin_description, found[name]))


_load_plugins()
