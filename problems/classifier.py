"""The feature classifier of an image problem (the Fréchet distance of :mod:`sdebench.metrics.images` works
in its feature space): the network, and its checkpoint (safetensors + JSON with the SHA-256 of the weight
file's bytes), written and loaded with validation. Training: :mod:`sdebench.training.classifier`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from sdebench.errors import ConfigError

from .checkpoint import WEIGHTS_HASH, _load_into, _read_safetensors, expected_hash

__all__ = ["Classifier", "load_classifier", "save_classifier", "CLASSIFIER_FORMAT", "CLASSIFIER_LIMITS"]

CLASSIFIER_FORMAT = "sdebench-classifier-1"
CLASSIFIER_LIMITS = {"channels": (1, 16), "classes": (2, 1000), "width": (1, 256)}


class Classifier(nn.Module):
    def __init__(self, channels: int = 1, classes: int = 10, width: int = 16):
        super().__init__()
        self.config = {"channels": channels, "classes": classes, "width": width}
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * w, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def save_classifier(stem, clf: Classifier, info: dict) -> None:
    """``<stem>.safetensors`` + ``<stem>.json`` (info, format, arch and the SHA-256 of the weight file's bytes)."""
    from safetensors.torch import save

    stem = Path(stem)
    blob = save({k: v.contiguous() for k, v in clf.state_dict().items()})
    Path(str(stem) + ".safetensors").write_bytes(blob)
    cfg = dict(info, format=CLASSIFIER_FORMAT, arch=clf.config)
    cfg[WEIGHTS_HASH] = hashlib.sha256(blob).hexdigest()
    Path(str(stem) + ".json").write_text(json.dumps(cfg, indent=1) + "\n")


def _classifier_arch_error(arch) -> str | None:
    if not isinstance(arch, dict) or set(arch) != set(CLASSIFIER_LIMITS):
        return f"'arch' must be a table of exactly {', '.join(CLASSIFIER_LIMITS)}, got {arch!r}"
    for k, (lo, hi) in CLASSIFIER_LIMITS.items():
        v = arch[k]
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            return f"arch.{k} must be an integer in [{lo}, {hi}], got {v!r}"
    return None


def load_classifier(path) -> Classifier:
    path = Path(path)
    stem = str(path)[: -len(".safetensors")] if str(path).endswith(".safetensors") else str(path)
    jpath = Path(stem + ".json")
    try:
        cfg = json.loads(jpath.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read classifier config {str(jpath)!r}: {exc}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != CLASSIFIER_FORMAT:
        raise ConfigError(f"{str(jpath)!r} is not an {CLASSIFIER_FORMAT} file")
    bad = _classifier_arch_error(cfg.get("arch"))
    if bad:
        raise ConfigError(f"classifier config {str(jpath)!r}: {bad}")
    wpath = Path(stem + ".safetensors")
    if not wpath.is_file():
        raise ConfigError(f"checkpoint file {str(wpath)!r} does not exist")
    tensors = _read_safetensors(wpath, expected_hash(cfg, WEIGHTS_HASH, jpath, wpath), jpath)
    clf = Classifier(**cfg["arch"])
    _load_into(clf, tensors, wpath)
    clf.info = cfg
    return clf.eval()
