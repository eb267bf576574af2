"""The tuned grid's parametrization: softmax increments in lambda = log(alpha_t / sigma_t).

A grid of ``steps`` steps from T down to t_end is ``steps`` logits z. The increments of lambda are
``(lambda_end - lambda_T) * softmax(z)``: all positive and summing to the whole range, so for every z the
grid is strictly monotone and keeps both ends (lambda is strictly decreasing in t). ``z`` is defined up
to an additive constant (softmax is); the initial logits are the log-increments of a hand-crafted grid.
"""

from __future__ import annotations

import torch

from sdebench.errors import ConfigError

__all__ = ["LambdaGrid"]


class LambdaGrid:
    def __init__(self, sde, steps: int, t_end: float):
        if steps < 1:
            raise ConfigError(f"a grid needs at least 1 step, got {steps}")
        self.sde, self.steps, self.t_end, self.T = sde, int(steps), float(t_end), float(sde.T)
        self.lam_T = float(sde.lambda_(torch.tensor(self.T, dtype=torch.float64)))
        self.lam_end = float(sde.lambda_(torch.tensor(self.t_end, dtype=torch.float64)))

    def lambdas_of_grid(self, grid: torch.Tensor) -> torch.Tensor:
        lam = self.sde.lambda_(torch.as_tensor(grid, dtype=torch.float64)).clone()
        lam[0], lam[-1] = self.lam_T, self.lam_end
        return lam

    def logits(self, grid: torch.Tensor) -> torch.Tensor:
        """Logits whose grid is ``grid`` (which must have steps + 1 strictly decreasing points, ends pinned)."""
        grid = torch.as_tensor(grid, dtype=torch.float64)
        if grid.numel() != self.steps + 1:
            raise ConfigError(f"the initial grid has {grid.numel() - 1} steps, the tuned grid {self.steps}")
        inc = torch.diff(self.lambdas_of_grid(grid))
        if not bool((inc > 0).all()):
            raise ConfigError("the initial grid is not strictly decreasing in t")
        z = torch.log(inc)
        return z - z.mean()

    def lambdas(self, z: torch.Tensor) -> torch.Tensor:
        """lambda_0 = lambda_T < lambda_1 < ... < lambda_steps = lambda_end (differentiable in z)."""
        w = torch.softmax(z.to(torch.float64), dim=0)
        inner = self.lam_T + (self.lam_end - self.lam_T) * torch.cumsum(w, 0)[:-1]
        ends = torch.tensor([self.lam_T], dtype=torch.float64), torch.tensor([self.lam_end], dtype=torch.float64)
        return torch.cat([ends[0], inner, ends[1]])

    def grid_of_lambdas(self, lam: torch.Tensor) -> torch.Tensor:
        t = self.sde.t_of_lambda(lam.detach().to(torch.float64)).clone()
        t[0], t[-1] = self.T, self.t_end  # the ends exactly
        return t

    def grid(self, z: torch.Tensor) -> torch.Tensor:
        """The time grid T = t_0 > ... > t_steps = t_end (float64, detached) of logits z."""
        return self.grid_of_lambdas(self.lambdas(z))


def monotone(grid: torch.Tensor) -> bool:
    return bool(torch.isfinite(grid).all() and (grid[1:] < grid[:-1]).all())
