"""--final-denoise / final_denoise: the output is the model's x0 prediction D(x, t_end), one model call of
the NFE budget (the diffusers / k-diffusion last jump to sigma = 0, made explicit). Off by default, and off
it does not enter the cell key, so committed results keep their keys."""

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from sdebench.errors import ConfigError, NFEBudgetError
from sdebench.exact import output_gaussian
from sdebench.metrics import gaussian as gx
from sdebench.model import Model
from sdebench.problems import get_problem
from sdebench.run import CellConfig, FinalDenoise, prepare, run_cell
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.solvers import get_solver
from sdebench.sweep import cell_key, config_to_dict, load_sweep, parse_sweep

ROOT = Path(__file__).resolve().parents[1]


# the quick sweep the committed results/quick/ was made with (sweeps/quick.toml before the study redesign)
_COMMITTED_QUICK = {
    "name": "quick", "problems": ["gauss1d", "gmm1d", "gauss-aniso16", "gmm2d-ring8"], "sdes": ["vp"],
    "schedules": ["uniform"], "nfe": [6, 12, 24, 48, 96], "seeds": 3, "samples": 1000,
    "metrics": ["w2_exact", "kl_exact", "w2"], "metrics_by_problem": {"gmm2d-ring8": ["sliced_w2"]},
    "solvers": ["em", "ei", "ddpm", "euler", "ddim", "heun", "dpm-solver-2", "dpm-solver-3", "dpm-solver++2m"]}


def test_off_keeps_the_committed_cell_keys():
    """Every cell of the committed quick sweep still has the key stored in results/quick/results.csv (the
    committed store may already come from the redesigned sweeps/quick.toml: then that file's keys)."""
    committed = set(pd.read_csv(ROOT / "results" / "quick" / "results.csv")["cell_key"])
    old = {k for k, _, _ in parse_sweep(dict(_COMMITTED_QUICK), "quick.toml").cells()}
    if len(committed) == 540:
        assert len(old) == 540 and old == committed
    else:
        assert committed == {k for k, _, _ in load_sweep(ROOT / "sweeps" / "quick.toml").cells()}


def test_key_and_row_only_change_when_on():
    cfg = CellConfig(problem="gauss1d", solver="ddim", nfe=10)
    assert "final_denoise" not in config_to_dict(cfg) and "final_denoise" not in cfg.key()
    on = replace(cfg, final_denoise=True)
    assert config_to_dict(on)["final_denoise"] is True and on.key()["final_denoise"] is True
    assert cell_key(on) != cell_key(cfg)


def _gauss_d(problem, sde, t):
    """x0 prediction of a 1-D Gaussian N(mu, s^2) target: D(x, t) = mu + k (x - alpha mu), k = alpha s^2 / var_t."""
    mu, s2 = float(problem.means[0, 0]), float(problem.covs[0, 0, 0])
    t64 = torch.tensor(t, dtype=torch.float64)
    a, sig2 = float(sde.alpha(t64)), float(sde.sigma2(t64))
    return mu, a * s2 / (a * a * s2 + sig2), a


@pytest.mark.parametrize("solver,nfe", [("ddim", 11), ("heun", 21), ("em", 11), ("dpm-solver++2m", 6)])
def test_exact_law_with_final_denoise_is_the_affine_image(solver, nfe):
    """Closed form: the exact law with final denoise is the image of the law without it under the affine
    x0 prediction of the Gaussian target (computed from the target's parameters, not by the model)."""
    problem, sde, spec = get_problem("gauss1d"), get_sde("vp"), get_solver(solver)
    t_end = 0.05
    grid = make_grid(sde, spec.steps_for_nfe(nfe - 1), t_end, "uniform")
    m_T, P_T = problem.moments(sde.T, sde)

    def make():
        return Model(sde, **problem.model_functions(sde))

    m, P = output_gaussian(spec, make, sde, grid, m_T, P_T, nfe=nfe - 1)
    m_d, P_d = output_gaussian(FinalDenoise(spec), make, sde, grid, m_T, P_T, nfe=nfe - 1)
    mu, k, a = _gauss_d(problem, sde, t_end)
    torch.testing.assert_close(m_d, mu + k * (m - a * mu), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(P_d, k * k * P, rtol=1e-12, atol=1e-14)
    # the cell reports that law's W2 against the data
    row = run_cell(CellConfig(problem="gauss1d", solver=solver, nfe=nfe, t_end=t_end, final_denoise=True,
                              reference="data", n_samples=8, metrics=("w2_exact",)))
    assert row["status"] == "ok" and row["nfe"] == nfe and row["final_denoise"] is True
    assert row["steps"] == spec.steps_for_nfe(nfe - 1)
    assert row["w2_exact"] == pytest.approx(gx.w2(m_d, P_d, problem.means[0], problem.covs[0]), rel=1e-12)


def test_exact_law_with_final_denoise_matches_monte_carlo():
    n, t_end = 40_000, 0.1
    cfg = CellConfig(problem="gauss1d", solver="em", nfe=9, t_end=t_end, final_denoise=True, reference="data",
                     n_samples=n, metrics=())
    problem, sde, spec, steps, grid, options, _ = prepare(cfg)
    m_T, P_T = problem.moments(sde.T, sde)
    m, P = output_gaussian(FinalDenoise(spec), lambda: Model(sde, **problem.model_functions(sde)), sde, grid,
                           m_T, P_T, nfe=8)
    from sdebench.noise import NoiseSource
    from sdebench.run import _initial

    noise = NoiseSource(cfg.seed, n, (1,))
    x_T = _initial(problem, sde, cfg, noise, torch.float64, torch.device("cpu"))
    model = Model(sde, **problem.model_functions(sde))
    x = FinalDenoise(spec).sample(model, x_T, grid, sde, noise, nfe=8)[:, 0]
    assert model.nfe == 9
    var = float(P[0, 0])
    assert abs(float(x.mean()) - float(m[0])) < 4 * math.sqrt(var / n)
    assert abs(float(x.var()) - var) < 4 * var * math.sqrt(2 / n)


def test_density_kl_with_final_denoise_agrees_with_exact_kl():
    """Two implementations: change-of-variables KL (autograd through the denoiser) vs the exact Gaussian KL."""
    row = run_cell(CellConfig(problem="gauss1d", solver="heun", nfe=9, t_end=0.05, final_denoise=True,
                              reference="data", n_samples=4000, metrics=("kl", "kl_exact")))
    assert row["status"] == "ok"
    assert abs(row["kl"] - row["kl_exact"]) < 5 * row["kl_se"] + 1e-6 * row["kl_exact"]


def test_guided_final_denoise_counts_the_budget():
    row = run_cell(CellConfig(problem="gmm2d-ring8-labelled", solver="ddim", nfe=20, n_samples=32, guidance="cfg",
                              scale=1.0, class_label=1, final_denoise=True, metrics=("path_err", "class_mass")))
    assert row["status"] == "ok", row.get("error")
    assert row["nfe"] == 20 and row["model_calls"] == 10 and row["steps"] == 9
    assert row["path_err"] < 1.0


def test_budget_errors():
    with pytest.raises(NFEBudgetError, match="1 call for the final denoise the solver gets 19 model calls"):
        prepare(CellConfig(problem="gauss1d", solver="heun", nfe=20, final_denoise=True))
    with pytest.raises(NFEBudgetError, match="leaves no model call"):
        prepare(CellConfig(problem="gauss1d", solver="ddim", nfe=1, final_denoise=True))
    with pytest.raises(ConfigError, match="final_denoise must be true or false"):
        prepare(CellConfig(problem="gauss1d", solver="ddim", nfe=4, final_denoise="yes"))


def test_sweep_toml_key():
    base = {"problems": ["gauss1d"], "nfe": [5, 9], "seeds": [0], "solvers": ["ddim"], "metrics": ["w2_exact"]}
    off = parse_sweep(dict(base), "<t>").cells()
    on = parse_sweep(dict(base, final_denoise=True), "<t>").cells()
    assert all(c.final_denoise for _, c, _ in on) and not any(c.final_denoise for _, c, _ in off)
    assert {k for k, _, _ in on}.isdisjoint({k for k, _, _ in off})
    with pytest.raises(ConfigError, match="final_denoise must be true or false"):
        parse_sweep(dict(base, final_denoise="yes"), "<t>")


def test_cli_final_denoise(capsys, tmp_path):
    from sdebench.cli import main

    out = tmp_path / "r.csv"
    assert main(["run", "--problem", "gauss1d", "--solver", "ddim", "--nfe", "5", "--samples", "64",
                 "--final-denoise", "--reference", "data", "--metrics", "w2_exact", "--out", str(out)]) == 0
    row = pd.read_csv(out).iloc[0]
    assert row["nfe"] == 5 and row["steps"] == 4 and bool(row["final_denoise"])
    assert main(["run", "--problem", "gauss1d", "--solver", "heun", "--nfe", "10", "--final-denoise"]) == 2
    err = capsys.readouterr().err
    assert "NFE=10 is the counted budget" in err and err.count("\n") == 1
