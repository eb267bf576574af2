"""Grids that end exactly at t = 0 (sigma = 0), the diffusers / k-diffusion convention, through the
Python API: every registered solver either takes that last step without evaluating the model at t = 0
and returns finite values, or refuses the grid with a one-line ConfigError naming itself."""

import pytest
import torch

from sdebench.errors import ConfigError
from sdebench.model import Model
from sdebench.noise import NoiseSource
from sdebench.problems import get_problem
from sdebench.sde import get_sde
from sdebench.solvers import SOLVERS, get_solver
from sdebench.solvers.base import check_grid

# solvers that refuse a grid ending at t = 0 (they would evaluate the model there)
REFUSE = {"ald", "dopri5", "torchsde-reversible-heun"}
N = 200


def _steps(name):
    return {"consistency": 1, "consistency-2step": 2}.get(name, 4)


def _recording_model(problem, sde, seen):
    fns = problem.model_functions(sde)

    def rec(f):
        def g(x, t, *rest):
            seen.append(float(t))
            return f(x, t, *rest)
        return g

    return Model(sde, **{k: rec(v) for k, v in fns.items()})


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_solver_on_a_grid_ending_at_zero(name, sde_name):
    if sde_name == "ve" and name.startswith("torchsde"):
        pytest.skip("covered on vp")
    problem = get_problem("gauss1d")
    sde = get_sde(sde_name)
    spec = get_solver(name)
    if spec.sdes is not None and sde.name not in spec.sdes:
        pytest.skip("solver does not apply to this SDE")
    grid = torch.linspace(sde.T, 0.0, _steps(name) + 1, dtype=torch.float64)
    seen: list = []
    model = _recording_model(problem, sde, seen)
    noise = NoiseSource(0, N, (1,))
    x = problem.sample_t(N, sde.T, sde, generator=torch.Generator().manual_seed(0))
    if name in REFUSE:
        with pytest.raises(ConfigError) as exc:
            spec.sample(model, x, grid, sde, noise)
        msg = str(exc.value)
        assert "\n" not in msg and repr(name) in msg and "t = 0" in msg
        return
    out = spec.sample(model, x, grid, sde, noise)  # also checks the counted NFE against nfe_for_steps
    assert out.shape == x.shape
    assert bool(torch.isfinite(out).all()), f"{name}: non-finite output on a grid ending at t = 0"
    assert seen and min(seen) > 0.0, f"{name} evaluated the model at t = 0"


@pytest.mark.parametrize("name,opts", [("dpm-solver-1", {}), ("ddim", {}), ("dpm-solver++2m", {}),
                                       ("dpm-solver++3m", {}), ("dpm-solver-2", {}), ("dpm-solver-3", {}),
                                       ("edm-sde", {"S_churn": 0.0})])
def test_step_to_sigma_zero_is_the_x0_prediction(name, opts):
    """On T > t_1 > ... > t_{N-1} > 0 the exponential integrators' last step is x_next = alpha_0 x0(x, t_{N-1}):
    the output equals the x0 prediction at the output of the same solver on the grid without the last point."""
    problem = get_problem("gmm2d-ring8")
    sde = get_sde("vp")
    spec = get_solver(name)
    steps = 5
    grid0 = torch.cat([torch.linspace(1.0, 0.05, steps, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    x = problem.sample_t(64, sde.T, sde, generator=torch.Generator().manual_seed(1))
    m0 = Model(sde, **problem.model_functions(sde))
    a = spec.sample(m0, x, grid0, sde, NoiseSource(0, 64, (2,)), **opts)
    m1 = Model(sde, **problem.model_functions(sde))
    b = spec.sample(m1, x, grid0[:-1], sde, NoiseSource(0, 64, (2,)), **opts)
    b = m1.x0(b, grid0[-2]) * float(sde.alpha(torch.tensor(0.0, dtype=torch.float64)))
    assert m0.nfe == m1.nfe  # the jump to sigma = 0 costs exactly the one x0 evaluation
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_dpm_solver_singlestep_budget_on_zero_grid():
    problem = get_problem("gauss1d")
    sde = get_sde("vp")
    grid = torch.linspace(1.0, 0.0, 4, dtype=torch.float64)
    spec = get_solver("dpm-solver-2")
    assert spec.nfe_for_steps(3, grid) == 5
    x = problem.sample_t(8, 1.0, sde, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="ends with an order-2 step; use NFE = 5"):
        spec.sample(Model(sde, **problem.model_functions(sde)), x, grid, sde, None, nfe=6)


@pytest.mark.parametrize("grid,msg", [
    (torch.tensor([1.0, 0.5, -0.1], dtype=torch.float64), "must end at t >= 0"),
    (torch.tensor([1.0, 0.5, 0.7], dtype=torch.float64), "strictly decreasing"),
    (torch.tensor([1.0], dtype=torch.float64), "at least 2 times"),
])
def test_bad_grids_are_one_line_errors(grid, msg):
    with pytest.raises(ConfigError, match=msg) as exc:
        check_grid(grid, "ddim")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("solver", ["dpm-solver++2m", "unipc"])
def test_zero_end_matches_diffusers_final_sigmas_zero(solver):
    """Independent implementation: diffusers' DPMSolverMultistepScheduler / UniPCMultistepScheduler with
    final_sigmas_type="zero" (last step to sigma = 0, first order there), its sigmas overwritten with
    sigma_t/alpha_t of our grid (logSNR grid to t_end, then t = 0), the analytic GMM denoiser as model.
    diffusers' UniPC (0.3x) only lowers the last step's order through lower_order_final (without it its
    step to sigma = 0 returns inf), so UniPC is compared with lower_order_final=True on both sides."""
    diffusers = pytest.importorskip("diffusers", reason="diffusers not installed (test extra)")
    from sdebench.schedules import make_grid

    prob, s = get_problem("gmm1d"), get_sde("vp")
    steps = 8
    grid = torch.cat([make_grid(s, steps - 1, 0.02, "logsnr"), torch.zeros(1, dtype=torch.float64)])
    x = prob.sample_t(32, s.T, s, generator=torch.Generator().manual_seed(0))
    model = Model(s, **prob.model_functions(s))
    if solver == "dpm-solver++2m":
        ours = get_solver(solver)(model, x.clone(), grid, s, None)
        sch = diffusers.DPMSolverMultistepScheduler(solver_order=2, algorithm_type="dpmsolver++",
                                                    solver_type="midpoint", prediction_type="sample",
                                                    lower_order_final=False, final_sigmas_type="zero")
    else:
        ours = get_solver(solver)(model, x.clone(), grid, s, None, order=2, lower_order_final=True)
        sch = diffusers.UniPCMultistepScheduler(solver_order=2, solver_type="bh2", prediction_type="sample",
                                                lower_order_final=True, final_sigmas_type="zero",
                                                disable_corrector=[])
    sch.set_timesteps(steps)
    assert len(sch.sigmas) == steps + 1 and float(sch.sigmas[-1]) == 0.0
    sch.sigmas = (s.sigma(grid) / s.alpha(grid)).to(torch.float64)
    y = x.clone()
    for i, ts in enumerate(sch.timesteps):
        y = sch.step(prob.x0(y, grid[i], s), ts, y).prev_sample
    assert bool(torch.isfinite(ours).all())
    assert (y.double() - ours).abs().max() < 1e-5, (y.double() - ours).abs().max()
