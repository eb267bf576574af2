"""Gaussian-mixture closed forms: score = autograd of log p_t, Tweedie, sampled moments, file targets."""

import json

import numpy as np
import pytest
import torch

from sdebench.errors import ConfigError
from sdebench.problems import PROBLEMS, get_problem
from sdebench.sde import get_sde


@pytest.mark.parametrize("pname", list(PROBLEMS)[:6])
@pytest.mark.parametrize("sname", ["vp", "ve", "edm", "cou"])
def test_score_is_autograd_of_log_prob(pname, sname):
    prob, sde = get_problem(pname), get_sde(sname)
    g = torch.Generator().manual_seed(0)
    for frac in (0.01, 0.3, 0.9):
        t = frac * sde.T
        x = prob.sample_t(16, t, sde, generator=g).requires_grad_(True)
        lp = prob.log_prob(x, t, sde).sum()
        (grad,) = torch.autograd.grad(lp, x)
        s = prob.score(x.detach(), t, sde)
        scale = max(1.0, float(grad.abs().max()))
        assert float((s - grad).abs().max()) <= 1e-8 * scale


@pytest.mark.parametrize("pname", ["gmm1d", "gmm2d-ring8", "gauss-aniso16", "gmm-d32"])
def test_posterior_mean_is_tweedie(pname):
    prob, sde = get_problem(pname), get_sde("vp")
    x = prob.sample_t(32, 0.4, sde, generator=torch.Generator().manual_seed(1))
    a = float(sde.alpha(0.4))
    s2 = float(sde.sigma2(0.4))
    tweedie = (x + s2 * prob.score(x, 0.4, sde)) / a
    torch.testing.assert_close(prob.x0(x, 0.4, sde), tweedie, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(prob.eps(x, 0.4, sde), -(s2**0.5) * prob.score(x, 0.4, sde))


def test_hessian_matches_autograd():
    prob, sde = get_problem("gmm2d-ring8"), get_sde("vp")
    x = prob.sample_t(4, 0.2, sde, generator=torch.Generator().manual_seed(2))
    H = prob.hessian(x, 0.2, sde)
    for i in range(4):
        Hi = torch.autograd.functional.hessian(lambda y: prob.log_prob(y[None], 0.2, sde).sum(), x[i])
        torch.testing.assert_close(H[i], Hi, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("pname", ["gmm1d", "gmm2d-imbalanced", "gauss-aniso16"])
def test_sampled_pt_moments_match(pname):
    prob, sde = get_problem(pname), get_sde("vp")
    n = 200_000
    x = prob.sample_t(n, 0.3, sde, generator=torch.Generator().manual_seed(3))
    m, C = prob.moments(0.3, sde)
    se = torch.sqrt(torch.diagonal(C) / n)
    assert bool(((x.mean(0) - m).abs() < 5 * se).all())
    emp = torch.cov(x.T)
    tol = 5 * torch.sqrt((torch.diagonal(C)[:, None] * torch.diagonal(C)[None, :] + C**2) / n)
    assert bool(((emp.reshape(C.shape) - C).abs() < tol + 1e-12).all())


def test_marginal_is_consistent_with_closed_forms():
    prob, sde = get_problem("gmm1d"), get_sde("ve")
    pt = prob.marginal(0.5, sde)
    x = torch.linspace(-5, 5, 11, dtype=torch.float64)[:, None]
    torch.testing.assert_close(pt.log_prob(x), prob.log_prob(x, 0.5, sde))


def test_file_targets_load_and_validate(tmp_path):
    good = {"weights": [0.4, 0.6], "means": [[0, 0], [2, 1]],
            "covariances": [[[1, 0], [0, 1]], [[0.5, 0.1], [0.1, 0.5]]]}
    p = tmp_path / "t.json"
    p.write_text(json.dumps(good))
    t = get_problem(str(p))
    assert t.K == 2 and t.d == 2
    toml = tmp_path / "t.toml"
    toml.write_text("weights = [1.0]\nmeans = [[1.0]]\nstds = [0.5]\n")
    t2 = get_problem(str(toml))
    assert np.isclose(float(t2.covs[0, 0, 0]), 0.25)

    def bad(data, match):
        q = tmp_path / "bad.json"
        q.write_text(json.dumps(data))
        with pytest.raises(ConfigError, match=match):
            get_problem(str(q))

    bad({**good, "weights": [0.5, 0.6]}, "sum to 1")
    bad({**good, "covariances": [[[1, 0], [0, -1]], [[1, 0], [0, 1]]]}, "not positive definite")
    bad({**good, "means": [[0, 0, 0], [1, 1, 1]]}, "shape")
    bad({"weights": [1.0]}, "missing")
    q = tmp_path / "corrupt.json"
    q.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        get_problem(str(q))


def test_unknown_problem_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown problem 'nope'.*gauss1d"):
        get_problem("nope")


@pytest.mark.parametrize("pname", ["gmm2d-close", "gmm-d32-close"])
@pytest.mark.parametrize("sname", ["vp", "ve", "edm"])
def test_close_mixtures_score_is_autograd_of_log_prob(pname, sname):
    """The overlapping-mode targets: closed-form score = autograd of the closed-form log density of p_t."""
    prob, sde = get_problem(pname), get_sde(sname)
    g = torch.Generator().manual_seed(5)
    for frac in (0.001, 0.05, 0.5):
        t = frac * sde.T
        x = prob.sample_t(32, t, sde, generator=g).requires_grad_(True)
        (grad,) = torch.autograd.grad(prob.log_prob(x, t, sde).sum(), x)
        s = prob.score(x.detach(), t, sde)
        assert float((s - grad).abs().max()) <= 1e-9 * max(1.0, float(grad.abs().max()))


@pytest.mark.parametrize("pname", ["gmm2d-close", "gmm-d32-close"])
def test_close_mixtures_modes_overlap(pname):
    """Every pair of modes is 1 to 2.5 component stds apart (Mahalanobis distance under the pair's mean
    covariance), so the modes overlap; listed with a description."""
    from sdebench.problems.presets import DESCRIPTIONS

    prob = get_problem(pname)
    mu, S = prob.means, prob.covs
    K = len(mu)
    seps = []
    for i in range(K):
        for j in range(i + 1, K):
            dm = mu[i] - mu[j]
            C = 0.5 * (S[i] + S[j])
            seps.append(float(torch.sqrt(dm @ torch.linalg.solve(C, dm))))
    assert 1.0 <= min(seps) and max(seps) <= 2.5, seps
    assert pname in DESCRIPTIONS and prob.d == (2 if pname == "gmm2d-close" else 32)
