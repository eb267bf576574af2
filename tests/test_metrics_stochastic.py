"""Sample metrics for stochastic samplers: KDE TV/KL, closed-form-kernel-mean MMD, Sinkhorn, mode masses."""

import math

import torch

from sdebench.metrics import gaussian as gx
from sdebench.metrics import stochastic as st
from sdebench.problems import GaussianMixture, get_problem

torch.set_num_threads(1)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_kernel_mean_matches_monte_carlo():
    mix = get_problem("gmm2d-imbalanced")
    x = torch.tensor([[0.0, 0.0], [2.0, 2.5], [-2.5, -2.0]], dtype=torch.float64)
    y = mix.sample(400_000, generator=_gen(0))
    l = 0.7
    mc = torch.exp(-((x[:, None, :] - y[None]) ** 2).sum(-1) / (2 * l * l)).mean(1)
    assert torch.allclose(st.kernel_mean(x, mix, l), mc, atol=3e-3)


def test_mmd_is_unbiased_under_the_null_and_detects_a_shift():
    mix = get_problem("gmm1d")
    nulls = [st.mmd(mix.sample(1000, generator=_gen(s)), mix)["mmd2"] for s in range(20)]
    mean = sum(nulls) / len(nulls)
    sd = math.sqrt(sum((v - mean) ** 2 for v in nulls) / (len(nulls) - 1))
    assert abs(mean) <= 3 * sd / math.sqrt(len(nulls))
    shifted = mix.sample(1000, generator=_gen(99)) + 0.3
    out = st.mmd(shifted, mix)
    assert out["mmd"] > 5 * math.sqrt(abs(max(nulls, key=abs)))
    assert out["mmd2"] > 3 * out["mmd2_se"]


def test_kde_tv_matches_smoothed_exact_tv():
    g = GaussianMixture([1.0], [[0.0]], [[[1.0]]])
    n = 20_000
    x = torch.randn(n, 1, generator=_gen(3), dtype=torch.float64) * 1.0 + 0.4
    out = st.kde_tv_kl(x, g)
    h = out["bandwidth"]
    exact_tv = gx.tv_1d(0.4, 1 + h * h, 0.0, 1 + h * h)
    exact_kl = 0.5 * 0.4**2 / (1 + h * h)
    null = st.kde_tv_kl(torch.randn(n, 1, generator=_gen(4), dtype=torch.float64), g)
    assert abs(out["kde_tv"] - exact_tv) < 3 * null["kde_tv"]
    assert abs(out["kde_kl"] - exact_kl) < 3 * null["kde_kl"] + 0.1 * exact_kl
    assert null["kde_tv"] < 0.25 * exact_tv


def test_kde_null_shrinks_with_n_in_2d():
    mix = get_problem("gmm2d-ring8")
    small = st.kde_tv_kl(mix.sample(500, generator=_gen(5)), mix)["kde_tv"]
    large = st.kde_tv_kl(mix.sample(8000, generator=_gen(6)), mix)["kde_tv"]
    assert large < 0.7 * small


def test_sinkhorn_null_below_shifted():
    mix = GaussianMixture([1.0], [[0.0, 0.0]], torch.eye(2, dtype=torch.float64)[None])
    reg = st.sinkhorn_reg(mix)
    y = mix.sample(500, generator=_gen(7))
    null = st.sinkhorn(mix.sample(500, generator=_gen(8)), y, reg)
    shift = torch.tensor([1.0, 0.0], dtype=torch.float64)
    shifted = st.sinkhorn(mix.sample(500, generator=_gen(9)) + shift, y, reg)
    assert 0 <= null < 0.15 * shifted
    assert abs(shifted - 1.0) < 0.25  # a shift by a unit vector costs |shift|^2 = 1 in W2^2 units


def test_mode_mass_null_and_wrong_weights():
    mix = get_problem("gmm2d-imbalanced")
    x = mix.sample(4000, generator=_gen(10))
    out = st.mode_mass_error(x, mix)
    assert out["mode_mass"] <= 3 * out["mode_mass_se"] + 1e-12
    wrong = GaussianMixture([0.8, 0.2], mix.means, mix.covs).sample(4000, generator=_gen(11))
    bad = st.mode_mass_error(wrong, mix)
    assert abs(bad["mode_mass"] - 0.15) < 4 * bad["mode_mass_se"]
    table = st.mode_masses(x, mix)
    assert all(row["covered"] for row in table)


def test_wilson_interval_known_value():
    lo, hi = st.wilson(50, 100)
    assert math.isclose(lo, 0.4038, abs_tol=1e-4) and math.isclose(hi, 0.5962, abs_tol=1e-4)
