"""Consistency functions and samplers: exact oracle on Gaussians, ODE oracle, budgets, distillation."""

from __future__ import annotations

import pytest
import torch

from sdebench.errors import ConfigError, NFEBudgetError
from sdebench.exact import output_gaussian
from sdebench.metrics import gaussian as gx
from sdebench.model import Model
from sdebench.noise import NoiseSource
from sdebench.problems import get_problem
from sdebench.problems.consistency import gaussian_consistency, ode_consistency
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.solvers import get_solver
from sdebench.training.consistency import distill, mlp_consistency_function

torch.set_num_threads(1)


@pytest.mark.parametrize("solver,nfe", [("consistency", 1), ("consistency-2step", 2), ("consistency-ms", 5)])
@pytest.mark.parametrize("sname", ["vp", "edm"])
def test_oracle_is_exact_on_gaussians(solver, nfe, sname):
    """Exact output law (linearity) of every consistency sampler with the oracle equals p_{t_end}."""
    prob = get_problem("gauss-aniso16")
    sde = get_sde(sname)
    spec = get_solver(solver)
    t_end = sde.t_end_default
    grid = make_grid(sde, spec.steps_for_nfe(nfe), t_end, "logsnr")
    m_T, P_T = prob.moments(sde.T, sde)
    mean, cov = output_gaussian(spec, lambda: Model(sde, **prob.model_functions(sde)), sde, grid, m_T, P_T, nfe=nfe)
    tgt = prob.marginal(t_end, sde)
    assert gx.w2(mean, cov, tgt.means[0], tgt.covs[0]) < 1e-9


def test_ode_oracle_matches_closed_form_and_image_reference():
    """Three independent computations of the Gaussian consistency map agree: closed form, dopri5 on the
    exact score, and the image metrics' reference PF-ODE solve driven by eps."""
    from sdebench.metrics.images import reference_solve

    prob = get_problem("gauss-aniso16")
    sde = get_sde("vp")
    x = prob.sample_t(64, 1.0, sde, generator=torch.Generator().manual_seed(0))
    exact = gaussian_consistency(prob, sde, x, 1.0, 1e-3)
    ode = ode_consistency(prob, sde, x, 1.0, 1e-3)
    assert float((exact - ode).abs().max()) < 1e-6
    ref, nfe = reference_solve(prob.model_functions(sde)["eps"], sde, x, 1e-3, rtol=1e-7)
    assert float((exact - ref).pow(2).mean().sqrt()) < 3e-5 and float((exact - ref).abs().max()) < 1e-4
    assert nfe > 10
    mid = gaussian_consistency(prob, sde, x, 0.4, 1e-3)  # f(x, t_end) = x and semigroup property
    assert torch.allclose(gaussian_consistency(prob, sde, x, 1e-3, 1e-3), x, atol=1e-12)
    x_mid = gaussian_consistency(prob, sde, x, 1.0, 0.4)
    assert torch.allclose(gaussian_consistency(prob, sde, x_mid, 0.4, 1e-3), exact, atol=1e-10)
    assert mid.shape == x.shape


def test_mixture_oracle_matches_fine_heun():
    prob, sde = get_problem("gmm2d-ring8"), get_sde("vp")
    x = prob.sample_t(32, 1.0, sde, generator=torch.Generator().manual_seed(1))
    grid = make_grid(sde, 400, 1e-3, "logsnr")
    heun = get_solver("heun").fn(Model(sde, **prob.model_functions(sde)), x, grid, sde, None)
    assert float((ode_consistency(prob, sde, x, 1.0, 1e-3) - heun).abs().max()) < 1e-3


def test_budgets_and_errors():
    with pytest.raises(NFEBudgetError, match="exactly 1 NFE"):
        get_solver("consistency").steps_for_nfe(2)
    with pytest.raises(NFEBudgetError, match="exactly 2 NFE"):
        get_solver("consistency-2step").steps_for_nfe(3)
    prob, sde = get_problem("gauss1d"), get_sde("vp")
    grid = make_grid(sde, 2, 1e-3)
    x = torch.zeros(4, 1, dtype=torch.float64)
    with pytest.raises(ConfigError, match="t_mid"):
        get_solver("consistency-2step").sample(Model(sde, **prob.model_functions(sde)), x, grid, sde,
                                               NoiseSource(0, 4, (1,)), t_mid=2.0)
    with pytest.raises(ConfigError, match="no consistency function"):
        get_solver("consistency").sample(Model(sde, score=lambda x, t: -x), x, make_grid(sde, 1, 1e-3), sde)


def test_distillation_learns_gaussian_map():
    """A short distillation (heun teacher, exact score) lands near the exact consistency map on gauss1d."""
    prob, sde = get_problem("gauss1d"), get_sde("vp")
    net = distill(prob, sde, teacher="heun", N=8, iters=300, batch=256, seed=0)
    x = prob.sample_t(512, 1.0, sde, generator=torch.Generator().manual_seed(3))
    f = mlp_consistency_function(net)
    err = float((f(x, torch.tensor(1.0, dtype=torch.float64), 1e-3) - gaussian_consistency(prob, sde, x, 1.0, 1e-3))
                .pow(2).mean().sqrt())
    assert err < 0.2  # the target's std is 0.5; an untrained student is off by about 0.5
    assert torch.allclose(f(x, torch.tensor(1e-3, dtype=torch.float64), 1e-3), x)  # boundary condition
    with pytest.raises(ConfigError, match="t_end"):
        f(x, 1.0, 1e-2)
    with pytest.raises(ConfigError, match="ODE solver"):
        distill(prob, sde, teacher="em", iters=1)


def test_unet_distillation_checkpoint(tmp_path):
    """A few steps of U-Net consistency distillation write a loadable checkpoint whose consistency function
    satisfies the boundary condition f(x, t_end) = x and refuses another t_end."""
    from sdebench.problems.checkpoint import load_checkpoint
    from sdebench.problems.consistency import network_consistency_function
    from sdebench.problems.images import digits_problem
    from sdebench.training.consistency import distill_unet

    cfg = distill_unet(digits_problem(), teacher="euler", N=4, steps=2, batch=4, out=tmp_path / "cd",
                       progress=False, ckpt_every=1)
    assert cfg["step"] == 2 and cfg["kind"] == "consistency"
    net, cfg2 = load_checkpoint(tmp_path / "cd")
    import hashlib

    assert cfg2["weights_sha256"] == hashlib.sha256((tmp_path / "cd.safetensors").read_bytes()).hexdigest()
    sde = get_sde("vp")
    f = network_consistency_function(net, cfg2, sde, (1, 8, 8))
    x = torch.randn(5, 64, dtype=torch.float64)
    assert torch.allclose(f(x, 1e-3, 1e-3), x, atol=1e-12)
    assert f(x, 1.0, 1e-3).shape == x.shape
    with pytest.raises(ConfigError, match="t_end"):
        f(x, 1.0, 1e-2)
