"""Langevin samplers: score_sde's predictor-corrector (``pc``) and NCSN's annealed Langevin dynamics (``ald``).

Langevin steps x <- x + eps score(x, t) + sqrt(2 eps) z leave p_t invariant as eps -> 0; the corrector
noise z comes from the keyed noise source (``noise.normal('langevin', i, j)``), so it is batch
independent and reproducible. ``pc``'s corrector step size follows score_sde and uses the batch mean
of the per-sample norms (per-sample norms blow up in 1-D, where the score is often near 0): it is the
one sampler whose output depends on the batch it runs in (its rows are coupled through that mean),
and it is nonlinear in x, so its output on a Gaussian target is not exactly Gaussian and the
exact-Gaussian metrics do not apply to it.
"""

from __future__ import annotations

import math

import torch

from sdebench.errors import ConfigError

from ._common import coefficients_at, ends_at_zero, refuse_zero_end
from .base import register

ALD_STEPS_PER_LEVEL = 5


def _mean_norm(v: torch.Tensor) -> torch.Tensor:
    """Batch average of the per-sample Euclidean norms (score_sde's LangevinCorrector)."""
    return v.reshape(v.shape[0], -1).norm(dim=1).mean()


def _pc_nfe(steps, grid):
    return 2 * steps - (1 if grid is not None and ends_at_zero(grid) else 0)


@register("pc", kind="sde", order=1, nfe_per_step=2, family="predictor-corrector",
          paper="Song et al. 2021 (score SDE, Alg. PC sampling)", nfe_for_steps=_pc_nfe,
          batch_coupled=True,
          order_note="the corrector's step uses batch-averaged norms (score_sde), coupling the rows: no exact "
                     "Gaussian output law; weak order 1 is its reverse-diffusion predictor's (judged by sample "
                     "metrics)")
def pc(model, x, grid, sde, noise, snr: float = 0.16):
    """Reverse-diffusion predictor + one Langevin corrector step per grid step. Weak order 1; 2 NFE per step.

    Predictor (the forward kernel between grid points reversed, score_sde's ReverseDiffusionPredictor):
    with a = alpha_s/alpha_t, v = sigma_s^2 - a^2 sigma_t^2 (s = t_i > t = t_{i+1}),
        x <- x - [(a - 1) x - v score(x, s)] + sqrt(v) z_i,   z_i = dW_i / sqrt(h_i).
    Corrector at t: eps = 2 r_t (snr <|z'|> / <|score(x, t)|>)^2 (<.> = batch mean of per-sample norms,
    r = min(1, (alpha_s/alpha_t)^2): score_sde's alpha_i = 1 - beta_i for VP, 1 for VE),
    x <- x + eps score + sqrt(2 eps) z'.
    On a grid ending at t = 0 (sigma = 0, where the score is singular) the last step is the predictor
    alone (no corrector at t = 0), so N steps cost 2N - 1 NFE on such a grid.
    """
    if not snr > 0:
        raise ConfigError(f"pc snr must be > 0, got {snr}")
    for i in range(len(grid) - 1):
        s, t = coefficients_at(sde, grid[i]), coefficients_at(sde, grid[i + 1])
        a = s["alpha"] / t["alpha"]
        v = s["sigma"] ** 2 - a**2 * t["sigma"] ** 2
        if v < 0:  # only through rounding
            v = 0.0
        z = noise.dW(i) / math.sqrt(float(grid[i] - grid[i + 1]))
        x = x - ((a - 1.0) * x - v * model.score(x, grid[i])) + math.sqrt(v) * z
        if float(grid[i + 1]) == 0.0:
            continue
        grad = model.score(x, grid[i + 1])
        zc = noise.normal("langevin", i, 0)
        r = min(1.0, (s["alpha"] / t["alpha"]) ** 2)  # VP: 1 - beta_i; VE (and contractive): 1
        eps = 2.0 * r * (snr * _mean_norm(zc) / _mean_norm(grad).clamp_min(1e-30)) ** 2
        x = x + eps * grad + torch.sqrt(2.0 * eps) * zc
    return x



@register("ald", kind="sde", order=1, nfe_per_step=ALD_STEPS_PER_LEVEL, family="Langevin",
          paper="Song & Ermon 2019 (NCSN, Alg. 1)",
          order_nfe=(400, 800, 1600))  # 80-320 levels: pre-asymptotic (bias of the Langevin steps) below
def ald(model, x, grid, sde, noise, eps: float = 0.2):
    """Annealed Langevin dynamics (NCSN), 5 Langevin steps per noise level. Weak order 1; 5 NFE per step.

    The levels are the grid points (geometric in sigma on a logSNR grid for VE); the sampler is biased
    for a finite step size.

    Level i = grid[i + 1] with sbar_i = sigma/alpha. NCSN's step alpha_i = e sigma_i^2 / sigma_L^2 is
    written as a_i = eps sbar_i^2 with eps = e / sigma_L^2 (NCSN: 2e-5 / 0.01^2 = 0.2, the default), so
    the step stays stable (a_i < 2 sbar_i^2) whatever t_end is. Update (NCSN) in y = x / alpha, in x:
    x <- x + (a_i alpha^2 / 2) score(x, t_i) + alpha sqrt(a_i) z. Entering level i the sample is
    rescaled by alpha_{t_i}/alpha_{t_{i-1}} (a no-op for VE, the SDE NCSN was made for).
    A grid ending at t = 0 is refused (ConfigError): its last level would be sigma = 0, where the step
    size is 0 and the score is singular.
    """
    if not eps > 0:
        raise ConfigError(f"ald eps must be > 0, got {eps}")
    refuse_zero_end("ald", grid, "its last noise level would be sigma = 0 (step size 0, singular score)")
    prev_alpha = coefficients_at(sde, grid[0])["alpha"]
    for i in range(len(grid) - 1):
        c = coefficients_at(sde, grid[i + 1])
        x = x * (c["alpha"] / prev_alpha)
        prev_alpha = c["alpha"]
        sbar = c["sigma"] / c["alpha"]
        step = eps * sbar**2 * c["alpha"] ** 2
        for j in range(ALD_STEPS_PER_LEVEL):
            z = noise.normal("langevin", i, j)
            x = x + 0.5 * step * model.score(x, grid[i + 1]) + math.sqrt(step) * z
    return x
