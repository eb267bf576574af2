"""Problems: targets a sampler is judged against. ``get_problem(name_or_path)``; ``PROBLEMS`` lists presets."""

from __future__ import annotations

from pathlib import Path

from sdebench.errors import ConfigError

from .files import load_target
from .gmm import GaussianMixture
from .labelled import LABELLED_PRESETS
from .presets import PRESETS

__all__ = ["GaussianMixture", "PROBLEMS", "get_problem", "load_target", "register_problem"]

# name -> zero-argument factory; other modules (image problems, labelled mixtures) add entries
PROBLEMS: dict = dict(PRESETS)
PROBLEMS.update(LABELLED_PRESETS)


def register_problem(name: str, factory) -> None:
    PROBLEMS[name] = factory


def get_problem(name: str):
    if name in PROBLEMS:
        return PROBLEMS[name]()
    if name.endswith((".json", ".toml")) or Path(name).is_file():
        return load_target(name)
    raise ConfigError(f"unknown problem {name!r}; valid: {', '.join(PROBLEMS)} or a .json/.toml target file")


def describe(name: str) -> str:
    try:
        return getattr(PROBLEMS[name](), "description", "")
    except Exception as exc:  # a problem whose data is missing still gets listed
        return f"(unavailable: {exc})"


def _digits():  # image problem (problems/images.py), built on first use; needs the `images` extra
    from .images import digits_problem

    return digits_problem()


register_problem("digits", _digits)


def _digits_cd():  # digits with a distilled consistency U-Net (problems/data/digits_consistency.*)
    from .images import digits_cd_problem

    return digits_cd_problem()


register_problem("digits-cd", _digits_cd)


def _load_plugins() -> None:  # third-party problems: entry points in the group sdebench.problems
    from sdebench.plugins import load_problem_plugins

    load_problem_plugins(PROBLEMS)


_load_plugins()
