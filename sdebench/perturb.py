"""Controlled score error: ``--score-error EPS`` as a :class:`~sdebench.model.Model` wrapper.

The perturbed score is

    s_eps(x, t) = s(x, t) + EPS * sqrt(J_t / d) * 1,        J_t = E_{p_t} |s(X, t)|^2  (Fisher information)

i.e. a constant shift along the diagonal direction 1 = (1, ..., 1), scaled so that its relative L2 size
under p_t is exactly EPS at every t:

    E_{p_t} |s_eps - s|^2 / E_{p_t} |s|^2 = EPS^2 * J_t / J_t = EPS^2.

Why this shape: it is the simplest error whose L2(p_t) norm is known in closed form, it keeps the score
affine on Gaussian targets (so the exact output law of every solver stays Gaussian and ``w2_exact`` /
``kl_exact`` still apply) and it biases the output in a fixed direction, so the error it causes is
linear in EPS (the eps_score term of Chen et al. 2023's bound). J_t is exact for a single Gaussian,
J_t = sum_i 1 / (alpha_t^2 l_i + sigma_t^2); for a mixture it is a Monte Carlo average over 4096 fixed
draws of p_t (the same draws at every call; relative accuracy about 1/sqrt(4096) = 1.6%), cached per t.

The perturbation is applied in score space and converted to the kind the solver asks for:
eps' = eps - sigma_t delta and x0' = x0 + sigma_t^2 delta / alpha_t. NFE counting is unchanged: the wrapper
adds no model evaluation (J_t is a property of the target, not a network call).
"""

from __future__ import annotations

import math

import torch

from .errors import ConfigError
from .model import Model

__all__ = ["ScoreErrorModel", "fisher_information", "check_score_error", "perturb_model"]

_FISHER_DRAWS = 4096


def check_score_error(eps) -> float:
    try:
        v = float(eps)
    except (TypeError, ValueError):
        raise ConfigError(f"score error must be a number >= 0, got {eps!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"score error must be a finite number >= 0, got {eps!r}")
    return v


def fisher_information(problem, sde, t: float) -> float:
    """J_t = E_{p_t} |grad log p_t|^2: closed form for a Gaussian, fixed-draw Monte Carlo for a mixture."""
    t64 = torch.tensor(float(t), dtype=torch.float64)
    a2, s2 = float(sde.alpha(t64)) ** 2, float(sde.sigma2(t64))
    if problem.K == 1:
        return float((1.0 / (a2 * problem.eigvals[0] + s2)).sum())
    g = torch.Generator().manual_seed(20_240_401)
    x = problem.sample_t(_FISHER_DRAWS, float(t), sde, generator=g)
    s = problem.score(x, t64, sde)
    return float((s * s).sum(1).mean())


class ScoreErrorModel(Model):
    """A :class:`Model` whose score is the base model's plus the constant-direction shift above."""

    def __init__(self, base: Model, eps: float, fisher):
        super().__init__(base.sde, **base.native, cost=base.cost)
        self.score_error = check_score_error(eps)
        self._fisher = fisher  # t (float) -> J_t
        self._scale: dict[float, float] = {}

    def _delta_size(self, t: float, d: int) -> float:
        if t not in self._scale:
            self._scale[t] = self.score_error * math.sqrt(max(self._fisher(t), 0.0) / d)
        return self._scale[t]

    def _eval(self, kind: str, x: torch.Tensor, t) -> torch.Tensor:
        out = super()._eval(kind, x, t)
        if self.score_error == 0.0:
            return out
        tf = float(t)
        c = self._delta_size(tf, x.shape[-1])  # delta = c * (1, ..., 1)
        t64 = torch.tensor(tf, dtype=torch.float64)
        if kind == "score":
            return out + c
        sigma = float(self.sde.sigma(t64))
        if kind == "eps":
            return out - sigma * c
        alpha = float(self.sde.alpha(t64))
        return out + sigma * sigma * c / alpha  # x0


def perturb_model(model: Model, problem, sde, eps: float) -> Model:
    """Wrap ``model`` with a score error of relative L2 size ``eps`` (returns ``model`` itself for 0)."""
    eps = check_score_error(eps)
    if eps == 0.0:
        return model
    if not all(hasattr(problem, k) for k in ("score", "sample_t", "K")):
        name = getattr(problem, "name", problem)
        raise ConfigError(f"--score-error needs an analytic target; problem {name!r} has none")
    cache: dict[float, float] = {}

    def fisher(t: float) -> float:
        if t not in cache:
            cache[t] = fisher_information(problem, sde, t)
        return cache[t]

    return ScoreErrorModel(model, eps, fisher)
