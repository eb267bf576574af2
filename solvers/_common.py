"""Scalar coefficients of the SDE on the (CPU, float64) grid, as Python floats: no device syncs."""

from __future__ import annotations

import math

import numpy as np
import torch


def at(sde, t) -> dict:
    t = torch.as_tensor(t, dtype=torch.float64)
    return {
        "t": float(t),
        "alpha": float(sde.alpha(t)),
        "sigma": float(sde.sigma(t)),
        "f": float(sde.f(t)),
        "g2": float(sde.g2(t)),
        "lam": float(sde.lambda_(t)),
    }


def pf_drift(model, sde, x, t):
    """Probability-flow ODE velocity dx/dt = f x - g^2/2 * score (one NFE)."""
    c = at(sde, t)
    return c["f"] * x - 0.5 * c["g2"] * model.score(x, t)


_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(48)


def ei_score_coeff(sde, t_from: float, t_to: float) -> float:
    """int_{t_to}^{t_from} (alpha_{t_to} / alpha_u) g(u)^2 du: the frozen-score coefficient of the
    exponential integrator. Gauss-Legendre with 48 nodes (exact to rounding for these smooth
    integrands); closed forms are checked against it in the tests."""
    a, b = float(t_to), float(t_from)
    u = torch.as_tensor(0.5 * (b - a) * _GL_NODES + 0.5 * (b + a), dtype=torch.float64)
    log_ratio = sde.log_alpha(torch.tensor(a, dtype=torch.float64)) - sde.log_alpha(u)
    vals = torch.exp(log_ratio) * sde.g2(u)
    return float(0.5 * (b - a) * (torch.as_tensor(_GL_WEIGHTS) * vals).sum())


def expm1(x: float) -> float:
    return math.expm1(x)
