"""Every registered solver's declared order, as claims: the measurement of tests/test_registry_orders.py
(sdebench.verify: exact W2 of the solver's Gaussian output law on gauss1d, VP, at the declared NFE budgets) on
its declared grid family, and on each other schedule family it accepts.

On the declared family the rule is the registry test's (|slope - p| <= 0.25). The registry declares the order
on one family only; on the others the claim is that the declared order carries over (slope >= p - 0.25 at
the same budgets; steeper is no contradiction). A FAIL there is a finding about the solver on that family
(its order is not reached at the declared budgets), not a broken theorem of the registry."""

from __future__ import annotations

import math
import time

from ..errors import ConfigError
from ..schedules import SCHEDULES
from ..solvers import SOLVERS
from ..verify import ORDER_TOL, exact_w2_curve, slope_fit
from .core import Claim, _g

FAMILIES = ("uniform", "logsnr", "edm", "quadratic")
QUICK_SOLVERS = ("euler", "heun", "em", "dpm-solver-2")


def _declared(spec) -> float:
    return float(spec.order if spec.order_gaussian is None else spec.order_gaussian)


def _accepts(spec, family: str) -> bool:
    """The torchsde back-ends run on grids uniform in t only (a one-line ConfigError elsewhere)."""
    return not (spec.name.startswith("torchsde") and family != "uniform")


def _order_claim(spec, family: str) -> Claim:
    p = _declared(spec)
    declared_family = family == spec.order_grid
    nfes = tuple(spec.verification_nfes())  # the declared budgets on every family
    c = Claim(id=f"order-{spec.name}" + ("" if declared_family else f"@{family}"),
              statement=f"{spec.name} converges with its declared order {p:g} on the {family} grid"
                        + (" (its declared grid)" if declared_family else ""),
              source="solver registry (SolverSpec.order / order_gaussian); tests/test_registry_orders.py",
              metric=f"w2_exact (exact law), gauss1d, VP, NFE {', '.join(str(n) for n in nfes)} (the declared "
                     "budgets), slope in steps",
              predicted=f"slope {p:g}" if declared_family else f"slope >= {p - ORDER_TOL:g}")
    t0 = time.perf_counter()
    try:
        steps, errs = exact_w2_curve(spec, nfes, family)
    except (RuntimeError, ConfigError) as exc:
        c.status, c.detail = "FAIL", f"{type(exc).__name__}: {exc}"
        return c
    s, ci, local = slope_fit(steps, errs)
    c.measured, c.lo, c.hi = -s, -ci[1], -ci[0]
    if declared_family:
        c.rule = f"|slope - {p:g}| <= {ORDER_TOL:g} (the registry test)"
        ok = abs(-s - p) <= ORDER_TOL
    else:
        c.rule = f"slope >= {p:g} - {ORDER_TOL:g} (a steeper slope is not a contradiction)"
        ok = -s >= p - ORDER_TOL
    c.status = "PASS" if math.isfinite(s) and ok else "FAIL"
    c.detail = (f"steps {', '.join(str(int(v)) for v in steps)}; W2 {', '.join(_g(v) for v in errs)}; local slopes "
                f"{', '.join(f'{-v:.2f}' for v in local)}")
    c.seconds = time.perf_counter() - t0
    return c


def _registry_order_claims(quick: bool) -> list[Claim]:
    """One claim per (solver with an exact order check, schedule family it accepts); quick: a few solvers on
    their declared grid only."""
    out = []
    names = [n for n in sorted(SOLVERS) if SOLVERS[n].order_check == "exact"]
    if quick:
        names = [n for n in QUICK_SOLVERS if n in names]
    for name in names:
        spec = SOLVERS[name]
        families = [spec.order_grid] if quick else [spec.order_grid] + [f for f in FAMILIES if f != spec.order_grid]
        for fam in families:
            if fam in SCHEDULES and _accepts(spec, fam):
                out.append(_order_claim(spec, fam))
    return out
