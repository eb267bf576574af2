"""User-defined mixture targets from JSON or TOML files.

Format (JSON shown; TOML uses the same keys)::

    {"weights": [0.5, 0.5],
     "means": [[-1, 0], [1, 0]],
     "covariances": [[[0.1, 0], [0, 0.1]], [[0.1, 0], [0, 0.1]]],
     "labels": [0, 1]}                       # optional class labels, one per component

``covariances`` may also be given as ``stds`` (one isotropic std per component).
"""

from __future__ import annotations

import json
from pathlib import Path

import tomllib
import torch

from sdebench.errors import ConfigError

from .gmm import GaussianMixture


def load_target(path: str | Path) -> GaussianMixture:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"target file {str(p)!r} does not exist")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(p.read_text())
        elif p.suffix.lower() == ".toml":
            data = tomllib.loads(p.read_text())
        else:
            raise ConfigError(f"target file {str(p)!r} must end in .json or .toml")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"target file {str(p)!r} is not valid {p.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"target file {str(p)!r} must hold a table/object with weights, means, covariances")
    missing = [k for k in ("weights", "means") if k not in data]
    if "covariances" not in data and "stds" not in data:
        missing.append("covariances")
    if missing:
        raise ConfigError(f"target file {str(p)!r} is missing {', '.join(missing)}")
    try:
        weights = torch.as_tensor(data["weights"], dtype=torch.float64)
        means = torch.as_tensor(data["means"], dtype=torch.float64)
        if means.ndim == 1:
            means = means[:, None]
        if "covariances" in data:
            covs = torch.as_tensor(data["covariances"], dtype=torch.float64)
        else:
            stds = torch.as_tensor(data["stds"], dtype=torch.float64).reshape(-1)
            covs = torch.diag_embed((stds**2)[:, None].expand(-1, means.shape[-1]))
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"target file {str(p)!r}: arrays are ragged or not numeric ({exc})") from None
    try:
        return GaussianMixture(weights, means, covs, name=str(p), labels=data.get("labels"))
    except ConfigError as exc:
        raise ConfigError(f"target file {str(p)!r}: {exc}") from None
