"""Figures and printed tables say what they show: CI only where seeds differ, reference slopes inside the
data's range, the reference solve's accuracy on path-error plots, a labelled guidance w axis, a legend
for the `*` of the sweep's table. Figures are inspected as matplotlib objects, not pixels."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sdebench.plot import plot_error_vs_nfe  # noqa: E402

NFES = (6, 12, 24, 48, 96)
ORDERS = {"euler": 1, "heun": 2, "dpm-solver-3": 3}  # registered solvers and their declared orders


def _rows(problem: str, metric: str, value, null=None, seeds=(0, 1, 2), **extra) -> pd.DataFrame:
    rows = []
    for solver in ORDERS:
        for nfe in NFES:
            for seed in seeds:
                r = {"problem": problem, "sde": "vp", "solver": solver, "label": solver, "schedule": "uniform",
                     "nfe": nfe, "seed": seed, "status": "ok", metric: value(solver, nfe, seed), **extra}
                if null is not None:
                    r[f"{metric}_null"] = null(seed)
                rows.append(r)
    return pd.DataFrame(rows)


def _exact(solver, nfe, seed):  # an exact metric: C * NFE^-p, the same for every seed
    return 2.0 * nfe ** -ORDERS[solver]


def _at_floor(solver, nfe, seed):  # a sampled metric sitting on its Monte Carlo floor, differing by seed
    return 0.2 + 0.01 * seed + 0.002 * list(ORDERS).index(solver) + 3.0 / nfe


def _floor(seed):
    return 0.15 + 0.01 * seed


@pytest.fixture
def figures(monkeypatch, tmp_path):
    """plot_error_vs_nfe(df, **kw) -> {figure stem: Figure}, the figures kept open for inspection."""
    close = plt.close

    def draw(df, **kw):
        kept = []
        monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
        try:
            paths = plot_error_vs_nfe(df, tmp_path, **kw)
        finally:
            monkeypatch.setattr(plt, "close", close)
        return dict(zip((p.stem for p in paths), kept))

    yield draw
    plt.close("all")


def _title(fig) -> str:
    return fig._suptitle.get_text()


def test_title_claims_a_bootstrap_ci_only_where_seeds_differ(figures):
    figs = figures(pd.concat([_rows("gauss1d", "w2_exact", _exact), _rows("gmm1d", "w2", _at_floor, _floor)]))
    exact, sampled = _title(figs["error_vs_nfe_w2_exact"]), _title(figs["error_vs_nfe_w2"])
    assert "bootstrap" not in exact and "no CI" in exact and "no seed spread" in exact
    assert "bootstrap 95% CI" in sampled and "3 seeds" in sampled
    one = figures(_rows("gmm1d", "w2", _at_floor, _floor, seeds=(0,)))
    assert "bootstrap" not in _title(one["error_vs_nfe_w2"]) and "1 seed" in _title(one["error_vs_nfe_w2"])


def _slopes(ax):
    return [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]


def test_reference_slopes_stay_inside_the_data_range_on_a_floor_panel(figures):
    """Curves flat at a Monte Carlo floor: the NFE^-3 reference line used to run 64x below all data."""
    df = _rows("gmm1d", "w2", _at_floor, _floor)
    ax = figures(df)["error_vs_nfe_w2"].axes[0]
    means = df.groupby(["solver", "nfe"])["w2"].mean()
    lo = min(means.min(), df["w2_null"].min())
    hi = max(means.max(), df["w2_null"].max())
    lines = _slopes(ax)
    assert lines, "no reference slope drawn"
    for ln in lines:
        y = np.asarray(ln.get_ydata(), dtype=float)
        assert lo * (1 - 1e-9) <= y.min() and y.max() <= hi * (1 + 1e-9), (y, lo, hi)
        x = np.asarray(ln.get_xdata(), dtype=float)
        assert x[1] / x[0] >= 1.25
    ymin, ymax = ax.get_ylim()
    assert ymin > lo / 2 and ymax < hi * 2  # the axis is the data's, not stretched by the slopes


def test_reference_slopes_keep_their_slopes_and_order(figures):
    ax = figures(_rows("gauss1d", "w2_exact", _exact))["error_vs_nfe_w2_exact"].axes[0]
    got = sorted(-np.diff(np.log(ln.get_ydata())) / np.diff(np.log(ln.get_xdata()))
                 for ln in _slopes(ax))
    assert np.allclose(np.concatenate(got), [1.0, 2.0, 3.0])


def _path_rows(**extra):
    def err(solver, nfe, seed):  # converges, then sits on the reference's own error
        return max(3.0 * nfe ** -ORDERS[solver], 6e-5)

    return _rows("digits", "path_err", err, seeds=(0,), path_ref_nfe=230.0, **extra)


def _dotted(ax):
    return [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]


def test_path_error_plot_marks_the_reference_tolerance(figures):
    ax = figures(_path_rows(), metric="path_err")["error_vs_nfe_path_err"].axes[0]
    from sdebench.metrics.images import LEGACY_REF_RTOL  # rows without path_ref_rtol predate it: rtol 1e-6

    ys = [tuple(ln.get_ydata()) for ln in _dotted(ax)]
    assert (LEGACY_REF_RTOL, LEGACY_REF_RTOL) == (1e-6, 1e-6) and (1e-6, 1e-6) in ys
    assert any("rtol" in t.get_text() and "1e-06" in t.get_text() for t in ax.texts)
    assert "stated tolerance" in ax.figure._suptitle.get_text()
    stated = figures(_path_rows(path_ref_rtol=1e-8), metric="path_err")["error_vs_nfe_path_err"].axes[0]
    assert (1e-8, 1e-8) in [tuple(ln.get_ydata()) for ln in _dotted(stated)]


def test_path_error_plot_draws_a_recorded_reference_error_as_a_band(figures):
    df = _path_rows()
    df["path_ref_err"] = np.where(df["nfe"] < 48, 5e-5, 8e-5)
    ax = figures(df, metric="path_err")["error_vs_nfe_path_err"].axes[0]
    assert (8e-5, 8e-5) in [tuple(ln.get_ydata()) for ln in _dotted(ax)]
    bands = [p.get_path().get_extents(p.get_transform() - ax.transData) for p in ax.patches]
    assert any(np.isclose(b.y0, 5e-5) and np.isclose(b.y1, 8e-5) for b in bands)
    assert any("path_ref_err" in t.get_text() for t in ax.texts)
    assert "own error" in ax.figure._suptitle.get_text()
    plain = figures(_rows("gmm1d", "w2", _at_floor, _floor))["error_vs_nfe_w2"].axes[0]
    assert not _dotted(plain)  # no reference marker on metrics against the target itself


def test_guidance_w_axis_is_labelled(monkeypatch, tmp_path):
    from sdebench.plot import plot_error_vs_w

    rows = [{"solver": s, "nfe": n, "scale": w, "path_err": 0.01 * (1 + w) * (i + 1) / n}
            for i, s in enumerate(("ddim", "heun")) for n in (10, 20) for w in (0.0, 1.0, 3.0, 7.0, 15.0)]
    kept = []
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    plot_error_vs_w(pd.DataFrame(rows), str(tmp_path / "g.png"), "t")
    monkeypatch.undo()
    (fig,) = kept
    for ax in fig.axes:
        assert ax.get_xscale() == "symlog"
        assert "symlog" in ax.get_xlabel() and "w" in ax.get_xlabel()
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "3", "7", "15"]
        assert len(ax.xaxis.get_minor_locator()()) == 0  # no unlabelled grid lines between the w values
    plt.close(fig)


def test_guidance_replot_redraws_from_the_rows_without_running(tmp_path):
    from sdebench.cli import main

    rows = pd.DataFrame([{"problem": "gmm2d-ring8-labelled", "sde": "vp", "schedule": "logsnr", "t_end": 1e-3,
                          "guidance": "cfg", "class_label": 1, "cfg_param": "eps", "cfg_batched": True,
                          "n_samples": 64, "solver": "ddim", "nfe": 10, "scale": w, "seed": sd, "status": "ok",
                          "path_err": 0.1 * (1 + w) + 0.01 * sd} for w in (0.0, 1.0, 3.0) for sd in (0, 1)])
    rows.to_csv(tmp_path / "g.csv", index=False)
    assert main(["report", str(tmp_path / "g.csv"), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "figures" / "guidance_error_vs_w.png").stat().st_size > 0
    assert not (tmp_path / "rep" / "figures" / "guidance_gaussian_w2_vs_w.png").exists()  # no g_gaussian.csv
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| ddim | 0.105 | 0.205 | 0.405 | 3.86 |" in text  # mean over the seeds, ratio w = 3 / w = 0
    assert "error_vs_nfe" not in text  # guided rows: no error-vs-NFE section mixing the scales
    assert main(["report", str(tmp_path / "missing.csv")]) == 2


def test_guided_report_of_failed_cells_lists_them_without_figures(tmp_path):
    from pathlib import Path

    from sdebench.report import write_report

    df = pd.read_csv(Path(__file__).resolve().parents[1] / "results" / "guidance.csv")
    df["status"], df["error"] = "error", "boom"
    text = write_report(df, tmp_path).read_text()
    assert text.count("boom") == len(df) == 270 and not (tmp_path / "figures").exists()


def test_guidance_replot_reads_the_committed_tables(tmp_path):
    # `sdebench report` redraws the committed guidance figures and section from results/guidance.csv, with
    # results/guidance_gaussian.csv (which predates the nfe column: batched CFG, NFE = model calls) beside it
    from pathlib import Path

    import matplotlib.image as mpimg

    from sdebench.cli import main

    root = Path(__file__).resolve().parents[1]
    assert main(["report", str(root / "results" / "guidance.csv"), "--out", str(tmp_path)]) == 0
    for name in ("guidance_error_vs_w.png", "guidance_gaussian_w2_vs_w.png"):
        new, old = mpimg.imread(tmp_path / "figures" / name), mpimg.imread(root / "results" / "figures" / name)
        assert new.shape == old.shape and np.array_equal(new, old), name  # pixel for pixel
    text = (tmp_path / "report.md").read_text()
    section = text[text.index("## Guided sampling"):]
    committed = (root / "results" / "guidance.md").read_text().replace("results/figures/", "figures/")
    assert section == committed


def test_sweep_table_ends_with_a_legend_for_the_star():
    from sdebench.report import summary_text

    text = summary_text(_rows("gmm1d", "w2", _at_floor, _floor))
    assert "*" in text.split("\n\n")[0]  # the values at the floor are starred
    last = text.splitlines()[-1]
    assert last.startswith("*:") and "Monte Carlo floor" in last and "3x" in last


def test_run_table_ends_with_a_legend_for_the_null_columns():
    from sdebench.commands.run import summary_table

    last = summary_table(_rows("gmm1d", "w2", _at_floor, _floor)).splitlines()[-1]
    assert last.startswith("metric columns: mean over seeds") and "_null" in last


def test_floor_band_is_the_at_floor_rule_when_the_null_has_a_spread():
    from sdebench.plot import floor_band

    sub = pd.DataFrame({"floor": [0.16, 0.16], "floor_sd": [0.03, 0.03]})
    lo, hi = floor_band(sub)
    assert np.isclose(lo, 0.10) and np.isclose(hi, 0.22)  # mean -/+ 2 sd of the independent target draws
    old = pd.DataFrame({"floor": [0.12, 0.21], "floor_sd": [np.nan, np.nan]})  # rows before <metric>_null_sd
    assert floor_band(old) == (0.12, 0.21)


def test_two_schedules_of_one_seed_are_two_lines_not_a_spread():
    """One seed on two schedules: the values differ by schedule, not by seed, so no CI is drawn across them
    (the first quick-slice figure averaged the schedules and drew a band spanning them)."""
    from sdebench.plot import seed_spread

    rows = [{"problem": "gauss1d", "sde": "vp", "label": "heun", "schedule": s, "nfe": n, "error": e}
            for s, f in (("uniform", 1.0), ("logsnr", 3.0)) for n, e in ((10, 0.1 * f), (20, 0.02 * f))]
    assert seed_spread(pd.DataFrame(rows)) == "single"


def test_leaderboard_panel_top_clips_only_diverging_curves():
    """A panel whose values span 1e-6..1 plus a diverging curve up to 1e12 gets its top at 100x the 90th
    percentile; a panel without outliers is not clipped, nor one with too few points to say."""
    from sdebench.plot import _panel_top

    bulk = np.logspace(-6, 0, 95)
    top = _panel_top(np.concatenate([bulk, np.logspace(3, 12, 5)]))
    assert top is not None and 10 <= top <= 100
    assert _panel_top(bulk) is None
    assert _panel_top([1e-3, 1e12]) is None
