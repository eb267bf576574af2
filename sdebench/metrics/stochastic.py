"""Metrics for samples whose density is unknown (stochastic samplers), against a known Gaussian mixture.

Every function returns the statistic for the samples ``x``; the harness calls it a second time on an
exact target sample of the same size to get the row's ``<metric>_null`` (the Monte Carlo floor).

**Smoothed TV / KL (1-D and 2-D): ``kde_tv_kl``.** Gaussian kernel density estimate on a fine grid,
compared with the target smoothed by the *same* kernel: p_h = p * N(0, h^2 I) is again a mixture
(covariances S_k + h^2 I), so no smoothing bias is left in the comparison, and the value estimates
TV(q * K_h, p * K_h) <= TV(q, p) (smoothing is a contraction; likewise for KL). Bias/variance trade-off:
a larger h hides error at scales below h (the estimate is a lower bound that tightens as h -> 0); a
smaller h raises the sampling floor, which scales as (n h^d)^{-1/2} for TV and (n h^d)^{-1} for KL.
Bandwidth rule (Scott): h = s n^{-1/(d+4)} with s the target's typical component standard deviation,
s^2 = mean_k tr(S_k) / d (fixed by the target, so samples and null share it). The KDE is binned: samples
are binned linearly onto a grid of spacing h/4 (extent: every component mean +- 6 std + 4h) and
convolved with the sampled Gaussian kernel (separable, float64); binning error O((h/4)^2).
Samples outside the grid are counted as mass q has and p_h has not (they add their mass to TV).

**MMD: ``mmd``.** Gaussian kernel k(x, y) = exp(-|x - y|^2 / (2 l^2)), l = s as above. The kernel mean
against the mixture is closed form:
E_Y k(x, Y) = sum_k w_k det(I + S_k / l^2)^{-1/2} exp(-(x - mu_k)^T (l^2 I + S_k)^{-1} (x - mu_k) / 2) and
E k(Y, Y') = sum_jk w_j w_k det(I + (S_j + S_k)/l^2)^{-1/2} exp(-dmu^T (l^2 I + S_j + S_k)^{-1} dmu / 2),
so MMD^2 = mean_{i != j} k(x_i, x_j) - 2 mean_i E_Y k(x_i, Y) + E k(Y, Y') is unbiased with no target
sample; standard error from the U-statistic's exact (Hoeffding) variance, both its first- and its
second-order terms (the second dominates near MMD = 0; see ``mmd``). ``mmd`` is sqrt(max(MMD^2, 0)).

**Sinkhorn: ``sinkhorn``.** Debiased entropic OT divergence S_eps(x, y) = OT_eps(x, y) - (OT_eps(x, x) +
OT_eps(y, y)) / 2 with squared-Euclidean cost (POT ``empirical_sinkhorn_divergence``) against an
independent target sample y of the same size; eps = 0.5 * d * s^2 (half the typical squared distance
within a component: a blur of about one component std, which keeps POT to a few hundred iterations;
the debiased divergence still vanishes only for equal laws, but it is blind to detail below that
blur). Nonnegative, O(n^-1/2) floor in any dimension, W2^2 units.

**Per-mode mass: ``mode_mass``.** Soft assignment by the target's responsibilities r_k(x) (exactly
unbiased for the weights under the target: E_p[r_k(X)] = w_k), err = max_k |mean_i r_k(x_i) - w_k| with
a standard error from a simultaneous interval over the modes (``mode_mass_error``); ``mode_masses``
gives the per-mode table with hard (argmax) counts and their Wilson 95% binomial intervals, meaningful
for well-separated modes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sdebench.errors import ConfigError
from sdebench.problems import GaussianMixture

from .nulls import null_columns, null_draws, paired_sample_applies, target_sample
from .registry import ESTIMATE, Metric, register_metric

__all__ = ["component_scale", "scott_bandwidth", "kde_tv_kl", "mmd", "mmd2_exact", "kernel_mean", "kernel_cross",
           "sinkhorn",
           "responsibilities", "mode_mass_error", "mode_masses", "wilson"]


def component_scale(mix) -> float:
    """s with s^2 = mean_k tr(S_k) / d."""
    return math.sqrt(float(torch.diagonal(mix.covs, dim1=1, dim2=2).sum(-1).mean()) / mix.d)


def scott_bandwidth(mix, n: int) -> float:
    return component_scale(mix) * n ** (-1.0 / (mix.d + 4))


# ---- KDE on a grid ------------------------------------------------------------------------------
def _grid_axes(mix, h: float, max_points: int):
    std = torch.sqrt(torch.diagonal(mix.covs, dim1=1, dim2=2))  # (K, d)
    lo = (mix.means - 6 * std).min(0).values - 4 * h
    hi = (mix.means + 6 * std).max(0).values + 4 * h
    axes = []
    for j in range(mix.d):
        m = int(min(max_points, math.ceil(float(hi[j] - lo[j]) / (h / 4)) + 1))
        axes.append(torch.linspace(float(lo[j]), float(hi[j]), m, dtype=torch.float64))
    return axes


def _bin_linear(x: torch.Tensor, axes) -> tuple[torch.Tensor, int]:
    """Linear binning of samples onto the grid; returns weights (sum = inside count) and outside count."""
    d = x.shape[1]
    shape = [len(a) for a in axes]
    pos, inside = [], torch.ones(x.shape[0], dtype=torch.bool)
    for j in range(d):
        a = axes[j]
        dx = float(a[1] - a[0])
        u = (x[:, j] - float(a[0])) / dx
        inside &= (u >= 0) & (u <= len(a) - 1)
        pos.append(u)
    out = int((~inside).sum())
    pos = [u[inside] for u in pos]
    counts = torch.zeros(shape, dtype=torch.float64)
    lo_idx = [torch.clamp(u.floor().long(), 0, s - 2) for u, s in zip(pos, shape)]
    frac = [u - i.double() for u, i in zip(pos, lo_idx)]
    for corner in range(2**d):
        idx, wt = [], torch.ones_like(pos[0])
        for j in range(d):
            bit = (corner >> j) & 1
            idx.append(lo_idx[j] + bit)
            wt = wt * (frac[j] if bit else 1 - frac[j])
        counts.index_put_(tuple(idx), wt, accumulate=True)
    return counts, out


def _smooth(counts: torch.Tensor, axes, h: float) -> torch.Tensor:
    out = counts
    for j, a in enumerate(axes):
        dx = float(a[1] - a[0])
        r = int(math.ceil(5 * h / dx))
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) * dx / h) ** 2)
        k = k / (k.sum() * dx)  # density kernel on the grid
        moved = out.movedim(j, -1)
        flat = moved.reshape(-1, 1, moved.shape[-1])
        conv = torch.nn.functional.conv1d(flat, k.flip(0).reshape(1, 1, -1), padding=r)
        out = conv.reshape(moved.shape).movedim(-1, j)
    return out


def kde_tv_kl(x: torch.Tensor, mix, h: float | None = None, max_points: int | None = None) -> dict:
    """Smoothed TV and KL(q_h || p_h) on a grid (d = 1 or 2); see the module docstring."""
    x = x.to(torch.float64).cpu()
    n, d = x.shape
    if d not in (1, 2):
        raise ConfigError(f"kde TV/KL is defined for d = 1 or 2, got d = {d}")
    h = scott_bandwidth(mix, n) if h is None else float(h)
    axes = _grid_axes(mix, h, max_points or (8192 if d == 1 else 768))
    counts, outside = _bin_linear(x, axes)
    q = _smooth(counts, axes, h) / n
    mesh = torch.meshgrid(*axes, indexing="ij")
    pts = torch.stack([m.reshape(-1) for m in mesh], 1)

    ph = GaussianMixture(mix.weights, mix.means, mix.covs + h * h * torch.eye(d, dtype=torch.float64))
    logp = ph.log_prob(pts).reshape(q.shape)
    p = torch.exp(logp)
    cell = math.prod(float(a[1] - a[0]) for a in axes)
    tv = 0.5 * float((q - p).abs().sum()) * cell + 0.5 * outside / n
    pos = q > 0
    kl = float((q[pos] * (torch.log(q[pos]) - logp[pos])).sum()) * cell
    return {"kde_tv": min(tv, 1.0), "kde_kl": max(kl, 0.0), "bandwidth": h}


# ---- MMD ------------------------------------------------------------------------------------------
def kernel_mean(x: torch.Tensor, mix, l: float) -> torch.Tensor:
    """E_{Y ~ mix} exp(-|x - Y|^2 / (2 l^2)) for each row of x."""
    x = x.to(torch.float64)
    d = mix.d
    eye = torch.eye(d, dtype=torch.float64)
    out = torch.zeros(x.shape[0], dtype=torch.float64)
    for k in range(mix.K):
        A = l * l * eye + mix.covs[k]
        L = torch.linalg.cholesky(A)
        z = torch.linalg.solve_triangular(L, (x - mix.means[k]).T, upper=False)
        logdet = 2 * torch.log(torch.diagonal(L)).sum() - d * math.log(l * l)
        out += mix.weights[k] * torch.exp(-0.5 * (z * z).sum(0) - 0.5 * logdet)
    return out


def kernel_cross(a, b, l: float) -> float:
    """E k(X, Y) for independent X ~ mixture ``a``, Y ~ mixture ``b`` (closed form)."""
    d = a.d
    eye = torch.eye(d, dtype=torch.float64)
    tot = 0.0
    for j in range(a.K):
        for k in range(b.K):
            A = l * l * eye + a.covs[j] + b.covs[k]
            dm = a.means[j] - b.means[k]
            quad = float(dm @ torch.linalg.solve(A, dm))
            logdet = float(torch.linalg.slogdet(A)[1]) - d * math.log(l * l)
            tot += float(a.weights[j] * b.weights[k]) * math.exp(-0.5 * quad - 0.5 * logdet)
    return tot


def _kernel_self(mix, l: float) -> float:
    return kernel_cross(mix, mix, l)


def mmd2_exact(a, b, l: float) -> float:
    """Closed-form MMD^2 between two Gaussian mixtures with the Gaussian kernel of lengthscale l."""
    return kernel_cross(a, a, l) - 2 * kernel_cross(a, b, l) + kernel_cross(b, b, l)


def mmd(x: torch.Tensor, mix, l: float | None = None, chunk: int = 2048) -> dict:
    """Unbiased MMD^2 against the mixture with its standard error; ``mmd`` = sqrt(max(MMD^2, 0)).

    MMD^2 = U = mean_{i != j} h(x_i, x_j), h(x, y) = k(x, y) - m(x) - m(y) + E k(Y, Y'), m = kernel mean
    of the mixture. Its exact variance is (4 (n - 2) z1 + 2 z2) / (n (n - 1)) with z1 = Var h_1(X),
    h_1(x) = E h(x, X'), and z2 = Var h(X, X') (Hoeffding). Both are estimated without bias from the rows
    of the kernel matrix: z1 by the variance of the row means minus their own within-row noise, z2 by the
    mean of h^2 over pairs minus U^2. The second-order term matters near MMD = 0, where z1 -> 0 (the
    U-statistic is degenerate). ``mmd_se``: the interval U +- 1.96 se(U) mapped through sqrt(max(., 0)) is
    [lo, hi]; mmd_se = max(hi - mmd, mmd - lo) / 1.96, so mmd +- 1.96 mmd_se contains it (conservative
    near 0, where the square root makes it lopsided)."""
    x = x.to(torch.float64).cpu()
    n = x.shape[0]
    l = component_scale(mix) if l is None else float(l)
    km = kernel_mean(x, mix, l)
    kk = _kernel_self(mix, l)
    s1 = torch.zeros(n, dtype=torch.float64)  # sum_{j != i} (k_ij - m_j)
    s2 = torch.zeros(n, dtype=torch.float64)  # sum_{j != i} (k_ij - m_j)^2
    sq = (x * x).sum(1)
    for s in range(0, n, chunk):
        xb = x[s : s + chunk]
        D = sq[s : s + chunk, None] + sq[None, :] - 2 * xb @ x.T
        g = torch.exp(-0.5 * torch.clamp(D, min=0) / (l * l)) - km[None, :]
        idx = torch.arange(s, s + xb.shape[0])
        g[idx - s, idx] = 0.0  # drop j = i
        s1[s : s + chunk] = g.sum(1)
        s2[s : s + chunk] = (g * g).sum(1)
    row_mean = s1 / (n - 1) - km + kk  # mean_j h(x_i, x_j), j != i
    mmd2 = float(row_mean.mean())
    within = (s2 - s1 * s1 / (n - 1)) / (n - 2)  # within-row variance of h(x_i, .)
    z1 = max(float(row_mean.var()) - float(within.mean()) / (n - 1), 0.0)
    z2 = max(float((within * (n - 2) / (n - 1) + row_mean * row_mean).mean()) - mmd2 * mmd2, 0.0)
    se2 = math.sqrt(max((4 * (n - 2) * z1 + 2 * z2) / (n * (n - 1)), 0.0))
    val = math.sqrt(max(mmd2, 0.0))
    z = 1.959964
    up, down = math.sqrt(max(mmd2 + z * se2, 0.0)) - val, val - math.sqrt(max(mmd2 - z * se2, 0.0))
    se = max(up, down) / z
    return {"mmd": val, "mmd_se": se, "mmd2": mmd2, "mmd2_se": se2, "lengthscale": l}


# ---- Sinkhorn -------------------------------------------------------------------------------------
def sinkhorn(x: torch.Tensor, y: torch.Tensor, reg: float) -> float:
    """Debiased Sinkhorn divergence (squared-Euclidean cost) between equal-weight samples (POT)."""
    import warnings

    import ot

    xa = np.ascontiguousarray(x.detach().to(torch.float64).cpu().numpy())
    ya = np.ascontiguousarray(y.detach().to(torch.float64).cpu().numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        val = ot.bregman.empirical_sinkhorn_divergence(xa, ya, reg, numIterMax=1000, stopThr=1e-6)
    return max(float(val), 0.0)


def sinkhorn_reg(mix) -> float:
    return 0.5 * mix.d * component_scale(mix) ** 2


# ---- per-mode mass ---------------------------------------------------------------------------------
def responsibilities(x: torch.Tensor, mix) -> torch.Tensor:
    """r_k(x) under the mixture at t = 0, shape (n, K)."""
    x = x.to(torch.float64).cpu()
    logits = []
    for k in range(mix.K):
        dist = torch.distributions.MultivariateNormal(mix.means[k], covariance_matrix=mix.covs[k])
        logits.append(torch.log(mix.weights[k]) + dist.log_prob(x))
    return torch.softmax(torch.stack(logits, 1), dim=1)


def mode_mass_error(x: torch.Tensor, mix) -> dict:
    """max_k |mean r_k(x) - w_k| and its standard error (K >= 2).

    The value is a maximum of folded errors, biased upward near 0 (with 8 modes and no error at all it
    sits about 1.7 of its per-mode standard errors above 0), so ``mode_mass_se`` is built from a
    simultaneous interval: with e_k the per-mode errors and s_k their standard errors, every |E e_k| lies
    in |e_k| +- c s_k with probability >= 95% (c = Sidak's 1 - 0.025/K normal quantile; K = 1 for two
    modes, whose errors are equal and opposite), hence the true max in [max_k (|e_k| - c s_k)_+,
    max_k (|e_k| + c s_k)]; ``mode_mass_se`` is the smallest s for which mode_mass +- 1.96 s contains
    that interval (conservative)."""
    r = responsibilities(x, mix)
    n = r.shape[0]
    err = (r.mean(0) - mix.weights).abs()
    se_k = r.std(0) / math.sqrt(n)
    k = int(err.argmax())
    val = float(err[k])
    kk = 1 if mix.K == 2 else mix.K
    c = float(torch.special.ndtri(torch.tensor(1 - 0.025 / kk, dtype=torch.float64)))  # normal quantile
    hi = float((err + c * se_k).max())
    lo = float(torch.clamp(err - c * se_k, min=0).max())
    z = 1.959964
    return {"mode_mass": val, "mode_mass_se": max(hi - val, val - lo) / z, "mode_mass_se_k": float(se_k[k])}


def wilson(count: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval for a binomial proportion."""
    if n == 0:
        return math.nan, math.nan
    p = count / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return c - half, c + half


def mode_masses(x: torch.Tensor, mix) -> list[dict]:
    """Per mode: weight, soft mass (mean responsibility), hard fraction (argmax) with Wilson 95% CI."""
    r = responsibilities(x, mix)
    n = r.shape[0]
    hard = torch.bincount(r.argmax(1), minlength=mix.K)
    out = []
    for k in range(mix.K):
        lo, hi = wilson(int(hard[k]), n)
        out.append({"mode": k, "weight": float(mix.weights[k]), "soft_mass": float(r[:, k].mean()),
                    "hard_mass": int(hard[k]) / n, "ci_lo": lo, "ci_hi": hi,
                    "covered": bool(lo <= float(mix.weights[k]) <= hi)})
    return out


# ---- registry -----------------------------------------------------------------------------------------------
def _analytic(ctx):
    return True if not ctx.is_image else "not for image problems"


def _mmd(ctx) -> dict:
    target = ctx.target
    a = mmd(ctx.x0, target)
    row = {"mmd": a["mmd"], "mmd_se": a["mmd_se"]}
    row.update(null_columns("mmd", null_draws(target, ctx.n, "mmd", lambda y: math.sqrt(abs(mmd(y, target)["mmd2"])))))
    return row


def _mode_mass_applies(ctx):
    if ctx.is_image:
        return "not for image problems"
    return True if ctx.target.K >= 2 else "needs a mixture with K >= 2 modes"


def _mode_mass(ctx) -> dict:
    target = ctx.target
    a = mode_mass_error(ctx.x0, target)
    row = {"mode_mass": a["mode_mass"], "mode_mass_se": a["mode_mass_se"]}
    row.update(null_columns("mode_mass", null_draws(target, ctx.n, "mode_mass",
                                                    lambda y: mode_mass_error(y, target)["mode_mass"])))
    return row


def _sinkhorn(ctx) -> dict:
    target, n = ctx.target, ctx.n
    reg = sinkhorn_reg(target)
    row = {"sinkhorn": sinkhorn(ctx.x0, target_sample(target, n, ctx.cfg.seed, stream=2), reg)}
    row.update(null_columns("sinkhorn", null_draws(target, n, "sinkhorn", lambda y, r: sinkhorn(y, r, reg),
                                                   paired=True)))
    return row


ORDER = 40  # position of this family in the registry (sdebench list)


def _register() -> None:
    register_metric(Metric("mmd", "MMD, Gaussian kernel, closed-form kernel mean against the mixture (unbiased, any d)",
                           "MMD", _mmd, applies=_analytic, has_se=True, has_null=True, default=True, stage=ESTIMATE,
                           problems="analytic, any d"))
    register_metric(Metric("sinkhorn", "debiased Sinkhorn divergence vs an independent target sample (POT, "
                           "n <= 10,000)", "Sinkhorn divergence", _sinkhorn, applies=paired_sample_applies,
                           has_null=True, stage=ESTIMATE, problems="analytic, n <= 10,000"))
    register_metric(Metric("mode_mass", "max over modes of |sampled mass - weight| (responsibilities; mixtures with "
                           "K >= 2)", "mode mass error", _mode_mass, applies=_mode_mass_applies, has_se=True,
                           has_null=True, default=True, stage=ESTIMATE, problems="mixtures with K >= 2"))
