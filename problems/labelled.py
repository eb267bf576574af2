"""Labelled Gaussian mixtures: class-conditional scores and the exact classifier, for every SDE.

A labelled mixture is a :class:`GaussianMixture` whose components carry class labels
(``GaussianMixture.labels``, one integer per component; JSON/TOML targets give them as ``labels``).
Class c owns the components K_c = {k : label_k = c}, so

    p_t(x | c) = sum_{k in K_c} (w_k / W_c) N(x; alpha_t mu_k, C_k),    W_c = sum_{k in K_c} w_k = p(c)
    p_t(x)     = sum_k w_k N(x; alpha_t mu_k, C_k)                       (the unconditional marginal)
    log p_t(c | x) = logsumexp_{k in K_c}(log w_k + log N_k) - logsumexp_k(log w_k + log N_k)
    grad log p_t(c | x) = grad log p_t(x | c) - grad log p_t(x)         (Bayes; p(c) is constant in x)

The conditional score is the score of the sub-mixture of class c (weights renormalized), so all the
closed forms of :mod:`sdebench.problems.gmm` (x0, eps, score, marginals, exact samples, 1-D
projections) apply to it unchanged; :meth:`LabelledMixture.class_mixture` returns it.
"""

from __future__ import annotations

import torch

from sdebench.errors import ConfigError

from .gmm import GaussianMixture
from .presets import gmm2d_ring8

__all__ = ["LabelledMixture", "labelled", "LABELLED_PRESETS", "gmm2d_ring8_labelled", "gmm2d_ring8_labelled4"]


class LabelledMixture:
    """Class-conditional closed forms of a labelled :class:`GaussianMixture` (a view, no copy)."""

    def __init__(self, mixture: GaussianMixture):
        if getattr(mixture, "labels", None) is None:
            name = getattr(mixture, "name", "?")
            raise ConfigError(
                f"problem {name!r} has no class labels; guidance needs a labelled target "
                f"(e.g. gmm2d-ring8-labelled, or 'labels' in a JSON/TOML target)"
            )
        labels = mixture.labels
        if labels.numel() != mixture.K:
            raise ConfigError(f"target {mixture.name!r} has {labels.numel()} labels for {mixture.K} components")
        self.mixture = mixture
        self.labels = labels
        self.classes: list[int] = sorted(int(c) for c in torch.unique(labels))
        self._sub: dict[int, GaussianMixture] = {}

    # ---- classes -------------------------------------------------------------------------------
    def check_class(self, c) -> int:
        """Return ``c`` as an int, or raise a one-line ConfigError naming it and the valid classes."""
        try:
            ci = int(c)
        except (TypeError, ValueError):
            raise ConfigError(f"class label must be an integer, got {c!r}") from None
        if isinstance(c, float) and ci != c:
            raise ConfigError(f"class label must be an integer, got {c!r}")
        if ci not in self.classes:
            raise ConfigError(
                f"class {c!r} is not in target {self.mixture.name!r}; valid classes: "
                f"{', '.join(str(k) for k in self.classes)}"
            )
        return ci

    def components(self, c: int) -> torch.Tensor:
        """Indices of the components of class c."""
        return torch.nonzero(self.labels == self.check_class(c)).reshape(-1)

    def class_weight(self, c: int) -> float:
        """p(c) = total weight of the components of class c."""
        return float(self.mixture.weights[self.components(c)].sum())

    def class_mixture(self, c: int) -> GaussianMixture:
        """p_0(x | c) as a GaussianMixture: the components of class c with renormalized weights."""
        c = self.check_class(c)
        if c not in self._sub:
            idx = self.components(c)
            m = self.mixture
            w = m.weights[idx]
            self._sub[c] = GaussianMixture(
                w / w.sum(), m.means[idx], m.covs[idx], name=f"{m.name}|c={c}", labels=[c] * len(idx),
                description=f"class {c} of {m.name}",
            )
        return self._sub[c]

    # ---- closed forms at (x, t) ----------------------------------------------------------------
    def log_posterior(self, x: torch.Tensor, t, sde) -> torch.Tensor:
        """log p_t(c | x) for every class, shape (n, n_classes), columns in the order of ``classes``."""
        *_, logits = self.mixture._core(x, t, sde)  # (n, K): log w_k + log N_k(x)
        total = torch.logsumexp(logits, dim=-1, keepdim=True)
        cols = []
        for c in self.classes:
            idx = torch.nonzero(self.labels == c).reshape(-1).to(logits.device)
            cols.append(torch.logsumexp(logits[:, idx], dim=-1, keepdim=True))
        return torch.cat(cols, dim=-1) - total

    def predict_class(self, x: torch.Tensor, t, sde) -> torch.Tensor:
        """Bayes classifier argmax_c p_t(c | x), as class labels (n,)."""
        lp = self.log_posterior(x, t, sde)
        return torch.as_tensor(self.classes, dtype=torch.long)[lp.argmax(dim=-1).cpu()]

    def unconditional_score(self, x, t, sde) -> torch.Tensor:
        """grad log p_t(x)."""
        return self.mixture.score(x, t, sde)

    def conditional_score(self, x, t, sde, c: int) -> torch.Tensor:
        """grad log p_t(x | c): the score of the class-c sub-mixture."""
        return self.class_mixture(c).score(x, t, sde)

    def conditional_eps(self, x, t, sde, c: int) -> torch.Tensor:
        return self.class_mixture(c).eps(x, t, sde)

    def classifier_grad(self, x, t, sde, c: int) -> torch.Tensor:
        """grad log p_t(c | x) = grad log p_t(x | c) - grad log p_t(x)."""
        return self.conditional_score(x, t, sde, c) - self.unconditional_score(x, t, sde)


def labelled(problem) -> LabelledMixture:
    """The labelled view of ``problem``; a one-line ConfigError if it carries no labels."""
    if isinstance(problem, LabelledMixture):
        return problem
    if not isinstance(problem, GaussianMixture):
        raise ConfigError(
            f"problem {getattr(problem, 'name', problem)!r} is not a labelled Gaussian mixture; "
            f"guidance needs closed-form class scores"
        )
    return LabelledMixture(problem)


LABELLED_DESCRIPTIONS = {
    "gmm2d-ring8-labelled": "gmm2d-ring8 with 2 classes: mode k has label k mod 2 (alternating around the ring)",
    "gmm2d-ring8-labelled4": "gmm2d-ring8 with 4 classes: mode k has label k mod 4 (each class = 2 opposite modes)",
}


def gmm2d_ring8_labelled() -> GaussianMixture:
    m = gmm2d_ring8(labels=2)
    m.name = "gmm2d-ring8-labelled"
    m.description = LABELLED_DESCRIPTIONS["gmm2d-ring8-labelled"]
    return m


def gmm2d_ring8_labelled4() -> GaussianMixture:
    m = gmm2d_ring8(labels=4)
    m.name = "gmm2d-ring8-labelled4"
    m.description = LABELLED_DESCRIPTIONS["gmm2d-ring8-labelled4"]
    return m


LABELLED_PRESETS = {
    "gmm2d-ring8-labelled": gmm2d_ring8_labelled,
    "gmm2d-ring8-labelled4": gmm2d_ring8_labelled4,
}

# discovered by sdebench.problems (see problems/presets.py)
ORDER = 20
ENTRIES = {name: (build, LABELLED_DESCRIPTIONS[name]) for name, build in LABELLED_PRESETS.items()}
