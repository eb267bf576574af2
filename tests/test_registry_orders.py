"""Every registered solver's declared order, verified (one parametrized test over the registry).

For ``order_check == "exact"`` (the default of :func:`sdebench.solvers.register`): the exact W2 of the
solver's Gaussian output law (sdebench.exact: the solver's own code run on affine probes) on ``gauss1d``,
VP, float64, x_T ~ exact p_T, judged against p_{t_end}, so only the discretization error is measured
(sdebench.verify: the same measurement ``sdebench.check_order`` applies to a user's function). The
budgets are the solver's ``order_nfe`` on its ``order_grid``; the least-squares slope of log W2 on
log steps must be -p within TOL, p = ``order_gaussian`` if declared (weak-order-1 SDE schemes that reach
weak order 2 on a linear drift), else ``order``. Solvers declaring another ``order_check`` are checked to
be what they declare. The registry is iterated, so a new (or plugin) solver is covered on registration.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdebench.run import CellConfig, run_cell
from sdebench.schedules import SCHEDULES
from sdebench.solvers import SOLVERS
from sdebench.solvers.base import ORDER_CHECKS
from sdebench.verify import ORDER_TOL, exact_w2_curve, fitted_slope  # shared with sdebench.check_order

TOL = ORDER_TOL  # 0.25: |measured slope + declared order| on the declared asymptotic window
NAMES = sorted(SOLVERS)


def test_registry_is_complete():
    """The 28 built-in solvers are all here (a plugin adds to this, never removes)."""
    assert len(NAMES) >= 28
    assert {"ipndm", "unipc", "dopri5", "pc", "consistency", "torchsde-srk"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_declared_order(name):
    spec = SOLVERS[name]
    assert spec.order_check in ORDER_CHECKS
    if spec.order_check != "exact":
        assert spec.order_note, f"{name}: order_check={spec.order_check!r} without an order_note"
        if spec.order_check == "none":
            assert spec.order == 0
        elif spec.order_check == "adaptive":
            assert spec.adaptive
        elif spec.order_check == "nonaffine":
            # the exact-Gaussian metrics are skipped for it, so there is no exact law to fit
            assert not spec.affine(spec.options)  # declared by affine=False or batch_coupled=True
            row = run_cell(CellConfig(problem="gauss1d", solver=name, nfe=4 * spec.nfe_per_step,
                                      schedule=spec.order_grid, metrics=("w2_exact",), n_samples=64))
            assert row["status"] == "ok" and not math.isfinite(row.get("w2_exact", math.nan))
        assert spec.verified_order is None
        return
    assert spec.order > 0 and spec.order_grid in SCHEDULES, (spec.order, spec.order_grid)
    nfes = spec.verification_nfes()
    assert len(nfes) >= 3 and list(nfes) == sorted(set(nfes)), nfes
    steps, errs = exact_w2_curve(spec, nfes, spec.order_grid)
    expected = spec.order if spec.order_gaussian is None else spec.order_gaussian
    s = fitted_slope(steps, errs)
    assert abs(s + expected) <= TOL, (f"{name} on {spec.order_grid}: slope {s:.2f}, declared {expected}",
                                      steps, errs)
    assert spec.verified_order == spec.order


# ---- iPNDM: variable-step Adams-Bashforth keeps order 4 on non-uniform grids; fixed weights do not -----
def test_ab_weights_reduce_to_fixed_weights_on_equal_spacing():
    from sdebench.solvers.ipndm import _AB, ab_weights

    for k in (1, 2, 3, 4):
        nodes = [-0.3 * j for j in range(k)]  # equal steps of 0.3, most recent first, next node at +0.3
        assert np.allclose(ab_weights([n + 5.0 for n in nodes], 5.3), _AB[k], rtol=0, atol=1e-12)


def test_ab_weights_integrate_cubics_exactly():
    """On arbitrary nodes the 4-node weights integrate every cubic exactly (order-4 quadrature)."""
    from sdebench.solvers.ipndm import ab_weights

    nodes, s_next = [2.0, 2.7, 4.1, 6.5], 1.2  # decreasing sbar, as in sampling
    c = ab_weights(nodes, s_next)
    for p in ([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0.5, -1.0, 2.0, 3.0]):
        f = np.poly1d(p)
        exact = f.integ()(s_next) - f.integ()(nodes[0])
        assert math.isclose((s_next - nodes[0]) * sum(cj * f(n) for cj, n in zip(c, nodes)), exact,
                            rel_tol=1e-12)


def test_ipndm_fixed_weights_are_second_order_on_the_karras_grid():
    """The default (reference code's constant-step) weights: 2 on Karras too (logSNR: test_declared_order)."""
    steps, errs = exact_w2_curve(SOLVERS["ipndm"], (40, 80, 160), "edm")
    assert abs(fitted_slope(steps, errs) + 2.0) < 0.2, errs


@pytest.mark.parametrize("schedule", ["logsnr", "edm"])
def test_ipndm_variable_step_weights_are_fourth_order(schedule):
    """weights=variable: order 4 on both non-uniform grids (the order-1 start does not limit it)."""
    steps, errs = exact_w2_curve(SOLVERS["ipndm"], (160, 320, 640), schedule, weights="variable")
    assert abs(fitted_slope(steps, errs) + 4.0) < TOL, errs


def test_ipndm_rejects_unknown_weights():
    import torch

    from sdebench.errors import ConfigError
    from sdebench.sde import get_sde

    grid = torch.tensor([1.0, 0.5], dtype=torch.float64)
    with pytest.raises(ConfigError, match="weights='adams'"):
        SOLVERS["ipndm"].fn(None, torch.zeros(1, 1), grid, get_sde("vp"), None, weights="adams")


def test_register_rejects_inconsistent_order_declarations():
    from sdebench.solvers import register

    def f(model, x, grid, sde, noise):
        return x

    with pytest.raises(ValueError, match="order_note"):
        register("_t1", kind="ode", order=1, nfe_per_step=1, order_check="adaptive")(f)
    with pytest.raises(ValueError, match="order 0"):
        register("_t2", kind="ode", order=0, nfe_per_step=1)(f)
    with pytest.raises(ValueError, match="order_check must be"):
        register("_t3", kind="ode", order=1, nfe_per_step=1, order_check="visual")(f)
    with pytest.raises(ValueError, match="below order"):
        register("_t4", kind="ode", order=2, nfe_per_step=1, order_gaussian=1)(f)
    assert not {"_t1", "_t2", "_t3", "_t4"} & set(SOLVERS)


def test_plot_guides_use_verified_orders_only():
    """Reference slope lines (sdebench.plot) come from the orders this file verifies, and only those."""
    from sdebench.plot import solver_orders

    got = solver_orders(["unipc", "ipndm", "heun-sde", "dopri5", "pc", "consistency", "not-a-solver"])
    assert got == {"unipc": 4, "ipndm": 2, "heun-sde": 1}
    assert all(SOLVERS[n].order_check == "exact" for n in solver_orders(NAMES))
