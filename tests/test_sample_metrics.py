"""Sample metrics against the exact mixture: quantile-based W1/W2, sliced W2, POT emd."""

import math

import numpy as np
import torch
from scipy import integrate, optimize, stats

from sdebench.metrics import samples as sm
from sdebench.problems import get_problem


def _mix():
    p = get_problem("gmm1d")
    return p, p.weights, p.means[:, 0], torch.sqrt(p.covs[:, 0, 0])


def test_quantile_inverts_cdf():
    _, w, m, s = _mix()
    u = torch.tensor([1e-6, 0.1, 0.3, 0.5, 0.9, 1 - 1e-6], dtype=torch.float64)
    q = sm.mixture_quantile(u, w, m, s)
    torch.testing.assert_close(sm.mixture_cdf(q, w, m, s), u, rtol=0, atol=1e-13)


def test_w2_samples_1d_matches_numerical_quantile_integral():
    _, w, m, s = _mix()
    x = torch.tensor([-2.5, -1.0, 0.3, 1.9, 2.2, 3.1], dtype=torch.float64)
    xs = np.sort(x.numpy())
    n = len(xs)

    wn, mn, sn = w.numpy(), m.numpy(), s.numpy()

    def Q(u):  # independent quantile: scipy root finding on the numpy CDF
        return optimize.brentq(lambda x: float((wn * stats.norm.cdf(x, mn, sn)).sum()) - u, -20, 20, xtol=1e-14)

    ref2, ref1 = 0.0, 0.0
    for i in range(n):
        ref2 += integrate.quad(lambda u, xi=xs[i]: (xi - Q(u)) ** 2, i / n, (i + 1) / n, limit=200)[0]
        ref1 += integrate.quad(lambda u, xi=xs[i]: abs(xi - Q(u)), i / n, (i + 1) / n, limit=200)[0]
    assert math.isclose(sm.w2_samples_1d(x, w, m, s), math.sqrt(ref2), rel_tol=1e-6)
    assert math.isclose(sm.w1_exact(x, w, m, s), ref1, rel_tol=1e-6)


def test_w1_exact_matches_scipy_against_a_huge_sample():
    p, w, m, s = _mix()
    x = torch.tensor([-2.0, 0.0, 1.0, 2.5], dtype=torch.float64)
    big = p.sample(2_000_000, generator=torch.Generator().manual_seed(0))[:, 0].numpy()
    ref = stats.wasserstein_distance(x.numpy(), big)
    assert abs(sm.w1_exact(x, w, m, s) - ref) < 3e-3


def test_null_shrinks_like_root_n_and_sliced_equals_1d_in_1d():
    p, w, m, s = _mix()
    g = torch.Generator().manual_seed(1)
    small = np.mean([sm.w1_exact(p.sample(500, generator=g)[:, 0], w, m, s) for _ in range(4)])
    large = np.mean([sm.w1_exact(p.sample(8000, generator=g)[:, 0], w, m, s) for _ in range(4)])
    assert 2.5 < small / large < 6.5  # sqrt(16) = 4
    x = p.sample(300, generator=g)
    assert math.isclose(sm.sliced_w2(x, p), sm.w2_samples_1d(x[:, 0], w, m, s), rel_tol=1e-12)


def test_emd_w2_in_1d_equals_sorted_matching():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(400, 1, generator=g, dtype=torch.float64), torch.randn(400, 1, generator=g, dtype=torch.float64)
    ref = math.sqrt(float(((torch.sort(x[:, 0]).values - torch.sort(y[:, 0]).values) ** 2).mean()))
    assert math.isclose(sm.emd_w2(x, y), ref, rel_tol=1e-9)
