"""Scalar coefficients of the SDE on the (CPU, float64) grid, as Python floats: no device syncs.

Differentiable grids: a solver registered with ``differentiable_grid=True`` takes a grid tensor that requires
grad (``sdebench tune --method gradient`` backpropagates through the solver's own code). For such a grid
:func:`coefficients_at` returns 0-d tensors of the grid's time (no float cast, no memo) and the solver writes its
scalar arithmetic with :func:`expm1`, :func:`exp`, :func:`sqrt` and :func:`step_size`, which call the ``math``
function on a float and the ``torch`` one on a tensor: on an ordinary grid (no grad) every value is computed
by exactly the same float operations as before.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sdebench.errors import ConfigError

_CACHE_MAX = 65_536


def _cache(sde, name: str) -> dict | None:
    """A per-SDE-instance memo (cleared when it grows past _CACHE_MAX entries); None if not possible."""
    d = getattr(sde, "__dict__", None)
    if d is None:
        return None
    c = d.get(name)
    if c is None:
        c = d[name] = {}
    elif len(c) > _CACHE_MAX:
        c.clear()
    return c


def requires_grad(t) -> bool:
    """True for a time (or grid) tensor that carries a gradient (a differentiable-grid solve)."""
    return isinstance(t, torch.Tensor) and t.requires_grad


def expm1(v):
    return torch.expm1(v) if isinstance(v, torch.Tensor) else math.expm1(v)


def exp(v):
    return torch.exp(v) if isinstance(v, torch.Tensor) else math.exp(v)


def sqrt(v):
    return torch.sqrt(v) if isinstance(v, torch.Tensor) else math.sqrt(v)


def step_size(grid, i: int):
    """grid[i] - grid[i + 1]: a float, or a 0-d tensor on a grid that requires grad."""
    h = grid[i] - grid[i + 1]
    return h if requires_grad(h) else float(h)


def brownian_increment(noise, grid, i: int):
    """``noise.dW(i)``; on a grid that requires grad, times sqrt(h_i) / sqrt(float(h_i)) (the value 1.0 exactly)
    so that it carries the gradient of sqrt(h_i) z in the grid (the noise's base grid must be the grid)."""
    dW = noise.dW(i)
    h = grid[i] - grid[i + 1]
    if not requires_grad(h):
        return dW
    if noise._stride != 1:
        raise ValueError("a differentiable-grid solve needs the noise's base grid to be the solver's grid")
    return dW * (torch.sqrt(h) / math.sqrt(float(h.detach())))


def coefficients_at(sde, t) -> dict:
    """Scalar coefficients at time t. Memoized per SDE instance and time: a sampling loop re-running
    the same grid (benchmarks, sweeps, CRN studies) pays the half dozen small tensor evaluations once.
    The values are computed exactly as without the memo (float64 tensor of the same time).
    A time that requires grad gives 0-d tensors carrying its gradient (not memoized)."""
    if requires_grad(t):
        t = t.to(torch.float64)
        return {"t": t, "alpha": sde.alpha(t), "sigma": sde.sigma(t), "f": sde.f(t), "g2": sde.g2(t),
                "lam": sde.lambda_(t)}
    key = float(t)
    c = _cache(sde, "_sdebench_at")
    hit = None if c is None else c.get(key)
    if hit is not None:
        return dict(hit)
    t = torch.tensor(key, dtype=torch.float64)
    out = {
        "t": key,
        "alpha": float(sde.alpha(t)),
        "sigma": float(sde.sigma(t)),
        "f": float(sde.f(t)),
        "g2": float(sde.g2(t)),
        "lam": float(sde.lambda_(t)),
    }
    if c is not None:
        c[key] = out
    return dict(out)


def pf_drift(model, sde, x, t):
    """Probability-flow ODE velocity dx/dt = f x - g^2/2 * score (one NFE)."""
    c = coefficients_at(sde, t)
    return (x * c["f"]).sub_(model.score(x, t) * (0.5 * c["g2"]))  # f x - (g^2/2) s, in one buffer


def reverse_sde_drift(model, sde, x, t):
    """Reverse-SDE drift in forward time, f(t) x - g(t)^2 score(x, t) (one NFE); in reverse time
    s = T - t the drift is its negative."""
    c = coefficients_at(sde, t)
    return c["f"] * x - c["g2"] * model.score(x, t)


_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(48)


def ei_score_coeff(sde, t_from: float, t_to: float) -> float:
    """int_{t_to}^{t_from} (alpha_{t_to} / alpha_u) g(u)^2 du: the frozen-score coefficient of the
    exponential integrator. Gauss-Legendre with 48 nodes (exact to rounding for these smooth
    integrands); closed forms are checked against it in the tests."""
    a, b = float(t_to), float(t_from)
    c = _cache(sde, "_sdebench_ei")
    if c is not None and (a, b) in c:
        return c[(a, b)]
    u = torch.as_tensor(0.5 * (b - a) * _GL_NODES + 0.5 * (b + a), dtype=torch.float64)
    log_ratio = sde.log_alpha(torch.tensor(a, dtype=torch.float64)) - sde.log_alpha(u)
    vals = torch.exp(log_ratio) * sde.g2(u)
    out = float(0.5 * (b - a) * (torch.as_tensor(_GL_WEIGHTS) * vals).sum())
    if c is not None:
        c[(a, b)] = out
    return out


# ---- grids that end at t = 0 -------------------------------------------------------------------------
# The convention of diffusers and k-diffusion: the last step jumps to sigma = 0 (t = 0, p_0 is the data).
# There lambda = log(alpha/sigma) is +inf and the score/eps of a network is singular (score = -eps/sigma),
# so no solver evaluates the model at t = 0: each either takes a first-order last step that only uses
# the model at the previous point (exponential integrators: x_next = alpha_0 * x0(x, t_{N-1}); Heun-type
# and Runge-Kutta methods: an Euler step) or refuses the grid with a one-line ConfigError
# (:func:`refuse_zero_end`).
def ends_at_zero(grid) -> bool:
    """True if the grid's last time is exactly t = 0 (sigma = 0)."""
    return float(grid[-1]) == 0.0


def refuse_zero_end(name: str, grid, why: str) -> None:
    """Raise the one-line ConfigError of a solver that cannot take a grid ending at t = 0."""
    if ends_at_zero(grid):
        raise ConfigError(f"solver {name!r} cannot take a grid ending at t = 0 (sigma = 0): {why}; "
                          f"end the grid at t_end > 0 (e.g. 1e-3) or use --final-denoise")
