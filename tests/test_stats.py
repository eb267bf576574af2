"""Floors, asymptotic windows, order fits and seed bootstrap."""

import numpy as np

from sdebench.stats import asymptotic_window, at_floor, bootstrap_mean_ci, fit_order, fit_slope


def test_fit_slope_exact_power_law_and_semilog():
    h = np.array([0.1, 0.05, 0.025, 0.0125])
    s, se = fit_slope(h, 3 * h**2)
    assert abs(s - 2) < 1e-12 and se < 1e-10
    T = np.array([1.0, 2.0, 3.0])
    s, _ = fit_slope(T, 0.5 * np.exp(-T), semilog=True)
    assert abs(s + 1) < 1e-12


def test_at_floor_rule():
    flags = at_floor([1.0, 0.2, 0.05, 1e-15, np.nan], [0.1, 0.1, 0.1, None, 0.1])
    assert flags.tolist() == [False, True, True, True, True]


def test_window_drops_preasymptotic_and_floor_points():
    h = 1.0 / np.array([2, 4, 8, 16, 32, 64, 128])
    y = h**2 + 0.0  # order 2 ...
    y[0] = 0.5  # ... except a pre-asymptotic coarse point (local slope far from 2)
    null = np.full_like(y, 1e-4)  # the finest point (6e-5) sits under 3x its floor
    mask = asymptotic_window(h, y, at_floor(y, null))
    assert mask.tolist() == [False, True, True, True, True, False, False]
    fit = fit_order(h, y, null=null)
    assert abs(fit.slope - 2) < 1e-9 and fit.n_floor == 2


def test_bootstrap_ci_covers_true_slope_and_keeps_curves_whole():
    rng = np.random.default_rng(0)
    h = 1.0 / np.array([8, 16, 32, 64])
    seeds = 12
    Y = (h**1.0)[None, :] * np.exp(0.05 * rng.standard_normal((seeds, 1)))  # per-seed level noise only
    Y = Y * np.exp(0.02 * rng.standard_normal(Y.shape))
    fit = fit_order(h, Y, B=500)
    assert fit.method.startswith("bootstrap") and fit.lo <= 1.0 <= fit.hi
    assert fit.hi - fit.lo < 0.25  # level noise shared by a seed's whole curve does not blur the slope


def test_regression_ci_for_single_curve():
    h = 1.0 / np.array([8, 16, 32, 64])
    y = h**1.5 * np.array([1.0, 1.02, 0.99, 1.01])
    fit = fit_order(h, y)
    assert fit.method == "regression" and fit.lo < fit.slope < fit.hi and fit.lo <= 1.5 <= fit.hi


def test_bootstrap_mean_ci():
    m, lo, hi = bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0], B=2000)
    assert m == 2.5 and lo < 2.5 < hi


def test_point_summary_flags_floor_and_brackets_mean():
    import pandas as pd

    from sdebench.stats import point_summary

    df = pd.DataFrame({"solver": ["em"] * 6, "nfe": [8, 8, 8, 64, 64, 64], "seed": [0, 1, 2] * 2,
                       "w2": [0.5, 0.6, 0.55, 0.02, 0.03, 0.025], "w2_null": [0.05] * 6})
    pts = point_summary(df, ["w2"], ["solver", "nfe"], B=500).set_index("nfe")
    assert pts.loc[8, "ci_lo"] <= pts.loc[8, "mean"] <= pts.loc[8, "ci_hi"]
    assert not pts.loc[8, "at_floor"] and pts.loc[64, "at_floor"]
    assert pts.loc[8, "seeds"] == 3


def test_own_flags_replace_the_null_rule_in_order_fits():
    """A metric with its own at-the-limit test (Metric.own_floor, e.g. weak_err_cv) passes its flags: flagged
    points leave the fit even above 3x their null, and unflagged points stay in it even below."""
    x = np.array([10.0, 20, 40, 80, 160, 320])
    y = 2.0 / x**2
    y[-2:] = [2e-4, 2.1e-4]  # the last two points sit on a noise plateau
    null = np.full_like(y, 1e-5)  # far below every value: the null rule keeps all six points
    assert fit_order(x, y, null=null, fine_is_small=False).slope > -1.9
    flags = np.array([0, 0, 0, 0, 1, 1], dtype=float)
    f = fit_order(x, y, null=null, fine_is_small=False, flags=flags)
    assert abs(f.slope + 2) < 1e-9 and f.n_floor == 2 and f.window == tuple(x[:4])
    null_hi = np.full_like(y, 1e-3)  # 3x this is above the last five values: the flags keep them in
    g = fit_order(x[:4], y[:4], null=null_hi[:4], fine_is_small=False, flags=np.zeros(4))
    assert abs(g.slope + 2) < 1e-9 and g.n_floor == 0
