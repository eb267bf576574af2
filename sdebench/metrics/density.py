"""Exact output density of a deterministic sampler by change of variables; KL and TV from it.

A deterministic solver is a map Phi: x_T -> x_0 (the composition of its steps). x_T has a known density
(exact p_T or the prior), so the sampler's output density at x_0 = Phi(x_T) is

    log q(x_0) = log p_init(x_T) - log |det D Phi(x_T)| = log p_init(x_T) - sum_steps log |det J_step|.

The Jacobian of the whole map is formed exactly with reverse-mode autograd (d backward passes through
the solver's own code, one per output coordinate; rows of a batch never interact, so one pass gives
row j of every sample's Jacobian) and its log-determinant by LU (``torch.linalg.slogdet``): no
Hutchinson trace estimator, exact to rounding, for d up to ``MAX_DIM`` = 64. The determinant of the
product is the product of the per-step determinants, so this is the per-step formula above.

With r = p_0 / q and s = log r evaluated at the sampler's own outputs x_0^(i) (i = 1..n, exact draws of q):

    KL(q || p) = E_q[-s]        TV(q, p) = E_q[(1 - r)_+]

**KL: regression control variates** (``kl_from_logratio``). The plain mean of -s has a standard error
of order sqrt(2 KL / n), useless when KL is small; the old fixed control variate (terms -s + r - 1,
E_q[r] = 1) fixes that but puts r = p/q, a heavy-tailed variable when q is narrower than p in some
direction (Gaussians: r = exp(c z^2), tail index k = 1 - var_q/var_p), into every term: its sample
variance is then itself so noisy (infinite fourth moment once k > 1/4) that the reported standard error
was half the real one in some seeds (nominal 95% intervals covered 87% of the time, standard
deviation of the z-scores 1.33). KL is now the intercept of a least-squares regression of -s on
control variates with known mean zero under q:

- r - 1 (E_q[r] = 1), used only while the tail of r is light: the Hill estimate of its tail index on
  the top min(n/5, 3 sqrt(n)) values of log r must be below ``R_TAIL_MAX`` = 0.25 (finite fourth
  moment), else it is dropped. For small errors -s = -(r - 1) + s^2/2 + ..., so this variate keeps the
  relative standard error O(n^-1/2) however small KL is;
- x_T - m_T and the upper triangle of (x_T - m_T)(x_T - m_T)^T - C_T, the first and second moments of
  the known start law p_init (exact p_T or the prior), when ``init_moments`` is given: the quadratic
  terms when 1 + d + d(d+1)/2 <= n/20, else the linear ones when 1 + d <= n/20. For an affine solver on
  a Gaussian target, s is a quadratic polynomial in x_T, so the estimate is then exact to rounding;
  for mixtures they remove the Gaussian part of the variance.

Its standard error is the residual standard deviation (n - p - 1 degrees of freedom) / sqrt(n), plus
a rounding term 64 eps (|KL| + rms(s)). Coverage of nominal 95% intervals (tests/test_coverage.py,
docs/statistics.md) is checked against exact Gaussian KLs and quadrature on a 1-D mixture.

**TV** is the plain mean of the bounded terms (1 - r)_+ with standard error sample std / sqrt(n)
(bounded terms: its intervals cover at the nominal rate). The estimators' target-vs-target value is
exactly 0 (q = p gives r = 1), so a row's ``<metric>_null`` holds their resolution, one standard error.
"""

from __future__ import annotations

import math

import torch

from sdebench.errors import ConfigError

from . import stochastic as st
from .nulls import null_columns, null_draws
from .registry import ESTIMATE, Metric, register_metric

__all__ = ["MAX_DIM", "R_TAIL_MAX", "output_log_density", "kl_from_logratio", "kl_tv_from_logratio", "tail_index",
           "cv_features", "density_metrics", "check_deterministic", "init_moments", "init_log_prob"]

MAX_DIM = 64


def check_deterministic(spec, options: dict, d: int) -> None:
    if not spec.deterministic(options):
        raise ConfigError(f"density metrics (kl, tv by change of variables) need a deterministic solver; "
                          f"{spec.name!r} with options {options} draws noise")
    if d > MAX_DIM:
        raise ConfigError(f"density metrics use exact Jacobians for d <= {MAX_DIM}; the problem has d = {d}")


def output_log_density(spec, model, x_T: torch.Tensor, grid, sde, log_p_init: torch.Tensor, nfe=None,
                       options=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``spec`` from ``x_T`` with autograd; return (x_0, log q(x_0), log|det D Phi(x_T)|), float64.

    ``log_p_init`` is log p_init(x_T), shape (n,)."""
    options = options or {}
    check_deterministic(spec, options, x_T.shape[1])
    x = x_T.detach().to(torch.float64).clone().requires_grad_(True)
    d = x.shape[1]
    with torch.enable_grad():
        out = spec.sample(model, x, grid, sde, None, nfe=nfe, **options)
        rows = []
        for j in range(d):
            (gj,) = torch.autograd.grad(out[:, j].sum(), x, retain_graph=j < d - 1)
            rows.append(gj)
    J = torch.stack(rows, dim=1)  # (n, d_out, d_in)
    sign, logabsdet = torch.linalg.slogdet(J)
    logdet = torch.where(sign == 0, torch.full_like(logabsdet, math.inf), logabsdet)
    x0 = out.detach()
    return x0, log_p_init.detach().to(torch.float64) - logdet, logdet


R_TAIL_MAX = 0.25
_EPS = 2.220446049250313e-16


def tail_index(log_r: torch.Tensor) -> float:
    """Hill estimate of the Pareto tail index of r = exp(log_r) from its top min(n/5, 3 sqrt(n)) values."""
    n = log_r.numel()
    m = int(math.ceil(min(0.2 * n, 3 * math.sqrt(n))))
    if n < 10 or m + 1 > n:
        return math.inf
    top = torch.topk(log_r.to(torch.float64), m + 1).values
    return float((top[:m] - top[m]).mean())


def cv_features(x_T: torch.Tensor, init_moments, n: int) -> torch.Tensor | None:
    """Control variates with known mean zero built from the start points x_T ~ p_init (module docstring)."""
    if init_moments is None:
        return None
    m, C = (torch.as_tensor(a, dtype=torch.float64) for a in init_moments)
    z = x_T.to(torch.float64).cpu() - m.reshape(1, -1)
    d = z.shape[1]
    if 1 + d + d * (d + 1) // 2 <= n / 20:
        iu = torch.triu_indices(d, d)
        quad = z[:, iu[0]] * z[:, iu[1]] - C.reshape(d, d)[iu[0], iu[1]]
        return torch.cat([z, quad], 1)
    if 1 + d <= n / 20:
        return z
    return None


def kl_from_logratio(log_r: torch.Tensor, features: torch.Tensor | None = None) -> tuple[float, float, int]:
    """KL(q || p) from s = log r at x_i ~ q: regression control-variate estimate, its standard error and the
    number of control variates used (module docstring). ``features``: (n, p) variates with mean zero under q."""
    s = log_r.to(torch.float64).reshape(-1)
    n = s.numel()
    # -s written as (r - 1 - s) - (r - 1): the first part keeps its digits for tiny s
    terms = torch.where(s.abs() < 1e-4, s**2 / 2 + s**3 / 6 + s**4 / 24, torch.expm1(s) - s)
    cols = [] if features is None else [features.to(torch.float64).reshape(n, -1)]
    if tail_index(s) < R_TAIL_MAX:
        y = terms
        cols.insert(0, torch.expm1(s)[:, None])
    else:
        y = -s
    X = torch.cat(cols, 1) if cols else torch.zeros(n, 0, dtype=torch.float64)
    p = X.shape[1]
    rms = float(torch.sqrt((s * s).mean()))
    if n - p - 1 < 2:
        return math.nan, math.nan, p
    if p:
        scale = X.std(0)
        keep = scale > 0
        X = X[:, keep] / scale[keep]
        p = X.shape[1]
        A = torch.cat([torch.ones(n, 1, dtype=torch.float64), X], 1)
        coef = torch.linalg.lstsq(A, y[:, None], driver="gelsd").solution[:, 0]
        est, res = float(coef[0]), y - A @ coef
    else:
        est, res = float(y.mean()), y - y.mean()
    se = math.sqrt(float((res * res).sum()) / (n - p - 1) / n)
    return est, math.hypot(se, 64 * _EPS * (abs(est) + rms)), p


def kl_tv_from_logratio(log_r: torch.Tensor, features: torch.Tensor | None = None) -> dict:
    """KL and TV with standard errors from log r = log p(x_i) - log q(x_i), x_i ~ q (module docstring)."""
    log_r = log_r.to(torch.float64)
    n = log_r.numel()
    kl, kl_se, _ = kl_from_logratio(log_r, features)
    tv_terms = torch.clamp(-torch.expm1(log_r), min=0.0)
    tv = float(tv_terms.mean())
    tv_se = float(tv_terms.std() / math.sqrt(n)) if n > 1 else math.nan
    return {"kl": kl, "kl_se": kl_se, "kl_null": kl_se, "tv": tv, "tv_se": tv_se, "tv_null": tv_se}


def density_metrics(spec, model, x_T, grid, sde, log_p_init, target, nfe=None, options=None,
                    init_moments=None) -> dict:
    """``kl``, ``tv`` (+ ``_se``, ``_null``) of a deterministic sampler's output against ``target``
    (an object with ``log_prob(x)``: the density at t = 0 of the reference law). ``init_moments``: (mean,
    covariance) of the law x_T was drawn from, for the KL's control variates (``init_moments()``)."""
    check_deterministic(spec, options or {}, x_T.shape[1])
    try:
        x0, log_q, _ = output_log_density(spec, model, x_T, grid, sde, log_p_init, nfe, options)
    except RuntimeError:  # a solver that autograd cannot differentiate: no density metrics, not a failed cell
        return {"kl": math.nan, "tv": math.nan}
    if not (torch.isfinite(x0).all() and torch.isfinite(log_q).all()):
        return {"kl": math.nan, "tv": math.nan}
    log_p = target.log_prob(x0)
    return kl_tv_from_logratio(log_p - log_q, cv_features(x_T, init_moments, x_T.shape[0]))


def init_moments(problem, sde, init: str):
    """Mean and covariance of the start law: exact p_T of the problem, or the prior N(0, sigma_T^2 I)."""
    if init == "prior":
        return (torch.zeros(problem.d, dtype=torch.float64),
                sde.prior_std() ** 2 * torch.eye(problem.d, dtype=torch.float64))
    return problem.moments(sde.T, sde)


def init_log_prob(problem, sde, init: str, x_T: torch.Tensor) -> torch.Tensor:
    """log p_init(x_T): exact p_T of the problem, or the SDE's prior N(0, sigma_T^2 I)."""
    x_T = x_T.to(torch.float64)
    if init == "prior":
        s = sde.prior_std()
        d = x_T.shape[1]
        return -0.5 * (x_T**2).sum(1) / s**2 - d * math.log(s) - 0.5 * d * math.log(2 * math.pi)
    return problem.log_prob(x_T, torch.tensor(float(sde.T), dtype=torch.float64), sde)


# ---- registry: kl and tv share one computation (the change-of-variables density, or the binned KDE) ---------
def _kl_tv_applies(ctx):
    if ctx.is_image:
        return "not for image problems"
    d = ctx.problem.d
    if (ctx.spec.deterministic(ctx.options) and d <= MAX_DIM) or d <= 2:
        return True
    return f"needs a deterministic solver with d <= {MAX_DIM}, or d <= 2 (got d = {d})"


def _kl_tv(ctx) -> dict:
    def compute():
        cfg, sde, target = ctx.cfg, ctx.sde, ctx.target
        if ctx.spec.deterministic(ctx.options) and ctx.problem.d <= MAX_DIM:
            logp0 = init_log_prob(ctx.cond, sde, cfg.init, ctx.x_T)
            return density_metrics(ctx.solver, ctx.make_model(), ctx.x_T.to(torch.float64).cpu(), ctx.grid, sde,
                                   logp0, target, nfe=ctx.nfe, options=ctx.options,
                                   init_moments=init_moments(ctx.cond, sde, cfg.init))

        a = st.kde_tv_kl(ctx.x0, target)
        nulls = null_draws(target, ctx.n, "kde", lambda y: st.kde_tv_kl(y, target))
        out = {"kl": a["kde_kl"], "tv": a["kde_tv"]}
        out.update(null_columns("kl", [b["kde_kl"] for b in nulls]))
        out.update(null_columns("tv", [b["kde_tv"] for b in nulls]))
        return out

    return ctx.shared("kl_tv", compute)


def _part(name: str):
    def compute(ctx) -> dict:
        return {k: v for k, v in _kl_tv(ctx).items() if k.split("_")[0] == name}

    return compute


ORDER = 30  # position of this family in the registry (sdebench list)


def _register() -> None:
    common = dict(applies=_kl_tv_applies, has_se=True, has_null=True, default=True, stage=ESTIMATE, no_grad=False,
                  problems=f"ODE solvers with d <= {MAX_DIM} (density); SDE solvers with d <= 2 (KDE)")
    register_metric(Metric("kl", "KL(q || p): exact change-of-variables density for ODE solvers (d <= 64), binned "
                           "KDE for SDE (d <= 2)", "KL", _part("kl"), **common))
    register_metric(Metric("tv", "TV(q, p): exact change-of-variables density for ODE solvers (d <= 64), binned "
                           "KDE for SDE (d <= 2)", "TV (estimated)", _part("tv"), **common))
