"""The one reference solve of the probability-flow ODE, shared by every pathwise ground truth.

:func:`reference_flow` integrates

    dx/dt = f(t) x - g^2(t)/2 * score(x, t)        (or, from an eps network: + g^2(t)/2 * eps(x, t) / sigma_t)

from ``t_start`` (default ``sde.T``) down to ``t_end`` with torchdiffeq's adaptive dopri5 at the stated
``rtol`` / ``atol`` (atol defaults to rtol), in a float64 state, and counts the velocity evaluations.

- The velocity is evaluated at t clamped to [t_end, t_start]: dopri5's initial step-size heuristic may
  probe outside the interval (below 0, where sigma_t^2 < 0 for the VP SDE); the probe only sizes the first
  step. Accepted steps stay inside because the last step is made to land on t_end exactly (``step_t``),
  so the returned state is a step end point, not a dense-output interpolant.
- ``error_estimate=True`` runs a second, looser solve at ``check_factor`` x the tolerances (default 10x)
  from the same x_T. The returned ``x`` is always the TIGHTER solve (at ``rtol``, ``atol``), the
  reference; ``err`` is the RMS over all entries of x_check - x. It estimates the looser solve's global
  error, so it is a conservative (pessimistic) estimate of the reference's own error: dopri5's global
  error falls roughly in proportion to the tolerance, so the reference's error is typically about
  err / check_factor. ``err_norm`` is the same difference as the RMS over samples of the per-sample
  Euclidean norm (rows = samples), for metrics reported in that unit.

:func:`reference_sde` is the pathwise reference of the reverse SDE (``strong_err``): Roessler's SRA1 (strong
order 1.5 for additive noise, the same scheme as the ``srk`` solver) on a given fine grid, driven by a noise
source's Brownian increments and iterated integrals, so a coarse solve and the reference share one path.

This module imports only torch and torchdiffeq (an SDE object and the score are passed in).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ReferenceFlow", "reference_flow", "flow_velocity", "reference_sde"]


@dataclass(frozen=True)
class ReferenceFlow:
    """Result of :func:`reference_flow`.

    x:         x(t_end) of the dopri5 solve at (rtol, atol), float64 (the reference).
    nfe:       velocity evaluations of that solve (probes included).
    rtol/atol: the tolerances of that solve.
    err:       RMS over entries of x_check - x (x_check: dopri5 at check_factor x the tolerances), or None.
    err_norm:  sqrt(mean over rows of |x_check - x|^2) (per-sample norm), or None.
    check_nfe: velocity evaluations of the check solve (0 without an error estimate).
    x_check:   x(t_end) of the check solve, or None.
    """

    x: torch.Tensor
    nfe: int
    rtol: float
    atol: float
    err: float | None = None
    err_norm: float | None = None
    check_nfe: int = 0
    x_check: torch.Tensor | None = None


def flow_velocity(sde, score=None, eps=None):
    """The probability-flow velocity v(t, x) from ``score(x, t)`` or ``eps(x, t)`` (exactly one), t a
    float64 CPU scalar tensor."""
    if (score is None) == (eps is None):
        raise ValueError("flow_velocity needs exactly one of score= and eps=")
    if score is not None:
        return lambda t, x: float(sde.f(t)) * x - 0.5 * float(sde.g2(t)) * score(x, t)
    return lambda t, x: float(sde.f(t)) * x + 0.5 * float(sde.g2(t)) * eps(x, t) / float(sde.sigma(t))


def _solve(velocity, x_T: torch.Tensor, t0: float, t1: float, rtol: float, atol: float) -> tuple:
    from torchdiffeq import odeint

    count = [0]

    def v(t, x):
        count[0] += 1
        return velocity(t.detach().to(torch.float64).cpu().clamp(t1, t0), x)

    ts = torch.tensor([t0, t1], dtype=torch.float64, device=x_T.device)
    with torch.no_grad():
        out = odeint(v, x_T, ts, rtol=rtol, atol=atol, method="dopri5",
                     options={"step_t": torch.tensor([t1], dtype=torch.float64, device=x_T.device)})
    return out[-1], count[0]


def reference_flow(sde, x_T: torch.Tensor, t_end: float, *, score=None, eps=None, t_start: float | None = None,
                   rtol: float = 1e-10, atol: float | None = None, error_estimate: bool = False,
                   check_factor: float = 10.0) -> ReferenceFlow:
    """x(t_end) of the probability-flow ODE from x(t_start) = x_T (t_start defaults to sde.T) by dopri5 at
    (rtol, atol = rtol unless given), float64 state; see the module docstring for ``error_estimate``.
    With t_start <= t_end, x_T itself is returned (0 evaluations, err 0)."""
    if not (rtol > 0 and (atol is None or atol > 0) and check_factor > 1):
        raise ValueError(f"reference_flow needs rtol > 0, atol > 0 and check_factor > 1, got rtol={rtol}, "
                         f"atol={atol}, check_factor={check_factor}")
    atol = rtol if atol is None else atol
    velocity = flow_velocity(sde, score=score, eps=eps)
    t0 = float(sde.T) if t_start is None else float(t_start)
    t1 = float(t_end)
    x64 = x_T.detach().to(torch.float64)
    if t0 <= t1:
        zero = 0.0 if error_estimate else None
        return ReferenceFlow(x64, 0, rtol, atol, zero, zero, 0, x64 if error_estimate else None)
    x, nfe = _solve(velocity, x64, t0, t1, rtol, atol)
    if not error_estimate:
        return ReferenceFlow(x, nfe, rtol, atol)
    xc, nfe_c = _solve(velocity, x64, t0, t1, check_factor * rtol, check_factor * atol)
    diff = (xc - x).reshape(len(x), -1) if x.dim() > 1 else (xc - x).reshape(-1, 1)
    err = float(diff.pow(2).mean().sqrt())
    err_norm = float(diff.pow(2).sum(1).mean().sqrt())
    return ReferenceFlow(x, nfe, rtol, atol, err, err_norm, nfe_c, xc)


def reference_sde(sde, score, x_T: torch.Tensor, grid: torch.Tensor, noise) -> torch.Tensor:
    """x(t_end) of the reverse SDE dx = [f x - g^2 score(x, t)] dt + g dW-bar by SRA1 (strong order 1.5,
    additive noise) on ``grid`` (T -> t_end), with ``noise.dW_I(i)`` = (dW, I_(1,0)) of step i after
    ``noise.for_grid(grid)``. With h = t_i - t_{i+1}, a(t, x) = -(f(t) x - g^2(t) score(x, t)) (reverse time),
    J = dW - I / h:  H = x + 3/4 h a(t_i, x) + 3/2 g(t_{i+1}) J;
    x' = x + h [a(t_i, x)/3 + 2 a(t_i - 3h/4, H)/3] + g(t_{i+1}) (dW - J) + g(t_i) J  (2 score calls a step)."""
    noise.for_grid(grid)

    def drift(x, t: float):
        tt = torch.tensor(t, dtype=torch.float64)
        return -(float(sde.f(tt)) * x - float(sde.g2(tt)) * score(x, tt))

    x = x_T.to(torch.float64)
    for i in range(len(grid) - 1):
        t0, t1 = float(grid[i]), float(grid[i + 1])
        h = t0 - t1
        b0 = float(sde.g2(torch.tensor(t0, dtype=torch.float64))) ** 0.5
        b1 = float(sde.g2(torch.tensor(t1, dtype=torch.float64))) ** 0.5
        dW, I = noise.dW_I(i)
        J = dW - I / h
        a0 = drift(x, t0)
        H = x + 0.75 * h * a0 + 1.5 * b1 * J
        a1 = drift(H, t0 - 0.75 * h)
        x = x + h * (a0 / 3.0 + 2.0 * a1 / 3.0) + b1 * (dW - J) + b0 * J
    return x
