"""Consistency models: the exact Gaussian consistency function and distilled teachers."""

from __future__ import annotations

import time

import torch

from ..problems import get_problem
from ..problems.consistency import gaussian_consistency
from ..reference import reference_flow
from ..sde import get_sde
from .core import Claim, _exact_flow, _pathwise_curves, _slope_claim


def _consistency_claims(quick: bool) -> list[Claim]:
    """Exact Gaussian consistency function f(x, t) = alpha_e mu + sqrt(v_e / v_t)(x - alpha_t mu) against
    (a) the exact flow map integrated by dopri5 at rtol = atol = 1e-10, (b) teachers of order p."""
    out = []
    t0 = time.perf_counter()
    problem, sde = get_problem("gauss1d"), get_sde("vp")
    e = sde.t_end_default
    g = torch.Generator().manual_seed(77)
    x_T = problem.sample_t(256, sde.T, sde, generator=g)
    f_exact = _exact_flow(problem, sde, x_T, sde.T, e)

    flow = reference_flow(sde, x_T, e, score=lambda x, t: problem.score(x, t, sde), rtol=1e-10).x
    err = float((flow - f_exact).abs().max())
    detail = "f from docs/theory.md#gaussian-consistency-function (sdebench.validate._exact_flow)"
    try:  # the consistency issue's own oracle, an independent implementation, when it is installed

        err_oracle = float((gaussian_consistency(problem, sde, x_T, sde.T, e) - flow).abs().max())
        detail += f"; problems.consistency.gaussian_consistency vs dopri5: {err_oracle:.2e}"
        err = max(err, err_oracle)
    except ImportError:
        detail += "; problems.consistency not installed"
    c = Claim(id="consistency-exact", statement="The exact Gaussian consistency function equals the probability-flow "
              "map: one-step error ~ 0 up to solver tolerance", source="Song et al. 2023 (consistency models), Def. + "
              "Thm 1; docs/theory.md#gaussian-consistency-function",
              metric="max |f(x_T, T) - Phi_ODE(x_T)|, Phi by dopri5 rtol = atol = 1e-10, "
              "gauss1d, VP, 256 points", predicted="0 (<= 1e-7)", measured=err, rule="measured <= 1e-7",
              status="PASS" if err <= 1e-7 else "FAIL", detail=detail)
    c.seconds = time.perf_counter() - t0
    out.append(c)
    for teacher, p in (("euler", 1.0), ("heun", 2.0)):
        t1 = time.perf_counter()
        steps = [4, 8, 16, 32] if quick else [8, 16, 32, 64, 128]
        h, Y = _pathwise_curves(teacher, steps, seeds=[0], n=256)
        c = Claim(id=f"consistency-teacher-{teacher}", statement=f"Consistency function distilled from a {teacher} "
                  f"teacher (order {p:g}) is off the exact one by O(dt^{p:g})", source="Song et al. 2023, Thm 1",
                  metric="RMS |f_teacher(x_T, T) - f_exact(x_T, T)|, gauss1d, VP, slope in dt",
                  predicted=f"slope {p:g}")
        _slope_claim(c, h, Y, p, 0.25)
        c.seconds = time.perf_counter() - t1
        c.figure = "validation_consistency.png"
        c.curves = [(f"{teacher} teacher", h, Y.mean(0), None, "teacher step dt", "one-step consistency error", True)]
        out.append(c)
    return out
