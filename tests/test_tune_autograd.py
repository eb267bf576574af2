"""``sdebench tune --method gradient`` by autograd through the solvers' own code (sdebench/tune/autodiff.py).

The autograd value equals the ``run_cell`` value (1e-12 relative) and its gradient in the grid equals central
differences of the ``run_cell`` objective; the float path (a grid without grad) is bit-identical to the code
before differentiable grids; unsupported solvers fall back to central differences and say so.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from sdebench.cli import main
from sdebench.model import Model
from sdebench.noise import NoiseSource
from sdebench.run import CellConfig, prepare, run_cell
from sdebench.schedules import make_grid
from sdebench.solvers import SOLVERS
from sdebench.tune import tune
from sdebench.tune.autodiff import AutogradObjective, autograd_support
from sdebench.tune.grid import LambdaGrid
from sdebench.tune.methods import logit_gradient
from sdebench.tune.objective import Objective

# (solver, options, NFE for 10 steps)
DIFFERENTIABLE = [("euler", {}, 10), ("heun", {}, 20), ("ddim", {}, 10), ("ddim", {"eta": 1.0}, 10),
                  ("dpm-solver++2m", {}, 10), ("dpm-solver++3m", {}, 10), ("unipc", {}, 10), ("em", {}, 10)]
DETERMINISTIC = [c for c in DIFFERENTIABLE if SOLVERS[c[0]].deterministic(c[1])]


def _label(case):
    return case[0] + ("-eta1" if case[1] else "")


def _fd_grid_gradient(obj, grid, seed, rel_h=1e-4):
    """Central differences of the run_cell objective in each interior grid time."""
    fd = torch.zeros_like(grid)
    for i in range(1, len(grid) - 1):
        h = rel_h * float(min(grid[i - 1] - grid[i], grid[i] - grid[i + 1]))
        up, dn = grid.clone(), grid.clone()
        up[i] += h
        dn[i] -= h
        fd[i] = (obj.value(up, seed) - obj.value(dn, seed)) / (2 * h)
    return fd


def _check(obj, seed=0, tol=1e-5):
    ag = AutogradObjective(obj)
    grid = make_grid(obj.sde, obj.steps, obj.t_end, "edm")
    v, g = ag.value_and_grad(grid, [seed])
    ref = obj.value(grid, seed)
    assert v == pytest.approx(ref, rel=1e-12, abs=0)
    fd = _fd_grid_gradient(obj, grid, seed)  # the ends are pinned by the parametrization: interior only
    err = float((g[1:-1] - fd[1:-1]).norm() / fd[1:-1].norm())
    assert err < tol, (g, fd)


@pytest.mark.parametrize("case", DIFFERENTIABLE, ids=_label)
def test_autograd_matches_central_differences_w2_exact_gauss_aniso16(case):
    name, options, nfe = case
    _check(Objective("gauss-aniso16", "vp", name, nfe, "w2_exact", 16, options=options))


@pytest.mark.parametrize("case", DETERMINISTIC, ids=_label)
def test_autograd_matches_central_differences_path_err_gmm2d_ring8(case):
    name, options, nfe = case
    _check(Objective("gmm2d-ring8", "vp", name, nfe, "path_err", 256, options=options))


@pytest.mark.parametrize("name,options", [("dpm-solver++2m", {}), ("ddim", {"eta": 1.0})])
def test_autograd_matches_central_differences_kl_exact(name, options):
    _check(Objective("gauss-aniso16", "vp", name, 10, "kl_exact", 16, options=options))


def test_autograd_logit_gradient_matches_the_finite_difference_one():
    """The method's gradient in the logits: autograd (z -> lambda -> t -> solver) against the central-difference
    path (lambda_gradient chained by autograd); the autograd grid is param.grid(z) to the bit."""
    obj = Objective("gauss-aniso16", "vp", "unipc", 8, "w2_exact", 16)
    param = LambdaGrid(obj.sde, obj.steps, obj.t_end)
    z = param.logits(make_grid(obj.sde, obj.steps, obj.t_end, "logsnr"))
    z = z + 0.3 * torch.linspace(-1, 1, len(z), dtype=torch.float64)
    f_ad, g_ad = AutogradObjective(obj).logit_gradient(param, z, [0])
    f_fd, g_fd = logit_gradient(obj, param, z, [0], rel_h=1e-4)
    assert f_ad == pytest.approx(f_fd, rel=1e-12, abs=0)
    assert float((g_ad - g_fd).norm() / g_fd.norm()) < 1e-5, (g_ad, g_fd)


def test_autograd_support_is_declared_not_guessed():
    assert {n for n, s in SOLVERS.items() if s.differentiable_grid} >= {c[0] for c in DIFFERENTIABLE}
    assert not SOLVERS["dpm-solver-2"].differentiable_grid
    obj = Objective("gauss-aniso16", "vp", "dpm-solver-2", 10, "w2_exact", 16)
    assert "does not declare differentiable_grid" in autograd_support(obj)
    assert autograd_support(Objective("gauss-aniso16", "vp", "heun", 10, "w2_exact", 16)) is True


# ---- the float path is unchanged ------------------------------------------------------------------------------
# Computed with the code before differentiable grids (commit b939165, torch 2.13.0, CPU): the run_cell metric
# (float.hex) and the first 16 hex digits of sha256 of the solver's output on a fixed x_T and NoiseSource.
BEFORE_W2 = {"euler": "0x1.8b583128e68bap-1", "heun": "0x1.26b064c75d7f9p-2", "ddim": "0x1.1f3918c81f2b9p+0",
             "ddim-eta1": "0x1.c61b877cb2ca3p+0", "dpm-solver++2m": "0x1.34d998d760b5ep-1",
             "dpm-solver++3m": "0x1.30527b79e65fep-1", "unipc": "0x1.96685b258e7ccp-1", "em": "0x1.36c7dafdc570bp-1"}
BEFORE_RING = {"euler": "0x1.16bce73b41115p-2", "heun": "0x1.11aad13cb4516p-3", "ddim": "0x1.3fbeb858d9753p-2",
               "dpm-solver++2m": "0x1.9e088f53f852dp-2", "dpm-solver++3m": "0x1.155525a3b9e81p+0",
               "unipc": "0x1.46171fc98f63ep+0", "ddim-eta1": "0x1.be4b240b431abp-2", "em": "0x1.3546daf481999p-2"}
BEFORE_OUT = {
    "gauss-aniso16": {"euler": "48ef4ecafe96db13", "heun": "7a38135efd7c0a9f", "ddim": "238f208171aeb5f3",
                      "ddim-eta1": "6ee3224f1a020400", "dpm-solver++2m": "a17e1ba2a8ebe9d2",
                      "dpm-solver++3m": "cf73a81bf8fe00ba", "unipc": "bbc32ac8e5df707e", "em": "c49412b0097f09b2"},
    "gmm2d-ring8": {"euler": "2259c961d6fa06df", "heun": "47e5438c1502469f", "ddim": "7b2e4fa12246cc41",
                    "ddim-eta1": "5c411fa219c3aa0f", "dpm-solver++2m": "43ab5ea6af0be88d",
                    "dpm-solver++3m": "985a22386f6c4821", "unipc": "add4a0c39c97b11a", "em": "5afa348f33b91289"},
}


@pytest.mark.parametrize("case", DIFFERENTIABLE, ids=_label)
def test_float_path_is_bit_identical_to_before(case):
    name, options, nfe = case
    label = _label(case)
    for problem in ("gauss-aniso16", "gmm2d-ring8"):
        cfg = CellConfig(problem=problem, sde="vp", solver=name, nfe=nfe, seed=3, n_samples=64, schedule="edm",
                         solver_options=options, metrics=("w2_exact",) if problem == "gauss-aniso16" else ())
        prob, sde, spec, steps, grid, opts, t_end = prepare(cfg)
        x = prob.sample_t(64, sde.T, sde, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            y = spec.sample(Model(sde, **prob.model_functions(sde)), x, grid, sde, NoiseSource(3, 64, (prob.d,)),
                            nfe=nfe, **opts)
        assert hashlib.sha256(y.numpy().tobytes()).hexdigest()[:16] == BEFORE_OUT[problem][label], problem
        if problem == "gauss-aniso16":
            assert run_cell(cfg)["w2_exact"].hex() == BEFORE_W2[label]
    metric = "path_err" if spec.deterministic(opts) else "sliced_w2"
    cfg = CellConfig(problem="gmm2d-ring8", sde="vp", solver=name, nfe=nfe, seed=0, n_samples=256, schedule="edm",
                     solver_options=options, metrics=(metric,))
    assert run_cell(cfg)[metric].hex() == BEFORE_RING[label]


# ---- the method ------------------------------------------------------------------------------------------------
def test_tune_gradient_uses_autograd_and_reports_the_run_cell_value():
    rec = tune("gauss-aniso16", "vp", "dpm-solver++2m", 6, "w2_exact", "gradient", samples=16, heldout_seeds=[1],
               budget=40, proxy=False)
    assert rec["method_details"]["gradient"] == "autograd"
    assert rec["evaluations"] <= 40 and rec["method_details"]["iterations"] >= 30
    assert rec["returned"] == "tuned" and rec["value"]["tune"] < rec["init"]["tune"]
    o = Objective("gauss-aniso16", "vp", "dpm-solver++2m", 6, "w2_exact", 16)
    assert o.value(torch.tensor(rec["t"], dtype=torch.float64), 0) == rec["value"]["tune"]


def test_cli_gradient_on_an_unsupported_solver_falls_back_and_says_so(tmp_path, capsys):
    out = tmp_path / "g.json"
    assert main(["tune", "--problem", "gauss-aniso16", "--solver", "dpm-solver-2", "--nfe", "6", "--samples", "16",
                 "--objective", "w2_exact", "--method", "gradient", "--budget", "12", "--heldout-seeds", "1",
                 "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["method_details"]["gradient"] == "finite-difference"
    assert "does not declare differentiable_grid" in rec["method_details"]["gradient_why"]
    assert "(finite-difference gradient)" in capsys.readouterr().out
    out2 = tmp_path / "h.json"
    assert main(["tune", "--problem", "gauss-aniso16", "--solver", "heun", "--nfe", "6", "--samples", "16",
                 "--objective", "w2_exact", "--method", "gradient", "--budget", "12", "--heldout-seeds", "1",
                 "--out", str(out2)]) == 0
    assert json.loads(out2.read_text())["method_details"]["gradient"] == "autograd"
    assert "(autograd gradient)" in capsys.readouterr().out
