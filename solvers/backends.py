"""Back-ends: the reverse SDE through ``torchsde.sdeint`` and the probability-flow ODE through
``torchdiffeq.odeint``, with NFE counted by the same :class:`~sdebench.model.Model`.

torchsde runs in reverse time s = T - t (so time increases): the reverse SDE is
dx = a(s, x) ds + b(s) dW with a(s, x) = -[f(t) x - g(t)^2 score(x, t)], b(s) = g(t), t = T - s; the
noise is additive, so Ito and Stratonovich coincide (``reversible_heun`` is declared Stratonovich).
Fixed dt: these back-ends need a grid uniform in t (``schedule=uniform``), h = (T - t_end) / N; they
are registered with ``schedules=("uniform",)``, so a cell on another schedule is refused when it is prepared
(a sweep with ``skip_incompatible`` leaves it out) instead of failing inside the solve.
To dodge torchsde's extra-step rounding (its loop steps to ``min(t + dt, t1)``; docs/pitfalls.md#torchsde) and
to hit the grid's times exactly, the SDE is integrated in step units u = s / h with ``ts = [0, N]``
and ``dt = 1``: drift h a, diffusion sqrt(h) b, all step times exact integers. The Brownian motion is a
:class:`GridBrownian` over the injected noise source: the same increments (and space-time Levy
integrals for SRK) that ``em`` and ``srk`` draw, so ``em`` equals ``torchsde-euler`` path by path.

torchdiffeq integrates dx/dt = f x - g^2/2 score from T down to t_end: ``rk4`` on the solver grid
itself (no step_size option, so no extra step), ``dopri5`` adaptively with ``rtol``/``atol``; its
NFE (every function call, rejected steps included) is counted, not requested.
"""

from __future__ import annotations

import math

import torch

from sdebench.errors import ConfigError, NFEBudgetError

from ._common import coefficients_at, ends_at_zero, pf_drift, refuse_zero_end
from .base import register

try:  # the back-ends are optional at import time; using one without its package is a ConfigError
    import torchsde
    from torchsde._brownian import BaseBrownian
except ImportError:  # pragma: no cover
    torchsde = None
    BaseBrownian = object

_TORCHSDE = "Li et al. 2020 (torchsde)"
_TORCHDIFFEQ = "Chen et al. 2018 (torchdiffeq)"


def _need(mod, name):
    if mod is None:
        raise ConfigError(f"solver {name!r} needs the package {'torchsde' if 'sde' in name else 'torchdiffeq'}")


class GridBrownian(BaseBrownian):
    """A torchsde Brownian motion in step units u = s / h whose increments come from a NoiseSource.

    Queried on [k, k + 1] (torchsde's fixed-step loop with dt = 1 asks for nothing else) it returns
    the grid step's increment in u-time, ``noise.dW(k) / sqrt(h)`` flattened to (batch, d), and with
    ``return_U`` also U = int_k^{k+1} (W_u - W_k) du = (h dW - int (s - s_k) dW_s) / h^{3/2}.
    """

    def __init__(self, noise, steps: int, h: float, shape, dtype, device, levy: str = "space-time"):
        self.noise, self.steps, self.h = noise, int(steps), float(h)
        self._shape, self._dtype, self._device, self._levy = tuple(shape), dtype, device, levy

    def _index(self, ta, tb) -> int:
        ta, tb = float(ta), float(tb)
        k = int(round(ta))
        if not (0 <= k < self.steps and ta == k and tb == k + 1):
            raise ValueError(f"GridBrownian queried on [{ta}, {tb}], which is not a step of the grid")
        return k

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        if tb is None:
            raise ValueError("GridBrownian only answers increments W(tb) - W(ta)")
        k = self._index(ta, tb)
        n = self._shape[0]
        if not return_U:
            return (self.noise.dW(k) / math.sqrt(self.h)).reshape(n, -1).to(self._dtype)
        dW, I = self.noise.dW_I(k)
        U = (self.h * dW - I) / self.h**1.5
        out = ((dW / math.sqrt(self.h)).reshape(n, -1).to(self._dtype), U.reshape(n, -1).to(self._dtype))
        return out + (None,) if return_A else out

    def __repr__(self):
        return f"GridBrownian(steps={self.steps}, h={self.h:g})"

    @property
    def dtype(self):
        return self._dtype

    @property
    def device(self):
        return self._device

    @property
    def shape(self):
        return self._shape

    @property
    def levy_area_approximation(self):
        return self._levy


def _check_uniform(grid, name):
    h = grid[:-1] - grid[1:]
    if not torch.allclose(h, h[0].expand_as(h), rtol=1e-9, atol=0):
        raise ConfigError(f"solver {name!r} uses torchsde's fixed dt and needs a grid uniform in t "
                          f"(schedule 'uniform'); got step sizes from {float(h.min()):.3g} to {float(h.max()):.3g}")


class _ReverseSDE(torch.nn.Module if torchsde is not None else object):
    """The reverse SDE in step units u = (T - t) / h: drift h a(s, x), diffusion sqrt(h) b(s), s = u h.

    Integer u are grid points (t = grid[u] exactly); dt = 1 makes torchsde's step times exact integers.
    """

    noise_type = "additive"

    def __init__(self, model, sde, grid: torch.Tensor, event_shape, sde_type: str):
        super().__init__()
        self.model, self.sde_, self.event_shape = model, sde, tuple(event_shape)
        self.sde_type = sde_type
        self.grid = grid.to(torch.float64).cpu()
        self.T = float(self.grid[0])
        self.h = float(self.grid[0] - self.grid[-1]) / (len(self.grid) - 1)
        self._last = None

    def _t_of(self, u) -> torch.Tensor:
        u = float(u)
        k = int(round(u))
        if u == k and 0 <= k < len(self.grid):
            return self.grid[k]
        return torch.as_tensor(self.T - u * self.h, dtype=torch.float64)

    def f(self, u, y):
        # One-entry cache keyed on (u, the tensor object y): torchsde evaluates the drift at (0, y0) in
        # its shape check and again in the first step, and its SRA1 loop recomputes the first stage's
        # drift; the cache turns those repeats into one model evaluation each.
        key = float(u)
        if self._last is not None and self._last[0] == key and self._last[1] is y:
            return self._last[2]
        t = self._t_of(u)
        c = coefficients_at(self.sde_, t)
        x = y.reshape((y.shape[0],) + self.event_shape)
        score = self.model.score(x, t).reshape(y.shape[0], -1)
        out = -self.h * (c["f"] * y - c["g2"] * score)
        self._last = (key, y, out)
        return out

    def _g_scalar(self, u) -> float:
        return math.sqrt(coefficients_at(self.sde_, self._t_of(u))["g2"] * self.h)

    def g(self, u, y):
        # additive noise: (batch, d, d) diagonal matrix (only used by methods that need g itself)
        d = y.shape[1]
        return self._g_scalar(u) * torch.eye(d, dtype=y.dtype, device=y.device).expand(y.shape[0], d, d)

    def g_prod(self, u, y, v):
        return self._g_scalar(u) * v


_SDE_METHODS = {
    "torchsde-euler": ("euler", "ito", "space-time", 1),
    "torchsde-milstein": ("milstein", "ito", "space-time", 1),
    "torchsde-srk": ("srk", "ito", "space-time", 2),
    "torchsde-reversible-heun": ("reversible_heun", "stratonovich", "space-time", 1),
}


def _sdeint(name, model, x, grid, sde, noise):
    _need(torchsde, name)
    _check_uniform(grid, name)
    method, sde_type, levy, _ = _SDE_METHODS[name]
    n = x.shape[0]
    y0 = x.reshape(n, -1)
    steps = len(grid) - 1
    rsde = _ReverseSDE(model, sde, grid, x.shape[1:], sde_type)
    bm = GridBrownian(noise, steps, rsde.h, y0.shape, y0.dtype, y0.device, levy)
    ts = torch.tensor([0.0, float(steps)], dtype=y0.dtype, device=x.device)
    ys = torchsde.sdeint(rsde, y0, ts, bm=bm, method=method, dt=1.0)
    return ys[-1].reshape(x.shape)


def _rh_nfe(steps, grid=None):
    return steps + 1


@register("torchsde-euler", kind="sde", order=1, strong_order=1.0, nfe_per_step=1, family="back-end (torchsde)",
          paper=_TORCHSDE, budget_text="any NFE >= 1 (uniform-in-t grid)", order_grid="uniform", schedules=("uniform",))
def torchsde_euler(model, x, grid, sde, noise):
    """torchsde 'euler' on the reverse SDE (same update as ``em``). Strong order 1, 1 NFE per step.

    x' = x + a(s, x) h + b(s) dW in reverse time s = T - t. Weak order 1. Uniform grids only. The drift is
    evaluated at the left point of each step only, so a grid ending at t = 0 needs nothing special."""
    return _sdeint("torchsde-euler", model, x, grid, sde, noise)


@register("torchsde-milstein", kind="sde", order=1, strong_order=1.0, nfe_per_step=1,
          family="back-end (torchsde)", paper=_TORCHSDE, budget_text="any NFE >= 1 (uniform-in-t grid)",
          order_grid="uniform", schedules=("uniform",))
def torchsde_milstein(model, x, grid, sde, noise):
    """torchsde 'milstein' (Ito) on the reverse SDE. Strong order 1, 1 NFE per step.

    x' = x + a h + b dW + (1/2) b b' (dW^2 - h); with additive noise b' = 0, so it reduces to
    Euler-Maruyama. Weak order 1. Uniform grids only. Like ``torchsde-euler`` it never evaluates the drift
    at the grid's end, so a grid ending at t = 0 needs nothing special."""
    return _sdeint("torchsde-milstein", model, x, grid, sde, noise)


@register("torchsde-srk", kind="sde", order=2, strong_order=1.5, nfe_per_step=2, family="back-end (torchsde)",
          paper=_TORCHSDE + "; Roessler 2010 (SRA1)", budget_text="multiples of 2 (uniform-in-t grid)",
          order_grid="uniform", schedules=("uniform",))
def torchsde_srk(model, x, grid, sde, noise):
    """torchsde 'srk' (Roessler's SRA1 for additive noise). Strong order 1.5, 2 NFE per step.

    The same scheme as ``srk``, fed dW and the space-time integral U = int (W - W_s) du from the noise
    source. Uniform grids only. The drift is evaluated at s_n and s_n + 3h/4 only, so a grid ending at
    t = 0 needs nothing special."""
    return _sdeint("torchsde-srk", model, x, grid, sde, noise)


@register("torchsde-reversible-heun", kind="sde", order=1, strong_order=1.0, nfe_per_step=1,
          family="back-end (torchsde)", paper=_TORCHSDE + "; Kidger et al. 2021 (reversible Heun)",
          nfe_for_steps=_rh_nfe, steps_for_nfe=lambda nfe: _rh_steps(nfe),
          budget_text="any NFE >= 2 (N steps cost N + 1: one extra drift at the start; uniform-in-t grid)",
          # pre-asymptotic (unstable on the contracting reverse VP SDE) below ~160 steps; weak order 2 on a
          # Gaussian (linear drift) from there on
          order_grid="uniform", schedules=("uniform",), order_nfe=(161, 321, 641), order_gaussian=2)
def torchsde_reversible_heun(model, x, grid, sde, noise):
    """torchsde 'reversible_heun' (Kidger et al.). Strong order 1 (additive noise); N + 1 NFE for N steps.

    z' = 2 y - z + a(s, z) h + b dW, y' = y + (a(s, z) + a(s', z')) h / 2 + b dW (drift reused across
    steps; Stratonovich = Ito for additive noise; strong order 0.5 in general). Not stable on strongly
    dissipative drifts. Uniform grids only. A grid ending at t = 0 is refused (ConfigError): the method
    evaluates the drift at the end of every step, and the score is singular at sigma = 0."""
    refuse_zero_end("torchsde-reversible-heun", grid, "it evaluates the drift at the end point, where the score "
                    "is singular")
    return _sdeint("torchsde-reversible-heun", model, x, grid, sde, noise)


def _rh_steps(nfe: int) -> int:
    if nfe < 2:
        raise NFEBudgetError(f"torchsde-reversible-heun needs NFE >= 2 (N steps cost N + 1), got {nfe}")
    return nfe - 1


# ---- torchdiffeq ---------------------------------------------------------------------------------
def _odeint():
    try:
        from torchdiffeq import odeint
    except ImportError as exc:  # pragma: no cover
        raise ConfigError("the rk4 and dopri5 solvers need the package torchdiffeq") from exc
    return odeint


def _rk4_nfe(steps, grid):
    if grid is not None and ends_at_zero(grid):
        return 4 * (steps - 1) + 1  # Euler last step to t = 0
    return 4 * steps


@register("rk4", kind="ode", order=4, nfe_per_step=4, family="back-end (torchdiffeq)", paper=_TORCHDIFFEQ,
          nfe_for_steps=_rk4_nfe, order_nfe=(40, 80, 160))
def rk4(model, x, grid, sde, noise):
    """torchdiffeq 'rk4' (Kutta's 3/8 rule) on the probability-flow ODE. Order 4, 4 NFE per step.

    dx/dt = f x - g^2/2 score, stepping exactly on the solver grid T -> t_end. If the grid ends at t = 0
    (sigma = 0, where the velocity is singular) the last step is Euler x - h v(x, t_{N-1}), as k-diffusion
    does, so N steps cost 4(N - 1) + 1 NFE on such a grid."""
    odeint = _odeint()

    def v(t, y):
        return pf_drift(model, sde, y, t.to(torch.float64))

    body = grid[:-1] if ends_at_zero(grid) else grid
    if len(body) > 1:
        x = odeint(v, x, body.to(device=x.device, dtype=torch.float64).to(x.dtype), method="rk4")[-1]
    if ends_at_zero(grid):
        x = x - pf_drift(model, sde, x, grid[-2]) * float(grid[-2] - grid[-1])
    return x


@register("dopri5", kind="ode", order=5, nfe_per_step=1, adaptive=True, family="back-end (torchdiffeq)",
          paper=_TORCHDIFFEQ + "; Dormand & Prince 1980",
          budget_text="adaptive: NFE is set by rtol/atol and counted", order_check="adaptive",
          batch_coupled=True,  # one step size for the whole batch, from the error norm over every row
          order_note="torchdiffeq's Dormand-Prince 5(4) tableau; NFE follows rtol/atol, so there is no NFE slope "
                     "(its accuracy is checked against rk4 in tests/test_crossval.py)")
def dopri5(model, x, grid, sde, noise, rtol: float = 1e-5, atol: float = 1e-5):
    """Adaptive Dormand-Prince 5(4) (torchdiffeq) on the probability-flow ODE. Order 5; NFE adaptive, counted.

    Integrates from grid[0] = T to grid[-1] = t_end (intermediate grid points are ignored). The NFE
    (about 6 per accepted step, rejected steps and the initial step-size probe included) is whatever
    rtol/atol need, counted.
    At rtol = atol = 1e-10 it is the reference ODE solution for pathwise errors.
    A grid ending at t = 0 is refused (ConfigError): every accepted step evaluates the velocity at its end
    point, and the velocity is singular at sigma = 0."""
    if not (rtol > 0 and atol > 0):
        raise ConfigError(f"dopri5 needs rtol > 0 and atol > 0, got rtol={rtol}, atol={atol}")
    refuse_zero_end("dopri5", grid, "it evaluates the velocity at the end point, where it is singular")
    odeint = _odeint()
    lo, hi = float(grid[-1]), float(grid[0])

    def v(t, y):
        # the initial step-size heuristic may probe slightly outside [t_end, T]: clamp the time
        return pf_drift(model, sde, y, t.to(torch.float64).clamp(lo, hi))

    ts = torch.tensor([hi, lo], dtype=x.dtype, device=x.device)
    return odeint(v, x, ts, rtol=rtol, atol=atol, method="dopri5")[-1]
