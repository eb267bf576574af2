"""Solver zoo: identities between independent formulas, NFE accounting, option and SDE checks."""

from __future__ import annotations

import pytest
import torch

from sdebench.errors import ConfigError, NFEBudgetError
from sdebench.model import Model
from sdebench.noise import NoiseSource
from sdebench.problems import get_problem
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.solvers import SOLVERS, get_solver
from sdebench.solvers.dpm_solver import singlestep_orders


def setup(problem="gmm1d", sde="vp", steps=12, schedule="logsnr", n=64, seed=0):
    prob = get_problem(problem)
    s = get_sde(sde)
    grid = make_grid(s, steps, s.t_end_default, schedule)
    model = Model(s, **prob.model_functions(s))
    noise = NoiseSource(seed, n, (prob.d,))
    x = prob.sample_t(n, s.T, s, generator=torch.Generator().manual_seed(seed))
    return prob, s, grid, model, noise, x


@pytest.mark.parametrize("sde", ["vp", "ve", "edm", "subvp", "ou"])
def test_ddim_equals_dpm_solver_1(sde):
    _, s, grid, model, noise, x = setup(sde=sde, steps=15)
    a = get_solver("ddim")(model, x.clone(), grid, s, noise)
    b = get_solver("dpm-solver-1")(model, x.clone(), grid, s, noise)
    assert torch.allclose(a, b, rtol=0, atol=1e-12), (a - b).abs().max()


def test_singlestep_budget_split():
    for order in (1, 2, 3):
        for nfe in range(1, 40):
            orders = singlestep_orders(nfe, order)
            assert sum(orders) == nfe and max(orders) <= order
    assert singlestep_orders(9, 3) == [3, 3, 2, 1]
    assert singlestep_orders(10, 3) == [3, 3, 3, 1]
    assert singlestep_orders(11, 3) == [3, 3, 3, 2]
    assert get_solver("dpm-solver-3").steps_for_nfe(10) == 4


@pytest.mark.parametrize("nfe", [5, 6, 7, 8])
def test_singlestep_nfe_counted(nfe):
    spec = get_solver("dpm-solver-3")
    prob, s, _, model, noise, x = setup()
    grid = make_grid(s, spec.steps_for_nfe(nfe), 1e-3, "logsnr")
    out = spec(model, x, grid, s, noise, nfe=nfe)
    assert model.nfe == nfe and torch.isfinite(out).all()


def test_multistep_options_recorded_and_checked():
    prob, s, grid, model, noise, x = setup()
    spec = get_solver("dpm-solver++3m")
    assert spec.options == {"lower_order_final": False, "coeff": "taylor"}
    a = spec(model, x, grid, s, noise)
    b = spec(model, x, grid, s, noise, lower_order_final=True)
    assert not torch.allclose(a, b)
    with pytest.raises(ConfigError, match="coeff"):
        spec(model, x, grid, s, noise, coeff="bogus")


def test_lower_order_final_on_one_step_is_first_order():
    """With lower_order_final a final step is order 1, so 3M on a 1-step grid is DPM-Solver++(1) = DDIM."""
    prob, s, _, model, noise, x = setup()
    grid = make_grid(s, 1, 1e-3, "logsnr")
    a = get_solver("dpm-solver++3m")(model, x, grid, s, noise, lower_order_final=True)
    b = get_solver("ddim")(model, x, grid, s, noise)
    assert torch.allclose(a, b, atol=1e-12)


def test_budget_errors_are_config_errors():
    with pytest.raises(NFEBudgetError):
        get_solver("dpm-solver++2m").steps_for_nfe(0)


def test_every_solver_has_docstring_with_nfe_and_order():
    for name, spec in SOLVERS.items():
        doc = spec.fn.__doc__ or ""
        assert "NFE" in doc and "rder" in doc, name


ZOO_SOLVERS = ["dpm-solver-1", "dpm-solver-2", "dpm-solver-3", "dpm-solver++2m", "dpm-solver++3m", "dpm-solver++2m-sde",
        "unipc", "ipndm", "srk", "heun-sde", "edm-sde", "pc", "ald", "torchsde-euler", "torchsde-milstein",
        "torchsde-srk", "torchsde-reversible-heun", "rk4", "dopri5"]


@pytest.mark.parametrize("sde", ["vp", "subvp", "ve", "ou", "edm"])
def test_every_zoo_solver_runs_on_every_sde(sde):
    """Each solver runs through the harness on every SDE, counts its NFE, and lands near the target."""
    from sdebench.run import CellConfig, run_cell

    for name in ZOO_SOLVERS:
        nfe = 60  # divisible by every NFE-per-step here
        schedule = "uniform" if name.startswith("torchsde") else "logsnr"
        if name == "dopri5":
            continue  # adaptive: covered in test_crossval (its NFE is not requested)
        row = run_cell(CellConfig(problem="gauss1d", sde=sde, solver=name, nfe=nfe, schedule=schedule,
                                  metrics=("w1",), n_samples=256))
        assert row["status"] == "ok", (name, row["error"])
        assert row["nfe"] == nfe, (name, row["nfe"])


def test_sde_solvers_share_the_brownian_path():
    """Same seed, same path: em on a 10-step grid with a 40-step base grid equals the run on its own grid
    only through the sums of the base increments (srk too): different base grids give the same law
    but different paths, the same base grid gives identical output."""
    prob, s, grid, model, _, x = setup(steps=10, schedule="uniform")
    base = make_grid(s, 40, s.t_end_default, "uniform")
    a = get_solver("srk")(model, x, grid, s, NoiseSource(1, 64, (1,), base_grid=base))
    b = get_solver("srk")(model, x, grid, s, NoiseSource(1, 64, (1,), base_grid=base))
    c = get_solver("srk")(model, x, grid, s, NoiseSource(1, 64, (1,)))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_edm_sde_without_churn_is_deterministic_heun_in_sbar():
    prob, s, grid, model, noise, x = setup(sde="edm", steps=8)
    a = get_solver("edm-sde")(model, x, grid, s, noise, S_churn=0.0)
    b = get_solver("heun")(model, x, grid, s, noise)  # EDM SDE: sbar = t, so Heun in t is Heun in sbar
    assert torch.allclose(a, b, atol=1e-10), (a - b).abs().max()
    c = get_solver("edm-sde")(model, x, grid, s, noise)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("name,opts,match", [
    ("edm-sde", {"S_churn": -1.0}, "S_churn"),
    ("pc", {"snr": 0.0}, "snr"),
    ("ald", {"eps": -1.0}, "eps"),
    ("unipc", {"order": 7}, "order"),
    ("dpm-solver++2m", {"bogus": 1}, "bogus"),
])
def test_bad_options_are_one_line_config_errors(name, opts, match):
    prob, s, grid, model, noise, x = setup()
    with pytest.raises(ConfigError, match=match):
        get_solver(name)(model, x, grid, s, noise, **opts)


@pytest.mark.parametrize("sde", ["cvp", "cou"])
def test_edm_sde_on_contractive_sdes(sde):
    """sbar is bounded on cVP / cOU: churn beyond it is capped at sbar(T) instead of failing."""
    prob, s, grid, model, noise, x = setup(sde=sde, steps=10)
    out = get_solver("edm-sde")(model, x, grid, s, noise)
    assert torch.isfinite(out).all()


def test_pc_skips_exact_gaussian_metrics():
    """pc's batch-averaged step size is not affine in x: no w2_exact for it, but ald (affine) has one."""
    from sdebench.run import CellConfig, run_cell

    pc = run_cell(CellConfig(problem="gauss1d", solver="pc", nfe=20, metrics=("w2_exact", "w1"), n_samples=200))
    ald = run_cell(CellConfig(problem="gauss1d", solver="ald", nfe=20, metrics=("w2_exact",), n_samples=200))
    assert pc["status"] == "ok" and "w2_exact" not in pc and "w1" in pc
    assert ald["status"] == "ok" and ald["w2_exact"] > 0
