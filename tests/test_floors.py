"""Monte Carlo floors: <metric>_null from several independent target draws, at_floor against their spread."""

import math

import numpy as np
import pytest
import torch

import sdebench.run as R
from sdebench.metrics import samples as sm
from sdebench.run import NULL_DRAWS, CellConfig, null_draws, run_cell
from sdebench.stats import at_floor

torch.set_num_threads(1)


def test_at_floor_uses_the_null_distribution_when_it_has_one():
    # mean 0.16, sd 0.085 (gmm1d, w2, n = 1000): the floor's upper end is 0.33
    assert at_floor(0.30, 0.16, null_sd=0.085)
    assert not at_floor(0.36, 0.16, null_sd=0.085)
    assert at_floor(0.04, 0.16, null_sd=0.085)  # below the mean: inside the null distribution
    # no spread (a standard error as null, or an order fit's mean null): 3x rule
    assert at_floor(0.4, 0.16) and not at_floor(0.5, 0.16)
    assert at_floor(0.4, 0.16, null_sd=math.nan) and not at_floor(0.5, 0.16, null_sd=math.nan)
    np.testing.assert_array_equal(at_floor([0.3, 0.4], [0.16, 0.16], null_sd=[0.085, 0.085]), [True, False])


def test_null_is_the_mean_of_independent_draws_and_does_not_depend_on_the_cell():
    rows = [run_cell(CellConfig(problem="gmm1d", solver=s, nfe=12, seed=seed, n_samples=500, metrics=("w2",)))
            for s, seed in (("em", 0), ("em", 1), ("heun", 2))]
    assert len({r["w2_null"] for r in rows}) == 1 and len({r["w2_null_sd"] for r in rows}) == 1
    tgt = R._cond(R.prepare(CellConfig(problem="gmm1d"))[0], CellConfig(problem="gmm1d"))
    from sdebench.sde import get_sde

    sde = get_sde("vp")
    tgt = tgt.marginal(sde.t_end_default, sde)
    w, m, s = tgt.weights, tgt.means[:, 0], torch.sqrt(tgt.covs[:, 0, 0])
    draws = [sm.w2_samples_1d(R._target_sample(tgt, 500, j, stream=1)[:, 0], w, m, s) for j in range(NULL_DRAWS)]
    assert rows[0]["w2_null"] == pytest.approx(float(np.mean(draws)), rel=1e-12)
    assert rows[0]["w2_null_sd"] == pytest.approx(float(np.std(draws, ddof=1)), rel=1e-12)
    for r in rows:
        assert r["w2_at_floor"] == (r["w2"] < r["w2_null"] + 2 * r["w2_null_sd"])


def test_null_draws_are_cached_per_target_n_and_statistic():
    from sdebench.problems import get_problem

    p = get_problem("gauss1d")
    calls = []

    def stat(y):
        calls.append(1)
        return float(y.mean())

    a = null_draws(p, 321, "test-stat", stat)
    b = null_draws(p, 321, "test-stat", stat)
    assert a == b and len(a) == NULL_DRAWS and len(calls) == NULL_DRAWS
    null_draws(p, 322, "test-stat", stat)  # another n: new draws
    assert len(calls) == 2 * NULL_DRAWS
    assert len(set(a)) == NULL_DRAWS  # independent draws


def test_every_sampled_metric_gets_a_null_sd():
    r = run_cell(CellConfig(problem="gmm2d-ring8", solver="em", nfe=12, n_samples=400,
                            metrics=("sliced_w2", "emd_w2", "kl", "tv", "mmd", "mode_mass")))
    assert r["status"] == "ok", r.get("error")
    for m in ("sliced_w2", "emd_w2", "kl", "tv", "mmd", "mode_mass"):
        assert r[f"{m}_null_sd"] > 0 and r[f"{m}_null"] > 0, m
        assert r[f"{m}_at_floor"] == bool(r[m] < r[f"{m}_null"] + 2 * r[f"{m}_null_sd"]), m
