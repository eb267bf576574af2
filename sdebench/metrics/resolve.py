"""Metrics that resolve solver error far below the Monte Carlo floor of distribution distances, each with
its own resolution limit in ``<metric>_null`` (so ``<metric>_at_floor`` flags the points that sit on it).

**Weak error: ``weak_err``** (any solver, analytic targets). Test functions phi whose expectation under a
Gaussian mixture p = sum_k w_k N(mu_k, S_k) is closed form:

- moments: z^j, j = 1..4, of the standardized projection z = (u.x - c_u) / s_u along the 32 fixed directions
  u of ``directions(d, 32, seed=0)`` (one direction in 1-D, 8 evenly spaced ones in 2-D), c_u, s_u the
  target's projected mean and std.
  u.x has the 1-D mixture law sum_k w_k N(u.mu_k, u^T S_k u), whose raw moments follow from the Gaussian
  recursion E Y^j = m E Y^(j-1) + (j - 1) s^2 E Y^(j-2);
- the characteristic function: cos(omega z), sin(omega z) for omega in ``FREQS`` = (0.5, 1, 2, 4, 8) along the
  same directions, E cos(omega z) + i E sin(omega z) = sum_k w_k exp(-omega^2 s_k'^2 / 2 + i omega m_k')
  (m_k', s_k': the component's standardized projected mean and std);
- the Gaussian-kernel mean embedding: k(x, z) = exp(-|x - z|^2 / (2 l^2)) at fixed points z (the first 16
  component means, and the heaviest component's mean +- l u for the first 4 directions),
  l = s sqrt(max(1, d/2)) with s the typical component std (``stochastic.component_scale``; the sqrt(d/2)
  keeps k from vanishing in high d),
  E_p k(X, z) = sum_k w_k det(I + S_k / l^2)^(-1/2) exp(-(z - mu_k)^T (l^2 I + S_k)^(-1) (z - mu_k) / 2).

Every phi is normalised by its standard deviation under the target, sd_p(phi) (closed form too: the
moments need E z^8; cos^2 = (1 + cos 2a)/2; k^2 is the kernel at l / sqrt 2), so

    weak_err = max_phi |mean_i phi(x_i) - E_p phi| / sd_p(phi)

is in units of "target standard deviations of phi": a sample of size n from p itself has each term of
order n^(-1/2). ``weak_err_mom`` / ``weak_err_cf`` / ``weak_err_kme``: the same maximum within each family.
``weak_err_se``: from a simultaneous (Sidak) interval over the F test functions, as ``mode_mass``: with
e_f the normalised errors and s_f their standard errors (sample std of phi / sqrt(n) / sd_p(phi)), every
|E e_f| lies in |e_f| +- c s_f with probability >= 95% (c the 1 - 0.025/F normal quantile), so the true
maximum lies in [max_f (|e_f| - c s_f)_+, max_f (|e_f| + c s_f)]; weak_err_se is the smallest s for which
weak_err +- 1.96 s contains that interval (conservative). ``weak_err_null`` / ``_null_sd``: the statistic on
``NULL_DRAWS`` exact target samples of the same n (its value when the solver makes no error).
Cost O(n d F) with F = 32 x 14 + 24 test functions (2-D: 8 x 14 + 16; 1-D: 14 + K + 2); no sample of the
target is needed for the value.

Common random numbers: the test functions and directions do not depend on the seed, so a solver's curve
over NFE is smooth where its samples are: the same seed gives the same x_T for every NFE, and the same
Brownian path where the sweep's CRN base grid holds every step count (``crn_base_steps``; see
docs/statistics.md for which solver kinds that covers).

**Coupled weak error: ``weak_err_cv``** (any solver, analytic targets, unguided, reference = t_end). The same
test functions, against the reference solve of the exact dynamics from the same x_T and, for stochastic
solvers, the same Brownian path, row by row (a control variate): with d_i,f = (phi_f(x_i) - phi_f(x_ref,i)) /
sd_p(phi_f),

    weak_err_cv = max_f |mean_i d_i,f|,

an estimate of max_f |E_q phi_f - E_ref phi_f| / sd_p(phi_f), where E_ref phi = E_p phi up to the reference's
own error (the estimand of weak_err, whose sampling noise of x_T cancels here: the variance of d is that of the
pathwise difference, not of phi under p). The reference: deterministic solvers, the dopri5 flow at rtol 1e-10
(as path_err's, but of all n rows; shared by every grid and NFE); stochastic solvers, srk (SRA1, weak
order 2) with the exact score on the cell's Brownian path refined R times per base cell
(:class:`sdebench.noise.RefinedNoise`: the sub-cell increments drawn conditionally on the coarse ones), R even
and base steps x R >= ``CV_REF_MIN_STEPS``, all n rows, cached per (problem, SDE, schedule, seed, base grid):
with the sweep's ``crn = "shared"`` one solve serves every solver and NFE of a problem x SDE x schedule.
``weak_err_cv_ref_err``: the same statistic of a check solve against the reference (dopri5 at 10x the
tolerance; srk on the R/2 refinement of the same path), a conservative estimate of the reference's error.
``weak_err_cv_se``: the simultaneous (Sidak) interval as for weak_err.

Resolution: each test function is tested, z_f = (|e_f| - ref_err) / s_f (s_f the standard error of mean_i
d_i,f) against the Sidak critical value c = the 1 - 0.025/F normal quantile (``weak_err_cv_crit``; 3.5 for the
F = 128 functions in 2-D): with probability >= 95% no function whose error is within the reference's passes.
The point is at its resolution limit (``weak_err_cv_at_floor``, written by the metric itself:
``Metric.own_floor``) when no function passes (``weak_err_cv_z`` = max_f z_f <= c; :func:`cv_z`). The value is
the largest |e_f| among the functions that pass (hard thresholding at the simultaneous level: a heavy-tailed function,
e.g. a characteristic-function term moved by one path that ends in another mode, cannot set the value with an
error that is all noise); where none passes, the largest |e_f|, flagged. ``weak_err_cv_raw``: the plain
maximum, always; ``weak_err_cv_resolved_f``: how many functions pass; ``weak_err_cv_lo`` / ``_hi``: the
simultaneous 95% interval of the true maximum, max_f (|e_f| - ref_err - c s_f)_+ .. max_f (|e_f| + ref_err + c
s_f), which excludes 0 exactly when the point is resolved (the leaderboard prints it). ``weak_err_cv_null`` =
ref_err + max_f s_f, the noise scale of the plain maximum (the figures' band). The earlier rule, value below 3 x
that null, flagged points whose error some function resolves at tens of its standard errors whenever another
function is noisy (docs/statistics.md). How far below weak_err's floor it reaches depends on how close the
solver's paths stay to the reference's: ODE solvers, to about path_err / sqrt(n) (the mean of the pathwise differences
cancels where their signs vary); SDE solvers, ~6e-3 at n = 6000, because a path that passes near a decision
boundary between modes may end in a different mode than the reference's path (measured in
docs/statistics.md). Cost: the test functions on 2n rows, plus the reference solves (amortised over a group).

**Strong error: ``strong_err``** (SDE solvers with a declared strong order, analytic targets). RMS over
``STRONG_PATHS`` paths (the first rows of x_T) of |x_N - x_ref|, where x_N is the cell's solver on the cell's
grid and x_ref the strong order 1.5 SRA1 scheme (``sdebench.reference.reference_sde``, the ``srk``
solver's scheme, with the exact score) on the ``STRONG_REFINE`` (8) x finer grid of the
same schedule, both driven by one Brownian path sampled on the fine grid (coarse increments are sums of fine
ones, and srk's iterated integrals I_(1,0) nest the same way) from the same x_T. ``strong_err_null``: the
reference's own error, estimated conservatively by RMS |x_ref - x_ref/2| (srk on the 4x grid, same path); the
reference's error is about 2^-1.5 of it. Cost: the solver on STRONG_PATHS paths plus srk at 8x and 4x the
steps (24x the solver's evaluations at 1 NFE/step on STRONG_PATHS paths); the two reference solves are cached
per (problem, sde, schedule, t_end, init, seed, steps), so solvers with the same step count share them. Not a
default metric.

**Pathwise error of ODE solvers: ``path_err``** on analytic targets (unguided): RMS over ``PATH_PATHS`` paths
(the first rows of x_T) of |x_N - x_ref|, x_ref the probability-flow ODE of the exact score solved by
dopri5 at rtol = atol = ``PATH_RTOL`` (1e-10) from the same x_T (:mod:`sdebench.reference`);
``path_err_null`` = ``path_ref_err`` = RMS |x_check - x_ref| with x_check the dopri5 solve at 10x the
tolerance, a conservative estimate of the reference's own error. The reference depends on the cell's
(problem, sde, t_end, init, seed) only, so it is solved once per process for every solver and NFE.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch

from sdebench.noise import NoiseSource, RefinedNoise
from sdebench.problems import GaussianMixture
from sdebench.reference import reference_flow, reference_sde
from sdebench.schedules import make_grid

from .nulls import _law_key, lru_lookup, null_columns, null_draws
from .registry import ESTIMATE, Metric, register_metric
from .samples import directions
from .stochastic import component_scale, kernel_mean

__all__ = ["FREQS", "N_DIR", "N_POINTS", "STRONG_REFINE", "STRONG_PATHS", "PATH_PATHS", "PATH_RTOL", "WeakTests",
           "weak_tests", "weak_expectations", "weak_features", "weak_err", "weak_err_exact", "strong_error",
           "analytic_path_err", "weak_values", "coupled_weak_err", "CV_REF_MIN_STEPS"]

FREQS = (0.5, 1.0, 2.0, 4.0, 8.0)
N_DIR = 32
N_POINTS = 16  # component means used as kernel points (plus 8 around the target mean)
STRONG_REFINE = 8
STRONG_PATHS = 256
PATH_PATHS = 512
PATH_RTOL = 1e-10
CV_REF_MIN_STEPS = 400  # the coupled SDE reference (weak_err_cv) takes at least this many steps
_Z95 = 1.959964


class WeakTests:
    """The test functions of a target: directions (P, d), projected centre c (P,) and scale s (P,), kernel
    points (J, d) and lengthscale l. Built from the target (:func:`weak_tests`), applied to any law."""

    def __init__(self, theta, centre, scale, points, l):
        self.theta, self.centre, self.scale, self.points, self.l = theta, centre, scale, points, float(l)

    @property
    def count(self) -> int:
        P = self.theta.shape[0]
        return P * (4 + 2 * len(FREQS)) + self.points.shape[0]


def weak_tests(mix) -> WeakTests:
    d = mix.d
    if d == 1:
        theta = torch.ones(1, 1, dtype=torch.float64)
    elif d == 2:  # 8 evenly spaced directions, 22.5 degrees apart: a quarter of the cost of 32
        ang = torch.arange(8, dtype=torch.float64) * math.pi / 8
        theta = torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    else:
        theta = directions(d, N_DIR, seed=0)
    w = mix.weights.to(torch.float64)
    m = mix.means.to(torch.float64) @ theta.T  # (K, P)
    v = torch.einsum("pd,kde,pe->kp", theta, mix.covs.to(torch.float64), theta)
    centre = (w[:, None] * m).sum(0)
    scale = torch.sqrt((w[:, None] * (v + m * m)).sum(0) - centre**2)
    l = component_scale(mix) * math.sqrt(max(1.0, d / 2))
    top = mix.means.to(torch.float64)[int(torch.argmax(w))]
    ring = theta[: min(4, theta.shape[0])]
    points = torch.cat([mix.means.to(torch.float64)[:N_POINTS], top + l * ring, top - l * ring])
    return WeakTests(theta, centre, scale, points, l)


def _gauss_raw_moments(m, s2, order: int):
    """E Y^j, j = 0..order, of Y ~ N(m, s2) (elementwise tensors), stacked on a new last axis."""
    out = [torch.ones_like(m), m.clone()]
    for j in range(2, order + 1):
        out.append(m * out[j - 1] + (j - 1) * s2 * out[j - 2])
    return torch.stack(out, -1)


def weak_expectations(tests: WeakTests, mix) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form E phi and E phi^2 of every test function under the Gaussian mixture ``mix`` (F,), (F,)."""
    w = mix.weights.to(torch.float64)
    th = tests.theta
    m = (mix.means.to(torch.float64) @ th.T - tests.centre) / tests.scale  # (K, P) standardized
    s2 = torch.einsum("pd,kde,pe->kp", th, mix.covs.to(torch.float64), th) / tests.scale**2
    raw = (w[:, None, None] * _gauss_raw_moments(m, s2, 8)).sum(0)  # (P, 9)
    mom1, mom2 = raw[:, 1:5], raw[:, torch.tensor([2, 4, 6, 8])]
    om = torch.tensor(FREQS, dtype=torch.float64)

    def cf(o):  # E cos(o z), E sin(o z): (P, len(o))
        damp = torch.exp(-0.5 * o**2 * s2[..., None])
        ang = o * m[..., None]
        return (w[:, None, None] * damp * torch.cos(ang)).sum(0), (w[:, None, None] * damp * torch.sin(ang)).sum(0)

    c1, s1 = cf(om)
    c2, _ = cf(2 * om)
    cos2, sin2 = 0.5 * (1 + c2), 0.5 * (1 - c2)
    k1 = kernel_mean(tests.points, mix, tests.l)
    k2 = kernel_mean(tests.points, mix, tests.l / math.sqrt(2))
    e1 = torch.cat([mom1.reshape(-1), c1.reshape(-1), s1.reshape(-1), k1])
    e2 = torch.cat([mom2.reshape(-1), cos2.reshape(-1), sin2.reshape(-1), k2])
    return e1, e2


def weak_features(x: torch.Tensor, tests: WeakTests, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean and sample variance (n - 1) of every test function on the rows of x: (F,), (F,).

    Cheap by construction: the moments' second moments are the power sums of z up to 8; cos and sin at the
    frequencies 0.5 * 2^j come from one cos / sin by angle doubling, and cos^2 = (1 + cos 2a) / 2."""
    x = x.to(torch.float64).cpu()
    n = x.shape[0]
    P, nf = tests.theta.shape[0], len(FREQS)
    assert FREQS == tuple(0.5 * 2**j for j in range(nf))
    pw = torch.zeros(8, P, dtype=torch.float64)  # sum z^k, k = 1..8
    cs = torch.zeros(nf + 1, P, dtype=torch.float64)  # sum cos(omega_j z), omega_j = 0.5 * 2^j, j = 0..nf
    sn = torch.zeros(nf, P, dtype=torch.float64)
    k1 = torch.zeros(tests.points.shape[0], dtype=torch.float64)
    k2 = torch.zeros_like(k1)
    for a in range(0, n, chunk):
        xb = x[a : a + chunk]
        z = (xb @ tests.theta.T).sub_(tests.centre).div_(tests.scale)  # (b, P)
        zk = z.clone()
        for k in range(8):
            pw[k] += zk.sum(0)
            if k < 7:
                zk.mul_(z)
        c, si = torch.cos(0.5 * z), torch.sin(0.5 * z)
        for j in range(nf + 1):
            cs[j] += c.sum(0)
            if j < nf:
                sn[j] += si.sum(0)
                c, si = 2 * c * c - 1, 2 * si * c
        D = torch.cdist(tests.points, xb) ** 2 if xb.shape[1] > 1 else (xb[:, 0][None] - tests.points) ** 2
        k = torch.exp(-0.5 * D / tests.l**2)
        k1 += k.sum(1)
        k2 += (k * k).sum(1)
    m_pow = pw / n
    mean = torch.cat([m_pow[:4].T.reshape(-1), (cs[:nf] / n).T.reshape(-1), (sn / n).T.reshape(-1), k1 / n])
    second = torch.cat([m_pow[torch.tensor([1, 3, 5, 7])].T.reshape(-1), (0.5 * (1 + cs[1:] / n)).T.reshape(-1),
                        (0.5 * (1 - cs[1:] / n)).T.reshape(-1), k2 / n])
    var = torch.clamp((second - mean * mean) * (n / (n - 1)), min=0.0)
    return mean, var


def _families(tests: WeakTests) -> dict:
    P, nf, J = tests.theta.shape[0], len(FREQS), tests.points.shape[0]
    return {"mom": slice(0, 4 * P), "cf": slice(4 * P, 4 * P + 2 * nf * P), "kme": slice(4 * P + 2 * nf * P,
                                                                                   4 * P + 2 * nf * P + J)}


_TEST_CACHE: OrderedDict = OrderedDict()


def _target_tests(target):
    def make():
        tests = weak_tests(target)
        e1, e2 = weak_expectations(tests, target)
        sd = torch.sqrt(torch.clamp(e2 - e1 * e1, min=0.0))
        return tests, e1, sd

    return lru_lookup(_TEST_CACHE, _law_key(target), 64, make)


def weak_err(x: torch.Tensor, target) -> dict:
    """``weak_err`` (+ ``_se`` and the per-family maxima) of samples x against the mixture ``target``."""
    tests, e1, sd = _target_tests(target)
    mean, var = weak_features(x, tests)
    n = x.shape[0]
    keep = sd > 1e-12 * (1 + e1.abs())  # a test function constant under p carries no scale
    e = ((mean - e1) / torch.where(keep, sd, 1.0)).abs()
    s = torch.sqrt(var / n) / torch.where(keep, sd, 1.0)
    e, s = torch.where(keep, e, 0.0), torch.where(keep, s, 0.0)
    F = int(keep.sum())
    c = float(torch.special.ndtri(torch.tensor(1 - 0.025 / max(F, 1), dtype=torch.float64)))
    val = float(e.max())
    hi = float((e + c * s).max())
    lo = float(torch.clamp(e - c * s, min=0).max())
    row = {"weak_err": val, "weak_err_se": max(hi - val, val - lo) / _Z95}
    for fam, sl in _families(tests).items():
        row[f"weak_err_{fam}"] = float(e[sl].max())
    return row


def weak_err_exact(q, target) -> dict:
    """The true weak_err (and per-family maxima) of a Gaussian-mixture law ``q`` against ``target``: both
    expectations in closed form (the value that weak_err estimates from samples of q)."""
    tests, e1, sd = _target_tests(target)
    eq, _ = weak_expectations(tests, q)
    keep = sd > 1e-12 * (1 + e1.abs())
    e = torch.where(keep, ((eq - e1) / torch.where(keep, sd, 1.0)).abs(), 0.0)
    row = {"weak_err": float(e.max())}
    for fam, sl in _families(tests).items():
        row[f"weak_err_{fam}"] = float(e[sl].max())
    return row


def weak_values(x: torch.Tensor, tests: WeakTests) -> torch.Tensor:
    """phi(x_i) for every test function, (n, F), in the order of :func:`weak_expectations`."""
    x = x.to(torch.float64).cpu()
    z = (x @ tests.theta.T - tests.centre) / tests.scale  # (n, P)
    n = z.shape[0]
    pw = torch.stack([z, z * z, z**3, z**4], -1).reshape(n, -1)  # (n, P*4), p-major like weak_expectations
    om = torch.tensor(FREQS, dtype=torch.float64)
    a = z[..., None] * om  # (n, P, nf)
    D = torch.cdist(x, tests.points) ** 2 if x.shape[1] > 1 else (x[:, :1] - tests.points[:, 0][None]) ** 2
    k = torch.exp(-0.5 * D / tests.l**2)
    return torch.cat([pw, torch.cos(a).reshape(n, -1), torch.sin(a).reshape(n, -1), k], 1)


def cv_z(e: torch.Tensor, s: torch.Tensor, ref_err: float, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Per test function, (|e_f| - ref_err) / s_f: its error beyond the reference's own error in units of its
    standard error (+inf where s_f = 0 and the error exceeds ref_err, -inf where s_f = 0 and it does not, and
    for functions outside ``keep``)."""
    e, s = e.abs().to(torch.float64), s.to(torch.float64)
    excess = e - ref_err
    z = torch.where(s > 0, excess / torch.where(s > 0, s, 1.0), torch.where(excess > 0, torch.inf, -torch.inf))
    return z if keep is None else torch.where(keep, z, -torch.inf)


def coupled_weak_err(x: torch.Tensor, x_ref: torch.Tensor, x_check: torch.Tensor, target) -> dict:
    """``weak_err_cv`` of samples x against a reference solve x_ref from the same x_T (and Brownian path),
    row by row, with x_check a coarser reference solve (module docstring): e_f = mean(phi_f(x) -
    phi_f(x_ref)) / sd_p(phi_f); the value is the largest |e_f| among the test functions whose error is resolved
    (z_f = (|e_f| - ref_err) / s_f above the Sidak critical value c: hard thresholding at the simultaneous 95%
    level), or, where none is, the largest |e_f| (``weak_err_cv_raw``, always written) with
    ``weak_err_cv_at_floor`` set; its simultaneous standard error; the noise scale ``weak_err_cv_null`` =
    (the reference's own error) + max_f (standard error of e_f)."""
    tests, e1, sd = _target_tests(target)
    m = x_ref.shape[0]
    keep = sd > 1e-12 * (1 + e1.abs())
    scale = torch.where(keep, sd, 1.0)
    vr = weak_values(x_ref, tests)
    diff = (weak_values(x[:m], tests) - vr) / scale
    e = torch.where(keep, diff.mean(0).abs(), 0.0)
    s = torch.where(keep, diff.std(0) / math.sqrt(m), 0.0)
    r = torch.where(keep, ((weak_values(x_check, tests) - vr) / scale).mean(0).abs(), 0.0)
    F = int(keep.sum())
    c = float(torch.special.ndtri(torch.tensor(1 - 0.025 / max(F, 1), dtype=torch.float64)))
    ref_err = float(r.max())
    z = cv_z(e, s, ref_err, keep)
    resolved = z > c
    raw = float(e.max())
    val = float(e[resolved].max()) if bool(resolved.any()) else raw
    hi, lo = float((e + c * s).max()), float(torch.clamp(e - c * s, min=0).max())
    # the simultaneous 95% interval of the solver's true max error (the reference's own error on both sides):
    # it excludes 0 exactly when some function passes the test, i.e. when the point is not at its limit
    lo_ref = float(torch.clamp(e - ref_err - c * s, min=0).max())
    hi_ref = float((e + ref_err + c * s).max())
    row = {"weak_err_cv": val, "weak_err_cv_lo": lo_ref, "weak_err_cv_hi": hi_ref,
           "weak_err_cv_se": max(hi - val, val - lo) / _Z95,
           "weak_err_cv_null": ref_err + float(s.max()), "weak_err_cv_ref_err": ref_err, "weak_err_cv_paths": m,
           "weak_err_cv_raw": raw, "weak_err_cv_z": float(z.max()), "weak_err_cv_crit": c,
           "weak_err_cv_resolved_f": int(resolved.sum()), "weak_err_cv_at_floor": not bool(resolved.any())}
    for fam, sl in _families(tests).items():
        row[f"weak_err_cv_{fam}"] = float(e[sl].max())
    return row


# ---- strong error --------------------------------------------------------------------------------------------
_STRONG_CACHE: OrderedDict = OrderedDict()


def strong_error(solver, make_model, sde, x_T, grid, schedule: str, t_end: float, seed: int, nfe=None,
                 options=None, refine: int = STRONG_REFINE, paths: int = STRONG_PATHS, score=None, key=None) -> dict:
    """RMS |x_N - x_ref| over the first ``paths`` rows of x_T and the reference's own error (module docstring).
    ``score(x, t)``: the exact score of the reference (default: ``make_model().score``). ``key``: when given,
    the two reference solves are cached under (key, steps, refine, paths) for the process, so every solver
    with the same step count (same x_T, grid and path) shares them."""
    steps = len(grid) - 1
    m = min(paths, x_T.shape[0])
    x0 = x_T[:m].to(torch.float64).cpu()
    d = x0.shape[1]
    fine = make_grid(sde, steps * refine, t_end, schedule)
    noise = NoiseSource(seed, m, (d,), base_grid=fine)
    x_n = solver.sample(make_model(), x0, grid, sde, noise, nfe=nfe, **(options or {}))
    score = make_model().score if score is None else score

    def ref(k):
        g = make_grid(sde, steps * k, t_end, schedule)
        return reference_sde(sde, score, x0, g, NoiseSource(seed, m, (d,), base_grid=fine))

    def refs():
        return ref(refine), ref(refine // 2)

    x_ref, x_half = refs() if key is None else lru_lookup(_STRONG_CACHE, tuple(key) + (steps, refine, m), 16, refs)
    rms = lambda a: float(a.to(torch.float64).norm(dim=1).pow(2).mean().sqrt())  # noqa: E731
    return {"strong_err": rms(x_n - x_ref), "strong_err_null": rms(x_half - x_ref), "strong_paths": m,
            "strong_ref_steps": steps * refine}


# ---- pathwise error of ODE solvers on analytic targets --------------------------------------------------------
_PATH_CACHE: OrderedDict = OrderedDict()


def flow_reference(problem, sde, x_T, t_end: float, key, paths: int = PATH_PATHS, rtol: float = PATH_RTOL):
    """The dopri5 reference flow solve (and its check solve) of the first ``paths`` rows of x_T, cached per
    (key, paths, rtol) for the process: :class:`sdebench.reference.ReferenceFlow`."""
    m = min(paths, x_T.shape[0])
    x0 = x_T[:m].to(torch.float64).cpu()

    def solve():
        return reference_flow(sde, x0, t_end, score=lambda x, t: problem.score(x, t, sde), rtol=rtol,
                              error_estimate=True)

    return lru_lookup(_PATH_CACHE, tuple(key) + (m, rtol), 32, solve)


def analytic_path_err(problem, sde, x_T, x_out, t_end: float, key, final=None, paths: int = PATH_PATHS,
                      rtol: float = PATH_RTOL) -> dict:
    """``path_err`` (RMS per-sample |x_out - x_ref|), median, max, ``path_err_null`` (= ``path_ref_err``) of a
    deterministic solver against dopri5 on the exact probability-flow ODE, over the first ``paths`` rows;
    ``final``: a map applied to the reference and its check solve (the final denoise)."""
    m = min(paths, x_T.shape[0])
    r = flow_reference(problem, sde, x_T, t_end, key, paths, rtol)
    ref, check = r.x, r.x_check
    if final is not None:
        ref, check = final(ref), final(check)
    err = (x_out[:m].to(torch.float64).cpu() - ref).norm(dim=1)
    ref_err = float((check - ref).norm(dim=1).pow(2).mean().sqrt())
    return {"path_err": float(err.pow(2).mean().sqrt()), "path_err_med": float(err.median()),
            "path_err_max": float(err.max()), "ref_nfe": int(r.nfe), "path_ref_nfe": int(r.nfe + r.check_nfe),
            "path_ref_rtol": r.rtol, "path_ref_err": ref_err, "path_err_null": ref_err, "path_paths": m}


# ---- registry ---------------------------------------------------------------------------------------------------
def _weak_applies(ctx):
    if ctx.is_image:
        return "not for image problems"
    return True if isinstance(ctx.target, GaussianMixture) else "needs a Gaussian-mixture target"


def _weak(ctx) -> dict:
    target = ctx.target
    row = weak_err(ctx.x0, target)
    draws = null_draws(target, ctx.n, "weak_err", lambda y: weak_err(y, target)["weak_err"])
    row.update(null_columns("weak_err", draws))
    return row


def _strong_applies(ctx):
    if ctx.is_image:
        return "not for image problems"
    if ctx.spec.deterministic(ctx.options):
        return "needs a stochastic solver"
    if getattr(ctx.spec, "strong_order", None) is None:
        return "needs a solver with a declared strong order (a pathwise approximation of the reverse SDE)"
    if ctx.guided or getattr(ctx.cfg, "final_denoise", False):
        return "not for guided or final-denoise cells"
    return True


def _strong(ctx) -> dict:
    cfg, sde, cond = ctx.cfg, ctx.sde, ctx.cond
    key = (cfg.problem, repr(sde), cfg.schedule, float(ctx.t_end), cfg.init, int(cfg.seed), str(cfg.dtype))
    return strong_error(ctx.solver, ctx.make_model, sde, ctx.x_T, ctx.grid, cfg.schedule, ctx.t_end, cfg.seed,
                        nfe=ctx.nfe, options=ctx.options, score=lambda x, t: cond.score(x, t, sde), key=key)


def _cv_applies(ctx):
    base = _weak_applies(ctx)
    if base is not True:
        return base
    if ctx.guided or getattr(ctx.cfg, "final_denoise", False):
        return "not for guided or final-denoise cells"
    if getattr(ctx.cfg, "reference", "t_end") != "t_end":
        return "judges against p_{t_end} (the reference solve's law), not reference = data"
    if not ctx.spec.deterministic(ctx.options) and getattr(ctx, "noise", None) is None:
        return "needs the cell's noise source (run through sdebench.run.run_cell)"
    return True


_CV_CACHE: OrderedDict = OrderedDict()


def sde_reference(cond, sde, x_T, noise, key, min_steps: int = CV_REF_MIN_STEPS):
    """(x_ref, x_check, steps) of the reverse SDE of the exact score solved by srk (SRA1) from x_T on the
    cell's Brownian path refined R times per base cell (R even, base steps x R >= ``min_steps``;
    :class:`sdebench.noise.RefinedNoise`), and on the R/2 refinement of the same path (the check). Cached per
    (key, base grid, R): every solver and NFE that shares the cell's base grid shares the solves."""
    base = noise.base_grid
    B = len(base) - 1
    R = max(2, -(-min_steps // B))
    R += R % 2
    score = lambda x, t: cond.score(x, t, sde)  # noqa: E731

    def solve():
        fine = RefinedNoise(noise, R)
        x_ref = reference_sde(sde, score, x_T, fine.base_grid, fine)
        half = RefinedNoise(noise, R)
        x_check = reference_sde(sde, score, x_T, fine.base_grid[::2], half)
        return x_ref, x_check, B * R

    bkey = hash(base.numpy().tobytes())
    return lru_lookup(_CV_CACHE, tuple(key) + (bkey, R, int(x_T.shape[0])), 8, solve)


def _weak_cv(ctx) -> dict:
    cfg, sde = ctx.cfg, ctx.sde
    key = (cfg.problem, repr(sde), float(ctx.t_end), cfg.init, int(cfg.seed), str(cfg.dtype))
    if ctx.spec.deterministic(ctx.options):  # the reference flow of all n rows, shared by every grid and NFE
        r = flow_reference(ctx.cond, sde, ctx.x_T, ctx.t_end, key, paths=ctx.x_T.shape[0])
        row = coupled_weak_err(ctx.x0, r.x, r.x_check, ctx.target)
        row["weak_err_cv_ref_steps"] = int(r.nfe)
        return row
    x_T = ctx.x_T.to(torch.float64).cpu()
    x_ref, x_check, steps = sde_reference(ctx.cond, sde, x_T, ctx.noise, key + (cfg.schedule,))
    row = coupled_weak_err(ctx.x0, x_ref, x_check, ctx.target)
    row["weak_err_cv_ref_steps"] = int(steps)
    return row


ORDER = 70  # position of this family in the registry (sdebench list)


def _register() -> None:
    register_metric(Metric("weak_err", "max over closed-form test functions (moments <= 4, characteristic function, "
                           "kernel embedding) of |E_q phi - E_p phi| / sd_p(phi)", "weak error (max normalised)",
                           _weak, applies=_weak_applies, has_se=True, has_null=True,
                           columns=("weak_err_mom", "weak_err_cf", "weak_err_kme"), problems="analytic, any d",
                           stage=ESTIMATE))
    register_metric(Metric("weak_err_cv", "weak_err's test functions vs the reference solve from the same x_T and "
                           "Brownian path: max |mean(phi(x) - phi(x_ref))| / sd_p(phi)",
                           "weak error (coupled to the reference)",
                           _weak_cv, applies=_cv_applies, has_se=True, has_null=True,
                           columns=("weak_err_cv_mom", "weak_err_cv_cf", "weak_err_cv_kme", "weak_err_cv_ref_err",
                                    "weak_err_cv_paths", "weak_err_cv_ref_steps", "weak_err_cv_raw", "weak_err_cv_lo",
                                    "weak_err_cv_hi", "weak_err_cv_z",
                                    "weak_err_cv_crit", "weak_err_cv_resolved_f"),
                           problems="analytic, any d", stage=ESTIMATE, own_floor=True))
    register_metric(Metric("strong_err", "SDE solvers with a strong order: RMS |x - x_ref| vs srk at 8x the steps on "
                           "the same Brownian path and x_T (256 paths)", "strong error (RMS vs fine srk)", _strong,
                           applies=_strong_applies, has_null=True, columns=("strong_paths", "strong_ref_steps"),
                           problems="analytic, SDE solvers with a declared strong order", stage=ESTIMATE))
