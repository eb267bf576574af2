"""sdebench tune --tune OPTION: a solver option tuned per step (ddim eta, edm-sde S_churn) by policy gradient,
jointly with the grid; the solvers' per-step option path against the scalar one and against chained one-step
runs; the saved file (its step_options) reproducing the reported value through `sdebench run`; bad input."""

import json
import math

import pytest
import torch
from cli_checks import fails_one_line as _fails

from sdebench.cli import main
from sdebench.errors import ConfigError
from sdebench.model import Model
from sdebench.noise import NoiseSource
from sdebench.problems import get_problem
from sdebench.run import CellConfig, run_cell
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.solvers import get_solver
from sdebench.tune import tune
from sdebench.tune.methods import StepOption

ETA = dict(problem="gauss-aniso16", sde="vp", solver="ddim", nfe=6, objective="w2_exact", method="policy-gradient",
           samples=16, tune_seeds=[0], heldout_seeds=[1], options={"eta": 1.0}, tune_option="eta")
CHURN = dict(problem="gmm2d-ring8", sde="vp", solver="edm-sde", nfe=10, objective="sliced_w2",
             method="policy-gradient", samples=256, tune_seeds=[0, 1], heldout_seeds=[10], tune_option="S_churn")




def _setup(problem="gmm2d-ring8", steps=5, n=64, seed=3):
    sde = get_sde("vp")
    prob = get_problem(problem)
    model = Model(sde, **prob.model_functions(sde))
    x = prob.sample_t(n, sde.T, sde, generator=torch.Generator().manual_seed(seed))
    grid = make_grid(sde, steps, 1e-3, "logsnr")
    return sde, model, x, grid


def _noise(grid, n, d, seed=7):
    return NoiseSource(seed, n, (d,)).for_grid(grid)


# ---- the solvers' per-step path ------------------------------------------------------------------------------
@pytest.mark.parametrize("solver,option,value", [("ddim", "eta", 0.7), ("ddim", "eta", 0.0),
                                                 ("edm-sde", "S_churn", 3.0), ("edm-sde", "S_churn", 40.0)])
def test_a_constant_per_step_option_is_the_scalar_bit_for_bit(solver, option, value):
    sde, model, x, grid = _setup()
    spec = get_solver(solver)
    a = spec.sample(model, x.clone(), grid, sde, _noise(grid, *x.shape), **{option: value})
    b = spec.sample(model, x.clone(), grid, sde, _noise(grid, *x.shape), **{option: [value] * 5})
    assert torch.equal(a, b)


class _FixedNoise:
    """dW(i) / normal(name, i): fixed tensors of step ``offset + i`` (so a one-step run can take step i's)."""

    def __init__(self, table, offset=0):
        self.table, self.offset = table, offset

    def for_grid(self, grid):
        pass

    def dW(self, i):
        return self.table[self.offset + i][0]

    def normal(self, name, i):
        return self.table[self.offset + i][1]


def test_per_step_ddim_eta_equals_chained_one_step_runs_with_scalar_eta():
    sde, model, x, grid = _setup()
    gen = torch.Generator().manual_seed(11)
    table = [(torch.randn(x.shape, generator=gen, dtype=torch.float64) * math.sqrt(float(grid[i] - grid[i + 1])),
              None) for i in range(5)]
    etas = [0.0, 1.0, 0.3, 0.0, 0.8]
    spec = get_solver("ddim")
    whole = spec.fn(model, x.clone(), grid, sde, _FixedNoise(table), eta=etas)
    y = x.clone()
    for i, e in enumerate(etas):  # independent: five scalar-eta runs of one step, each with step i's noise
        y = spec.fn(model, y, grid[i:i + 2], sde, _FixedNoise(table, offset=i), eta=e)
    assert torch.allclose(whole, y, rtol=0, atol=1e-12)
    assert not torch.allclose(whole, spec.fn(model, x.clone(), grid, sde, _FixedNoise(table), eta=0.3))


def test_per_step_churn_zero_on_a_step_is_plain_heun_on_that_step():
    sde, model, x, grid = _setup()
    gen = torch.Generator().manual_seed(5)
    table = [(None, torch.randn(x.shape, generator=gen, dtype=torch.float64)) for _ in range(5)]
    spec = get_solver("edm-sde")
    churn = [2.0, 0.0, 0.0, 1.0, 0.0]
    whole = spec.fn(model, x.clone(), grid, sde, _FixedNoise(table), S_churn=churn)
    y = x.clone()
    for i, c in enumerate(churn):  # a one-step run has N = 1: S_churn_i / 5 on the whole grid = (c / 5) / 1 here
        y = spec.fn(model, y, grid[i:i + 2], sde, _FixedNoise(table, offset=i), S_churn=c / 5)
    assert torch.allclose(whole, y, rtol=0, atol=1e-12)


def test_per_step_option_of_the_wrong_length_or_not_numbers_is_a_config_error():
    sde, model, x, grid = _setup()
    with pytest.raises(ConfigError, match="3 per-step values, the grid has 5 steps"):
        get_solver("ddim").sample(model, x, grid, sde, _noise(grid, *x.shape), eta=[0.5] * 3)
    with pytest.raises(ConfigError, match="must lie in"):
        get_solver("ddim").sample(model, x, grid, sde, _noise(grid, *x.shape), eta=[0.5, 0.5, 1.5, 0.5, 0.5])
    with pytest.raises(ConfigError, match="not a list of numbers"):
        get_solver("ddim").check_options({"eta": ["a"]})
    with pytest.raises(ConfigError, match="not a number"):  # heun's options take no list; dpm-solver++2m: none
        get_solver("edm-sde").check_options({"S_tmin": [0.1, 0.2]})


def test_step_option_parametrization_stays_in_range():
    for name, top in (("eta", 1.0), ("S_churn", 6 * (math.sqrt(2) - 1))):
        sp = StepOption(name, 6)
        for u in (torch.full((6,), -50.0, dtype=torch.float64), torch.full((6,), 50.0, dtype=torch.float64),
                  torch.linspace(-3, 3, 6, dtype=torch.float64)):
            v = sp.values(u)
            assert len(v) == 6 and all(0.0 <= e <= top for e in v)
        assert sp.values(sp.logits(0.5 * top)) == pytest.approx([0.5 * top] * 6, rel=1e-12)


# ---- tuning --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case,budget", [(ETA, 60), (ETA, 12), (CHURN, 40)])
def test_tuning_a_per_step_option_never_returns_worse_than_its_init(case, budget):
    rec = tune(**case, budget=budget)
    name = case["tune_option"]
    assert rec["value"]["tune"] <= rec["init"]["tune"]
    assert rec["evaluations"] <= budget
    assert len(rec["step_options"][name]) == rec["steps"]
    top = StepOption(name, rec["steps"]).top
    assert all(0.0 <= v <= top for v in rec["step_options"][name])
    if rec["returned"] == "init":
        assert rec["step_options"][name] == [rec["step_init"][name]] * rec["steps"]
        assert rec["value"]["heldout"] == rec["init"]["heldout"]


def test_eta_tuning_on_the_exact_law_beats_the_best_handcrafted_grid():
    rec = tune(**ETA, budget=60)
    assert rec["returned"] == "tuned"
    assert rec["value"]["tune"] < min(v["tune"] for v in rec["handcrafted"].values())
    assert rec["value"]["heldout"] == rec["value"]["tune"]  # the exact law does not depend on the seed


@pytest.mark.parametrize("case", [ETA, CHURN])
def test_saved_file_with_step_options_reproduces_the_reported_value(tmp_path, capsys, case):
    rec = tune(**case, budget=40)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(rec))
    name = case["tune_option"]
    opts = {k: v for k, v in case.get("options", {}).items() if k != name}
    vals = []
    for s in case["heldout_seeds"]:
        row = run_cell(CellConfig(problem=case["problem"], sde="vp", solver=case["solver"], nfe=case["nfe"], seed=s,
                                  n_samples=case["samples"], schedule=f"file:{path}", solver_options=opts,
                                  metrics=(case["objective"],)))
        assert row["status"] == "ok", row.get("error")
        vals.append(row[case["objective"]])
    assert sum(vals) / len(vals) == rec["value"]["heldout"]
    # the same through the CLI
    seeds = ",".join(map(str, case["heldout_seeds"]))
    assert main(["run", "--problem", case["problem"], "--solver", case["solver"], "--nfe", str(case["nfe"]),
                 "--samples", str(case["samples"]), "--seeds", seeds, "--metrics", case["objective"],
                 "--schedule", f"file:{path}", "--out", str(tmp_path / "r.csv")]) == 0, capsys.readouterr().err
    import pandas as pd

    df = pd.read_csv(tmp_path / "r.csv")
    assert df[case["objective"]].mean() == pytest.approx(rec["value"]["heldout"], rel=1e-12)


def test_cli_tune_eta_writes_step_options(tmp_path, capsys):
    out = tmp_path / "g.json"
    assert main(["tune", "--problem", "gauss-aniso16", "--solver", "ddim", "--nfe", "4", "--objective", "w2_exact",
                 "--method", "policy-gradient", "--tune", "eta", "-o", "eta=1", "--budget", "30", "--samples", "16",
                 "--tune-seeds", "0", "--heldout-seeds", "1", "--out", str(out)]) == 0, capsys.readouterr().err
    rec = json.loads(out.read_text())
    assert set(rec["step_options"]) == {"eta"} and len(rec["step_options"]["eta"]) == 4
    assert rec["solver_options"] == {} and rec["step_init"] == {"eta": 1.0}
    assert "--tune eta" in rec["command"]
    assert "eta per step" in capsys.readouterr().out


# ---- bad input -----------------------------------------------------------------------------------------------
TUNE = ["tune", "--problem", "gauss-aniso16", "--nfe", "6", "--objective", "w2_exact", "--samples", "16"]


@pytest.mark.parametrize("extra,match", [
    (["--solver", "heun", "--method", "policy-gradient", "--tune", "eta"], "has no per-step option 'eta'"),
    (["--solver", "ddim", "--method", "policy-gradient", "--tune", "S_churn"], "has no per-step option 'S_churn'"),
    (["--solver", "ddim", "--method", "gradient", "--tune", "eta"], "--tune eta needs --method policy-gradient"),
    (["--solver", "ddim", "--method", "dp", "--tune", "eta"], "--tune eta needs --method policy-gradient"),
    (["--solver", "edm-sde", "--method", "gradient", "--tune", "S_churn"], "needs --method policy-gradient"),
])
def test_tune_option_bad_input_is_one_line(tmp_path, capsys, extra, match):
    _fails(capsys, TUNE + extra + ["--out", str(tmp_path / "g.json")], match)
    assert not (tmp_path / "g.json").exists()


def _file(tmp_path, solver, nfe, steps, step_options):
    sde = get_sde("vp")
    t = [float(v) for v in make_grid(sde, steps, 1e-3, "logsnr")]
    p = tmp_path / "g.json"
    p.write_text(json.dumps({"t": t, "sde": "vp", "solver": solver, "nfe": nfe, "step_options": step_options}))
    return p


@pytest.mark.parametrize("solver,nfe,steps,step_options,extra,match", [
    ("ddim", 6, 6, {"eta": [0.5] * 5}, [], "needs a list of 6 values"),
    ("ddim", 6, 6, {"eta": 0.5}, [], "needs a list of 6 values"),
    ("ddim", 6, 6, {"eta": [0.5] * 6}, ["-o", "eta=0.2"], "do not also pass it"),
    ("ddim", 6, 6, {"eta": [0.5] * 5 + [2.0]}, [], "must lie in [0, 1]"),
    ("heun", 6, 3, {"eta": [0.5] * 3}, [], "does not accept per step"),
])
def test_bad_step_options_in_a_grid_file_are_one_line(tmp_path, capsys, solver, nfe, steps, step_options, extra,
                                                      match):
    p = _file(tmp_path, solver, nfe, steps, step_options)
    _fails(capsys, ["run", "--problem", "gauss-aniso16", "--solver", solver, "--nfe", str(nfe), "--samples", "16",
                    "--metrics", "w2_exact", "--schedule", f"file:{p}"] + extra, match)
