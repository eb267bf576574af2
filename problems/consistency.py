"""Consistency functions: the oracle (exact / high-accuracy ODE) and that of a distilled U-Net checkpoint.

The consistency function of the probability-flow ODE maps (x, t) to the ODE solution at t_end started
from x at time t (Song et al. 2023). Sources here:

- ``gaussian_consistency``: exact for a Gaussian target (docs/theory.md#gaussian-consistency-function).
  With S = U diag(lam) U^T,
  v_t = alpha_t^2 lam + sigma_t^2 per eigen-direction:
  f(x, t) = alpha_e mu + U diag(sqrt(v_e / v_t)) U^T (x - alpha_t mu).
- ``ode_consistency``: any target with an exact score: dopri5 on the probability-flow ODE in float64
  (rtol = atol = 1e-9 by default) from t to t_end.
- ``oracle_consistency(problem, sde)``: the first for single Gaussians, the second for mixtures.
- ``network_consistency_function``: a U-Net distilled by :mod:`sdebench.training.consistency` (which also
  holds the distillation of the analytic targets into an MLP).
"""

from __future__ import annotations

import math

import torch

from sdebench.errors import ConfigError
from sdebench.reference import reference_flow

__all__ = ["gaussian_consistency", "ode_consistency", "oracle_consistency", "network_consistency_function"]


def _ae(sde, t) -> tuple[float, float]:
    t64 = torch.as_tensor(float(t), dtype=torch.float64)
    return float(sde.alpha(t64)), float(sde.sigma2(t64))


def gaussian_consistency(problem, sde, x: torch.Tensor, t, t_end) -> torch.Tensor:
    """Exact consistency function of a single-Gaussian target (affine in x)."""
    if problem.K != 1:
        raise ConfigError(f"gaussian_consistency needs a single Gaussian, {problem.name!r} has K={problem.K}")
    a_t, s2_t = _ae(sde, t)
    a_e, s2_e = _ae(sde, t_end)
    lam = problem.eigvals[0].to(torch.float64)
    ratio = torch.sqrt((a_e**2 * lam + s2_e) / (a_t**2 * lam + s2_t))
    U = problem.U[0].to(torch.float64)
    mu = problem.means[0].to(torch.float64)
    y = (x.to(torch.float64) - a_t * mu) @ U
    out = a_e * mu + (y * ratio) @ U.T
    return out.to(dtype=x.dtype, device=x.device)


def ode_consistency(problem, sde, x: torch.Tensor, t, t_end, rtol: float = 1e-9) -> torch.Tensor:
    """Probability-flow ODE from (x, t) to t_end with the exact score, dopri5 at rtol = atol, float64
    (:func:`sdebench.reference.reference_flow`)."""
    if float(t) <= float(t_end):
        return x
    r = reference_flow(sde, x.cpu(), float(t_end), score=lambda y, s: problem.score(y, s, sde), t_start=float(t),
                       rtol=rtol)
    return r.x.to(dtype=x.dtype, device=x.device)


def oracle_consistency(problem, sde):
    """f(x, t, t_end) for a GaussianMixture: exact affine map for K = 1, a dopri5 solve otherwise."""
    if problem.K == 1:
        return lambda x, t, t_end: gaussian_consistency(problem, sde, x, t, t_end)
    return lambda x, t, t_end: ode_consistency(problem, sde, x, t, t_end)


# ---- a learned consistency function ---------------------------------------------------------------


# ---- consistency distillation into the image U-Net ---------------------------------------------------------
def _cd_coeffs(sde, t, cfg):
    t64 = torch.as_tensor(float(t), dtype=torch.float64)
    a = float(sde.alpha(t64))
    s = float(sde.sigma(t64)) / a
    sd, s_e = cfg["data_std"], cfg["s_e"]
    return (a, sd**2 / ((s - s_e) ** 2 + sd**2), sd * (s - s_e) / math.sqrt(sd**2 + s**2),
            1 / math.sqrt(sd**2 + s**2), float(sde.lambda_(t64)))


def unet_consistency(net, cfg: dict, sde, x: torch.Tensor, t, shape) -> torch.Tensor:
    """f(x, t) = alpha_e (c_skip x / alpha_t + c_out F(c_in x / alpha_t, lambda_t)) with the U-Net as F."""
    a, c_skip, c_out, c_in, lam = _cd_coeffs(sde, t, cfg)
    p = next(net.parameters())
    xs = x / a
    lam_t = torch.full((x.shape[0],), lam, dtype=p.dtype, device=x.device)
    F = net((c_in * xs).reshape(x.shape[0], *shape).to(p.dtype), lam_t).reshape(x.shape[0], -1).to(x.dtype)
    return cfg["alpha_e"] * (c_skip * xs + c_out * F)


def network_consistency_function(net, cfg: dict, sde, shape):
    """f(x, t, t_end) of a distilled U-Net; t_end and the SDE must be those it was distilled for."""
    def f(x, t, t_end):
        if abs(float(t_end) - cfg["t_end"]) > 1e-12 or sde.name != cfg["sde"]:
            raise ConfigError(f"the distilled consistency model maps {cfg['sde']} to t_end={cfg['t_end']:g}, "
                              f"not {sde.name} to t_end={float(t_end):g}")
        with torch.no_grad():
            return unet_consistency(net, cfg, sde, x, t, shape)

    return f


