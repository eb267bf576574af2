"""The metric registry: every metric is one Metric object, and everything that names metrics reads it."""

import math
import subprocess
import sys

import pandas as pd
import pytest
import torch

from sdebench.cli import main
from sdebench.metrics import registry as R
from sdebench.metrics.registry import METRICS, Metric, register_metric, unregister_metric
from sdebench.run import CellConfig, run_cell

CANONICAL = ["w2_exact", "kl_exact", "tv_exact", "w1", "w2", "sliced_w2", "emd_w2", "kl", "tv", "mmd", "sinkhorn",
             "mode_mass", "fd", "sliced_w2_data", "png", "class_mass", "path_err", "weak_err", "weak_err_cv",
             "strong_err"]


def test_every_metric_declares_description_label_kind_and_columns():
    assert list(METRICS) == CANONICAL
    for name, m in METRICS.items():
        assert m.name == name
        assert m.description and "\n" not in m.description and len(m.description) < 140, name
        assert m.label and "\n" not in m.label, name
        assert callable(m.compute) and callable(m.applies), name
        assert m.columns_written()[0] == name
        assert not (m.exact and (m.has_se or m.has_null)), f"{name}: an exact metric has no _se / _null"
    # the metrics with a Monte Carlo floor write <name>_null; the exact-law ones are exact
    assert {n for n, m in METRICS.items() if m.has_null} == {"w1", "w2", "sliced_w2", "emd_w2", "kl", "tv", "mmd",
                                                             "sinkhorn", "mode_mass", "fd", "sliced_w2_data",
                                                             "class_mass", "path_err", "weak_err", "weak_err_cv",
                                                             "strong_err"}
    assert METRICS["w2_exact"].exact and METRICS["kl_exact"].exact


def test_run_plot_and_sweep_read_the_registry():
    from sdebench import plot, run, sweep

    assert run.DEFAULT_METRICS == R.DEFAULT_METRICS == ("w2_exact", "kl_exact", "tv_exact", "w1", "w2", "sliced_w2",
                                                        "emd_w2", "kl", "tv", "mmd", "mode_mass")
    assert run.METRICS == {n: m.description for n, m in METRICS.items()}
    assert plot.labels() == {n: m.label for n, m in METRICS.items()}
    assert sweep.METRICS is METRICS


def test_no_import_circle_and_registry_order_does_not_depend_on_the_first_import():
    code = ("import sys; import sdebench.metrics.images, sdebench.guidance; "
            "from sdebench.metrics.registry import METRICS; "
            "assert 'sdebench.run' not in sys.modules, 'importing a metric family imported sdebench.run'; "
            "print(','.join(METRICS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().split(",") == CANONICAL


def test_register_refuses_a_taken_name_and_a_metric_without_label():
    from sdebench.errors import ConfigError

    with pytest.raises(ConfigError, match="already registered"):
        register_metric(Metric("w2", "again", "W2", lambda ctx: {}))
    with pytest.raises(ConfigError, match="label"):
        register_metric(Metric("nolabel", "a metric", "", lambda ctx: {}))
    assert "nolabel" not in METRICS
    # the default list enters cell keys: a metric added later cannot join it, and a built-in one stays
    with pytest.raises(ConfigError, match="default=True is for built-in metrics"):
        register_metric(Metric("late_default", "a metric", "late", lambda ctx: {}, default=True))
    with pytest.raises(ConfigError, match="built in"):
        unregister_metric("w2")
    assert "late_default" not in METRICS and "w2" in METRICS


def _mean_err(ctx) -> dict:
    """|sample mean - target mean| (the first coordinate)."""
    return {"mean_err": abs(float(ctx.x0[:, 0].mean()) - float(ctx.target.weights @ ctx.target.means[:, 0]))}


@pytest.fixture
def mean_err():
    m = register_metric(Metric("mean_err", "|sample mean - target mean| of the first coordinate",
                               "mean error", _mean_err,
                               applies=lambda ctx: True if ctx.problem.d == 1 else "needs a 1-D problem"))
    try:
        yield m
    finally:
        unregister_metric("mean_err")
    assert "mean_err" not in METRICS


def test_a_metric_added_by_one_definition_is_listed_runnable_and_in_the_row(mean_err, capsys, tmp_path):
    assert main(["list", "metrics"]) == 0
    out = capsys.readouterr().out
    assert "mean_err" in out and "|sample mean - target mean|" in out
    path = tmp_path / "rows.csv"
    argv = ["run", "--problem", "gauss1d", "--solver", "heun", "--nfe", "40", "--seeds", "0", "--samples", "4000",
            "--metrics", "mean_err,w2_exact", "--out", str(path)]
    assert main(argv) == 0
    row = pd.read_csv(path).iloc[0]
    assert row["status"] == "ok"
    # gauss1d is N(1.5, 0.5^2): the sample mean of 4000 draws is within 5 standard errors (0.04) of 1.5
    assert 0 <= row["mean_err"] < 5 * 0.5 / math.sqrt(4000)
    assert math.isfinite(row["w2_exact"])
    # the plot label comes from the registry
    from sdebench.plot import labels

    assert labels()["mean_err"] == "mean error"


def test_a_metric_that_does_not_apply_is_skipped_as_before(mean_err):
    # gmm2d-ring8 is 2-D: mean_err says no; w2_exact needs a Gaussian target: skipped, not an error
    row = run_cell(CellConfig(problem="gmm2d-ring8", solver="euler", nfe=6, n_samples=50,
                              metrics=("mean_err", "w2_exact", "mmd")))
    assert row["status"] == "ok"
    assert "mean_err" not in row and "w2_exact" not in row and math.isfinite(row["mmd"])
    ctx = R.MetricContext(cfg=CellConfig(problem="gmm2d-ring8"), problem=None, sde=None, spec=None, options={},
                          grid=None, t_end=1e-3, x_T=None, x0=torch.zeros(3, 2))

    class P:
        d, is_image, is_gaussian = 2, False, False

    ctx.problem = P()
    assert METRICS["mean_err"].check(ctx) == "needs a 1-D problem"
    assert METRICS["w2_exact"].check(ctx) == "needs a Gaussian target"


def test_an_unknown_metric_is_one_line_exit_2(capsys):
    assert main(["run", "--problem", "gauss1d", "--solver", "em", "--nfe", "4", "--samples", "50",
                 "--metrics", "nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown metric" in err[0] and "nosuch" in err[0]


def test_shared_computations_run_once_per_cell(monkeypatch):
    """w2_exact / kl_exact / tv_exact share one exact output law; kl / tv share one density solve."""
    from sdebench import exact
    from sdebench.metrics import density

    calls = {"law": 0, "density": 0}
    law, dens = exact.output_gaussian, density.density_metrics

    def count_law(*a, **k):
        calls["law"] += 1
        return law(*a, **k)

    def count_density(*a, **k):
        calls["density"] += 1
        return dens(*a, **k)

    monkeypatch.setattr(exact, "output_gaussian", count_law)
    monkeypatch.setattr(density, "density_metrics", count_density)
    row = run_cell(CellConfig(problem="gauss1d", solver="heun", nfe=8, n_samples=200))
    assert row["status"] == "ok" and calls == {"law": 1, "density": 1}
    assert {"w2_exact", "kl_exact", "tv_exact", "kl", "tv", "kl_se", "tv_se"} <= set(row)


@pytest.mark.parametrize("solver,options,exact,density", [
    ("heun", {}, True, True),  # deterministic and affine: exact law and change-of-variables density
    ("ddim", {"eta": 1.0}, True, False),  # stochastic but affine: exact law; 1-D so KDE for kl / tv
    ("pc", {}, False, False),  # batch-coupled corrector: no exact law
])
def test_applies_rules_read_solver_capabilities(solver, options, exact, density):
    from sdebench.run import prepare

    cfg = CellConfig(problem="gauss1d", solver=solver, nfe=12, solver_options=options)
    problem, sde, spec, steps, grid, opts, t_end = prepare(cfg)
    ctx = R.MetricContext(cfg=cfg, problem=problem, sde=sde, spec=spec, options=opts, grid=grid, t_end=t_end,
                          x_T=None, x0=torch.zeros(10, 1), target=problem)
    assert (METRICS["w2_exact"].check(ctx) is True) == exact == spec.affine(opts)
    assert spec.deterministic(opts) == density
    assert METRICS["kl"].check(ctx) is True  # density (ODE) or KDE (d <= 2)
    # path_err: any deterministic solver (analytic targets too: against the dopri5 reference flow)
    assert METRICS["path_err"].check(ctx) == (True if density else "needs a deterministic solver")
    assert [m.name for m in R.wanted_metrics(ctx)] == [
        "w1", "w2", "sliced_w2", "emd_w2"] + (["w2_exact", "kl_exact", "tv_exact"] if exact else []) + ["kl", "tv",
                                                                                                      "mmd"]


FAMILY = '''
from sdebench.metrics.registry import SAMPLE, Metric, register_metric

ORDER = 35


def _register():
    register_metric(Metric("abs_mean", "mean of |x| over the samples", "mean |x|",
                           lambda ctx: {"abs_mean": float(ctx.x0.abs().mean())}, stage=SAMPLE))
'''


def test_a_new_family_module_is_discovered_without_a_list(tmp_path, monkeypatch):
    """A metric family is one file in sdebench/metrics with ``_register()``; its ORDER places it."""
    import sdebench.metrics as pkg

    (tmp_path / "zz_family.py").write_text(FAMILY)
    monkeypatch.setattr(pkg, "__path__", [*pkg.__path__, str(tmp_path)])
    modules = R.family_modules()
    names = [m.__name__.rsplit(".", 1)[1] for m in modules]
    assert names == ["gaussian", "samples", "density", "zz_family", "stochastic", "images", "guided", "resolve"]
    try:
        modules[3]._register()
        row = run_cell(CellConfig(problem="gauss1d", solver="euler", nfe=8, n_samples=500, metrics=("abs_mean",)))
        assert row["abs_mean"] > 0 and list(METRICS).index("abs_mean") == len(METRICS) - 1
    finally:
        unregister_metric("abs_mean")
        sys.modules.pop("sdebench.metrics.zz_family", None)
