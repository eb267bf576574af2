"""Sections ``scaling`` and ``metrics`` of ``benchmarks/perf.py``: time against batch, NFE, dimension and
mixture components, and metric costs against n and d, with fitted exponents."""

from __future__ import annotations

import math

import torch

from sdebench.problems import get_problem
from sdebench.problems.gmm import GaussianMixture
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.solvers import get_solver

from .perf_core import NOTES, Sizes, fit_exponent, fmt_n, fmt_s, row, setup, timed_sample, timeit


def synthetic_gmm(d: int, K: int, seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    mu = 3.0 * torch.randn(K, d, generator=g, dtype=torch.float64) / math.sqrt(2.0)
    std2 = (0.3 + 0.2 * torch.rand(K, d, generator=g, dtype=torch.float64)) ** 2
    return GaussianMixture(torch.full((K,), 1.0 / K), mu, torch.diag_embed(std2), name=f"gmm-d{d}-K{K}")


def _em_time(prob, n, nfe, rep, device="cpu"):
    sde = get_sde("vp")
    spec = get_solver("em")
    model, x = setup(prob, sde, n, device=device)
    grid = make_grid(sde, nfe, 1e-3)
    t, _ = timed_sample(spec, model, x, grid, sde, 0, nfe, rep, device)
    return t


def scaling(sz: Sizes):
    ring = get_problem("gmm2d-ring8")
    rep = max(1, min(sz.repeat, 3))
    series = [
        ("batch", "em on gmm2d-ring8, NFE 12", sz.scale_batch, lambda v: _em_time(ring, v, 12, rep), True),
        ("NFE", f"em on gmm2d-ring8, batch {fmt_n(sz.scale_n)}", sz.scale_nfe,
         lambda v: _em_time(ring, sz.scale_n, v, rep), True),
        ("dimension d", f"em, K = 8 diagonal GMM, batch {fmt_n(sz.scale_dim_n)}, NFE 12", sz.scale_dim,
         lambda v: _em_time(synthetic_gmm(v, 8), sz.scale_dim_n, 12, rep), False),
        ("components K", f"em, d = 2 GMM, batch {fmt_n(sz.scale_n)}, NFE 12", sz.scale_K,
         lambda v: _em_time(synthetic_gmm(2, v), sz.scale_n, 12, rep), False),
    ]
    for label, case, values, fn, linear_target in series:
        times = [fn(v) for v in values]
        for v, t in zip(values, times):
            row("scaling", f"{case}: {label} = {fmt_n(v)}", fmt_n(v), fmt_s(t))
        p_all = fit_exponent(values, times)
        upper = max(2, (len(values) + 1) // 2)
        p_up = fit_exponent(values[-upper:], times[-upper:])
        tgt = "within 0.1 of 1" if linear_target else ""
        met = ("yes" if abs(p_up - 1) <= 0.1 else "NO") if linear_target else ""
        row("scaling", f"{case}: fitted exponent vs {label}", f"{fmt_n(values[0])}..{fmt_n(values[-1])}", "", "",
            f"{p_all:.2f} (all), {p_up:.2f} (top {upper})", tgt, met,
            "time ~ size^p; the target is judged on the top points", exponent=p_up, axis=label)
        if linear_target and met == "NO":
            NOTES.append(f"scaling: exponent vs {label} on the top points is {p_up:.2f}, not within 0.1 of 1.")


def metric_costs(sz: Sizes):
    from sdebench.metrics import density, samples, stochastic

    ring = get_problem("gmm2d-ring8")
    sde = get_sde("vp")
    rep = max(1, min(sz.repeat, 3))

    def series(name, values, fn, note=""):
        times = []
        for v in values:
            t, _ = timeit(lambda v=v: fn(v), rep)
            times.append(t)
            row("metrics", f"{name}: n = {fmt_n(v)}" if not name.endswith("vs d") else f"{name}: d = {v}",
                fmt_n(v), fmt_s(t))
        row("metrics", f"{name}: fitted exponent", f"{fmt_n(values[0])}..{fmt_n(values[-1])}", "", "",
            f"{fit_exponent(values, times):.2f}", "", "", note, exponent=fit_exponent(values, times))

    def xs(n, seed=1):
        return ring.sample(n, generator=torch.Generator().manual_seed(seed))

    series("exact W2 (POT emd, d = 2)", sz.emd_n, lambda n: samples.emd_w2(xs(n), xs(n, 2)),
           "network simplex on the n x n cost matrix")
    series("sliced W2 (32 directions, exact projections)", sz.sliced_n, lambda n: samples.sliced_w2(xs(n), ring))
    series("MMD (closed-form kernel mean)", sz.mmd_n, lambda n: stochastic.mmd(xs(n), ring), "O(n^2) kernel sums")

    spec = get_solver("euler")
    grid = make_grid(sde, 6, 1e-3)

    def cov(prob, n):
        model, x = setup(prob, sde, n)
        logp = density.init_log_prob(prob, sde, "exact", x)
        return density.density_metrics(spec, model, x, grid, sde, logp, prob.marginal(1e-3, sde))

    series("change-of-variables KL/TV (euler, NFE 6, d = 2)", sz.cov_n, lambda n: cov(ring, n),
           "d backward passes per sample call")
    series(f"change-of-variables KL/TV (euler, NFE 6, n = {fmt_n(sz.cov_d_n)}) vs d", sz.cov_d,
           lambda d: cov(synthetic_gmm(d, 4), sz.cov_d_n), "d backward passes + d x d slogdet")
