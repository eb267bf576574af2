"""Guided sampling (issue 8): labelled mixtures, guidance wrappers, NFE counting, ground truth, bad input."""

import json
import math

import pytest
import torch

from sdebench import guidance as G
from sdebench.errors import ConfigError, NFEBudgetError
from sdebench.problems import get_problem
from sdebench.problems.labelled import labelled
from sdebench.run import CellConfig, run_cell
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.solvers import get_solver

LABELLED = ["gmm2d-ring8-labelled", "gmm2d-ring8-labelled4"]


def _x(prob, sde, t, n=12, seed=0):
    return prob.sample_t(n, t, sde, generator=torch.Generator().manual_seed(seed))


# ---- labelled mixtures: closed forms against independent computations ----------------------------------
@pytest.mark.parametrize("pname", LABELLED)
@pytest.mark.parametrize("sname", ["vp", "subvp", "ve", "edm", "ou", "cvp", "cou"])
def test_classifier_grad_is_autograd_of_log_posterior(pname, sname):
    prob, sde = get_problem(pname), get_sde(sname)
    lab = labelled(prob)
    for frac in (0.02, 0.3, 0.8):
        t = frac * sde.T
        x = _x(prob, sde, t).requires_grad_(True)
        lp = lab.log_posterior(x, t, sde)
        for j, c in enumerate(lab.classes):
            (grad,) = torch.autograd.grad(lp[:, j].sum(), x, retain_graph=True)
            got = lab.classifier_grad(x.detach(), t, sde, c)
            scale = max(1.0, float(grad.abs().max()))
            assert float((got - grad).abs().max()) <= 1e-8 * scale


@pytest.mark.parametrize("pname", LABELLED)
def test_bayes_rule_links_conditional_unconditional_and_classifier(pname):
    """log p_t(x | c) (sub-mixture) = log p_t(x) + log p_t(c | x) - log p(c); posteriors sum to 1."""
    prob, sde = get_problem(pname), get_sde("vp")
    lab = labelled(prob)
    x = _x(prob, sde, 0.4, n=50)
    lp = lab.log_posterior(x, 0.4, sde)
    torch.testing.assert_close(lp.exp().sum(1), torch.ones(50, dtype=torch.float64), rtol=0, atol=1e-12)
    for j, c in enumerate(lab.classes):
        lhs = lab.class_mixture(c).log_prob(x, 0.4, sde)
        rhs = prob.log_prob(x, 0.4, sde) + lp[:, j] - math.log(lab.class_weight(c))
        torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-10)
    assert sum(lab.class_weight(c) for c in lab.classes) == pytest.approx(1.0, abs=1e-14)


def test_presets_and_file_labels(tmp_path):
    two, four = labelled(get_problem("gmm2d-ring8-labelled")), labelled(get_problem("gmm2d-ring8-labelled4"))
    assert two.classes == [0, 1] and four.classes == [0, 1, 2, 3]
    assert four.components(1).tolist() == [1, 5]
    assert two.class_mixture(1).K == 4 and two.class_weight(0) == pytest.approx(0.5)
    f = tmp_path / "lab.json"
    f.write_text(json.dumps({"weights": [0.25, 0.75], "means": [[-2.0], [2.0]], "stds": [0.5, 0.5],
                             "labels": [3, 7]}))
    lab = labelled(get_problem(str(f)))
    assert lab.classes == [3, 7] and lab.class_weight(7) == pytest.approx(0.75)


# ---- guidance wrappers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sname", ["vp", "ve", "edm"])
def test_cfg_eps_equals_cfg_x0_equals_classifier_shifted(sname):
    """With exact scores: CFG in eps == CFG in x0 == classifier guidance at w + 1 (same vector field)."""
    prob, sde = get_problem("gmm2d-ring8-labelled4"), get_sde(sname)
    for t in (0.01 * sde.T, 0.5 * sde.T):
        x = _x(prob, sde, t, n=40)
        for w in (0.0, 3.0, 15.0):
            a = G.guided_model(prob, sde, "cfg", w, 2, "eps").score(x, t)
            b = G.guided_model(prob, sde, "cfg", w, 2, "x0").score(x, t)
            c = G.guided_model(prob, sde, "classifier", w + 1, 2).score(x, t)
            scale = float(a.abs().max())
            assert float((a - b).abs().max()) <= 1e-9 * scale
            assert float((a - c).abs().max()) <= 1e-9 * scale


def test_scale_zero_is_conditional_and_classifier_zero_is_unconditional():
    prob, sde = get_problem("gmm2d-ring8-labelled"), get_sde("vp")
    lab = labelled(prob)
    x = _x(prob, sde, 0.3, n=30)
    torch.testing.assert_close(G.guided_model(prob, sde, "cfg", 0, 1).eps(x, 0.3), lab.conditional_eps(x, 0.3, sde, 1))
    torch.testing.assert_close(G.guided_model(prob, sde, "classifier", 0, 1).score(x, 0.3), prob.score(x, 0.3, sde))
    torch.testing.assert_close(G.guided_model(prob, sde, "classifier", 1, 1).score(x, 0.3),
                               lab.conditional_score(x, 0.3, sde, 1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("guidance,batched,cost", [("cfg", False, 2), ("cfg", True, 1), ("classifier", False, 1)])
def test_nfe_counted_per_guidance(guidance, batched, cost):
    row = run_cell(CellConfig(problem="gmm2d-ring8-labelled", solver="dpm-solver-2" if cost == 2 else "ddim",
                              nfe=10, n_samples=64, schedule="logsnr", guidance=guidance, scale=3.0, class_label=1,
                              cfg_batched=batched, metrics=("class_mass",)))
    assert row["status"] == "ok", row.get("error")
    # --nfe is the counted budget, guided or not: unbatched CFG at NFE 10 makes 5 model calls
    assert row["guidance_cost"] == cost and row["nfe"] == 10 and row["model_calls"] == 10 // cost
    assert row["steps"] == get_solver(row["solver"]).steps_for_nfe(10 // cost)
    assert row["nfe_rule"].startswith(guidance)


def test_cfg_nfe_20_is_20_evaluations_in_10_calls(capsys, tmp_path):
    from sdebench.cli import main

    out = tmp_path / "g.csv"
    assert main(["run", "--problem", "gmm2d-ring8-labelled", "--guidance", "cfg", "--scale", "1", "--class", "1",
                 "--solver", "ddim", "--nfe", "20", "--samples", "32", "--metrics", "class_mass",
                 "--out", str(out)]) == 0
    import pandas as pd

    row = pd.read_csv(out).iloc[0]
    assert row["nfe"] == 20 and row["model_calls"] == 10 and row["steps"] == 10


@pytest.mark.parametrize("argv,needle", [
    (["--solver", "ddim", "--nfe", "21"], "NFE=21 is the counted budget, but unbatched cfg costs 2 evaluations"),
    (["--solver", "heun", "--nfe", "18"], "the solver gets 9 model calls, and heun costs 2 NFE per step"),
    (["--solver", "ddim", "--nfe", "2", "--final-denoise"], "leaves no model call for the solver"),
])
def test_guided_budget_the_rule_cannot_meet_is_one_line(capsys, argv, needle):
    from sdebench.cli import main

    assert main(["run", "--problem", "gmm2d-ring8-labelled", "--guidance", "cfg", "--scale", "1", "--class", "1",
                 "--samples", "8"] + argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_solver_calls_rule():
    assert G.solver_calls(20, "cfg", False) == 10
    assert G.solver_calls(20, "cfg", True) == 20
    assert G.solver_calls(20, "classifier") == 20
    assert G.solver_calls(20, "cfg", False, final_denoise=True) == 9
    assert G.solver_calls(20, "none", final_denoise=True) == 19
    with pytest.raises(NFEBudgetError):
        G.solver_calls(7, "cfg", False)


# ---- ground truth --------------------------------------------------------------------------------------
def test_w0_conditional_sampling_hits_the_class_and_full_metrics():
    row = run_cell(CellConfig(problem="gmm2d-ring8-labelled4", solver="dpm-solver++2m", nfe=40, n_samples=120,
                              schedule="logsnr", guidance="cfg", scale=0.0, class_label=2))  # 20 unbatched calls
    assert row["status"] == "ok", row.get("error")
    assert row["class_mass"] >= 0.99 and row["class_mass_null"] >= 0.99
    assert row["class_masses"].startswith("0:0.0000")
    # the sample metrics are taken against p(x | c): at 20 calls the samples sit at the Monte Carlo floor
    assert row["sliced_w2"] < 3 * row["sliced_w2_null"]
    assert row["mmd"] < 0.05
    assert "kl" in row and "path_err" in row and row["path_err"] < 0.1


def test_pathwise_error_vs_dopri5_converges_at_order_two():
    """Heun on the guided ODE (w = 3): RMS error vs the dopri5 reference falls like NFE^-2."""
    prob, sde = get_problem("gmm2d-ring8-labelled"), get_sde("vp")
    errs = []
    nfes = (40, 80, 160)
    for nfe in nfes:
        row = run_cell(CellConfig(problem="gmm2d-ring8-labelled", solver="heun", nfe=nfe, n_samples=32,
                                  schedule="logsnr", guidance="cfg", scale=3.0, class_label=1, cfg_batched=True,
                                  metrics=("path_err",)))
        assert row["status"] == "ok", row.get("error")
        errs.append(row["path_err"])
        # the row states its reference: tolerance and error estimate (vs a 10x looser check solve)
        assert row["path_ref_rtol"] == G.REF_TOL and 0 < row["path_ref_err"] < 1e-3 * row["path_err"]
    slope = math.log(errs[-1] / errs[0]) / math.log(nfes[-1] / nfes[0])
    assert -2.4 < slope < -1.6, (errs, slope)
    assert prob.d == 2 and sde.name == "vp"


def _pair():
    f64 = torch.float64
    cond = (torch.tensor([2.0, -1.0], dtype=f64), torch.tensor([[0.3, 0.1], [0.1, 0.2]], dtype=f64))
    uncond = (torch.tensor([0.0, 0.5], dtype=f64), torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=f64))
    return cond, uncond


def test_exact_guided_law_converges_to_guided_ode_law_at_solver_order():
    """Gaussian cond/uncond: the guided score is affine; exact output law of the solver vs exact ODE law."""
    sde = get_sde("vp")
    cond, uncond = _pair()
    m_T, P_T = torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)
    m_ref, P_ref = G.guided_ode_law(sde, cond, uncond, 3.0, m_T, P_T, 1e-3)
    from sdebench.metrics import gaussian as gx

    for name, order in (("ddim", 1), ("heun", 2)):
        spec = get_solver(name)
        errs = []
        for steps in (32, 64, 128):
            grid = make_grid(sde, steps, 1e-3, "logsnr")
            m, P = G.exact_guided_law(spec, sde, grid, cond, uncond, 3.0, m_T, P_T,
                                      nfe=spec.nfe_for_steps(steps, grid))
            errs.append(gx.w2(m, P, m_ref, P_ref))
        slope = math.log2(errs[-2] / errs[-1])  # local slope on the finest pair (Heun is pre-asymptotic at 32)
        assert abs(slope - order) < 0.3, (name, errs)


def test_reference_ode_matches_exact_guided_flow():
    """The dopri5 reference (the pathwise ground truth) reproduces the exact affine guided flow."""
    sde = get_sde("vp")
    cond, uncond = _pair()
    m_T = torch.tensor([0.3, -0.2], dtype=torch.float64)
    P_T = torch.eye(2, dtype=torch.float64)
    x = torch.cat([m_T[None], m_T[None] + torch.eye(2, dtype=torch.float64)])
    out, _ = G.reference_ode(G._pair_score(sde, cond, uncond, 3.0, "cfg"), sde, x, sde.T, 1e-3)
    A = (out[1:] - out[0]).T
    m_ref, P_ref = G.guided_ode_law(sde, cond, uncond, 3.0, m_T, P_T, 1e-3)
    torch.testing.assert_close(out[0], m_ref, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(A @ P_T @ A.T, P_ref, rtol=1e-7, atol=1e-8)


# ---- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,needle", [
    ({"guidance": "cfg", "scale": 1.0, "class_label": 5}, "class 5 is not in target"),
    ({"guidance": "cfg", "scale": -1.0, "class_label": 1}, "must be >= 0"),
    ({"guidance": "cfg", "scale": float("nan"), "class_label": 1}, "must be finite"),
    ({"guidance": "cfg", "scale": float("inf"), "class_label": 1}, "must be finite"),
    ({"guidance": "cfg", "scale": 1.0}, "needs a class label"),
    ({"guidance": "magic", "scale": 1.0, "class_label": 1}, "unknown guidance 'magic'"),
    ({"guidance": "cfg", "scale": 1.0, "class_label": 1, "cfg_param": "v"}, "unknown CFG parametrization 'v'"),
    ({"class_label": 1}, "without guidance"),
])
def test_bad_guidance_input_is_one_line_config_error(kwargs, needle):
    with pytest.raises(ConfigError) as exc:
        run_cell(CellConfig(problem="gmm2d-ring8-labelled", solver="ddim", nfe=4, n_samples=8, **kwargs))
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_guidance_on_unlabelled_target_is_config_error():
    with pytest.raises(ConfigError, match="has no class labels"):
        run_cell(CellConfig(problem="gmm2d-ring8", solver="ddim", nfe=4, n_samples=8, guidance="cfg", scale=1.0,
                            class_label=0))


def test_cli_guided_run_and_errors(capsys):
    from sdebench.cli import main

    rc = main(["run", "--problem", "gmm2d-ring8-labelled", "--guidance", "cfg", "--scale", "3", "--class", "1",
               "--solver", "ddim", "--nfe", "10", "--samples", "64", "--metrics", "class_mass,path_err"])
    out = capsys.readouterr().out
    assert rc == 0 and "path_err" in out and "class_mass" in out
    for argv, needle in ((["--class", "9"], "class 9"), (["--scale", "-2"], ">= 0"), (["--scale", "inf"], "finite"),
                         (["--class", "x"], "--class must be an integer")):
        base = ["run", "--problem", "gmm2d-ring8-labelled", "--guidance", "cfg", "--class", "1", "--scale", "1",
                "--solver", "ddim", "--nfe", "4", "--samples", "8"]
        i = base.index(argv[0])
        base[i + 1] = argv[1]
        assert main(base) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1
    assert main(["run", "--problem", "gmm2d-ring8", "--guidance", "cfg", "--class", "0", "--solver", "ddim",
                 "--nfe", "4", "--samples", "8"]) == 2
    assert "has no class labels" in capsys.readouterr().err


def test_reference_ode_agrees_with_registered_dopri5_backend():
    """Two implementations of the tight-tolerance reference (guidance.reference_ode lands its last step on
    t_end; solvers/backends.py dopri5 clamps t) agree far below the smallest measured path error (7e-3)."""
    from sdebench.model import Model

    prob, sde = get_problem("gmm2d-ring8-labelled"), get_sde("vp")
    x_T = labelled(prob).class_mixture(1).sample_t(16, sde.T, sde, generator=torch.Generator().manual_seed(3))
    score = G.guided_score_fn(prob, sde, "cfg", 7.0, 1)
    a, _ = G.reference_ode(score, sde, x_T, sde.T, 1e-3)
    grid = torch.tensor([sde.T, 1e-3], dtype=torch.float64)
    b = get_solver("dopri5").sample(Model(sde, score=score), x_T.clone(), grid, sde, None, rtol=1e-10, atol=1e-10)
    assert float((a - b).norm(dim=1).max()) < 1e-6


def test_guidance_sweep_runs_a_tiny_sweep(tmp_path, capsys):
    """sweeps/guidance.toml is a normal sweep file: a tiny guided sweep runs into a store (resumable) and
    its report holds the error-vs-w section, both figures and the exact Gaussian analogue."""
    from sdebench.cli import main

    sweep = tmp_path / "g.toml"
    sweep.write_text('problems = ["gmm2d-ring8-labelled4"]\nguidance = "cfg"\nclass_label = 3\nscales = [0, 5]\n'
                     'nfe = [8]\nseeds = [0]\nsolvers = ["ddim"]\nsamples = 16\nmetrics = ["path_err", "class_mass"]\n'
                     f'crn = false\ngaussian_analogue = true\nschedules = ["logsnr"]\nout = "{tmp_path / "g"}"\n')
    assert main(["sweep", str(sweep), "--serial", "--progress", "quiet"]) == 0
    text = (tmp_path / "g" / "report.md").read_text()
    assert "## Guided sampling" in text and "| ddim |" in text and "Exact Gaussian analogue" in text
    for name in ("guidance_error_vs_w.png", "guidance_gaussian_w2_vs_w.png"):
        assert (tmp_path / "g" / "figures" / name).stat().st_size > 0
    import pandas as pd

    rows = pd.read_csv(tmp_path / "g" / "results.csv")
    assert sorted(rows["scale"]) == [0.0, 5.0] and (rows["status"] == "ok").all() and (rows["path_err"] > 0).all()
    g = pd.read_csv(tmp_path / "g" / "results_gaussian.csv")
    assert sorted(g["scale"]) == [0.0, 5.0] and (g["w2_rel"] > 0).all()
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--serial", "--progress", "quiet"]) == 0  # resumed: nothing to run
    assert "2 were already in the store" in capsys.readouterr().out
    for extra, needle in (('colour = "red"\n', "colour"), ('solvers = ["no-such-solver"]\n', "no-such-solver"),
                          ('scales = [0, -1]\n', "scales"), ('class_label = "a"\n', "class_label")):
        bad = tmp_path / "bad.toml"
        key = extra.split(" ")[0]
        text = "\n".join(ln for ln in sweep.read_text().splitlines() if ln.split(" ")[0] != key) + "\n"
        bad.write_text(text + extra)
        assert main(["sweep", str(bad), "--dry-run"]) == 2
        assert needle in capsys.readouterr().err


def test_guidance_sweep_cells_are_the_former_guidance_cells():
    """sweeps/guidance.toml expands to the cells the committed results/guidance.csv was run with."""
    from pathlib import Path

    import pandas as pd

    from sdebench.run import DEFAULT_METRICS
    from sdebench.sweep import load_sweep

    root = Path(__file__).resolve().parents[1]
    cells = load_sweep(root / "sweeps" / "guidance.toml").cells()
    rows = pd.read_csv(root / "results" / "guidance.csv")
    assert len(cells) == len(rows) == 270
    cols = ["solver", "nfe", "scale", "seed"]
    assert sorted(tuple(getattr(c, k) for k in cols) for _, c, _ in cells) == sorted(
        rows[cols].itertuples(index=False, name=None))
    for _, c, _ in cells:
        assert (c.guidance, c.class_label, c.cfg_param, c.cfg_batched, c.crn_steps, c.n_samples, c.t_end) == (
            "cfg", 1, "eps", True, None, 500, 1e-3)
        assert c.metrics == (DEFAULT_METRICS if c.scale == 0 else ("path_err", "class_mass", "sliced_w2", "mmd"))


def test_run_flags_and_a_sweep_file_build_the_same_cells():
    """One builder: `sdebench run` flags and the equivalent sweep table expand to identical cells."""
    from sdebench.cli import build_parser
    from sdebench.commands.run import build_cells
    from sdebench.sweep import parse_sweep

    args = build_parser().parse_args(
        ["run", "--problem", "gmm2d-ring8-labelled", "--solver", "ddim,heun", "--nfe", "10,20", "--seeds", "0,1",
         "--samples", "64", "--schedule", "logsnr", "--guidance", "cfg", "--scale", "3", "--class", "1",
         "--cfg-batched", "--metrics", "path_err,class_mass"])
    sweep = parse_sweep({"problems": ["gmm2d-ring8-labelled"], "solvers": ["ddim", "heun"], "nfe": [10, 20],
                         "seeds": [0, 1], "samples": 64, "schedules": ["logsnr"], "guidance": "cfg", "scales": [3],
                         "class_label": 1, "cfg_batched": True, "metrics": ["path_err", "class_mass"]})
    assert build_cells(args) == [c for _, c, _ in sweep.cells()]
