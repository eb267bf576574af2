"""Order verification: the exact-W2 slope in NFE that the registry order test and :func:`sdebench.check_order`
share.

The measurement (the one tests/test_registry_orders.py applies to every registered solver): run the solver
on ``gauss1d`` (float64, x_T ~ exact p_T) through :func:`sdebench.run.run_cell`, take the exact W2 of its
Gaussian output law (:mod:`sdebench.exact`: the solver's own code run on affine probes) against
p_{t_end}, so only the discretization error is measured, over a few NFE budgets, and fit the
least-squares slope of log W2 on log steps. A solver of order p has slope -p; the check passes when
|measured order - declared order| <= :data:`ORDER_TOL`.

The error is exact (no Monte Carlo), so the interval :func:`slope_fit` reports is the least-squares 95%
confidence interval of the fitted slope: it measures how far the points are from a straight line
(pre-asymptotic curvature), not sampling noise. The pass criterion is the fixed tolerance, as in the
registry test; the interval and the local (successive-pair) orders help judge the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .run import CellConfig, run_cell

__all__ = ["ORDER_TOL", "ORDER_PROBLEM", "exact_w2_curve", "fitted_slope", "slope_fit", "OrderCheck",
           "OrderMismatch", "measure_order"]

ORDER_TOL = 0.25  # |measured order - declared order| allowed on the declared asymptotic window
ORDER_PROBLEM = "gauss1d"


class OrderMismatch(AssertionError):
    """The measured convergence order disagrees with the declared one (``check_order(..., strict=True)``)."""


def _sde_for(spec) -> str:
    return "vp" if spec.sdes is None or "vp" in spec.sdes else spec.sdes[0]


def exact_w2_curve(spec, nfes, schedule, sde: str | None = None, **options):
    """(steps, exact W2) of ``spec`` on gauss1d over the NFE budgets ``nfes`` on ``schedule``; ``sde``
    defaults to VP (or the first SDE the solver applies to). A cell that does not end with status ok
    raises RuntimeError with its error."""
    steps, errs = [], []
    for nfe in nfes:
        row = run_cell(CellConfig(problem=ORDER_PROBLEM, sde=sde or _sde_for(spec), solver=spec.name, nfe=nfe,
                                  schedule=schedule, metrics=("w2_exact",), n_samples=2,
                                  solver_options=options))
        if row["status"] != "ok":
            raise RuntimeError(f"{spec.name} nfe={nfe}: {row['status']}: {row['error']}")
        steps.append(row["steps"])
        errs.append(row["w2_exact"])
    return np.array(steps, float), np.array(errs, float)


def fitted_slope(steps, errs) -> float:
    """Least-squares slope of log(errs) on log(steps)."""
    return float(np.polyfit(np.log(steps), np.log(errs), 1)[0])


def slope_fit(steps, errs) -> tuple[float, tuple[float, float], list[float]]:
    """Slope of log(errs) on log(steps), its 95% least-squares confidence interval (Student t with n - 2
    degrees of freedom; (nan, nan) with two points) and the local slopes between successive points."""
    from scipy import stats

    x, y = np.log(np.asarray(steps, float)), np.log(np.asarray(errs, float))
    s = fitted_slope(steps, errs)
    n = len(x)
    if n > 2:
        resid = y - np.polyval(np.polyfit(x, y, 1), x)
        se = math.sqrt(float(resid @ resid) / (n - 2) / float(((x - x.mean()) ** 2).sum()))
        q = float(stats.t.ppf(0.975, n - 2))
        ci = (s - q * se, s + q * se)
    else:
        ci = (math.nan, math.nan)
    local = [float((y[i + 1] - y[i]) / (x[i + 1] - x[i])) for i in range(n - 1)]
    return s, ci, local


@dataclass
class OrderCheck:
    """Result of an order measurement. ``measured`` is the convergence order (minus the slope of log W2
    on log steps); ``ci95`` its 95% least-squares interval; ``passed`` iff |measured - declared| <= tol."""

    solver: str
    declared: float
    measured: float
    ci95: tuple[float, float]
    local: list[float]
    nfe: list[int]
    steps: list[int]
    w2: list[float]
    sde: str
    schedule: str
    tol: float = ORDER_TOL
    problem: str = ORDER_PROBLEM
    passed: bool = field(init=False)

    def __post_init__(self):
        self.passed = bool(abs(self.measured - self.declared) <= self.tol)

    def __str__(self) -> str:
        lo, hi = self.ci95
        verdict = "passed" if self.passed else "FAILED"
        return (f"{self.solver}: measured order {self.measured:.2f} (95% CI {lo:.2f} to {hi:.2f}; local "
                f"{', '.join(f'{v:.2f}' for v in self.local)}) on {self.problem}, {self.sde}, {self.schedule}, "
                f"NFE {'/'.join(str(n) for n in self.nfe)}; declared {self.declared:g} +- {self.tol:g}: {verdict}")


def measure_order(spec, declared: float, nfes=None, schedule: str | None = None, sde: str | None = None,
                  tol: float = ORDER_TOL, **options) -> OrderCheck:
    """Measure ``spec``'s order on the exact-W2 curve (budgets ``nfes``, default
    ``spec.verification_nfes()``; schedule default ``spec.order_grid``) and compare it with ``declared``."""
    nfes = list(spec.verification_nfes() if nfes is None else nfes)
    schedule = schedule or spec.order_grid
    sde = sde or _sde_for(spec)
    steps, errs = exact_w2_curve(spec, nfes, schedule, sde=sde, **options)
    if not (np.all(np.isfinite(errs)) and np.all(errs > 0)):
        raise RuntimeError(f"{spec.name}: exact W2 {errs.tolist()} is not finite and positive at NFE {nfes}; "
                           "no slope to fit")
    s, (lo, hi), local = slope_fit(steps, errs)
    return OrderCheck(solver=spec.name, declared=float(declared), measured=-s, ci95=(-hi, -lo),
                      local=[-v for v in local], nfe=nfes, steps=[int(v) for v in steps],
                      w2=[float(v) for v in errs], sde=sde, schedule=schedule, tol=tol)
