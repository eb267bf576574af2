"""Every registered solver's declared order, as claims: the measurement of tests/test_registry_orders.py
(sdebench.verify: exact W2 of the solver's Gaussian output law on gauss1d, VP) on its declared grid family,
and on each other schedule family it accepts."""

from __future__ import annotations

import math
import time

from ..errors import ConfigError
from ..schedules import SCHEDULES
from ..solvers import SOLVERS
from ..verify import ORDER_TOL, exact_w2_curve, slope_fit
from .core import Claim, _g

FAMILIES = ("uniform", "logsnr", "edm", "quadratic")
OFF_FAMILY_FACTOR = 4  # other families are measured at 4x the declared budgets (their asymptotic regime starts later)
QUICK_SOLVERS = ("euler", "heun", "em", "dpm-solver-2")


def _declared(spec) -> float:
    return float(spec.order if spec.order_gaussian is None else spec.order_gaussian)


def _budgets(spec, factor: int) -> tuple[int, ...]:
    nfes = spec.verification_nfes()
    if factor == 1:
        return tuple(nfes)
    return tuple(spec.nfe_for_steps(spec.steps_for_nfe(n) * factor) for n in nfes)


def _accepts(spec, family: str) -> bool:
    """The torchsde back-ends run on grids uniform in t only (a one-line ConfigError elsewhere)."""
    return not (spec.name.startswith("torchsde") and family != "uniform")


def _order_claim(spec, family: str) -> Claim:
    p = _declared(spec)
    declared_family = family == spec.order_grid
    factor = 1 if declared_family else OFF_FAMILY_FACTOR
    nfes = _budgets(spec, factor)
    c = Claim(id=f"order-{spec.name}" + ("" if declared_family else f"@{family}"),
              statement=f"{spec.name} converges with its declared order {p:g} on the {family} grid"
                        + (" (its declared grid)" if declared_family else ""),
              source="solver registry (SolverSpec.order / order_gaussian); tests/test_registry_orders.py",
              metric=f"w2_exact (exact law), gauss1d, VP, NFE {', '.join(str(n) for n in nfes)}"
                     + ("" if declared_family else f" ({factor}x the declared budgets)") + ", slope in steps",
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
