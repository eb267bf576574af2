"""The model callable seen by every solver: parametrization conversions and NFE counting in one place.

A solver never sees a target or a network, only a :class:`Model`. It asks for whichever prediction
its update formula is written in (``x0``, ``eps`` or ``score``); the model answers from a native
function when the problem has one (exact, no round-off from conversion) and converts otherwise:

    eps   = (x - alpha_t x0) / sigma_t          score = -eps / sigma_t = (alpha_t x0 - x) / sigma_t^2
    x0    = (x - sigma_t eps) / alpha_t         x0    = (x + sigma_t^2 score) / alpha_t

Each call is one network evaluation on the whole batch and adds ``cost`` to ``nfe`` (``cost`` is 2
for an unbatched classifier-free-guidance pair, for instance). The harness compares ``nfe`` with
the declared budget after every run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .errors import ConfigError
from .sde import ForwardSDE

__all__ = ["Model", "PARAMETRIZATIONS", "eps_from_x0", "x0_from_eps", "score_from_x0", "convert"]

PARAMETRIZATIONS = ("x0", "eps", "score")
Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _coeffs(sde: ForwardSDE, t, x: torch.Tensor):
    t64 = t.to(torch.float64) if isinstance(t, torch.Tensor) else torch.tensor(float(t), dtype=torch.float64)
    return sde.alpha(t64).to(device=x.device, dtype=x.dtype), sde.sigma(t64).to(device=x.device, dtype=x.dtype)


def convert(sde: ForwardSDE, x: torch.Tensor, t, value: torch.Tensor, src: str, dst: str) -> torch.Tensor:
    """Convert a prediction ``value`` of kind ``src`` at (x, t) into kind ``dst`` (x0, eps or score)."""
    if src == dst:
        return value
    alpha, sigma = _coeffs(sde, t, x)
    if src == "x0":
        eps = (x - alpha * value) / sigma
        return eps if dst == "eps" else (alpha * value - x) / sigma**2
    if src == "eps":
        return (x - sigma * value) / alpha if dst == "x0" else -value / sigma
    if src == "score":
        return (x + sigma**2 * value) / alpha if dst == "x0" else -sigma * value
    raise ValueError(f"unknown parametrization {src!r}")


def eps_from_x0(sde: ForwardSDE, x: torch.Tensor, t, x0: torch.Tensor) -> torch.Tensor:
    return convert(sde, x, t, x0, "x0", "eps")


def x0_from_eps(sde: ForwardSDE, x: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
    return convert(sde, x, t, eps, "eps", "x0")


def score_from_x0(sde: ForwardSDE, x: torch.Tensor, t, x0: torch.Tensor) -> torch.Tensor:
    return convert(sde, x, t, x0, "x0", "score")


class Model:
    def __init__(
        self,
        sde: ForwardSDE,
        x0: Fn | None = None,
        eps: Fn | None = None,
        score: Fn | None = None,
        cost: int = 1,
        consistency: Callable | None = None,
    ):
        self.sde = sde
        self.consistency_fn = consistency  # f(x, t, t_end): consistency function (solvers/consistency.py)
        self.native: dict[str, Fn] = {k: v for k, v in (("x0", x0), ("eps", eps), ("score", score)) if v}
        if not self.native:
            raise ValueError("Model needs at least one of x0, eps, score")
        self.cost = int(cost)
        self.nfe = 0

    def reset(self) -> None:
        self.nfe = 0

    def _eval(self, kind: str, x: torch.Tensor, t) -> torch.Tensor:
        self.nfe += self.cost
        if not isinstance(t, torch.Tensor):
            t = torch.tensor(float(t), dtype=torch.float64, device=x.device)
        if kind in self.native:
            return self.native[kind](x, t)
        src = next(k for k in PARAMETRIZATIONS if k in self.native)
        return convert(self.sde, x, t, self.native[src](x, t), src, kind)

    def x0(self, x: torch.Tensor, t) -> torch.Tensor:
        """Posterior mean E[x_0 | x_t = x] (the denoiser)."""
        return self._eval("x0", x, t)

    def eps(self, x: torch.Tensor, t) -> torch.Tensor:
        """Noise prediction E[eps | x_t = x] = -sigma_t * score."""
        return self._eval("eps", x, t)

    def score(self, x: torch.Tensor, t) -> torch.Tensor:
        """Score grad_x log p_t(x)."""
        return self._eval("score", x, t)

    def consistency(self, x: torch.Tensor, t, t_end) -> torch.Tensor:
        """Consistency function f(x, t): the probability-flow ODE solution at t_end from (x, t); 1 NFE."""
        if self.consistency_fn is None:
            raise ConfigError("this problem's model has no consistency function (consistency solvers need one)")
        self.nfe += self.cost
        return self.consistency_fn(x, t, t_end)
