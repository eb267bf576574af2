"""The leaderboard (sdebench.leaderboard) on synthetic rows with known winners, crossings and slopes, and
``sdebench report`` on the committed quick results."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from sdebench import cli
from sdebench.leaderboard import (
    _val,
    budget_points,
    choose_budgets,
    final_denoise_table,
    leaderboard_lines,
    main_slice,
    nfe_to_tol,
    order_fits,
    parametrization_table,
    points,
    primary_metrics,
    sde_vs_ode_table,
    t_end_table,
    tol_table,
    winners_table,
)

NFES = (5, 10, 20, 50, 100)
ROOT = Path(__file__).resolve().parents[1]


def _rows(problem, solver, schedule, law, metric="w2_exact", sde="vp", t_end=1e-3, final_denoise=None,
          floor_at=(), null=None, spread=0.0, seeds=3, nfes=NFES):
    """Rows of one configuration: error law(nfe), seed s scaled by 1 + spread (s - 1) (mean = law)."""
    out = []
    for n in nfes:
        for s in range(seeds):
            r = {"problem": problem, "sde": sde, "solver": solver, "label": solver, "schedule": schedule,
                 "nfe": n, "seed": s, "t_end": t_end, "status": "ok", metric: law(n) * (1 + spread * (s - 1))}
            if final_denoise is not None:
                r["final_denoise"] = final_denoise
            if null is not None:
                r[f"{metric}_null"] = null
                r[f"{metric}_null_sd"] = 0.1 * null
                r[f"{metric}_at_floor"] = n in floor_at
            out.append(r)
    return out


@pytest.fixture(scope="module")
def study():
    rows = []
    # Gaussian target A (exact metric, identical seeds): known power laws
    rows += _rows("synthA", "heun", "logsnr", lambda n: 3.0 * n**-2.0)
    rows += _rows("synthA", "heun", "uniform", lambda n: 10.0 * n**-2.0)
    rows += _rows("synthA", "euler", "uniform", lambda n: 1.2 / n)
    rows += _rows("synthA", "em", "uniform", lambda n: 2.0 / n)
    # other slices: a second t_end, the final denoising step, the VE parametrization
    rows += _rows("synthA", "heun", "uniform", lambda n: 1.0 * n**-2.0, t_end=1e-2)
    rows += _rows("synthA", "heun", "uniform", lambda n: 5.0 * n**-2.0, final_denoise=True)
    rows += _rows("synthA", "heun", "uniform", lambda n: 4.0 * n**-2.0, sde="ve", t_end=1e-5)
    # sampled target B: ddim sits on its resolution limit from NFE 50 with values below everyone else
    floor = {50: 0.009, 100: 0.0089}
    rows += _rows("synthB", "ddim", "uniform", lambda n: floor.get(n, 0.5 / n), metric="sliced_w2",
                  floor_at=(50, 100), null=0.008, spread=0.01)
    rows += _rows("synthB", "euler", "uniform", lambda n: 2.0 / n, metric="sliced_w2", null=0.008, spread=0.01)
    return pd.DataFrame(rows)


def _main(df, problem, metric):
    return main_slice(points(df[df["problem"] == problem], metric))


def test_primary_metric_defaults_and_setting(study):
    a = study[study["problem"] == "synthA"]
    b = study[study["problem"] == "synthB"]
    assert primary_metrics(a) == [("w2_exact", "all")]
    assert primary_metrics(b) == [("sliced_w2", "all")]
    mix = b.assign(weak_err=0.1, path_err=0.2, w2=0.3)
    assert primary_metrics(mix) == [("weak_err", "all"), ("path_err", "ode")]
    assert primary_metrics(mix.drop(columns=["weak_err", "path_err"])) == [("w2", "all")]
    assert primary_metrics(mix, {"synthB": "path_err"}) == [("path_err", "all")]
    from sdebench.errors import ConfigError

    with pytest.raises(ConfigError, match="nope"):
        primary_metrics(mix, "nope")


def test_main_slice_excludes_other_t_end_and_final_denoise(study):
    p = _main(study, "synthA", "w2_exact")
    vp = p[p["sde"] == "vp"]
    assert set(vp["t_end"]) == {1e-3} and not vp["final_denoise"].any()
    assert len(vp) == 4 * len(NFES)
    assert set(p[p["sde"] == "ve"]["t_end"]) == {1e-5}


def test_winners_and_runner_up(study):
    p = _main(study, "synthA", "w2_exact")
    assert choose_budgets(p) == [5, 10, 20, 50]
    w = winners_table(p, [5, 10]).set_index(["NFE", "SDE"])
    # NFE 5: heun/logsnr 0.12 < euler 0.24 < heun/uniform 0.4 = em 0.4
    assert w.loc[(5, "vp"), "best (solver / schedule)"] == "heun / logsnr"
    assert w.loc[(5, "vp"), "error"] == "0.12"
    assert w.loc[(5, "vp"), "runner-up"] == "euler / uniform"
    # NFE 10: heun/logsnr 0.03, then heun/uniform 0.1 (euler 0.12, em 0.2)
    assert w.loc[(10, "vp"), "best (solver / schedule)"] == "heun / logsnr"
    assert w.loc[(10, "vp"), "runner-up"] == "heun / uniform"
    assert w.loc[(10, "ve"), "best (solver / schedule)"] == "heun / uniform"
    assert w.loc[(10, "ve"), "error"] == "0.04"


def test_points_at_floor_never_win(study):
    p = _main(study, "synthB", "sliced_w2")
    ddim = p[p["label"] == "ddim"].set_index("nfe")
    assert ddim["at_floor"].tolist() == [False, False, False, True, True]
    assert math.isclose(ddim.loc[5, "mean"], 0.1) and ddim.loc[5, "lo"] < 0.1 < ddim.loc[5, "hi"]
    w = winners_table(p, [20, 50]).set_index("NFE")
    assert w.loc[20, "best (solver / schedule)"] == "ddim / uniform"  # 0.025 resolved, below euler's 0.1
    # at 50 ddim's 0.009 is below euler's 0.04 but at its limit: euler wins, ddim is counted
    assert w.loc[50, "best (solver / schedule)"] == "euler / uniform"
    assert w.loc[50, "at resolution limit"].startswith("1 (lowest: ddim / uniform 0.009* [")
    assert w.loc[50, "runner-up"] == "-"


def test_budget_takes_largest_nfe_within_two_thirds():
    p = pd.DataFrame({"problem": "x", "sde": "vp", "label": ["a", "a", "b"], "solver": ["a", "a", "b"],
                      "schedule": "uniform", "t_end": 1e-3, "final_denoise": False, "nfe": [9, 6, 6],
                      "mean": [1.0, 2.0, 0.5], "lo": math.nan, "hi": math.nan, "at_floor": False})
    bp = budget_points(p, 10)
    assert bp.set_index("label")["nfe"].to_dict() == {"a": 9}  # b's 6 is below 2/3 of 10
    w = winners_table(p, [10])
    assert w.loc[0, "best (solver / schedule)"] == "a / uniform (NFE 9)"


def test_nfe_to_tolerance_interpolates_and_never_extrapolates(study):
    # exact power law 3 n^-2: log-log interpolation is exact; 1e-2 at sqrt(300), 1e-3 at sqrt(3000)
    n, text = nfe_to_tol(NFES, [3.0 * x**-2.0 for x in NFES], [False] * 5, 1e-2)
    assert math.isclose(n, math.sqrt(300), rel_tol=1e-12) and text == "17.3"
    assert math.isclose(nfe_to_tol(NFES, [3.0 * x**-2.0 for x in NFES], [False] * 5, 1e-3)[0], math.sqrt(3000),
                        rel_tol=1e-12)
    assert nfe_to_tol(NFES, [3.0 * x**-2.0 for x in NFES], [False] * 5, 1e-4)[1] == "not reached (> 100)"
    assert nfe_to_tol(NFES, [1e-3] * 5, [False] * 5, 1e-2)[1] == "<= 5"
    assert nfe_to_tol(NFES, [0.5 / x for x in NFES], [False, False, False, True, True], 1e-2)[1] == \
        "below resolution (NFE >= 50)"
    t = tol_table(_main(study, "synthA", "w2_exact")).set_index(["SDE", "solver / schedule"])
    assert t.loc[("vp", "heun / logsnr"), "tol 0.01"] == "17.3"
    assert t.loc[("vp", "heun / logsnr"), "tol 0.001"] == "54.8"
    assert t.loc[("vp", "heun / logsnr"), "tol 0.0001"] == "not reached (> 100)"
    assert t.loc[("vp", "euler / uniform"), "tol 0.01"] == "not reached (> 100)"
    tb = tol_table(_main(study, "synthB", "sliced_w2")).set_index("solver / schedule")
    assert tb.loc["ddim / uniform", "tol 0.01"] == "below resolution (NFE >= 50)"


def test_order_fits_exclude_floor_and_compare_with_declared(study):
    f = order_fits(_main(study, "synthA", "w2_exact"), study[study["problem"] == "synthA"], "w2_exact")
    f = f.set_index(["SDE", "solver / schedule"])
    assert f.loc[("vp", "heun / logsnr"), "fitted"] == "2"
    assert f.loc[("vp", "heun / logsnr"), "declared"] == "2" and f.loc[("vp", "heun / logsnr"), "agrees"] == "yes"
    assert f.loc[("vp", "euler / uniform"), "fitted"] == "1"
    fb = order_fits(_main(study, "synthB", "sliced_w2"), study[study["problem"] == "synthB"], "sliced_w2")
    row = fb.set_index("solver / schedule").loc["ddim / uniform"]
    assert row["fitted"] == "1" and row["NFE window"] == "5-20" and row["points at limit"] == 2
    lo, hi = (float(v) for v in row["95% CI"].strip("[]").split(","))
    assert lo <= 1.0 <= hi  # bootstrap over the (scaled) seed curves


def test_sde_vs_ode_parametrization_t_end_final_denoise(study):
    p_all = points(study[study["problem"] == "synthA"], "w2_exact")
    p = main_slice(p_all)
    s = sde_vs_ode_table(p, [10]).set_index(["NFE", "SDE"])
    assert s.loc[(10, "vp"), "best SDE sampler"] == "em / uniform"
    assert s.loc[(10, "vp"), "best ODE sampler"] == "heun / logsnr"
    assert s.loc[(10, "vp"), "SDE / ODE"] == "6.67"  # 0.2 / 0.03
    par = parametrization_table(p, [10]).set_index("NFE")
    assert par.loc[10, "vp"] == "0.03 (heun / logsnr)" and par.loc[10, "ve"] == "0.04 (heun / uniform)"
    te = t_end_table(p_all, [50]).set_index("solver / schedule")
    assert te.loc["heun / uniform", "t_end = 0.001"] == "0.004"
    assert te.loc["heun / uniform", "t_end = 0.01"] == "4.00e-04"
    assert "heun / logsnr" not in te.index  # run at one t_end only
    fd = final_denoise_table(p_all, [50]).set_index("solver / schedule")
    assert fd.loc["heun / uniform", "with / without"] == "0.5"


def test_sections_omitted_without_data(study):
    b = study[study["problem"] == "synthB"]
    text = "\n".join(leaderboard_lines(b, figures=False))
    assert "Best solver + schedule" in text and "NFE to reach" in text and "Fitted order" in text
    for absent in ("Effect of t_end", "Effect of the final denoising step", "VP vs VE", "SDE vs ODE"):
        assert absent not in text


def test_leaderboard_figure_per_target(study, tmp_path):
    lines = leaderboard_lines(study, out_dir=tmp_path, figures=True)
    figs = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figs == ["leaderboard_synthA_w2_exact.png", "leaderboard_synthB_sliced_w2.png"]
    assert any("figures/leaderboard_synthA_w2_exact.png" in ln for ln in lines)


def test_report_on_committed_quick_results(tmp_path, capsys):
    src = ROOT / "results" / "quick" / "results.parquet"
    shutil.copy(src, tmp_path / "results.parquet")
    out = tmp_path / "out"
    assert cli.main(["report", str(tmp_path / "results.parquet"), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    lb = text[text.index("## Leaderboard"):text.index("## Per problem")]
    for problem, metric in (("gauss1d", "w2_exact"), ("gauss-aniso16", "w2_exact"), ("gmm1d", "weak_err_cv"),
                            ("gmm1d", "path_err"), ("gmm2d-close", "weak_err_cv"), ("gmm2d-close", "path_err")):
        assert f"### {problem}: `{metric}`" in lb
        assert (out / "figures" / f"leaderboard_{problem}_{metric}.png").is_file()
    # quick has NFE 5, 10, 20, 50, 100: the leaderboard's budgets 5, 10, 20, 50 are all measured
    assert "| 5 | vp |" in lb and "| 50 | vp |" in lb and "| 100 | vp |" not in lb
    assert "Effect of t_end" not in lb and "VP vs VE" not in lb  # one t_end, one SDE: omitted
    assert "SDE vs ODE samplers" in lb


def test_figure_name_of_a_target_file_stays_in_figures(tmp_path):
    rows = pd.DataFrame(_rows("targets/my t.json", "heun", "uniform", lambda n: 1.0 / n**2))
    lines = leaderboard_lines(rows, out_dir=tmp_path, figures=True)
    assert [p.name for p in (tmp_path / "figures").iterdir()] == ["leaderboard_targets_my_t.json_w2_exact.png"]
    assert "![leaderboard targets/my t.json w2_exact](figures/leaderboard_targets_my_t.json_w2_exact.png)" in lines


def test_consistency_samplers_are_never_ranked():
    """An oracle consistency function has zero error on a Gaussian at every NFE: it must not win."""
    import pandas as pd

    from sdebench.leaderboard import points, winners_table

    rows = []
    for solver, err in (("consistency-ms", 1e-12), ("heun", 1e-2), ("euler", 1e-1)):
        rows.append({"problem": "gauss1d", "sde": "vp", "solver": solver, "label": solver, "schedule": "uniform",
                     "nfe": 10, "seed": 0, "status": "ok", "w2_exact": err, "t_end": 1e-3, "final_denoise": False})
    p = points(pd.DataFrame(rows), "w2_exact")
    w = winners_table(p, [10]).iloc[0]
    assert w["best (solver / schedule)"] == "heun / uniform" and w["runner-up"] == "euler / uniform"


def test_points_judged_against_the_data_law_are_not_mixed_into_the_main_slice():
    """Rows with reference = data (a final-denoise slice) differ from p_{t_end} rows of the same cell key."""
    import pandas as pd

    from sdebench.leaderboard import main_slice, points

    rows = [{"problem": "gauss1d", "sde": "vp", "solver": "heun", "label": "heun", "schedule": "uniform", "nfe": 10,
             "seed": 0, "status": "ok", "w2_exact": v, "t_end": 1e-3, "final_denoise": False, "reference": ref}
            for v, ref in ((0.01, "t_end"), (0.5, "data"))]
    p = main_slice(points(pd.DataFrame(rows), "w2_exact"))
    assert len(p) == 1 and p["mean"].iloc[0] == 0.01 and p["reference"].iloc[0] == "t_end"


def test_figure_band_only_where_the_points_share_one_limit():
    """A grey band from min to max of per-point limits (weak_err_cv: 1e-7 .. 1e11) covered whole panels; the band
    is drawn only when a panel's limits agree within 10x."""
    from sdebench.plot import _common_limit

    assert _common_limit(pd.Series([0.07, 0.08, 0.09]))
    assert not _common_limit(pd.Series([1e-7, 1e-3, 1e11]))
    assert not _common_limit(pd.Series([float("nan")]))


def test_one_seed_points_carry_the_metrics_own_interval():
    """A one-seed point of a metric with a standard error (weak_err_cv_se) gets value -/+ 1.96 se, clipped at 0,
    printed in the table cell, or the metric's own interval (<metric>_lo / _hi) where it writes one; a metric
    without either (w2_exact) gets none."""
    rows = _rows("synthC", "ipndm", "uniform", lambda n: 0.01 / n, metric="weak_err_cv", seeds=1)
    for r in rows:
        r["weak_err_cv_se"] = 0.008 / r["nfe"] if r["nfe"] != 5 else 0.0001
    p = points(pd.DataFrame(rows), "weak_err_cv").set_index("nfe")
    assert p.loc[10, "lo"] == 0.0 and p.loc[10, "hi"] == pytest.approx(0.001 + 1.96 * 0.0008)
    assert p.loc[5, "lo"] == pytest.approx(0.002 - 1.96e-4) and p.loc[5, "hi"] == pytest.approx(0.002 + 1.96e-4)
    assert _val(p.loc[10]) == "0.001 [0, 0.00257]"
    for r in rows:  # a metric that writes its own interval (weak_err_cv_lo / _hi): that one is printed
        r["weak_err_cv_lo"], r["weak_err_cv_hi"] = 0.5 * r["weak_err_cv"], 3 * r["weak_err_cv"]
    q = points(pd.DataFrame(rows), "weak_err_cv").set_index("nfe")
    assert q.loc[10, "lo"] == 0.0005 and q.loc[10, "hi"] == 0.003 and _val(q.loc[10]) == "0.001 [5.00e-04, 0.003]"
    exact = points(pd.DataFrame(_rows("synthA", "heun", "uniform", lambda n: 1.0 / n, seeds=1)), "w2_exact")
    assert exact["lo"].isna().all()
