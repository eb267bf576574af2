"""The convergence theorems (docs/theory.md#convergence-theorems): horizon T from the prior, score error,
early stopping, contractive forward SDEs."""

from __future__ import annotations

import math
import time

import numpy as np

from ..problems import get_problem
from ..sde import get_sde
from .core import Claim, _exact_sweep, _g, _slope_claim


def _horizon_claim(quick: bool) -> list[Claim]:
    Ts = [1.0, 2.0, 3.0, 4.0] if quick else [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    t0 = time.perf_counter()
    rows = []
    for T in Ts:
        steps = int(round(60 * T))
        rows += _exact_sweep("heun", [steps], sde="ou", metrics=("w2_exact", "tv_exact"), T=T, init="prior")
    out = []
    for metric, name in (("w2_exact", "W2"), ("tv_exact", "TV")):
        y = np.array([r[metric] for r in rows])
        c = Claim(id=f"prior-init-{name.lower()}", statement=f"Started from the prior N(0, I), {name} to p_t_end "
                  "decays like e^{-T} (OU, theta = 1)", source="Chen et al. 2023, Thm 2 (first term sqrt(KL) e^{-T}); "
                  "docs/theory.md#convergence-theorems",
                  metric=f"{metric} (exact law), gauss1d, OU, Heun h = 1/60, semilog slope in T",
                  predicted="slope -1")
        _slope_claim(c, np.array(Ts), y, -1.0, 0.1, semilog=True, fine_is_small=False)
        c.seconds = (time.perf_counter() - t0) / 2
        c.figure = "validation_horizon.png"
        c.curves = [(name, np.array(Ts), y, None, "horizon T", "error (prior start)", False)]
        out.append(c)
    return out


def _score_error_claim(quick: bool) -> list[Claim]:
    eps = [0.01, 0.02, 0.04, 0.08] if quick else [0.005, 0.01, 0.02, 0.04, 0.08, 0.16]
    t0 = time.perf_counter()
    rows = []
    for e in eps:
        rows += _exact_sweep("heun", [100], metrics=("w2_exact", "tv_exact"), score_error=e)
    out = []
    for metric, name in (("w2_exact", "W2"), ("tv_exact", "TV")):
        y = np.array([r[metric] for r in rows])
        c = Claim(id=f"score-error-{name.lower()}", statement=f"{name} grows linearly in the score error EPS",
                  source="Chen et al. 2023, Thm 2 (eps_score sqrt(T) term); docs/theory.md#convergence-theorems",
                  metric=f"{metric} (exact law), gauss1d, VP, Heun 100 steps, --score-error EPS, slope in EPS",
                  predicted="slope 1")
        _slope_claim(c, np.array(eps), y, 1.0, 0.1)
        c.seconds = (time.perf_counter() - t0) / 2
        c.figure = "validation_score_error.png"
        c.curves = [(name, np.array(eps), y, None, "score error EPS (relative L2)", "error", True)]
        out.append(c)
    return out


def _w2_mixture_1d(w1, m1, s1, w2, m2, s2, M: int = 4000) -> float:
    """W2 between two 1-D mixtures by the quantile formula, midpoint rule in u with a tail-refined grid."""
    from scipy.special import ndtr

    # u nodes: midpoints of a grid dense near 0 and 1 (logit spacing)
    z = np.linspace(-12, 12, M + 1)
    u_edges = 1 / (1 + np.exp(-z))
    u = 0.5 * (u_edges[1:] + u_edges[:-1])
    du = np.diff(u_edges)

    def quantile(w, m, s):
        lo = np.full_like(u, float(np.min(m - 40 * s)))
        hi = np.full_like(u, float(np.max(m + 40 * s)))
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            below = (w * ndtr((mid[:, None] - m) / s)).sum(1) < u
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    q1, q2 = quantile(w1, m1, s1), quantile(w2, m2, s2)
    return math.sqrt(float(((q1 - q2) ** 2 * du).sum()))


def _early_stop_claim(quick: bool) -> list[Claim]:
    t0 = time.perf_counter()
    problem, sde = get_problem("gmm1d"), get_sde("vp")
    deltas = np.logspace(-5, -3, 5 if quick else 9)
    w, m, s = (x.numpy() for x in (problem.weights, problem.means[:, 0], problem.covs[:, 0, 0].sqrt()))
    y = []
    for dl in deltas:
        pt = problem.marginal(float(dl), sde)
        y.append(_w2_mixture_1d(w, m, s, pt.weights.numpy(), pt.means[:, 0].numpy(), pt.covs[:, 0, 0].sqrt().numpy()))
    y = np.array(y)
    c = Claim(id="early-stopping", statement="Early stopping: W2(p_delta, p_0) ~ delta for a non-degenerate target",
              source="docs/theory.md#early-stopping (W2(p_delta, p_0) <= (1 - alpha_delta) m2 + sigma_delta sqrt(d)); "
              "Pierret & Galerne 2025", metric="W2(p_delta, p_0) by 1-D quantile quadrature, gmm1d, VP, slope in delta",
              predicted="slope 1")
    _slope_claim(c, deltas, y, 1.0, 0.1)
    c.seconds = time.perf_counter() - t0
    c.figure = "validation_early_stopping.png"
    c.curves = [("gmm1d", deltas, y, None, "delta", "W2(p_delta, p_0)", True)]
    return [c]


def _contractive_claim(quick: bool) -> list[Claim]:
    Ts = [1.0, 2.0, 4.0] if quick else [1.0, 2.0, 4.0, 8.0]
    t0 = time.perf_counter()
    res = {}
    for sde in ("cou", "ou"):
        rows = []
        for T in Ts:
            rows += _exact_sweep("heun", [int(round((40 if quick else 80) * T))], sde=sde, metrics=("w2_exact",),
                                 T=T, score_error=0.05)
        res[sde] = np.array([r["w2_exact"] for r in rows])
    ratio_c = float(res["cou"][-1] / res["cou"][0])
    ratio_o = float(res["ou"][-1] / res["ou"][0])
    c = Claim(id="contractive-bounded", statement="Under a fixed score error, W2 stays bounded in T for the "
              "contractive forward SDE (cOU) and grows for the non-contractive one (OU)",
              source="Tang & Zhao 2024 (contractive diffusion models), Thm 3.1; "
                     "docs/theory.md#contractive-forward-sdes",
              metric=f"W2(T={Ts[-1]:g}) / W2(T=1), exact law, gauss1d, Heun, EPS = 0.05, exact p_T start",
              predicted="cOU ratio <= 1.5 (and OU ratio > cOU ratio)", measured=ratio_c,
              rule="cOU ratio <= 1.5 and OU ratio > cOU ratio",
              detail=f"OU ratio {ratio_o:.3g}; cOU W2 {', '.join(_g(v) for v in res['cou'])}; "
                     f"OU W2 {', '.join(_g(v) for v in res['ou'])}")
    c.status = "PASS" if ratio_c <= 1.5 and ratio_o > ratio_c else "FAIL"
    c.seconds = time.perf_counter() - t0
    c.figure = "validation_contractive.png"
    c.curves = [(f"cOU (contractive), W2(T={Ts[-1]:g})/W2(T=1) = {ratio_c:.3g}", np.array(Ts), res["cou"], None,
                 "horizon T", "W2 under score error EPS = 0.05", False),
                (f"OU, W2(T={Ts[-1]:g})/W2(T=1) = {ratio_o:.3g}", np.array(Ts), res["ou"], None, "horizon T",
                 "W2 under score error EPS = 0.05", False)]
    return [c]
