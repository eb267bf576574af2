"""Change-of-variables density metrics: against the exact Gaussian law and against quadrature."""

import math

import pytest
import torch

from sdebench.errors import ConfigError
from sdebench.metrics import density as dn
from sdebench.model import Model
from sdebench.problems import GaussianMixture, get_problem
from sdebench.run import CellConfig, run_cell
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.solvers import get_solver

torch.set_num_threads(1)


@pytest.mark.parametrize("solver,nfe", [("euler", 10), ("heun", 8)])
def test_density_kl_tv_match_exact_gaussian(solver, nfe):
    r = run_cell(CellConfig(problem="gauss1d", solver=solver, nfe=nfe, n_samples=3000,
                            metrics=("kl", "tv", "kl_exact", "tv_exact")))
    assert r["status"] == "ok"
    assert r["kl_exact"] > 1e-3  # a real error, not the floor
    assert abs(r["kl"] - r["kl_exact"]) <= 3 * r["kl_se"]
    assert abs(r["tv"] - r["tv_exact"]) <= 3 * r["tv_se"]
    assert r["kl_se"] < 0.1 * r["kl"]  # relative standard error O(n^-1/2) thanks to the control variate


def test_density_in_2d_rotated_gaussian_matches_exact():
    Q = torch.tensor([[0.8, -0.6], [0.6, 0.8]], dtype=torch.float64)
    S = Q @ torch.diag(torch.tensor([0.05, 1.0], dtype=torch.float64)) @ Q.T
    p = GaussianMixture([1.0], [[0.5, -1.0]], S[None])
    sde, spec = get_sde("vp"), get_solver("heun")
    grid = make_grid(sde, 6, 1e-3)
    x_T = p.sample_t(3000, 1.0, sde, generator=torch.Generator().manual_seed(1))
    model = Model(sde, **p.model_functions(sde))
    out = dn.density_metrics(spec, model, x_T, grid, sde, dn.init_log_prob(p, sde, "exact", x_T),
                             p.marginal(1e-3, sde))
    from sdebench.exact import output_gaussian
    from sdebench.metrics import gaussian as gx

    m_T, P_T = p.moments(1.0, sde)
    mean, cov = output_gaussian(spec, lambda: Model(sde, **p.model_functions(sde)), sde, grid, m_T, P_T)
    tgt = p.marginal(1e-3, sde)
    kl = gx.kl(mean, cov, tgt.means[0], tgt.covs[0])
    assert abs(out["kl"] - kl) <= 3 * out["kl_se"]
    assert model.nfe == 12  # one solver run (heun, 6 steps, 2 NFE each): the Jacobians cost no extra NFE


def test_density_against_quadrature_on_bimodal():
    problem, sde, spec = get_problem("gmm1d"), get_sde("vp"), get_solver("euler")
    grid = make_grid(sde, 6, 1e-3)
    target = problem.marginal(1e-3, sde)
    x_T = problem.sample_t(4000, 1.0, sde, generator=torch.Generator().manual_seed(2))
    mc = dn.density_metrics(spec, Model(sde, **problem.model_functions(sde)), x_T, grid, sde,
                            dn.init_log_prob(problem, sde, "exact", x_T), target)
    u = torch.linspace(-8, 8, 20_001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        phi = spec.sample(Model(sde, **problem.model_functions(sde)), u, grid, sde, None)[:, 0]
    dphi = torch.gradient(phi, spacing=(u[:, 0],))[0]
    logp_T = problem.log_prob(u, torch.tensor(1.0, dtype=torch.float64), sde)
    log_r = target.log_prob(phi[:, None]) - (logp_T - torch.log(dphi.abs()))
    du = float(u[1, 0] - u[0, 0])
    kl_q = float((torch.exp(logp_T) * (torch.expm1(log_r) - log_r)).sum()) * du
    tv_q = float((torch.exp(logp_T) * torch.clamp(-torch.expm1(log_r), min=0)).sum()) * du
    assert kl_q > 1e-3
    assert abs(mc["kl"] - kl_q) <= 3 * mc["kl_se"]
    assert abs(mc["tv"] - tv_q) <= 3 * mc["tv_se"]


def test_jacobian_logdet_matches_finite_differences():
    problem, sde, spec = get_problem("gmm1d"), get_sde("vp"), get_solver("heun")
    grid = make_grid(sde, 4, 1e-3)
    x = torch.tensor([[-1.0], [0.3], [2.0]], dtype=torch.float64)
    _, _, logdet = dn.output_log_density(spec, Model(sde, **problem.model_functions(sde)), x, grid, sde,
                                         torch.zeros(3, dtype=torch.float64))
    e = 1e-6
    with torch.no_grad():
        fp = spec.sample(Model(sde, **problem.model_functions(sde)), x + e, grid, sde, None)
        fm = spec.sample(Model(sde, **problem.model_functions(sde)), x - e, grid, sde, None)
    fd = torch.log(((fp - fm) / (2 * e)).abs())[:, 0]
    assert torch.allclose(logdet, fd, atol=1e-6)


def test_identical_laws_give_zero():
    out = dn.kl_tv_from_logratio(torch.zeros(100, dtype=torch.float64))
    assert out["kl"] == 0.0 and out["tv"] == 0.0


def test_density_rejects_sde_solvers_and_large_d():
    with pytest.raises(ConfigError, match="em"):
        dn.check_deterministic(get_solver("em"), {}, 1)
    with pytest.raises(ConfigError, match="eta"):
        dn.check_deterministic(get_solver("ddim"), {"eta": 0.5}, 1)
    with pytest.raises(ConfigError, match="65"):
        dn.check_deterministic(get_solver("heun"), {}, 65)


def test_prior_init_log_density():
    sde = get_sde("ou")
    x = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    s = sde.prior_std()
    lp = dn.init_log_prob(None, sde, "prior", x)
    assert math.isclose(float(lp), -2 * math.log(s) - math.log(2 * math.pi), rel_tol=1e-12)
