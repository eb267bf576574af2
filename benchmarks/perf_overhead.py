"""Section ``overhead`` of ``benchmarks/perf.py``: one sample call against the score evaluations it makes
(gmm2d-ring8 and the digits U-Net)."""

from __future__ import annotations

import torch

from sdebench.model import Model
from sdebench.noise import NoiseSource
from sdebench.problems import get_problem
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.solvers import SOLVERS, get_solver

from .perf_core import (
    NOTES,
    Sizes,
    fixed_grid_solvers,
    fmt_n,
    fmt_s,
    row,
    score_time,
    setup,
    solver_nfe,
    timed_sample,
    timeit,
    trajectory_floor,
)


def overhead(sz: Sizes, device="cpu", section="overhead"):
    sde = get_sde("vp")
    prob = get_problem("gmm2d-ring8")
    n = sz.batch
    model, x = setup(prob, sde, n, device=device)
    grid0 = make_grid(sde, sz.nfe, 1e-3)
    t_score = score_time(model, x, grid0, sz.repeat, device)
    row(section, f"gmm2d-ring8: one score evaluation ({device})", fmt_n(n), fmt_s(t_score), "", "", "", "",
        f"mean over the times of the {sz.nfe}-step grid at x_T; each solver's floor below is the score timed on "
        "the very (x, t) it visits")
    src = NoiseSource(0, n, (prob.d,), dtype=x.dtype, device=device)
    t_draw, _ = timeit(lambda: src.standard_normal(("perf", 0)), sz.repeat, device)
    t_randn, _ = timeit(lambda: torch.randn(x.shape, dtype=x.dtype, device=device), sz.repeat, device)
    row(section, f"one keyed noise draw (NoiseSource, generator {src.generator!r})", fmt_n(n), fmt_s(t_draw),
        fmt_s(t_randn), f"{t_draw / t_score:.2f} of a score", "", "",
        "reference = one unkeyed torch.randn of the same shape; SDE solvers draw once (srk twice) per step")
    if src.generator != "counter":
        csrc = NoiseSource(0, n, (prob.d,), dtype=x.dtype, device=device, generator="counter")
        t_c, _ = timeit(lambda: csrc.standard_normal(("perf", 0)), sz.repeat, device)
        row(section, "one keyed noise draw (generator 'counter', the GPU default)", fmt_n(n), fmt_s(t_c),
            fmt_s(t_randn), f"{t_c / t_score:.2f} of a score", "", "", "same reference")
    misses = []
    for name in fixed_grid_solvers():
        if sz.solvers is not None and name not in sz.solvers:
            continue
        spec = get_solver(name)
        if spec.family == "consistency":
            row(section, f"{name} (gmm2d-ring8)", fmt_n(n), "-", "", "", "", "n/a",
                "calls the consistency function (an ODE-solve oracle for mixtures), not the score: no score floor")
            continue
        nfe = solver_nfe(spec, sz.nfe)
        if nfe is None:
            row(section, f"{name} (gmm2d-ring8)", fmt_n(n), "-", "", "", "<= 1.15", "n/a", "no budget near NFE")
            continue
        steps = spec.steps_for_nfe(nfe)
        grid = make_grid(sde, steps, 1e-3)
        model.reset()
        t, _ = timed_sample(spec, model, x, grid, sde, 1, nfe, sz.repeat, device)
        counted = model.nfe // (sz.repeat + 1)
        floor, calls = trajectory_floor(spec, model, x, grid, sde, 1, nfe, sz.repeat, device)
        ratio = t / floor
        ok = ratio <= 1.15
        if not ok:
            misses.append(name)
        row(section, f"{name} (gmm2d-ring8, {spec.kind})", f"{fmt_n(n)}, NFE {counted}", fmt_s(t),
            fmt_s(floor), f"{ratio:.3f}", "<= 1.15", "yes" if ok else "NO",
            f"NFE x mean score would give {t / (counted * t_score):.3f}", solver=name, value=ratio, nfe=counted)
    if misses:
        NOTES.append(f"{section}: overhead ratio above 1.15 for {', '.join(misses)} on gmm2d-ring8 ({device}); see "
                     "the closing note of results/performance.md for where the time goes.")
    if device == "cpu" and sz.unet:
        unet_overhead(sz, section)


def unet_overhead(sz: Sizes, section):
    try:
        prob = get_problem("digits")
    except Exception as exc:  # checkpoint not committed / images extra missing
        row(section, "digits U-Net", fmt_n(sz.unet_batch), "missing", "", "", "<= 1.03", "n/a",
            f"U-Net problem unavailable: {str(exc).splitlines()[0][:80]}")
        return
    sde = get_sde("vp")
    n = sz.unet_batch
    shape = getattr(prob, "shape", None)
    d = prob.d
    model = Model(sde, **prob.model_functions(sde))
    x = prob.sample_t(n, sde.T, sde, generator=torch.Generator().manual_seed(0))
    grid0 = make_grid(sde, sz.unet_nfe, 1e-3)
    t_score = score_time(model, x, grid0, sz.repeat, "cpu")
    row(section, "digits U-Net: one score evaluation", fmt_n(n), fmt_s(t_score), "", "", "", "",
        f"d = {d}" + (f", image {tuple(shape)}" if shape else ""))
    misses = []
    for name in ("em", "euler", "ddim", "heun", "dpm-solver++2m", "ddpm"):
        if name not in SOLVERS or (sz.solvers is not None and name not in sz.solvers):
            continue
        spec = get_solver(name)
        nfe = solver_nfe(spec, sz.unet_nfe)
        grid = make_grid(sde, spec.steps_for_nfe(nfe), 1e-3)
        model.reset()
        t, _ = timed_sample(spec, model, x, grid, sde, 1, nfe, sz.repeat)
        counted = model.nfe // (sz.repeat + 1)
        floor, _ = trajectory_floor(spec, model, x, grid, sde, 1, nfe, sz.repeat, "cpu")
        ratio = t / floor
        ok = ratio <= 1.03
        if not ok:
            misses.append(name)
        row(section, f"{name} (digits U-Net)", f"{fmt_n(n)}, NFE {counted}", fmt_s(t), fmt_s(floor),
            f"{ratio:.3f}", "<= 1.03", "yes" if ok else "NO",
            f"NFE x mean score would give {t / (counted * t_score):.3f}", solver=name, value=ratio)
    if misses:
        NOTES.append(f"{section}: U-Net overhead ratio above 1.03 for {', '.join(misses)}.")
