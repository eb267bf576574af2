"""Third-party plugins: solvers, problems and metrics registered through entry points.

A package adds to sdebench by declaring entry points in its ``pyproject.toml``; nothing in sdebench lists
it. The three groups and what their entry points must load:

``sdebench.solvers``
    a module whose import registers solvers with :func:`sdebench.solvers.register`, a solver function
    decorated with it (importing its module registered it), or a function taking no arguments that
    registers them when called. Loaded once, when the solver registry loads (importing
    ``sdebench.solvers``). The entry point's name only names the plugin in messages.
``sdebench.problems``
    the entry point's name is the problem name; it loads a function taking no arguments that returns the
    problem (a :class:`sdebench.problems.GaussianMixture`, or any object with its interface), the same
    contract as :func:`sdebench.problems.register_problem`. The name is registered when
    ``sdebench.problems`` is imported; the plugin is imported and the factory called only when the
    problem is built (``get_problem``, or its description in ``sdebench list problems``).
``sdebench.metrics``
    the entry point's name is the metric name; it loads an object with ``description`` (one line, shown
    by ``sdebench list metrics``) and ``compute(x, target, seed) -> float``: ``x`` the float64 (n, d) CPU
    samples, ``target`` the law they are judged against (a GaussianMixture at the cell's reference time),
    ``seed`` the cell seed. Today this is a *sample* metric of the analytic (mixture) problems only: the
    row gets ``<name>`` and ``<name>_null`` (the same function on an exact target sample of the same n).
    Image problems, exact-Gaussian and density metrics do not call plugins. Loaded once, when
    ``sdebench.run`` is imported.

A plugin that fails to load, or that claims a name already taken, is skipped and reported as one line
on stderr naming the plugin and the reason; it never stops the CLI. Built-in names always win.
"""

from __future__ import annotations

import functools
import sys
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

from sdebench.errors import ConfigError

__all__ = ["GROUPS", "plugin_entry_points", "describe_entry_point", "report", "load_solver_plugins",
           "load_problem_plugins", "load_metric_plugins", "PluginProblem"]

GROUPS = ("sdebench.solvers", "sdebench.problems", "sdebench.metrics")


@functools.lru_cache(maxsize=1)
def _installed_entry_points():
    return entry_points()  # one scan of the installed distributions for the three groups


def plugin_entry_points(group: str) -> list[EntryPoint]:
    """The installed entry points of ``group``, sorted by name (deterministic registration order)."""
    return sorted(_installed_entry_points().select(group=group), key=lambda ep: (ep.name, ep.value))


def describe_entry_point(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f" from {dist.metadata['Name']} {dist.version}" if dist is not None else ""
    return f"{ep.group} plugin {ep.name!r} ({ep.value}{where})"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def report(ep: EntryPoint, reason) -> None:
    """One line on stderr: which plugin was skipped and why."""
    why = _one_line(reason) if isinstance(reason, BaseException) else reason
    print(f"sdebench: skipped {describe_entry_point(ep)}: {why}", file=sys.stderr)


# ---- solvers ------------------------------------------------------------------------------------------
def load_solver_plugins(solvers: dict) -> list[str]:
    """Load every ``sdebench.solvers`` entry point into ``solvers`` (the registry); returns the names added.

    A plugin whose import or registration fails adds nothing (its partial registrations are removed)."""
    added: list[str] = []
    for ep in plugin_entry_points("sdebench.solvers"):
        before = set(solvers)
        try:
            obj = ep.load()
            registered = any(spec.fn is obj for spec in solvers.values())
            if callable(obj) and not isinstance(obj, (ModuleType, type)) and not registered:
                obj()
        except Exception as exc:
            for name in set(solvers) - before:
                del solvers[name]
            report(ep, exc)
            continue
        new = sorted(set(solvers) - before)
        if not new and not registered:
            report(ep, "it registered no solver (point it at a module that calls sdebench.solvers.register, "
                       "or at a function taking no arguments that does)")
        added.extend(new)
    return added


# ---- problems -----------------------------------------------------------------------------------------
class PluginProblem:
    """Zero-argument factory of a plugin problem: imports the plugin on first use."""

    def __init__(self, ep: EntryPoint):
        self.ep = ep
        self.__module__ = ep.value.split(":")[0]

    def __call__(self):
        try:
            factory = self.ep.load()
            return factory()
        except Exception as exc:
            raise ConfigError(f"problem {self.ep.name!r}: {describe_entry_point(self.ep)} failed: "
                              f"{_one_line(exc)}") from exc

    def __repr__(self) -> str:
        return f"PluginProblem({self.ep.value!r})"


def load_problem_plugins(problems: dict) -> list[str]:
    """Register every ``sdebench.problems`` entry point in ``problems`` (name -> factory) without importing it."""
    added: list[str] = []
    for ep in plugin_entry_points("sdebench.problems"):
        if ep.name in problems:
            old = problems[ep.name]
            owner = describe_entry_point(old.ep) if isinstance(old, PluginProblem) else \
                f"the built-in problem from {getattr(getattr(old, 'build', old), '__module__', '?')}"
            report(ep, f"problem name {ep.name!r} is already registered by {owner}")
            continue
        problems[ep.name] = PluginProblem(ep)
        added.append(ep.name)
    return added


# ---- metrics ------------------------------------------------------------------------------------------
def load_metric_plugins(descriptions: dict) -> dict:
    """Load every ``sdebench.metrics`` entry point; returns name -> metric object and adds each name's
    description to ``descriptions`` (the metric table of ``sdebench list``)."""
    metrics: dict = {}
    for ep in plugin_entry_points("sdebench.metrics"):
        if ep.name in descriptions:
            owner = describe_entry_point(metrics[ep.name].ep) if ep.name in metrics else "a built-in metric"
            report(ep, f"metric name {ep.name!r} is already registered by {owner}")
            continue
        try:
            obj = ep.load()
            if not callable(getattr(obj, "compute", None)):
                raise TypeError("the loaded object has no compute(x, target, seed) method")
            desc = " ".join(str(getattr(obj, "description", "") or "").split())
        except Exception as exc:
            report(ep, exc)
            continue
        metrics[ep.name] = _Metric(ep, obj)
        descriptions[ep.name] = f"{desc} [plugin {ep.value}]".strip()
    return metrics


class _Metric:
    def __init__(self, ep: EntryPoint, obj):
        self.ep, self.obj = ep, obj

    def compute(self, x, target, seed: int) -> float:
        return float(self.obj.compute(x, target, seed))
