"""sdebench tune: the grid parametrization, file: grids, the three methods, reproduction through `sdebench run`,
the gradient against finite differences, the AYS proxy's closed form, and bad input (one line, exit 2)."""

import json
import math

import pandas as pd
import pytest
import torch
from cli_checks import fails_one_line as _fails

from sdebench.cli import main
from sdebench.errors import ConfigError
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.tune import LambdaGrid, Objective, tune
from sdebench.tune.methods import lambda_gradient, logit_gradient
from sdebench.tune.proxy import klub

GAUSS = dict(problem="gauss-aniso16", sde="vp", solver="dpm-solver++2m", nfe=4, objective="w2_exact")
MIX = dict(problem="gmm2d-ring8", sde="vp", solver="heun", nfe=6, objective="path_err")




# ---- parametrization --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sde_name", ["vp", "ve", "edm"])
def test_parametrization_keeps_ends_and_is_monotone(sde_name):
    sde = get_sde(sde_name)
    t_end = sde.t_end_default
    param = LambdaGrid(sde, 7, t_end)
    gen = torch.Generator().manual_seed(0)
    for scale in (0.1, 1.0, 5.0):
        for _ in range(20):
            z = scale * torch.randn(7, generator=gen, dtype=torch.float64)
            g = param.grid(z)
            assert len(g) == 8 and g[0].item() == sde.T and g[-1].item() == t_end
            assert bool((g[1:] < g[:-1]).all())
            lam = param.lambdas(z)
            assert bool((torch.diff(lam) > 0).all())


def test_logits_of_a_handcrafted_grid_give_it_back():
    sde = get_sde("vp")
    for name in ("uniform", "logsnr", "edm", "quadratic"):
        g = make_grid(sde, 9, 1e-3, name)
        param = LambdaGrid(sde, 9, 1e-3)
        back = param.grid(param.logits(g))
        assert torch.allclose(back, g, rtol=1e-10, atol=1e-13), name
        assert back[0].item() == g[0].item() and back[-1].item() == g[-1].item()


# ---- file: grids ---------------------------------------------------------------------------------------------
def _grid_file(tmp_path, sde="vp", solver="heun", nfe=6, t=None):
    t = t if t is not None else [float(v) for v in make_grid(get_sde("vp"), 3, 1e-3, "edm")]
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"t": t, "sde": sde, "solver": solver, "nfe": nfe, "steps": len(t) - 1}))
    return path


def test_file_schedule_gives_the_saved_grid_exactly(tmp_path):
    t = [1.0, 0.37, 0.051, 1e-3]
    path = _grid_file(tmp_path, t=t)
    g = make_grid(get_sde("vp"), 3, 1e-3, f"file:{path}")
    assert [float(v) for v in g] == t


@pytest.mark.parametrize("argv,match", [
    (["--solver", "dpm-solver++2m", "--nfe", "3"], "was tuned for solver 'heun', not 'dpm-solver++2m'"),
    (["--solver", "heun", "--nfe", "8"], "was tuned for NFE 6, not 8"),
    (["--solver", "heun", "--nfe", "6", "--sde", "ve"], "was tuned for SDE 'vp', not 've'"),
    (["--solver", "heun", "--nfe", "6", "--t-end", "0.01"], "runs from T=1 to t_end=0.001"),
])
def test_mismatching_file_grid_is_one_line(tmp_path, capsys, argv, match):
    path = _grid_file(tmp_path)
    _fails(capsys, ["run", "--problem", "gauss1d", "--samples", "16", "--schedule", f"file:{path}"] + argv, match)


def test_a_grid_tuned_on_one_problem_runs_on_another_when_named(tmp_path):
    """The file's `problem` is information, not a binding (docs/tuning.md, transfer): a grid tuned on a Gaussian
    runs on a mixture with the same SDE, solver and NFE, on exactly its times; the mismatches stay refused
    (test_mismatching_file_grid_is_one_line)."""
    from sdebench.run import CellConfig, prepare, run_cell

    t = [1.0, 0.37, 0.051, 1e-3]
    path = _grid_file(tmp_path, t=t)
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "problem": "gauss-aniso16"}))
    cfg = CellConfig(problem="gmm2d-ring8", sde="vp", solver="heun", nfe=6, seed=0, n_samples=16,
                     schedule=f"file:{path}", metrics=("sliced_w2",))
    assert [float(v) for v in prepare(cfg)[4]] == t
    row = run_cell(cfg)
    assert row["status"] == "ok" and row["problem"] == "gmm2d-ring8" and row["schedule"] == f"file:{path}"


def test_malformed_or_missing_grid_file(tmp_path, capsys):
    base = ["run", "--problem", "gauss1d", "--solver", "heun", "--nfe", "6", "--samples", "16"]
    _fails(capsys, base + ["--schedule", f"file:{tmp_path / 'none.json'}"], "does not exist")
    bad = _grid_file(tmp_path, t=[1.0, 0.5, 0.7, 1e-3])
    _fails(capsys, base + ["--schedule", f"file:{bad}"], "strictly decreasing")


def test_sweep_file_takes_a_grid_per_solver(tmp_path):
    from sdebench.sweep import parse_sweep

    path = _grid_file(tmp_path)
    sw = parse_sweep({"problems": ["gauss1d"], "nfe": [6], "seeds": [0], "samples": 16, "schedules": ["uniform", "edm"],
                      "solvers": ["heun", {"name": "heun", "label": "heun-tuned", "schedule": f"file:{path}"}]})
    cells = sw.cells()
    scheds = sorted((label, cfg.schedule) for _, cfg, label in cells)
    assert scheds == [("heun", "edm"), ("heun", "uniform"), ("heun-tuned", f"file:{path}")]


# ---- the methods ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,budget", [("gradient", 30), ("dp", 30), ("policy-gradient", 30)])
def test_tuning_never_returns_a_worse_grid_than_its_initialization(method, budget):
    for init in ("uniform", "edm"):
        rec = tune(**GAUSS, method=method, samples=16, budget=budget, init=init, candidates=16, proxy=False)
        assert rec["value"]["tune"] <= rec["init"]["tune"]
        assert rec["init"]["tune"] == rec["handcrafted"][init]["tune"]
        assert rec["evaluations"] <= budget
        t = torch.tensor(rec["t"], dtype=torch.float64)
        assert t[0].item() == 1.0 and t[-1].item() == 1e-3 and bool((t[1:] < t[:-1]).all())


def test_dp_candidates_coinciding_with_the_initial_grid():
    """logsnr at 8 steps lies on the uniform-in-lambda candidates (16): equal up to rounding, they once gave a
    zero-length step and a crash; the initial points are kept exactly and the near-duplicates dropped."""
    rec = tune(**{**GAUSS, "nfe": 8}, method="dp", samples=16, budget=10, init="logsnr", candidates=16, proxy=False)
    assert rec["method_details"]["candidates"] == 17 and rec["value"]["tune"] <= rec["init"]["tune"]


def test_gradient_beats_the_best_handcrafted_grid_on_a_gaussian():
    rec = tune(**GAUSS, method="gradient", samples=16, budget=120, proxy=False)
    best = min(v["tune"] for v in rec["handcrafted"].values())
    assert rec["returned"] == "tuned" and rec["value"]["tune"] < best


@pytest.mark.parametrize("method", ["gradient", "dp"])
def test_saved_grid_reproduces_the_reported_value_through_run(tmp_path, capsys, method):
    out = tmp_path / "grid.json"
    args = ["tune", "--problem", "gmm2d-ring8", "--solver", "heun", "--nfe", "6", "--objective", "path_err",
            "--method", method, "--budget", "25", "--samples", "64", "--candidates", "12", "--heldout-seeds", "3",
            "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    rec = json.loads(out.read_text())
    assert rec["command"].startswith("sdebench tune --problem gmm2d-ring8")
    for which, seeds in (("tune", "0"), ("heldout", "3")):
        table = tmp_path / f"{which}.parquet"
        assert main(["run", "--problem", "gmm2d-ring8", "--solver", "heun", "--nfe", "6", "--seeds", seeds,
                     "--samples", "64", "--metrics", "path_err", "--schedule", f"file:{out}", "--out", str(table)]) == 0
        assert pd.read_parquet(table)["path_err"].iloc[0] == rec["value"][which]


@pytest.mark.parametrize("method", ["gradient", "policy-gradient"])
def test_exact_objective_reproduces_exactly_through_run(tmp_path, capsys, method):
    out = tmp_path / "grid.json"
    assert main(["tune", "--problem", "gauss-aniso16", "--solver", "dpm-solver++2m", "--nfe", "4", "--objective",
                 "kl_exact", "--method", method, "--budget", "20", "--samples", "16",
                 "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    table = tmp_path / "r.parquet"
    assert main(["run", "--problem", "gauss-aniso16", "--solver", "dpm-solver++2m", "--nfe", "4", "--samples", "16",
                 "--metrics", "kl_exact", "--schedule", f"file:{out}", "--out", str(table)]) == 0
    assert rec["returned"] == "tuned"
    assert pd.read_parquet(table)["kl_exact"].iloc[0] == rec["value"]["tune"] == rec["value"]["heldout"]
    assert set(rec["handcrafted"]) == {"uniform", "logsnr", "edm", "quadratic"}
    assert "proxy" in rec and set(rec["proxy"]["grids"]) >= {"uniform", "tuned", "ays"}


def test_gradient_through_the_exact_law_matches_finite_differences():
    obj = Objective("gauss-aniso16", "vp", "dpm-solver++2m", 5, "kl_exact", 16)
    param = LambdaGrid(obj.sde, obj.steps, obj.t_end)
    z = param.logits(make_grid(obj.sde, obj.steps, obj.t_end, "logsnr"))
    z = z + 0.3 * torch.tensor([0.5, -1.0, 0.2, 0.8, -0.4], dtype=torch.float64)
    f0, g = logit_gradient(obj, param, z, [0])
    h = 1e-5
    fd = torch.zeros_like(z)
    for i in range(len(z)):
        up, dn = z.clone(), z.clone()
        up[i] += h
        dn[i] -= h
        fd[i] = (math.log(obj.mean(param.grid(up), [0])) - math.log(obj.mean(param.grid(dn), [0]))) / (2 * h)
    assert f0 == obj.mean(param.grid(z), [0])
    assert torch.allclose(g, fd, rtol=1e-4, atol=1e-6 * float(fd.abs().max())), (g, fd)
    assert float(g.sum()) == pytest.approx(0.0, abs=1e-8 * float(g.abs().max()))  # softmax: shift-invariant
    _, gl = lambda_gradient(obj, param, param.lambdas(z).detach(), [0])
    assert gl.shape == (obj.steps - 1,)


def test_klub_closed_form_matches_monte_carlo():
    """The Gaussian KLUB (one step) against a Monte Carlo estimate of its defining integral."""
    from sdebench.problems import get_problem

    problem = get_problem("gauss-aniso16")
    sde = get_sde("vp")
    param = LambdaGrid(sde, 1, 0.3)
    g = torch.tensor([0.6, 0.3], dtype=torch.float64)
    param.T, param.lam_T = 0.6, float(sde.lambda_(torch.tensor(0.6, dtype=torch.float64)))
    val = klub(problem, param, g)
    m, S = problem.means[0].double(), problem.covs[0].double()
    eye = torch.eye(len(m), dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    n = 20000
    x0 = m + torch.randn(n, len(m), generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(S).T
    eps = torch.randn(n, len(m), generator=gen, dtype=torch.float64)
    s_hi, s_lo = (math.exp(-float(sde.lambda_(torch.tensor(v, dtype=torch.float64)))) for v in (0.6, 0.3))

    def D(y, s):
        return m + (y - m) @ torch.linalg.solve(S + s * s * eye, S).T

    Di = D(x0 + s_hi * eps, s_hi)
    us = torch.linspace(math.log(s_lo), math.log(s_hi), 401, dtype=torch.float64)
    vals = torch.stack([((D(x0 + math.exp(u) * eps, math.exp(u)) - Di) ** 2).sum(1).mean() / math.exp(2 * u)
                        for u in us])
    mc = float(torch.trapezoid(vals, us))
    assert val == pytest.approx(mc, rel=0.03)


def test_klub_bounds_the_exact_kl_of_ancestral_sampling():
    """ddim with eta = 1 freezes the denoiser and integrates the rest exactly: its output KL <= the KLUB."""
    obj = Objective("gauss-aniso16", "vp", "ddim", 6, "kl_exact", 16, options={"eta": 1.0})
    param = LambdaGrid(obj.sde, obj.steps, obj.t_end)
    for name in ("uniform", "logsnr", "edm", "quadratic"):
        g = make_grid(obj.sde, obj.steps, obj.t_end, name)
        kl = obj.mean(g, [0])
        assert 0 < kl <= klub(obj.problem, param, g), name


# ---- bad input -----------------------------------------------------------------------------------------------
TUNE = ["tune", "--problem", "gauss-aniso16", "--solver", "heun", "--nfe", "6", "--samples", "16"]


@pytest.mark.parametrize("extra,match", [
    (["--objective", "w2_exact", "--method", "newton"], "unknown method 'newton'"),
    (["--objective", "w9", "--method", "gradient"], "unknown objective 'w9'"),
    (["--objective", "sliced_w2", "--method", "gradient"], "'sliced_w2' is not differentiable in the grid"),
    (["--objective", "w2_exact", "--method", "dp", "--schedule", "cosine"], "unknown initial schedule 'cosine'"),
    (["--objective", "w2_exact", "--method", "gradient", "--budget", "1"], "below one gradient step"),
])
def test_tune_bad_input_is_one_line(tmp_path, capsys, extra, match):
    _fails(capsys, TUNE + extra + ["--out", str(tmp_path / "g.json")], match)


@pytest.mark.parametrize("argv,match", [
    (["--problem", "gmm2d-ring8", "--solver", "heun", "--nfe", "6", "--objective", "w2_exact", "--method", "dp"],
     "objective 'w2_exact' does not apply to problem 'gmm2d-ring8' with solver 'heun': needs a Gaussian target"),
    (["--problem", "gmm2d-ring8", "--solver", "em", "--nfe", "6", "--objective", "path_err", "--method", "gradient"],
     "objective 'path_err' does not apply to problem 'gmm2d-ring8' with solver 'em': needs a deterministic solver"),
    (["--problem", "gauss-aniso16", "--solver", "em", "--nfe", "6", "--objective", "w2_exact", "--method", "dp"],
     "method dp needs a deterministic solver"),
    (["--problem", "gauss-aniso16", "--solver", "heun", "--nfe", "2", "--objective", "w2_exact", "--method", "dp"],
     "--nfe 2 gives 1 step for solver 'heun'"),
    (["--problem", "gauss-aniso16", "--solver", "heun", "--nfe", "5", "--objective", "w2_exact", "--method", "dp"],
     "cannot use NFE=5"),
    (["--problem", "gauss-aniso16", "--solver", "heun", "--nfe", "6", "--objective", "w2_exact", "--method", "dp",
      "--heldout-seeds", "0"], "held-out seeds [0] are also tuning seeds"),
])
def test_tune_inapplicable_input_is_one_line(tmp_path, capsys, argv, match):
    _fails(capsys, ["tune", "--samples", "16"] + argv + ["--out", str(tmp_path / "g.json")], match)


def test_tune_init_from_a_file_grid_and_mismatch(tmp_path, capsys):
    out = tmp_path / "a.json"
    assert main(TUNE + ["--objective", "w2_exact", "--method", "dp", "--candidates", "8", "--out", str(out)]) == 0
    out2 = tmp_path / "b.json"
    assert main(TUNE + ["--objective", "w2_exact", "--method", "gradient", "--budget", "12",
                        "--schedule", f"file:{out}", "--out", str(out2)]) == 0
    rec2 = json.loads(out2.read_text())
    assert rec2["init"]["schedule"] == f"file:{out}"
    assert rec2["value"]["tune"] <= json.loads(out.read_text())["value"]["tune"]
    _fails(capsys, ["tune", "--problem", "gauss-aniso16", "--solver", "heun", "--nfe", "8", "--samples", "16",
                    "--objective", "w2_exact", "--method", "dp", "--schedule", f"file:{out}",
                    "--out", str(tmp_path / "c.json")], "was tuned for NFE 6, not 8")


def test_objective_is_refused_before_any_work(capsys):
    with pytest.raises(ConfigError, match="unknown objective"):
        Objective("gauss1d", "vp", "heun", 4, "nope", 16)
