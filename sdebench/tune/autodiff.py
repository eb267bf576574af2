"""The tuning objective differentiated by autograd through the solver's own code.

For a solver registered with ``differentiable_grid=True`` (its scalar coefficients become tensors of a grid
that requires grad, ``solvers/_common.py``), :class:`AutogradObjective` evaluates the same value as
:class:`~sdebench.tune.objective.Objective` (the cell ``sdebench run`` runs) and its gradient in the grid:

- ``w2_exact`` / ``kl_exact`` on a Gaussian target: the exact output law of the solver
  (:func:`sdebench.exact.output_gaussian`, whose reverse-mode noise pass is differentiated once more), then the
  W2 / KL formulas of :mod:`sdebench.metrics.gaussian` written on tensors;
- ``path_err`` of a deterministic solver on an analytic mixture: the RMS distance of the solver's output from
  the dopri5 reference flow of the same x_T (the reference does not depend on the grid: it is computed once per
  seed and shared with the metric's own cache).

The values agree with the ``run_cell`` path to rounding (the tests hold them to 1e-12 relative); the gradients
are exact derivatives of the solver's discrete map (tests compare them with central differences).
"""

from __future__ import annotations

import math

import torch

from sdebench.errors import ConfigError
from sdebench.exact import output_gaussian
from sdebench.metrics.density import init_moments
from sdebench.metrics.gaussian import _sym, _x_minus_log1p
from sdebench.metrics.nulls import lru_lookup
from sdebench.metrics.resolve import _PATH_CACHE, PATH_PATHS, PATH_RTOL
from sdebench.noise import NoiseSource
from sdebench.problems import GaussianMixture
from sdebench.reference import reference_flow
from sdebench.run import _cond, _initial, _model, cell_budget

__all__ = ["AutogradObjective", "autograd_support", "AUTOGRAD_OBJECTIVES", "w2_t", "kl_t"]

AUTOGRAD_OBJECTIVES = ("w2_exact", "kl_exact", "path_err")


def autograd_support(obj) -> str | bool:
    """True if the gradient of ``obj`` in the grid can be taken by autograd, else the reason it cannot."""
    cfg = obj.cfg
    if not getattr(obj.spec, "differentiable_grid", False):
        return f"solver {obj.spec.name!r} does not declare differentiable_grid"
    if obj.metric not in AUTOGRAD_OBJECTIVES:
        return f"objective {obj.metric!r} has no autograd evaluation"
    if cfg.guidance != "none" or cfg.final_denoise or cfg.score_error or cfg.init != "exact" \
            or cfg.reference != "t_end" or cfg.dtype != "float64" or cfg.device != "cpu":
        return "only plain cells (no guidance, final denoise, score error; exact init; float64 on the CPU)"
    if not isinstance(obj.problem, GaussianMixture):
        return f"problem {cfg.problem!r} is not an analytic mixture"
    if obj.metric == "path_err" and not obj.deterministic:
        return "path_err needs a deterministic solver"
    return True


def _sqrt_psd(S):
    lam, U = torch.linalg.eigh(_sym(S))
    return (U * torch.sqrt(torch.clamp(lam, min=0))) @ U.T, lam, U


def w2_t(m1, S1, m2, S2) -> torch.Tensor:
    """:func:`sdebench.metrics.gaussian.w2` (d > 1) on tensors: the same operations, differentiable."""
    dm2 = ((m1 - m2) ** 2).sum()
    R, lam2, U2 = _sqrt_psd(S2)
    Rinv = (U2 / torch.sqrt(lam2)) @ U2.T
    M, _, _ = _sqrt_psd(R @ S1 @ R)
    TmI = Rinv @ (M - S2) @ Rinv
    return torch.sqrt(dm2 + torch.clamp(torch.trace(TmI @ S2 @ TmI.T), min=0.0))


def kl_t(m1, S1, m2, S2) -> torch.Tensor:
    """:func:`sdebench.metrics.gaussian.kl` on tensors (the same operations, differentiable)."""
    lam2, U2 = torch.linalg.eigh(_sym(S2))
    W = U2 / torch.sqrt(lam2)
    delta = torch.linalg.eigvalsh(_sym(W.T @ (S1 - S2) @ W))
    dm = (torch.atleast_1d(m1) - torch.atleast_1d(m2)).reshape(-1)
    return 0.5 * _x_minus_log1p(delta).sum() + 0.5 * ((W.T @ dm) ** 2).sum()


class AutogradObjective:
    """``value(grid, seed)``: the objective of :class:`~sdebench.tune.objective.Objective` ``obj`` as a 0-d tensor
    that carries the gradient of ``grid`` (a float64 tensor, T -> t_end, that may require grad)."""

    def __init__(self, obj):
        ok = autograd_support(obj)
        if ok is not True:
            raise ValueError(f"no autograd evaluation: {ok}")
        self.obj = obj
        self.calls = cell_budget(obj.cfg)
        self._law_target = None

    def _make_model(self):
        return _model(self.obj.problem, self.obj.sde, self.obj.cfg)

    def _gaussian(self, grid) -> torch.Tensor:
        o = self.obj
        if self._law_target is None:
            target = o.problem.marginal(o.t_end, o.sde)
            self._law_target = init_moments(o.problem, o.sde, "exact"), (target.means[0], target.covs[0])
        (m_T, P_T), (mu, S) = self._law_target
        mean, cov = output_gaussian(o.spec, self._make_model, o.sde, grid, m_T, P_T, nfe=self.calls,
                                    options=o.options, base_grid=grid.detach())
        return (w2_t if o.metric == "w2_exact" else kl_t)(mean, cov, mu, S)

    def _path(self, grid, seed: int) -> torch.Tensor:
        o, cfg = self.obj, self.obj.cfg
        problem, sde = o.problem, o.sde
        noise = NoiseSource(seed, cfg.n_samples, (problem.d,), dtype=torch.float64)
        noise.base_grid = grid.detach()
        cond = _cond(problem, cfg)
        x_T = _initial(cond, sde, cfg, noise, torch.float64, torch.device("cpu"))
        x = o.spec.sample(self._make_model(), x_T, grid, sde, noise, nfe=self.calls, **o.options)
        m = min(PATH_PATHS, x_T.shape[0])
        key = (cfg.problem, repr(sde), float(o.t_end), cfg.init, int(seed), str(cfg.dtype)) + (m, PATH_RTOL)
        x_Tm = x_T[:m]
        r = lru_lookup(_PATH_CACHE, key, 32, lambda: reference_flow(
            sde, x_Tm, o.t_end, score=lambda y, t: cond.score(y, t, sde), rtol=PATH_RTOL, error_estimate=True))
        return (x[:m] - r.x).norm(dim=1).pow(2).mean().sqrt()

    def value(self, grid: torch.Tensor, seed: int, count: bool = True) -> torch.Tensor:
        if count:
            self.obj.evals += 1
        with torch.enable_grad():
            if self.obj.metric == "path_err":
                return self._path(grid, seed)
            return self._gaussian(grid)

    def mean(self, grid: torch.Tensor, seeds, count: bool = True) -> torch.Tensor:
        return sum(self.value(grid, s, count) for s in seeds) / len(seeds)

    def value_and_grad(self, grid: torch.Tensor, seeds, count: bool = True) -> tuple[float, torch.Tensor]:
        """(mean objective over ``seeds``, its gradient in ``grid``); (inf, nan) where not finite."""
        g = grid.detach().clone().requires_grad_(True)
        v = self.mean(g, seeds, count)
        if not bool(torch.isfinite(v)):
            return math.inf, torch.full_like(g, math.nan)
        (dg,) = torch.autograd.grad(v, g)
        return float(v.detach()), dg

    def logit_gradient(self, param, z: torch.Tensor, seeds) -> tuple[float, torch.Tensor]:
        """(f, d log f / dz) by autograd along z -> lambda (softmax) -> t (``sde.t_of_lambda``, the ends pinned:
        the grid ``param.grid(z)`` computes, to the bit) -> the solver's code -> the objective."""
        zz = z.detach().clone().to(torch.float64).requires_grad_(True)
        with torch.enable_grad():
            t = param.sde.t_of_lambda(param.lambdas(zz))
            grid = torch.cat([torch.tensor([param.T], dtype=torch.float64), t[1:-1],
                              torch.tensor([param.t_end], dtype=torch.float64)])
            g = grid.detach()
            if not bool(torch.isfinite(g).all() and (g[1:] < g[:-1]).all()):
                self.obj.evals += len(seeds)
                return math.inf, torch.full_like(z, math.nan)
            try:
                f = self.mean(grid, seeds)
            except (ConfigError, RuntimeError, ValueError):  # a cell run_cell would report as an error: inf
                return math.inf, torch.full_like(z, math.nan)
            fv = float(f.detach())
            if not (math.isfinite(fv) and fv > 0):
                return (fv if math.isfinite(fv) else math.inf), torch.full_like(z, math.nan)
            (gz,) = torch.autograd.grad(torch.log(f), zz)
        return float(f.detach()), gz.detach()
