"""The Align-Your-Steps proxy: the KL upper bound (KLUB) of a grid, in closed form on a Gaussian target.

In the EDM variables sigma = sigma_t / alpha_t = exp(-lambda) and y = x / alpha_t, with the denoiser
D(y, sigma) = E[x_0 | x_0 + sigma eps = y], the reverse SDE is dy = -2 sigma score dsigma + sqrt(2 sigma) dW,
score = (D - y) / sigma^2. A step from sigma_i down to sigma_{i+1} that freezes the denoiser at its start
(D(y_i, sigma_i)) has, by Girsanov, the path-space KL bound Sabour et al. (2024) minimize:

    KLUB = sum_i int_{sigma_{i+1}}^{sigma_i} E || D(x_0 + sigma eps, sigma) - D(x_0 + sigma_i eps, sigma_i) ||^2
                                             / sigma^3 dsigma,        x_0 ~ p_data, eps ~ N(0, I) shared.

For p_data = N(m, S) with S = U diag(s) U^T, D(y, sigma) = m + B(sigma)(y - m) with B = S (S + sigma^2 I)^-1,
so per eigenvalue s (b(sigma) = s / (s + sigma^2)) the expectation is

    (b(sigma) - b(sigma_i))^2 s + (sigma b(sigma) - sigma_i b(sigma_i))^2,

summed over the eigenvalues. Each interval is integrated by Gauss-Legendre in log sigma (32 nodes). The
function is differentiable in the grid (torch), so :func:`ays_grid` minimizes it by Adam on the same
softmax-in-lambda logits as the tuners (the AYS-style method, re-implemented here on its own proxy).
"""

from __future__ import annotations

import numpy as np
import torch

from .grid import LambdaGrid

__all__ = ["klub", "ays_grid"]

_NODES, _WEIGHTS = (torch.as_tensor(a, dtype=torch.float64) for a in np.polynomial.legendre.leggauss(32))


def _eigs(problem) -> torch.Tensor:
    return torch.linalg.eigvalsh(torch.as_tensor(problem.covs[0], dtype=torch.float64))


def klub_of_lambdas(lam: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """KLUB of the grid with lambdas ``lam`` (increasing) for data eigenvalues ``s`` (differentiable in lam)."""
    sig = torch.exp(-lam)  # decreasing
    hi, lo = sig[:-1], sig[1:]  # step i: from hi (start, frozen) down to lo
    uhi, ulo = torch.log(hi), torch.log(lo)
    u = 0.5 * (uhi - ulo)[:, None] * _NODES[None, :] + 0.5 * (uhi + ulo)[:, None]  # (steps, nodes)
    sg = torch.exp(u)
    b = s[None, None, :] / (s[None, None, :] + sg[..., None] ** 2)
    bi = s[None, None, :] / (s[None, None, :] + hi[:, None, None] ** 2)
    e = ((b - bi) ** 2 * s + (sg[..., None] * b - hi[:, None, None] * bi) ** 2).sum(-1)  # (steps, nodes)
    f = e / sg**3 * sg  # dsigma = sigma du
    return (0.5 * (uhi - ulo) * (f * _WEIGHTS[None, :]).sum(1)).sum()


def klub(problem, param: LambdaGrid, grid: torch.Tensor) -> float:
    return float(klub_of_lambdas(param.lambdas_of_grid(grid), _eigs(problem)))


def ays_grid(problem, param: LambdaGrid, z0: torch.Tensor, iters: int = 400, lr: float = 0.05) -> torch.Tensor:
    """The grid minimizing the KLUB (Adam on the logits from z0, the best iterate kept)."""
    s = _eigs(problem)
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    best, best_z = float("inf"), z0.detach().clone()
    for _ in range(iters):
        opt.zero_grad()
        val = klub_of_lambdas(param.lambdas(z), s)
        if float(val.detach()) < best:
            best, best_z = float(val.detach()), z.detach().clone()
        val.backward()
        opt.step()
    return param.grid(best_z)
