"""Consistency distillation (Song et al. 2023, Alg. 2) from a teacher ODE solver of the registry.

- ``ConsistencyMLP`` + ``distill``: for the analytic targets, a teacher (``euler`` order 1, ``heun`` order 2,
  ...) run with the exact score on an N-interval log-SNR grid; the student is f = alpha_e (c_skip x / alpha_t
  + c_out F(c_in x / alpha_t, lambda_t)) with c_skip(t_end) = 1, c_out(t_end) = 0, so f(x, t_end) = x
  exactly; target network is an EMA of the student (mu = 0.95). Theorem 1 of Song et al.: a student that
  matches its teacher exactly has one-step error O(dt^p) for a teacher of order p.
- ``distill_unet``: the same for an image problem's eps network (a U-Net student).

The oracle consistency functions and those of distilled networks are in :mod:`sdebench.problems.consistency`.
"""

from __future__ import annotations

import copy
import math
import sys
import time

import torch
from torch import nn

from sdebench.errors import ConfigError
from sdebench.metrics import samples as sm
from sdebench.model import Model
from sdebench.problems.checkpoint import FORMAT, save_checkpoint
from sdebench.problems.consistency import _ae, oracle_consistency, unet_consistency
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.solvers import get_solver

from .learned import feature_mlp

__all__ = ["ConsistencyMLP", "distill", "mlp_consistency_function", "distillation_table", "distill_unet"]


class ConsistencyMLP(nn.Module):
    """f(x, t) = alpha_e (c_skip(s) x / alpha_t + c_out(s) F([c_in x / alpha_t, feats(lambda_t)])),
    s = sigma_t / alpha_t."""

    def __init__(self, d: int, sde, t_end: float, data_std: float, hidden: int = 128, depth: int = 3):
        super().__init__()
        self.d, self.sde, self.t_end, self.sd = d, sde, float(t_end), float(data_std)
        self.F = feature_mlp(d, hidden, depth)
        self.a_e = _ae(sde, t_end)[0]
        self.s_e = math.sqrt(_ae(sde, t_end)[1]) / self.a_e

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        t64 = torch.as_tensor(t, dtype=torch.float64).reshape(-1)
        a = torch.exp(self.sde.log_alpha(t64))
        s = torch.sqrt(self.sde.sigma2(t64)) / a
        lam = self.sde.lambda_(t64)
        sd = self.sd
        c_skip = sd**2 / ((s - self.s_e) ** 2 + sd**2)
        c_out = sd * (s - self.s_e) / torch.sqrt(sd**2 + s**2)
        c_in = 1 / torch.sqrt(sd**2 + s**2)
        cast = {"dtype": x.dtype, "device": x.device}
        n = x.shape[0]
        col = [v.to(**cast).expand(n)[:, None] if v.numel() == 1 else v.to(**cast)[:, None]
               for v in (a, c_skip, c_out, c_in, lam)]
        a, c_skip, c_out, c_in, lam = col
        freqs = torch.exp(torch.arange(8, **cast) * math.log(2.0)) / 16
        feats = torch.cat([torch.sin(lam * freqs), torch.cos(lam * freqs)], 1)
        xs = x / a
        return self.a_e * (c_skip * xs + c_out * self.F(torch.cat([c_in * xs, feats], 1)))


def distill(problem, sde, teacher: str = "heun", N: int = 18, iters: int = 2000, batch: int = 512,
            lr: float = 1e-3, mu: float = 0.95, seed: int = 0, t_end: float | None = None,
            hidden: int = 128, log_every: int = 0) -> ConsistencyMLP:
    """Consistency distillation of ``problem`` (exact score) with teacher solver ``teacher`` on N intervals."""
    spec = get_solver(teacher)
    if not spec.deterministic():
        raise ConfigError(f"the distillation teacher must be an ODE solver, {teacher!r} is {spec.kind_for()}")
    if N < 1 or iters < 1:
        raise ConfigError(f"need N >= 1 and iters >= 1, got N={N}, iters={iters}")
    t_end = sde.t_end_default if t_end is None else float(t_end)
    grid = make_grid(sde, N, t_end, "logsnr")  # T -> t_end
    _, cov = problem.moments()
    sd = math.sqrt(float(torch.diagonal(cov).mean()))
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = ConsistencyMLP(problem.d, sde, t_end, sd, hidden=hidden).double()
    target = copy.deepcopy(student).requires_grad_(False)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    model = Model(sde, **{k: v for k, v in problem.model_functions(sde).items() if k != "consistency"})
    for it in range(iters):
        i = int(torch.randint(N, (1,), generator=g))
        t_hi, t_lo = grid[i], grid[i + 1]
        x0 = problem.sample(batch, generator=g)
        a, s2 = _ae(sde, t_hi)
        x_hi = a * x0 + math.sqrt(s2) * torch.randn(x0.shape, generator=g, dtype=torch.float64)
        with torch.no_grad():
            x_lo = spec.fn(model, x_hi, grid[i:i + 2], sde, None)
            y = target(x_lo, t_lo)
        loss = ((student(x_hi, t_hi) - y) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pt, ps in zip(target.parameters(), student.parameters()):
                pt.mul_(mu).add_(ps, alpha=1 - mu)
        if log_every and (it + 1) % log_every == 0:
            print(f"distill {teacher} N={N}: iter {it + 1}, loss {float(loss):.4g}")
    student.teacher, student.N, student.nfe_teacher = teacher, N, model.nfe
    return student.eval()


def mlp_consistency_function(net: ConsistencyMLP):
    """f(x, t, t_end) for a distilled MLP; t_end must be the one it was distilled for."""
    def f(x, t, t_end):
        if abs(float(t_end) - net.t_end) > 1e-12 * max(1.0, net.t_end):
            raise ConfigError(f"this consistency model maps to t_end={net.t_end:g}, not {float(t_end):g}")
        with torch.no_grad():
            return net(x.to(torch.float64), t).to(x.dtype)

    return f


def distillation_table(problem, sde, teachers, Ns, iters: int = 2000, n: int = 2000, seed: int = 0) -> list[dict]:
    """For each teacher and N: the ideal distillation target's one-step error (the teacher's own N-step solve
    from x_T vs the oracle, RMS: Song et al. Thm 1's O(dt^p)), and the distilled MLP's one-step error (RMS
    vs the oracle, and sliced W2 of its samples against p_{t_end} with the target-vs-target null)."""
    for teacher in teachers:
        if not get_solver(teacher).deterministic():
            raise ConfigError(f"the distillation teacher must be an ODE solver, {teacher!r} is "
                              f"{get_solver(teacher).kind_for()}")
    if not Ns or min(Ns) < 1:
        raise ConfigError(f"teacher grid sizes N must be >= 1, got {Ns}")
    t_end = sde.t_end_default
    T = torch.tensor(sde.T, dtype=torch.float64)
    x_T = problem.sample_t(n, sde.T, sde, generator=torch.Generator().manual_seed(seed + 7))
    oracle = oracle_consistency(problem, sde)(x_T, T, t_end)
    target = problem.marginal(t_end, sde)
    null = sm.sliced_w2(target.sample(n, generator=torch.Generator().manual_seed(seed + 99)), target, seed=seed)
    fns = {k: v for k, v in problem.model_functions(sde).items() if k != "consistency"}
    rows = []
    for teacher in teachers:
        spec = get_solver(teacher)
        for N in Ns:
            grid = make_grid(sde, N, t_end, "logsnr")
            with torch.no_grad():
                ideal = spec.fn(Model(sde, **fns), x_T.clone(), grid, sde, None)
            net = distill(problem, sde, teacher=teacher, N=N, iters=iters, seed=seed)
            one = mlp_consistency_function(net)(x_T, T, t_end)
            rows.append({"teacher": teacher, "order": spec.order, "N": N,
                         "teacher_err": float((ideal - oracle).pow(2).sum(1).mean().sqrt()),
                         "student_err": float((one - oracle).pow(2).sum(1).mean().sqrt()),
                         "sliced_w2": sm.sliced_w2(one, target, seed=seed), "sliced_w2_null": null})
    return rows


def distill_unet(problem, teacher: str = "heun", N: int = 18, steps: int = 600, batch: int = 64, lr: float = 2e-4,
                 mu: float = 0.95, seed: int = 0, out="checkpoints/digits_consistency", progress: bool = True,
                 command: str = "", ckpt_every: int = 100) -> dict:
    """Consistency distillation (Song et al. 2023, Alg. 2) of an image problem's eps network: teacher
    ``teacher`` on an N-interval log-SNR grid, student U-Net initialized from the teacher's weights,
    target network an EMA (mu) of the student. Writes <out>.safetensors/.json (kind "consistency")."""
    spec = get_solver(teacher)
    if not spec.deterministic():
        raise ConfigError(f"the distillation teacher must be an ODE solver, {teacher!r} is {spec.kind_for()}")
    if N < 1 or steps < 1 or batch < 1:
        raise ConfigError(f"need N, steps, batch >= 1, got {N}, {steps}, {batch}")
    sde = get_sde(problem.config["sde"])
    t_end = sde.t_end_default
    grid = make_grid(sde, N, t_end, "logsnr")
    a_e, s2_e = _ae(sde, t_end)
    data = problem.data.train
    cfg = {"format": FORMAT, "kind": "consistency", "arch": problem.net.config, "data": problem.config["data"],
           "sde": sde.name, "t_end": t_end, "data_std": float(data.std()), "s_e": math.sqrt(s2_e) / a_e,
           "alpha_e": a_e, "teacher": teacher, "N": N, "steps": steps, "batch": batch, "lr": lr, "mu": mu,
           "seed": seed, "command": command, "params": problem.net.n_params()}
    student = copy.deepcopy(problem.net).float().train()
    target = copy.deepcopy(student).requires_grad_(False).eval()
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    model = Model(sde, eps=problem.model_functions(sde)["eps"])
    g = torch.Generator().manual_seed(seed)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=f"distill {problem.name}", file=sys.stderr, dynamic_ncols=True)
    t0, running = time.perf_counter(), None
    for step in range(steps):
        i = int(torch.randint(N, (1,), generator=g))
        x0 = data[torch.randint(len(data), (batch,), generator=g)].reshape(batch, -1)
        a, s2 = _ae(sde, grid[i])
        x_hi = a * x0 + math.sqrt(s2) * torch.randn(x0.shape, generator=g)
        with torch.no_grad():
            x_lo = spec.fn(model, x_hi, grid[i:i + 2], sde, None)
            y = unet_consistency(target, cfg, sde, x_lo, grid[i + 1], problem.shape)
        loss = ((unet_consistency(student, cfg, sde, x_hi, grid[i], problem.shape) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pt, ps in zip(target.parameters(), student.parameters()):
                pt.mul_(mu).add_(ps, alpha=1 - mu)
        lv = float(loss.detach())
        running = lv if running is None else 0.95 * running + 0.05 * lv
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4g}")
        if (step + 1) % ckpt_every == 0 or step + 1 == steps:
            cfg.update(step=step + 1, train_loss=running, wall_s=time.perf_counter() - t0)
            save_checkpoint(out, target, cfg)
    if bar is not None:
        bar.close()
    return cfg
