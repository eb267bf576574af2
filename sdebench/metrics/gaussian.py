"""Exact distances between Gaussians, written for tiny errors (docs/theory.md#distances-between-gaussians).

``w2`` uses the optimal map T = S2^{-1/2} (S2^{1/2} S1 S2^{1/2})^{1/2} S2^{-1/2} from N(m2, S2)... applied
as W2^2 = |m1 - m2|^2 + tr((T - I) S2 (T - I)) with T mapping the *target* onto the *output*; T - I is
formed directly so that a 1e-8 error is not lost against tr S ~ 1. ``kl`` works with the eigenvalues of
S2^{-1/2} (S1 - S2) S2^{-1/2} and the series of x - log1p(x). ``tv_1d`` is exact (the log-density
difference is a quadratic with at most two roots); ``tv_mc`` is a Monte Carlo estimate with its
standard error for any dimension.
"""

from __future__ import annotations

import math

import torch

from sdebench import exact  # module attribute: tests count calls of exact.output_gaussian
from sdebench.schedules import make_grid

from .density import init_moments
from .registry import EXACT, Metric, register_metric

__all__ = ["w2", "kl", "tv_1d", "tv_mc", "tv"]


def _sym(S):
    return 0.5 * (S + S.T)


def _sqrt_psd(S):
    lam, U = torch.linalg.eigh(_sym(S))
    return (U * torch.sqrt(torch.clamp(lam, min=0))) @ U.T, lam, U


def w2(m1, S1, m2, S2) -> float:
    """Exact W2 between N(m1, S1) and N(m2, S2)."""
    m1, S1, m2, S2 = (torch.as_tensor(a, dtype=torch.float64) for a in (m1, S1, m2, S2))
    S1, S2 = torch.atleast_2d(S1), torch.atleast_2d(S2)
    dm2 = float(((m1 - m2) ** 2).sum())
    if S1.shape == (1, 1):
        return math.sqrt(dm2 + (math.sqrt(float(S1)) - math.sqrt(float(S2))) ** 2)
    R, lam2, U2 = _sqrt_psd(S2)
    Rinv = (U2 / torch.sqrt(lam2)) @ U2.T
    M, _, _ = _sqrt_psd(R @ S1 @ R)  # (S2^1/2 S1 S2^1/2)^1/2
    # T - I = Rinv (M - S2) Rinv, with M - S2 = (M^2 - S2^2) solved via the eigenbasis would be
    # overkill; M - S2 is formed directly (entries O(1), difference accurate to ~1e-16 absolute).
    TmI = Rinv @ (M - S2) @ Rinv
    return math.sqrt(dm2 + max(float(torch.trace(TmI @ S2 @ TmI.T)), 0.0))


def _x_minus_log1p(x: torch.Tensor) -> torch.Tensor:
    """x - log(1 + x), with a series where |x| < 1e-3 so KL ~ 1e-12 keeps its digits."""
    small = x.abs() < 1e-3
    series = x**2 / 2 - x**3 / 3 + x**4 / 4 - x**5 / 5
    return torch.where(small, series, x - torch.log1p(torch.where(small, torch.zeros_like(x), x)))


def kl(m1, S1, m2, S2) -> float:
    """KL(N(m1, S1) || N(m2, S2)), stable for S1 close to S2."""
    m1, S1, m2, S2 = (torch.as_tensor(a, dtype=torch.float64) for a in (m1, S1, m2, S2))
    S1, S2 = torch.atleast_2d(S1), torch.atleast_2d(S2)
    lam2, U2 = torch.linalg.eigh(_sym(S2))
    W = U2 / torch.sqrt(lam2)  # S2^{-1/2} up to rotation
    delta = torch.linalg.eigvalsh(_sym(W.T @ (S1 - S2) @ W))
    dm = (torch.atleast_1d(m1) - torch.atleast_1d(m2)).reshape(-1)
    maha = float(((W.T @ dm) ** 2).sum())
    return 0.5 * float(_x_minus_log1p(delta).sum()) + 0.5 * maha


def _norm_cdf(x):
    return 0.5 * math.erfc(-x / math.sqrt(2))


def tv_1d(m1, v1, m2, v2) -> float:
    """Exact TV between N(m1, v1) and N(m2, v2) in 1-D (v = variance)."""
    m1, v1, m2, v2 = float(m1), float(v1), float(m2), float(v2)
    s1, s2 = math.sqrt(v1), math.sqrt(v2)
    # log N1 - log N2 = a x^2 + b x + c
    a = 0.5 / v2 - 0.5 / v1
    b = m1 / v1 - m2 / v2
    c = 0.5 * m2**2 / v2 - 0.5 * m1**2 / v1 + math.log(s2 / s1)
    if abs(a) < 1e-14 * max(1 / v1, 1 / v2):
        if b == 0:
            return 0.0
        roots = [-c / b]
    else:
        disc = b * b - 4 * a * c
        if disc <= 0:
            roots = []
        else:
            q = -0.5 * (b + math.copysign(math.sqrt(disc), b))
            roots = sorted([q / a, c / q] if q != 0 else [-b / (2 * a)])
    # TV = sum over intervals where N1 > N2 of (P1 - P2)
    pts = [-math.inf] + roots + [math.inf]
    tv = 0.0
    for lo, hi in zip(pts[:-1], pts[1:]):
        mid = (lo + hi) / 2 if math.isfinite(lo) and math.isfinite(hi) else (
            (hi - 1.0) if math.isfinite(hi) else (lo + 1.0) if math.isfinite(lo) else 0.0)
        if a * mid * mid + b * mid + c > 0:
            p1 = _interval_prob(m1, s1, lo, hi)
            p2 = _interval_prob(m2, s2, lo, hi)
            tv += p1 - p2
    return max(tv, 0.0)


def _interval_prob(m, s, lo, hi) -> float:
    zl = -math.inf if lo == -math.inf else (lo - m) / s
    zh = math.inf if hi == math.inf else (hi - m) / s
    # difference of CDFs in the tail that keeps precision
    if zl > 0:
        return _norm_cdf(-zl) - _norm_cdf(-zh)
    return _norm_cdf(zh) - _norm_cdf(zl)


def tv_mc(m1, S1, m2, S2, n: int = 200_000, seed: int = 0) -> tuple[float, float]:
    """TV = E_q[(1 - p/q)_+] with q = N(m1, S1), p = N(m2, S2): estimate and standard error."""
    m1, S1, m2, S2 = (torch.as_tensor(a, dtype=torch.float64) for a in (m1, S1, m2, S2))
    S1, S2 = torch.atleast_2d(S1), torch.atleast_2d(S2)
    m1, m2 = m1.reshape(-1), m2.reshape(-1)
    g = torch.Generator().manual_seed(seed)
    L1 = torch.linalg.cholesky(S1)
    z = torch.randn(n, len(m1), generator=g, dtype=torch.float64)
    x = m1 + z @ L1.T
    q = torch.distributions.MultivariateNormal(m1, S1)
    p = torch.distributions.MultivariateNormal(m2, S2)
    ratio = torch.exp(p.log_prob(x) - q.log_prob(x))
    vals = torch.clamp(1 - ratio, min=0)
    return float(vals.mean()), float(vals.std() / math.sqrt(n))


def tv(m1, S1, m2, S2, n: int = 200_000, seed: int = 0) -> tuple[float, float]:
    """Exact TV in 1-D (standard error 0), Monte Carlo with standard error otherwise."""
    S1t = torch.atleast_2d(torch.as_tensor(S1, dtype=torch.float64))
    if S1t.shape == (1, 1):
        return tv_1d(float(torch.as_tensor(m1).reshape(-1)[0]), float(S1t),
                     float(torch.as_tensor(m2).reshape(-1)[0]), float(torch.as_tensor(S2).reshape(-1)[0])), 0.0
    return tv_mc(m1, S1, m2, S2, n=n, seed=seed)


# ---- registry: the exact output law of an affine solver on a Gaussian target (sdebench.exact) ----------------
def _exact_applies(ctx):
    if ctx.is_image or not getattr(ctx.problem, "is_gaussian", False):
        return "needs a Gaussian target"
    if ctx.guided:
        return "not for guided cells"
    if not ctx.spec.affine(ctx.options):
        return f"solver {ctx.cfg.solver!r} is not affine under these options"
    return True


def exact_law(ctx):
    """(mean, cov) of the cell's output law, computed once per cell (w2_exact, kl_exact, tv_exact share it)."""

    def law():
        cfg, sde = ctx.cfg, ctx.sde
        m_T, P_T = init_moments(ctx.problem, sde, cfg.init)
        base = make_grid(sde, cfg.crn_steps, ctx.grid[-1].item(), cfg.schedule) if cfg.crn_steps else None
        return exact.output_gaussian(ctx.solver, ctx.make_model, sde, ctx.grid, m_T, P_T, nfe=ctx.nfe,
                                     options=ctx.options, base_grid=base)

    mean, cov = ctx.shared("exact_law", law)
    finite = bool(torch.isfinite(mean).all() and torch.isfinite(cov).all())
    return mean, cov, ctx.target.means[0], ctx.target.covs[0], finite


def _w2_exact(ctx) -> dict:
    mean, cov, mu, S, finite = exact_law(ctx)
    return {"w2_exact": w2(mean, cov, mu, S) if finite else math.nan}


def _kl_exact(ctx) -> dict:
    mean, cov, mu, S, finite = exact_law(ctx)
    if not finite:
        return {"kl_exact": math.nan}
    try:
        return {"kl_exact": kl(mean, cov, mu, S)}
    except torch.linalg.LinAlgError:
        return {"kl_exact": math.nan}


def _tv_exact(ctx) -> dict:
    mean, cov, mu, S, finite = exact_law(ctx)
    if not finite:
        return {"tv_exact": math.nan}
    try:
        v, se = tv(mean, cov, mu, S, seed=ctx.cfg.seed)
    except (torch.linalg.LinAlgError, ValueError):
        v, se = math.nan, math.nan
    return {"tv_exact": v, "tv_exact_se": se}


ORDER = 10  # position of this family in the registry (sdebench list)


def _register() -> None:
    common = dict(applies=_exact_applies, problems="Gaussian targets, affine solvers, unguided", default=True,
                  stage=EXACT, no_grad=True)
    register_metric(Metric("w2_exact", "exact W2 of the solver's Gaussian output law vs the target (Gaussian targets "
                           "only)", "exact W2", _w2_exact, exact=True, seed_independent=True, **common))
    register_metric(Metric("kl_exact", "exact KL(output || target), stable for tiny errors (Gaussian targets only)",
                           "exact KL", _kl_exact, exact=True, seed_independent=True, **common))
    register_metric(Metric("tv_exact", "TV of the output law: exact in 1-D, Monte Carlo with std. error in d-D "
                           "(Gaussian targets)", "TV", _tv_exact, exact=False, has_se=True,
                           seed_independent=lambda problem: getattr(problem, "d", 0) == 1, **common))
