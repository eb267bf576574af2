"""First solvers: NFE accounting, exact-Gaussian convergence slopes (docs/theory.md#solver-orders), equalities."""

import math

import numpy as np
import pytest
import torch

from sdebench.errors import NFEBudgetError
from sdebench.exact import output_gaussian
from sdebench.model import Model
from sdebench.noise import NoiseSource
from sdebench.problems import get_problem
from sdebench.run import CellConfig, run_cell
from sdebench.schedules import SCHEDULES, make_grid
from sdebench.sde import get_sde
from sdebench.solvers import get_solver
from sdebench.solvers._common import ei_score_coeff

CORE_SOLVERS = ["em", "ei", "ddpm", "euler", "heun", "ddim"]


def _slope(steps, errs):
    return float(np.polyfit(np.log(steps), np.log(errs), 1)[0])


@pytest.mark.parametrize("name,expected", [("em", -1), ("ei", -1), ("euler", -1), ("ddim", -1), ("heun", -2)])
def test_exact_w2_slopes_on_gauss1d(name, expected):
    """docs/theory.md#exact-gaussian-output-law: gauss1d, VP, T = 1 -> t_end = 1e-3, exact p_T start."""
    spec = get_solver(name)
    steps = [80, 160, 320, 640]
    errs = []
    for n in steps:
        row = run_cell(CellConfig(problem="gauss1d", solver=name, nfe=n * spec.nfe_per_step, n_samples=2,
                                  metrics=("w2_exact", "kl_exact", "tv_exact")))
        errs.append(row["w2_exact"])
        kl_ratio = row["kl_exact"] / row["w2_exact"] ** 2
        assert 0.05 < kl_ratio < 50  # KL is second order in the error: slope 2x that of W2
    assert abs(_slope(steps, errs) - expected) < 0.1


def test_kl_slope_is_twice_w2_slope():
    steps = [80, 160, 320, 640]
    rows = [run_cell(CellConfig(problem="gauss1d", solver="heun", nfe=2 * n, n_samples=2,
                                metrics=("w2_exact", "kl_exact"))) for n in steps]
    assert abs(_slope(steps, [r["kl_exact"] for r in rows]) + 4) < 0.2


@pytest.mark.parametrize("name", CORE_SOLVERS)
def test_counted_nfe_equals_budget(name):
    spec = get_solver(name)
    nfe = 6
    row = run_cell(CellConfig(problem="gmm2d-ring8", solver=name, nfe=nfe, n_samples=50, metrics=()))
    assert row["status"] == "ok"
    assert row["nfe"] == nfe and row["steps"] == nfe // spec.nfe_per_step


def test_budget_errors_say_what_is_accepted():
    msg = "heun costs 2 NFE per step and cannot use NFE=7; it accepts multiples of 2"
    with pytest.raises(NFEBudgetError, match=msg):
        get_solver("heun").steps_for_nfe(7)
    with pytest.raises(NFEBudgetError, match="NFE must be an integer >= 1, got 0"):
        get_solver("em").steps_for_nfe(0)


def test_counted_nfe_mismatch_is_an_error():
    """A solver that evaluates the model more often than it declares is caught by the base class."""
    from sdebench.solvers.base import SolverSpec

    def greedy(model, x, grid, sde, noise):
        for i in range(len(grid) - 1):
            model.score(x, grid[i])
            model.score(x, grid[i])
        return x

    spec = SolverSpec("greedy", greedy, kind="ode", order=1, nfe_per_step=1)
    sde = get_sde("vp")
    prob = get_problem("gauss1d")
    with pytest.raises(NFEBudgetError, match="counted 8 model evaluations but the budget is 4"):
        spec.sample(Model(sde, **prob.model_functions(sde)), torch.zeros(3, 1, dtype=torch.float64),
                    make_grid(sde, 4, 1e-3), sde)


def test_heun_euler_last_step_to_zero():
    sde = get_sde("edm")
    prob = get_problem("gauss1d")
    grid = torch.cat([make_grid(sde, 5, 0.002, "edm"), torch.zeros(1, dtype=torch.float64)])
    model = Model(sde, x0=lambda x, t: prob.x0(x, t, sde) if float(t) > 0 else x)
    spec = get_solver("heun")
    out = spec.sample(model, torch.ones(4, 1, dtype=torch.float64), grid, sde)
    assert model.nfe == 2 * 6 - 1 and torch.isfinite(out).all()


def test_ddpm_equals_ddim_eta_one():
    sde, prob = get_sde("vp"), get_problem("gmm2d-ring8")
    grid = make_grid(sde, 25, 1e-3, "logsnr")
    x = prob.sample_t(100, sde.T, sde, generator=torch.Generator().manual_seed(0))
    outs = []
    for name, opts in (("ddpm", {}), ("ddim", {"eta": 1.0})):
        noise = NoiseSource(7, 100, (2,))
        outs.append(get_solver(name).sample(Model(sde, **prob.model_functions(sde)), x, grid, sde, noise, **opts))
    assert float((outs[0] - outs[1]).abs().max()) < 1e-12


def test_ddim_eta_zero_is_deterministic_and_matches_euler_to_first_order():
    sde, prob = get_sde("vp"), get_problem("gauss1d")
    mu = output_gaussian(get_solver("ddim"), lambda: Model(sde, **prob.model_functions(sde)), sde,
                         make_grid(sde, 2000, 1e-3), *prob.moments(sde.T, sde))
    me = output_gaussian(get_solver("euler"), lambda: Model(sde, **prob.model_functions(sde)), sde,
                         make_grid(sde, 2000, 1e-3), *prob.moments(sde.T, sde))
    assert abs(float(mu[0] - me[0])) < 2e-3 and abs(float(mu[1] - me[1])) < 2e-3


def test_exact_law_matches_monte_carlo():
    """The probe-based output law equals the moments of actual samples (gauss-aniso16, em, 8 steps)."""
    sde, prob = get_sde("vp"), get_problem("gauss-aniso16")
    spec, grid = get_solver("em"), make_grid(sde, 8, 1e-3)
    m_T, P_T = prob.moments(sde.T, sde)
    mean, cov = output_gaussian(spec, lambda: Model(sde, **prob.model_functions(sde)), sde, grid, m_T, P_T)
    n = 40_000
    noise = NoiseSource(3, n, (16,))
    x = prob.sample_t(n, sde.T, sde, generator=torch.Generator().manual_seed(5))
    out = spec.sample(Model(sde, **prob.model_functions(sde)), x, grid, sde, noise)
    se = torch.sqrt(torch.diagonal(cov) / n)
    assert bool(((out.mean(0) - mean).abs() < 5 * se).all())
    rel = (torch.diagonal(torch.cov(out.T)) / torch.diagonal(cov) - 1).abs()
    assert float(rel.max()) < 5 * math.sqrt(2 / n) * 1.5


def test_results_do_not_depend_on_batch_size():
    cfg = dict(problem="gmm2d-ring8", solver="em", nfe=10, seed=3, metrics=())
    sde, prob = get_sde("vp"), get_problem("gmm2d-ring8")
    grid = make_grid(sde, 10, 1e-3)
    outs = []
    for n in (300, 1000):
        noise = NoiseSource(cfg["seed"], n, (2,))
        x = torch.zeros(n, 2, dtype=torch.float64)
        outs.append(get_solver("em").sample(Model(sde, **prob.model_functions(sde)), x, grid, sde, noise))
    assert torch.equal(outs[0], outs[1][:300])


def test_common_random_numbers_sum_fine_increments():
    sde = get_sde("vp")
    base = make_grid(sde, 8, 1e-3, "logsnr")
    fine = NoiseSource(0, 5, (3,), base_grid=base).for_grid(base)
    coarse = NoiseSource(0, 5, (3,), base_grid=base).for_grid(make_grid(sde, 2, 1e-3, "logsnr"))
    torch.testing.assert_close(coarse.dW(1), sum(fine.dW(j) for j in range(4, 8)), rtol=0, atol=1e-15)
    # space-time integral: I = sum_j [J_j + (s_j - s_a) dW_j] is additive across cells
    dW, I = coarse.dW_I(0)
    Is = [fine.dW_I(j) for j in range(4)]
    offs = np.cumsum([0.0] + [float(base[j] - base[j + 1]) for j in range(3)])
    torch.testing.assert_close(I, sum(Ij + o * dWj for (dWj, Ij), o in zip(Is, offs)), rtol=0, atol=1e-14)


def test_space_time_integral_moments():
    sde = get_sde("vp")
    base = make_grid(sde, 4, 1e-3)
    n = 100_000
    src = NoiseSource(1, n, (1,), base_grid=base).for_grid(make_grid(sde, 1, 1e-3))
    dW, I = src.dW_I(0)
    h = float(base[0] - base[-1])
    assert abs(float(dW.var()) / h - 1) < 0.02
    assert abs(float(I.var()) / (h**3 / 3) - 1) < 0.02
    assert abs(float((I * dW).mean()) / (h**2 / 2) - 1) < 0.02


@pytest.mark.parametrize("sname", ["vp", "ou", "cvp", "cou", "ve", "edm", "subvp"])
def test_ei_coefficient_against_closed_forms(sname):
    """c = int_{t_to}^{t_from} (alpha_{t_to}/alpha_u) g^2 du: closed forms where g^2/f is constant or f = 0,
    a fine trapezoid rule otherwise (sub-VP)."""
    sde = get_sde(sname)
    t_from, t_to = 0.6 * sde.T, 0.45 * sde.T
    tt = lambda t: torch.tensor(t, dtype=torch.float64)  # noqa: E731
    ratio = float(sde.alpha(tt(t_to)) / sde.alpha(tt(t_from)))
    if sname in ("ve", "edm"):
        expected = float(sde.sigma2(tt(t_from)) - sde.sigma2(tt(t_to)))
    elif sname == "subvp":
        u = torch.linspace(t_to, t_from, 400_001, dtype=torch.float64)
        vals = torch.exp(sde.log_alpha(tt(t_to)) - sde.log_alpha(u)) * sde.g2(u)
        expected = float(torch.trapezoid(vals, u))
    else:
        c = float(sde.g2(tt(t_to)) / -sde.f(tt(t_to)))  # constant: 2 (VP), -2 (cVP), s^2/theta (OU)
        expected = c * (ratio - 1)
    rel = 1e-9 if sname == "subvp" else 1e-12
    assert math.isclose(ei_score_coeff(sde, t_from, t_to), expected, rel_tol=rel)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_schedules_are_nested_and_pinned(schedule):
    sde = get_sde("vp")
    g4, g8 = make_grid(sde, 4, 1e-3, schedule), make_grid(sde, 8, 1e-3, schedule)
    assert float(g4[0]) == sde.T and float(g4[-1]) == 1e-3
    torch.testing.assert_close(g8[::2], g4, rtol=1e-12, atol=1e-14)
