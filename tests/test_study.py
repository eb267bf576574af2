"""The study's machinery (issue 13): exact law by reverse mode, schedule-incompatible solvers skipped at
expansion, seed-independent cells run once, metrics by solver kind, sweep blocks, ``run --threads``."""

from __future__ import annotations

import pytest
import torch

from sdebench import exact
from sdebench.cli import main as cli
from sdebench.errors import ConfigError, NFEBudgetError
from sdebench.metrics.density import init_moments
from sdebench.run import CellConfig, _model, prepare, run_cell
from sdebench.solvers import SOLVERS
from sdebench.sweep import parse_sweep, seed_independent

AFFINE = sorted(n for n, s in SOLVERS.items() if s.affine({}) and not s.deterministic({}))


def _law(name, problem="gauss-aniso16", method="grad"):
    for nfe in (10, 12, 2, 1):
        try:
            cfg = CellConfig(problem=problem, solver=name, nfe=nfe)
            prob, sde, spec, _, grid, options, _ = prepare(cfg)
            break
        except NFEBudgetError:
            continue
    m_T, P_T = init_moments(prob, sde, "exact")
    return exact.output_gaussian(spec, lambda: _model(prob, sde, cfg), sde, grid, m_T, P_T, nfe=cfg.nfe,
                                 options=options, method=method)


@pytest.mark.parametrize("name", AFFINE)
def test_exact_law_reverse_mode_equals_one_hot_probe(name, monkeypatch):
    """Every stochastic affine solver: the reverse-mode noise covariance (one backward pass over d rows)
    equals the one-hot probe's G G^T to rounding on a 16-d anisotropic Gaussian, without falling back."""
    mean_p, cov_p = _law(name, method="probe")

    def no_probe(*a, **k):
        raise AssertionError("fell back to the probe")

    monkeypatch.setattr(exact, "noise_cov_probe", no_probe)
    mean_g, cov_g = _law(name, method="grad")
    assert torch.equal(mean_p, mean_g)
    assert float((cov_p - cov_g).abs().max()) <= 1e-12 * float(cov_p.abs().max())


def test_exact_law_falls_back_to_probe_when_the_graph_is_cut(monkeypatch):
    """A solver whose noise path carries no gradient (here: the noise source detaches its draws) still gets
    its exact law, from the probe."""
    from sdebench.noise import GradNoise

    real = GradNoise.standard_normal
    monkeypatch.setattr(GradNoise, "standard_normal", lambda self, key: real(self, key).detach())
    _, cov_fallback = _law("em")
    monkeypatch.undo()
    _, cov_probe = _law("em", method="probe")
    assert torch.equal(cov_fallback, cov_probe)


def _sweep(**over):
    d = {"name": "s", "problems": ["gauss1d"], "nfe": [4, 8], "seeds": 3, "samples": 32,
         "metrics": ["w2_exact", "kl_exact"], "solvers": ["em", "euler"]}
    d.update(over)
    return parse_sweep(d, "s.toml")


def test_torchsde_backends_on_nonuniform_grids_are_skipped_at_expansion():
    s = _sweep(solvers=["torchsde-euler", "em"], schedules=["uniform", "logsnr", "edm", "quadratic"],
               skip_incompatible=True)
    cells = s.cells()
    assert {c.schedule for _, c, _ in cells if c.solver == "torchsde-euler"} == {"uniform"}
    assert {c.schedule for _, c, _ in cells if c.solver == "em"} == {"uniform", "logsnr", "edm", "quadratic"}
    reasons = [r for p, sde, sol, nfe, r in s.skipped if sol == "torchsde-euler"]
    assert len(reasons) == 3 * 2 and all("applies only to schedules ['uniform']" in r for r in reasons)
    with pytest.raises(ConfigError, match="applies only to schedules"):
        _sweep(solvers=["torchsde-euler"], schedules=["logsnr"]).cells()


def test_seed_independent_cells_run_for_one_seed_only():
    s = _sweep()
    cells = s.cells()
    assert {c.seed for _, c, _ in cells} == {0} and len(cells) == 2 * 2
    assert s.seed_dedup == 2 * 2 * 2
    # a sampled metric changes with the seed: every seed runs
    assert {c.seed for _, c, _ in _sweep(metrics=["w2_exact", "w2"]).cells()} == {0, 1, 2}
    # tv_exact is exact in 1-D only (Monte Carlo seeded by the cell in d > 1)
    assert seed_independent("tv_exact", "gauss1d") and not seed_independent("tv_exact", "gauss-aniso16")
    assert {c.seed for _, c, _ in _sweep(problems=["gauss-aniso16"], metrics=["w2_exact", "tv_exact"]).cells()} \
        == {0, 1, 2}


@pytest.mark.parametrize("solver", ["em", "heun"])
def test_exact_metrics_are_identical_for_every_seed(solver):
    """The premise of running them once: the exact law does not depend on the seed."""
    rows = [run_cell(CellConfig(problem="gauss-aniso16", solver=solver, nfe=8, seed=s, n_samples=16,
                                metrics=("w2_exact", "kl_exact"))) for s in (0, 7)]
    assert rows[0]["w2_exact"] == rows[1]["w2_exact"] and rows[0]["kl_exact"] == rows[1]["kl_exact"]


def test_metrics_by_solver_kind():
    s = _sweep(problems=["gauss1d", "gmm1d"], seeds=1,
               metrics={"ode": ["w2_exact", "kl"], "sde": ["w2_exact"]},
               metrics_by_problem={"gmm1d": {"ode": ["kl"], "sde": ["w2"]}})
    got = {(c.problem, c.solver): c.metrics for _, c, _ in s.cells()}
    assert got == {("gauss1d", "em"): ("w2_exact",), ("gauss1d", "euler"): ("w2_exact", "kl"),
                   ("gmm1d", "em"): ("w2",), ("gmm1d", "euler"): ("kl",)}
    # a kind left out of a table gets the top-level metrics
    s = _sweep(problems=["gmm1d"], seeds=1, metrics=["w2"], metrics_by_problem={"gmm1d": {"ode": ["kl"]}})
    assert {c.solver: c.metrics for _, c, _ in s.cells()} == {"em": ("w2",), "euler": ("kl",)}
    with pytest.raises(ConfigError, match="by solver kind takes the keys ode, sde"):
        _sweep(metrics={"odes": ["w2"]})
    with pytest.raises(ConfigError, match="unknown metric 'w3'"):
        _sweep(metrics={"ode": ["w3"]})


def test_blocks_are_unioned_with_overrides_and_excludes():
    s = _sweep(seeds=1, blocks=[{"name": "a"}, {"name": "b", "samples": 64, "exclude": ["euler"]},
                                {"name": "c", "t_end": 1e-5, "solvers": ["euler"], "nfe": [4]},
                                {"name": "d", "solvers": ["euler"]}])
    cells = s.cells()
    got = sorted((c.solver, c.nfe, c.t_end or 0, c.n_samples) for _, c, _ in cells)
    # block d's cells are block a's euler cells (same config, same key): they run once
    assert got == [("em", 4, 0, 32), ("em", 4, 0, 64), ("em", 8, 0, 32), ("em", 8, 0, 64), ("euler", 4, 0, 32),
                   ("euler", 4, 1e-5, 32), ("euler", 8, 0, 32)]
    assert len({k for k, _, _ in cells}) == len(cells)
    assert [b.description for b in s.blocks] == ["a", "b", "c", "d"]
    with pytest.raises(ConfigError, match="block 'x'.*exclude"):
        _sweep(blocks=[{"name": "x", "exclude": ["em", "euler"]}])
    with pytest.raises(ConfigError, match="key 'out' is not allowed in a block"):
        _sweep(blocks=[{"out": "elsewhere"}])
    with pytest.raises(ConfigError, match="appears twice"):
        _sweep(blocks=[{"name": "a"}, {"name": "a"}])


def test_run_sets_torch_threads_as_workers_do(capsys):
    from sdebench.distributed import WORKER_THREADS

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        args = ["run", "--problem", "gauss1d", "--solver", "euler", "--nfe", "4", "--samples", "16",
                "--metrics", "w2_exact"]
        assert cli(args) == 0
        assert torch.get_num_threads() == WORKER_THREADS == 1
        torch.set_num_threads(2)
        assert cli(args + ["--threads", "3"]) == 0
        assert torch.get_num_threads() == 3
        capsys.readouterr()
        assert cli(args + ["--threads", "0"]) == 2
        err = capsys.readouterr().err
        assert "--threads" in err and err.count("\n") == 1
    finally:
        torch.set_num_threads(before)


def test_dry_run_prints_cells_and_estimated_cost_per_block(capsys):
    assert cli(["sweep", "sweeps/quick.toml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "block 'gaussian':" in out and "block 'mixtures':" in out
    assert "estimated cost:" in out and "min on 2 idle cores" in out


def test_cell_cost_grows_with_nfe_and_samples():
    from sdebench.cost import cell_cost

    def c(problem, nfe, n=500, solver="em"):
        return cell_cost(CellConfig(problem=problem, solver=solver, nfe=nfe, n_samples=n), "sde")

    assert c("gauss-aniso16", 1000) > c("gauss-aniso16", 10) > 0
    assert c("gmm2d-close", 100, n=2000) > c("gmm2d-close", 100, n=500)
    assert c("gauss1d", 100, n=2000) == c("gauss1d", 100, n=64)  # exact law: independent of the batch
    assert c("my-target.json", 10) > 0  # unknown problems get the default guess


def test_run_keeps_every_seed_it_is_asked_for(capsys):
    """`sdebench run --seeds` is an explicit request: no seed deduplication there."""
    assert cli(["run", "--problem", "gauss1d", "--solver", "euler", "--nfe", "4", "--samples", "16",
                "--metrics", "w2_exact", "--seeds", "0,1,2"]) == 0
    table = capsys.readouterr().out
    assert " 3 " in table.splitlines()[1]  # the seeds column counts 3
