"""Exact Gaussian distances (metrics/gaussian.py) against independent computations."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, linalg, stats

from sdebench.metrics import gaussian as gx


def _rand_spd(d, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    return scale * (A @ A.T / d + 0.5 * torch.eye(d, dtype=torch.float64))


@pytest.mark.parametrize("d", [1, 3, 8])
def test_kl_matches_torch_distributions(d):
    m1, m2 = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    S1, S2 = _rand_spd(d, 1), _rand_spd(d, 2)
    ref = torch.distributions.kl_divergence(torch.distributions.MultivariateNormal(m1, S1),
                                            torch.distributions.MultivariateNormal(m2, S2))
    assert math.isclose(gx.kl(m1, S1, m2, S2), float(ref), rel_tol=1e-10)


@pytest.mark.parametrize("d", [2, 5])
def test_w2_matches_scipy_sqrtm_formula(d):
    m1, m2 = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    S1, S2 = _rand_spd(d, 3).numpy(), _rand_spd(d, 4).numpy()
    r1 = linalg.sqrtm(S1)
    bures = np.trace(S1) + np.trace(S2) - 2 * np.trace(linalg.sqrtm(r1 @ S2 @ r1)).real
    ref = math.sqrt(float(((m1 - m2) ** 2).sum()) + bures)
    assert math.isclose(gx.w2(m1, torch.tensor(S1), m2, torch.tensor(S2)), ref, rel_tol=1e-9)


def test_tiny_errors_keep_their_digits():
    """A relative covariance error of 1e-9 must give KL = d * delta^2 / 4 and W2 ~ sqrt(d) delta s / 2."""
    d, delta = 4, 1e-9
    S = _rand_spd(d, 5)
    m = torch.zeros(d, dtype=torch.float64)
    kl = gx.kl(m, S * (1 + delta), m, S)
    assert math.isclose(kl, d * delta**2 / 4, rel_tol=1e-3)
    w = gx.w2(m, S * (1 + delta), m, S)
    assert math.isclose(w, 0.5 * delta * math.sqrt(float(torch.trace(S))), rel_tol=1e-3)


@pytest.mark.parametrize("m1,v1,m2,v2", [(0.0, 1.0, 0.3, 1.0), (0.0, 1.0, 0.0, 2.0), (1.5, 0.25, 1.4, 0.3),
                                         (0.0, 1.0, 0.0, 1.0 + 1e-6)])
def test_tv_1d_matches_quadrature(m1, v1, m2, v2):
    f = lambda x: abs(stats.norm.pdf(x, m1, v1**0.5) - stats.norm.pdf(x, m2, v2**0.5))  # noqa: E731
    ref = 0.5 * integrate.quad(f, -30, 30, limit=500, epsabs=1e-14, points=[m1, m2])[0]
    assert math.isclose(gx.tv_1d(m1, v1, m2, v2), ref, rel_tol=1e-6, abs_tol=1e-13)


def test_tv_monte_carlo_agrees_with_exact_1d_embedding():
    """A 2-d case that factorizes: TV equals the exact 1-D TV of the differing coordinate."""
    m1 = torch.tensor([0.2, 0.0], dtype=torch.float64)
    m2 = torch.zeros(2, dtype=torch.float64)
    S = torch.eye(2, dtype=torch.float64)
    est, se = gx.tv_mc(m1, S, m2, S, n=200_000)
    exact = gx.tv_1d(0.2, 1.0, 0.0, 1.0)
    assert abs(est - exact) < 4 * se
