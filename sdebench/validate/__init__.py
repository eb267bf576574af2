"""The theorem battery behind ``sdebench validate``: one row per claim, predicted against measured.

Every check runs the harness's own pieces (registered solvers through :func:`sdebench.run.run_cell`, the
exact-Gaussian output law of :mod:`sdebench.exact`, the density and sample metrics, the
:mod:`sdebench.perturb` score error) on a fixed, documented configuration, fits what the claim is about
with :func:`sdebench.stats.fit_order` (asymptotic window, floor excluded, 95% CI: bootstrap over seeds
for sampled metrics, the regression interval for exact ones) and compares with the prediction:

    PASS  iff  |measured - predicted| <= tolerance        (slopes, exponents)
    PASS  iff  measured <= threshold                      (equalities up to rounding / solver tolerance,
                                                           agreement in standard errors, boundedness)

Rows whose solver is not registered are reported as SKIP with the missing name; they do not count as
failures. ``quick=True`` shrinks the grids and sample sizes (CI variant, under 2 minutes).

Layout: ``core`` (the :class:`Claim` row, the slope rule, the shared exact-law and pathwise sweeps), one
module of claims per topic (``weak``, ``ode``, ``strong``, ``convergence``, ``consistency``, ``density``,
``scaling``: dimension dependence and the Chen-Lee-Lu KL bound, ``registry``: every declared solver order),
``render`` (markdown table, figures, report file); this module holds :data:`CHECKS` and :func:`run_battery`.
"""

from __future__ import annotations

import time

import torch

from ..errors import ConfigError
from .consistency import _consistency_claims
from .convergence import _contractive_claim, _early_stop_claim, _horizon_claim, _score_error_claim
from .core import Claim, _exact_flow  # noqa: F401  (_exact_flow: named in the consistency row's detail)
from .density import _density_claims, _resolution_claim
from .ode import _ddim_claim, _dpm3_claim, _ode_order_claims
from .registry import _registry_order_claims
from .render import format_table, plot_claims, write_markdown
from .scaling import _chen_bound_claim, _dimension_claims
from .strong import _strong_claims
from .weak import _weak_order_claims

__all__ = ["Claim", "run_battery", "CHECKS", "format_table", "write_markdown", "plot_claims"]


CHECKS = [_weak_order_claims, _ode_order_claims, _dpm3_claim, _ddim_claim, _strong_claims, _horizon_claim,
          _score_error_claim, _early_stop_claim, _contractive_claim, _consistency_claims, _density_claims,
          _resolution_claim, _dimension_claims, _chen_bound_claim, _registry_order_claims]


def run_battery(quick: bool = False, only=None, log=None) -> list[Claim]:
    """Run every check (or those whose function name contains one of ``only``); returns the claims."""
    torch.set_num_threads(1)  # tiny tensors: thread fan-out costs more than it saves (and the box is shared)
    claims: list[Claim] = []
    for check in CHECKS:
        if only and not any(o in check.__name__ for o in only):
            continue
        t0 = time.perf_counter()
        try:
            got = check(quick)
        except ConfigError:
            raise
        except Exception as exc:  # a broken check is a failed row, not a crash
            got = [Claim(id=check.__name__.strip("_"), statement="(check crashed)", source="", metric="",
                         predicted="", status="FAIL", detail=f"{type(exc).__name__}: {exc}")]
        for c in got:
            if not c.seconds:
                c.seconds = (time.perf_counter() - t0) / len(got)
            claims.append(c)
            if log:
                log(f"{c.status:4s} {c.id:28s} measured {c.measured_text():28s} predicted {c.predicted}")
    return claims
