"""Section ``peers`` of ``benchmarks/perf.py``: the same work done by torchsde, torchdiffeq and diffusers at
equal NFE, batch, dtype and device, with the same analytic score."""

from __future__ import annotations

import math

import numpy as np
import torch

from sdebench.noise import NoiseSource
from sdebench.problems import get_problem
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.solvers import SOLVERS, get_solver

from .perf_core import NOTES, Sizes, coeffs, fmt_n, fmt_s, row, setup, timed_sample, timeit


class ReverseSDE:
    """The reverse SDE in s = T - t for torchsde: drift -f y + g^2 score, additive noise g."""

    noise_type = "additive"
    sde_type = "ito"

    def __init__(self, model, sde):
        self.model, self.sde, self.T = model, sde, float(sde.T)

    def f(self, s, y):
        t = self.T - float(s)
        f, g2 = coeffs(self.sde, t)
        return -f * y + g2 * self.model.score(y, torch.tensor(t, dtype=torch.float64))

    def g(self, s, y):
        g = math.sqrt(coeffs(self.sde, self.T - float(s))[1])
        d = y.shape[1]
        return (g * torch.eye(d, dtype=y.dtype, device=y.device)).expand(y.shape[0], d, d)

    def g_prod(self, s, y, v):
        return math.sqrt(coeffs(self.sde, self.T - float(s))[1]) * v


def torchsde_times(T: float, t_end: float, steps: int):
    """The s-times torchsde's fixed-step loop visits with dt = (s1 - s0)/steps (its float rounding
    reproduced), with the 1 + 1e-9 widening when plain dt would take an extra tiny step."""
    s1 = T - t_end
    for widen in (1.0, 1.0 + 1e-9):
        dt = s1 / steps * widen
        pts, cur = [0.0], 0.0
        while cur < s1:
            cur = min(cur + dt, s1)
            pts.append(cur)
        if len(pts) == steps + 1:
            return pts, dt
    raise RuntimeError(f"torchsde takes more than {steps} steps for dt = {s1 / steps}")


def _grid_bm_class():
    from torchsde._brownian.brownian_base import BaseBrownian

    class GridBrownian(BaseBrownian):
        """torchsde Brownian motion over pre-sampled increments on a fixed s-grid (sdebench's noise)."""

        def __init__(self, s_pts, W, U, shape, dtype, device):
            self.s, self.W, self.U = list(s_pts), W, U
            self._shape, self._dtype, self._device = shape, dtype, device

        def __call__(self, ta, tb=None, return_U=False, return_A=False):
            ta = float(ta)
            i = int(np.argmin([abs(s - ta) for s in self.s[:-1]]))
            if abs(self.s[i] - ta) > 1e-12 or (tb is not None and abs(self.s[i + 1] - float(tb)) > 1e-12):
                raise RuntimeError(f"query ({ta}, {tb}) is not a step of the pre-sampled grid")
            if return_U:
                return self.W[i], self.U[i]
            return self.W[i]

        def __repr__(self):
            return f"GridBrownian(steps={len(self.W)})"

        dtype = property(lambda self: self._dtype)
        device = property(lambda self: self._device)
        shape = property(lambda self: self._shape)
        levy_area_approximation = property(lambda self: "space-time")

    return GridBrownian


def grid_brownian(noise: NoiseSource, s_pts, n, d, dtype, device, with_U: bool):
    """Increments W_i (and U_i = int (W_s - W_{s_i}) ds = h dW - I) of the NoiseSource, per step."""
    W, U = [], []
    for i in range(len(s_pts) - 1):
        dW, I = noise.dW_I(i, with_integral=with_U)
        W.append(dW)
        if with_U:
            U.append((s_pts[i + 1] - s_pts[i]) * dW - I)
    return _grid_bm_class()(s_pts, W, U if with_U else None, (n, d), dtype, device)


def _row_peer(case, n, nfe_ours, nfe_ref, t_ours, t_ref, diff, scale, note="", target_fast=1.0):
    ratio = t_ref / t_ours if t_ours else math.nan
    ok = ratio >= target_fast
    tgt = f"peer/ours >= {target_fast:g}"
    nfes = f"NFE {nfe_ours}" if nfe_ours == nfe_ref else f"NFE {nfe_ours} vs {nfe_ref}"
    dtxt = "" if diff is None else f"max/diff/ = {diff:.2e} (max/x/ {scale:.3g})"
    row("peers", case, f"{fmt_n(n)}, {nfes}", fmt_s(t_ours), fmt_s(t_ref), f"{ratio:.2f}x", tgt,
        "yes" if ok else "NO", "; ".join(s for s in (dtxt, note) if s), diff=diff, scale=scale, speedup=ratio)
    return ok


def peers(sz: Sizes, device="cpu"):
    misses: list[str] = []
    for n in sz.peer_batches:
        _peers_at(sz, n, device, misses)
    if misses:
        NOTES.append("peers: slower than (or not 2x faster than, for em vs torchsde) the peer: " + "; ".join(misses))


def _peers_at(sz: Sizes, n: int, device, misses: list):
    import torchsde
    from torchdiffeq import odeint

    sde = get_sde("vp")
    prob = get_problem("gmm2d-ring8")
    d, t_end, dtype = prob.d, 1e-3, torch.float64
    model, x = setup(prob, sde, n, device=device)
    rep = sz.repeat

    # --- em vs torchsde euler ------------------------------------------------------------------
    steps = sz.nfe
    s_pts, dt = torchsde_times(sde.T, t_end, steps)
    grid = torch.tensor([sde.T - s for s in s_pts], dtype=torch.float64)
    rsde = ReverseSDE(model, sde)
    ts = torch.tensor([0.0, s_pts[-1]], dtype=dtype, device=device)
    spec = get_solver("em")
    t_ours, ours = timed_sample(spec, model, x, grid, sde, 5, steps, rep, device)

    def tsde_native(method="euler", levy="none", steps=steps, dt=dt, ts=ts):
        bm = torchsde.BrownianInterval(0.0, float(ts[-1]), size=(n, d), dtype=dtype, device=device, entropy=5,
                                       levy_area_approximation=levy)
        with torch.no_grad():
            return torchsde.sdeint(rsde, x, ts, bm=bm, method=method, dt=dt)[-1]

    model.reset()
    t_ref, _ = timeit(tsde_native, rep, device)
    nfe_ref = model.nfe // (rep + 1)

    def tsde_grid(steps=steps, dt=dt, ts=ts, s_pts=s_pts, grid=grid):
        noise = NoiseSource(5, n, (d,), dtype=dtype, device=device).for_grid(grid)
        bm = grid_brownian(noise, s_pts, n, d, dtype, device, with_U=False)
        with torch.no_grad():
            return torchsde.sdeint(rsde, x, ts, bm=bm, method="euler", dt=dt)[-1]

    t_ref2, ref2 = timeit(tsde_grid, rep, device)
    diff = float((ref2 - ours).abs().max())
    scale = float(ours.abs().max())
    if not _row_peer("em vs torchsde euler (BrownianInterval)", n, steps, nfe_ref, t_ours, t_ref, None, 0,
                     "torchsde's own noise; its NFE includes one drift call of its shape check", target_fast=2.0):
        misses.append(f"em vs torchsde euler at batch {fmt_n(n)} (target 2x)")
    _row_peer("em vs torchsde euler (sdebench increments)", n, steps, steps, t_ours, t_ref2, diff, scale,
              "same x_T and Brownian increments", target_fast=1.0)

    # --- srk vs torchsde srk: both SRA1; torchsde's additive step evaluates the drift 3 times per step,
    # sdebench's srk 2 times, so they are compared on the same steps (the NFE column shows both counts)
    if "srk" in SOLVERS:
        spec = get_solver("srk")
        steps = max(1, sz.nfe // spec.nfe_per_step)
        nfe = spec.nfe_for_steps(steps)
        s_pts3, dt3 = torchsde_times(sde.T, t_end, steps)
        ts3 = torch.tensor([0.0, s_pts3[-1]], dtype=dtype, device=device)
        grid3 = torch.tensor([sde.T - s for s in s_pts3], dtype=torch.float64)
        t_ours, ours = timed_sample(spec, model, x, grid3, sde, 5, nfe, rep, device)
        model.reset()
        t_ref, _ = timeit(lambda: tsde_native("srk", "space-time", steps, dt3, ts3), rep, device)
        nfe_ref = model.nfe // (rep + 1)
        noise = NoiseSource(5, n, (d,), dtype=dtype, device=device).for_grid(grid3)
        bm = grid_brownian(noise, s_pts3, n, d, dtype, device, with_U=True)
        with torch.no_grad():
            ref = torchsde.sdeint(rsde, x, ts3, bm=bm, method="srk", dt=dt3)[-1]
        diff, scale = float((ref - ours).abs().max()), float(ours.abs().max())
        note = (f"same {steps} steps; timed with torchsde's own BrownianInterval (space-time Levy area); "
                "diff with the same (dW, U)")
        if not _row_peer("srk vs torchsde srk", n, nfe, nfe_ref, t_ours, t_ref, diff, scale, note):
            misses.append(f"srk vs torchsde srk at batch {fmt_n(n)}")
    else:
        row("peers", "srk vs torchsde srk", fmt_n(n), "missing", "", "", "peer/ours >= 1", "n/a",
            "srk is not registered in sdebench (issue 3)")

    # --- euler / rk4 vs torchdiffeq fixed grid ---------------------------------------------------
    for name, method, per in (("euler", "euler", 1), ("rk4", "rk4", 4)):
        steps = sz.nfe // per
        grid = make_grid(sde, steps, t_end)

        def func(t, y):
            f, g2 = coeffs(sde, float(t))
            return f * y - 0.5 * g2 * model.score(y, torch.tensor(float(t), dtype=torch.float64))

        def tdq(method=method, grid=grid):
            with torch.no_grad():
                return odeint(func, x, grid.to(device), method=method)[-1]

        model.reset()
        t_ref, ref = timeit(tdq, rep, device)
        nfe_ref = model.nfe // (rep + 1)
        if name not in SOLVERS:
            row("peers", f"{name} vs torchdiffeq {method}", f"{fmt_n(n)}, NFE {nfe_ref}", "missing",
                fmt_s(t_ref), "", "peer/ours >= 1", "n/a", f"{name} is not registered in sdebench (issue 3)")
            continue
        spec = get_solver(name)
        t_ours, ours = timed_sample(spec, model, x, grid, sde, 0, sz.nfe, rep, device)
        diff = float((ref - ours).abs().max())
        note = "same x_T and grid"
        if name == "rk4":
            note += "; sdebench's rk4 is itself a torchdiffeq back-end (solvers/backends.py)"
        if not _row_peer(f"{name} vs torchdiffeq {method}", n, sz.nfe, nfe_ref, t_ours, t_ref, diff,
                         float(ours.abs().max()), note):
            misses.append(f"{name} vs torchdiffeq at batch {fmt_n(n)}")

    # --- ddim / dpm-solver++2m vs diffusers --------------------------------------------------------
    for name in ("ddim", "dpm-solver++2m"):
        try:
            res = diffusers_peer(name, prob, sde, n, sz.nfe, rep, device)
        except ImportError as exc:
            row("peers", f"{name} vs diffusers", fmt_n(n), "", "missing", "", "", "n/a", str(exc))
            continue
        if res is None:
            row("peers", f"{name} vs diffusers", fmt_n(n), "missing", "", "", "", "n/a",
                f"{name} is not registered")
            continue
        t_ours, t_ref, diff, scale, nfe_ref, note = res
        if not _row_peer(f"{name} vs diffusers {'DDIMScheduler' if name == 'ddim' else 'DPMSolverMultistep'}",
                         n, sz.nfe, nfe_ref, t_ours, t_ref, diff, scale, note):
            misses.append(f"{name} vs diffusers at batch {fmt_n(n)}")


def diffusers_setup(name, sde, steps):
    """A diffusers scheduler for sdebench solver ``name`` ('ddim' or 'dpm-solver++2m') and the grid it steps on.

    The discrete table is the VP SDE at t_k = (k + 1) / 1000 (alphas_cumprod = alpha_t^2, set in float64
    after construction), so diffusers' integer timesteps map to exact continuous times; returns
    (scheduler, grid T -> t_end as float64, continuous time of each timestep)."""
    import diffusers

    N = 1000
    tk = (torch.arange(N, dtype=torch.float64) + 1) / N
    acp = torch.exp(2 * sde.log_alpha(tk))
    betas = 1 - acp / torch.cat([torch.ones(1, dtype=torch.float64), acp[:-1]])
    if name == "ddim":
        sched = diffusers.DDIMScheduler(num_train_timesteps=N, trained_betas=betas.numpy(), clip_sample=False,
                                        set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading",
                                        prediction_type="epsilon")
        sched.alphas_cumprod = acp.clone()
        sched.final_alpha_cumprod = acp[0].clone()
    elif name == "dpm-solver++2m":
        sched = diffusers.DPMSolverMultistepScheduler(
            num_train_timesteps=N, trained_betas=betas.numpy(), algorithm_type="dpmsolver++", solver_order=2,
            solver_type="midpoint", lower_order_final=False, final_sigmas_type="sigma_min",
            timestep_spacing="linspace", prediction_type="epsilon")
        sched.alphas_cumprod = acp.clone()
        sched.alpha_t = torch.sqrt(acp)
        sched.sigma_t = torch.sqrt(1 - acp)
        sched.lambda_t = torch.log(sched.alpha_t) - torch.log(sched.sigma_t)
        sched.sigmas = ((1 - acp) / acp) ** 0.5
    else:
        raise ValueError(f"no diffusers peer for {name!r}")
    sched.set_timesteps(steps)
    ks = [int(k) for k in sched.timesteps]
    grid = torch.tensor([(k + 1) / N for k in ks] + [1.0 / N], dtype=torch.float64)
    tcont = [torch.tensor((k + 1) / N, dtype=torch.float64) for k in ks]
    return sched, grid, tcont


def diffusers_loop(sched, model, x, steps, tcont):
    """The usual diffusers sampling loop, the eps model being sdebench's counted analytic Model."""
    sched.set_timesteps(steps)
    y = x
    with torch.no_grad():
        for k, t in zip(sched.timesteps, tcont):
            y = sched.step(model.eps(y, t), k, y).prev_sample
    return y


def diffusers_peer(name, prob, sde, n, steps, rep, device):
    """Time sdebench's ``name`` against a diffusers scheduler loop on the grid diffusers itself picks."""
    if name not in SOLVERS:
        return None
    sched, grid, tcont = diffusers_setup(name, sde, steps)
    note = ("float64 alphas_cumprod table" if name == "ddim" else
            "diffusers' DPMSolverMultistep computes its update in float32 (casts the sample and sigmas)")
    model, x = setup(prob, sde, n, device=device, t_start=float(grid[0]))
    model.reset()
    t_ref, ref = timeit(lambda: diffusers_loop(sched, model, x, steps, tcont), rep, device)
    nfe_ref = model.nfe // (rep + 1)
    spec = get_solver(name)
    t_ours, ours = timed_sample(spec, model, x, grid, sde, 0, len(grid) - 1, rep, device)
    diff = float((ref.to(ours.dtype) - ours).abs().max())
    return t_ours, t_ref, diff, float(ours.abs().max()), nfe_ref, note + "; same x_T and grid"
