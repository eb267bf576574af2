"""Cross-validation against independent implementations (torchsde, torchdiffeq, diffusers)."""

from __future__ import annotations

import pytest
import torch

from sdebench.errors import ConfigError
from sdebench.model import Model
from sdebench.noise import NoiseSource
from sdebench.problems import get_problem
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.solvers import get_solver


def run(name, problem="gmm1d", sde="vp", steps=20, schedule="uniform", n=64, seed=3, base_steps=None, **opts):
    prob, s = get_problem(problem), get_sde(sde)
    grid = make_grid(s, steps, s.t_end_default, schedule)
    base = make_grid(s, base_steps, s.t_end_default, schedule) if base_steps else None
    x = prob.sample_t(n, s.T, s, generator=torch.Generator().manual_seed(0))
    model = Model(s, **prob.model_functions(s))
    out = get_solver(name)(model, x, grid, s, NoiseSource(seed, n, (prob.d,), base_grid=base), **opts)
    return out, model.nfe


@pytest.mark.parametrize("sde", ["vp", "ve", "edm"])
def test_em_equals_torchsde_euler(sde):
    a, na = run("em", sde=sde, steps=25)
    b, nb = run("torchsde-euler", sde=sde, steps=25)
    assert na == nb == 25
    assert (a - b).abs().max() < 1e-10


def test_em_equals_torchsde_euler_on_shared_fine_path():
    """Common random numbers: both read the coarse increments as sums of a 60-step base path."""
    a, _ = run("em", steps=12, base_steps=60)
    b, _ = run("torchsde-euler", steps=12, base_steps=60)
    assert (a - b).abs().max() < 1e-10


def test_srk_equals_torchsde_srk():
    """torchsde's SRA1 (its own tableau and loop) fed the same dW and space-time integral."""
    a, na = run("srk", steps=16, base_steps=64)
    b, nb = run("torchsde-srk", steps=16, base_steps=64)
    assert na == nb == 32
    assert (a - b).abs().max() < 1e-10


def test_torchsde_milstein_reduces_to_em_for_additive_noise():
    a, _ = run("em", steps=10)
    b, _ = run("torchsde-milstein", steps=10)
    assert (a - b).abs().max() < 1e-10


def test_reversible_heun_nfe_and_finite():
    out, nfe = run("torchsde-reversible-heun", steps=10, problem="gauss1d", sde="ou")
    assert nfe == 11 and torch.isfinite(out).all()


def test_torchsde_needs_uniform_grid():
    with pytest.raises(ConfigError, match="uniform"):
        run("torchsde-euler", schedule="logsnr")


def test_rk4_and_dopri5_agree_with_exact_flow():
    """rk4 (fixed grid) and dopri5 (adaptive, NFE counted) converge to the same ODE solution."""
    ref, nfe_ref = run("dopri5", problem="gmm1d", rtol=1e-10, atol=1e-10)
    loose, nfe_loose = run("dopri5", problem="gmm1d", rtol=1e-4, atol=1e-4)
    assert nfe_ref > nfe_loose > 0
    x4, n4 = run("rk4", problem="gmm1d", steps=200, schedule="logsnr")
    assert n4 == 800
    assert (x4 - ref).abs().max() < 1e-6
    assert 1e-9 < (loose - ref).abs().max() < 1e-2


def test_dopri5_options_checked():
    with pytest.raises(ConfigError, match="rtol"):
        run("dopri5", rtol=-1.0)


# ---- diffusers (test-only dependency) ---------------------------------------------------------------
def _vp_setup(steps, n=32, problem="gmm1d"):
    prob, s = get_problem(problem), get_sde("vp")
    grid = make_grid(s, steps, s.t_end_default, "logsnr")
    x = prob.sample_t(n, s.T, s, generator=torch.Generator().manual_seed(0))
    model = Model(s, **prob.model_functions(s))
    return prob, s, grid, x, model


def test_dpm_solver_pp2m_equals_diffusers():
    """diffusers' DPMSolverMultistepScheduler (dpmsolver++, midpoint, order 2) driven by the analytic
    GMM denoiser. Conventions aligned: diffusers' sigma is sigma_t/alpha_t of a VP process (its
    alpha_t = 1/sqrt(sigma^2 + 1)), so its sigma array is overwritten with sigma_t/alpha_t on our
    logSNR grid, the final sigma is sigma(t_end)/alpha(t_end) (not 0), the model output is the x0
    prediction (prediction_type='sample'), lower_order_final=False (diffusers' default lowers the last
    step for < 15 steps; ours records it as an option). diffusers casts the sample to float32 inside
    step(), so agreement is at float32 rounding (measured max 7.0e-7 at 20 steps)."""
    diffusers = pytest.importorskip("diffusers", reason="diffusers not installed (test extra)")
    for steps in (6, 20):
        prob, s, grid, x, model = _vp_setup(steps)
        ours = get_solver("dpm-solver++2m")(model, x.clone(), grid, s, None)
        sch = diffusers.DPMSolverMultistepScheduler(solver_order=2, algorithm_type="dpmsolver++",
                                                    solver_type="midpoint", prediction_type="sample",
                                                    lower_order_final=False, final_sigmas_type="sigma_min")
        sch.set_timesteps(steps)
        sbar = s.sigma(grid) / s.alpha(grid)
        sch.sigmas = sbar.to(torch.float64)
        y = x.clone()
        for i, ts in enumerate(sch.timesteps):
            x0 = prob.x0(y, grid[i], s)
            y = sch.step(x0, ts, y).prev_sample
        assert (y.double() - ours).abs().max() < 1e-6, (y.double() - ours).abs().max()


def test_ddim_equals_diffusers():
    """diffusers' DDIMScheduler (eta = 0) with its alphas_cumprod table overwritten by alpha_t^2 of our grid:
    timestep (N-1-i) r <-> grid[i], final_alpha_cumprod <-> t_end, prediction_type='sample'."""
    diffusers = pytest.importorskip("diffusers", reason="diffusers not installed (test extra)")
    steps = 10
    prob, s, grid, x, model = _vp_setup(steps)
    ours = get_solver("ddim")(model, x.clone(), grid, s, None)
    sch = diffusers.DDIMScheduler(prediction_type="sample", clip_sample=False, set_alpha_to_one=False,
                                  timestep_spacing="leading", steps_offset=0)
    sch.set_timesteps(steps)
    r = sch.config.num_train_timesteps // steps
    ac = sch.alphas_cumprod.to(torch.float64).clone()
    a2 = s.alpha(grid) ** 2
    for i in range(steps):
        ac[(steps - 1 - i) * r] = a2[i]
    sch.alphas_cumprod = ac
    sch.final_alpha_cumprod = a2[-1]
    assert [int(t) for t in sch.timesteps] == [(steps - 1 - i) * r for i in range(steps)]
    y = x.clone()
    for i, ts in enumerate(sch.timesteps):
        y = sch.step(prob.x0(y, grid[i], s), ts, y, eta=0.0).prev_sample
    # DDIMScheduler keeps float64 throughout: measured 5.6e-16
    assert (y.double() - ours).abs().max() < 1e-12, (y.double() - ours).abs().max()
