"""The feature classifier of the image metrics (:mod:`sdebench.metrics.images`): training."""

from __future__ import annotations

import torch
from torch import nn

from sdebench.problems.classifier import Classifier

__all__ = ["train_classifier"]


def train_classifier(data, epochs: int = 30, batch: int = 64, lr: float = 2e-3, seed: int = 0) -> tuple:
    """Train on ``data.train`` (with small Gaussian pixel noise as augmentation); returns (model, accuracy
    on ``data.test``)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = Classifier(channels=data.shape[0], classes=int(data.train_labels.max()) + 1)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    n = len(data.train)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            x = data.train[idx] + 0.05 * torch.randn(data.train[idx].shape, generator=g)
            loss = nn.functional.cross_entropy(clf(x), data.train_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    clf.eval()
    with torch.no_grad():
        acc = float((clf(data.test).argmax(1) == data.test_labels).double().mean())
    return clf, acc
