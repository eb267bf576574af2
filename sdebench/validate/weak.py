"""Weak orders of the SDE solvers (exact output law of Gaussian targets)."""

from __future__ import annotations

import time

import numpy as np

from .core import Claim, _exact_sweep, _slope_claim


def _weak_order_claims(quick: bool) -> list[Claim]:
    steps = [8, 16, 32, 64] if quick else [8, 16, 32, 64, 128, 256]
    out = []
    for solver, label in (("em", "Euler-Maruyama"), ("ei", "exponential integrator")):
        t0 = time.perf_counter()
        rows = _exact_sweep(solver, steps)
        h = np.array([1.0 / r["steps"] for r in rows])
        dt = time.perf_counter() - t0
        for metric, pred, name in (("w2_exact", 1.0, "W2"), ("tv_exact", 1.0, "TV"), ("kl_exact", 2.0, "KL")):
            y = np.array([r[metric] for r in rows])
            c = Claim(id=f"{solver}-weak-{name.lower()}",
                      statement=f"{label} on the reverse SDE has weak order 1: {name} ~ h^{pred:g}",
                      source="Chen et al. 2023 / docs/theory.md#solver-orders (weak order 1, KL = 2 x weak order)",
                      metric=f"{metric} (exact law), gauss1d, VP, slope in step size h",
                      predicted=f"slope {pred:g}")
            _slope_claim(c, h, y, pred, 0.15)
            c.seconds = dt / 3
            c.figure = "validation_weak_orders.png"
            c.curves = [(f"{solver} {name}", h, y, None, "step size h (1/N)", "error", True)]
            out.append(c)
    return out
