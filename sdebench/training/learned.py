"""Learned scores for the analytic targets: an MLP trained by denoising, sliced or implicit score matching.

All three objectives train the same time-conditioned network eps_theta(c_in x, lambda_t) with the score
s_theta = -eps_theta / sigma_t, on x_t = alpha_t x_0 + sigma_t z, t ~ U(t_min, T), weighted by sigma_t^2
(so every objective is O(1) at every t):

- ``dsm`` (denoising; Vincent 2011):        || eps_theta - z ||^2
- ``ssm`` (sliced, variance-reduced; Song et al. 2019):
  sigma^2 [v^T (d s_theta / dx) v + |s_theta|^2 / 2] = -sigma v^T (d eps_theta / dx) v + |eps_theta|^2 / 2, v ~ N(0, I)
- ``ism`` (implicit / Hyvarinen 2005):      sigma^2 [tr(d s_theta / dx) + |s_theta|^2 / 2]
  = -sigma tr(d eps_theta / dx) + |eps_theta|^2 / 2, the trace exact by d backward passes.

DSM sees (x_0, z); SSM and ISM see only the noisy samples x_t (they never use z), as in the tutorial's
score-matching section. ``score_error`` measures the learned score against the exact one under p_t:
rel_t = sqrt(E_{p_t} |s_theta - s|^2 / E_{p_t} |s|^2).
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from sdebench.errors import ConfigError
from sdebench.metrics import samples as sm
from sdebench.model import Model
from sdebench.noise import NoiseSource
from sdebench.schedules import make_grid
from sdebench.solvers import get_solver

__all__ = ["ScoreMLP", "train_score", "score_error", "OBJECTIVES", "learned_model_functions", "learned_table",
           "feature_mlp"]

OBJECTIVES = ("dsm", "ssm", "ism")


def feature_mlp(d: int, hidden: int, depth: int, n_time_features: int = 16) -> nn.Sequential:
    """SiLU MLP from [x (d), time features] to R^d: ``depth`` hidden layers of width ``hidden``."""
    layers, w = [], d + n_time_features
    for _ in range(depth):
        layers += [nn.Linear(w, hidden), nn.SiLU()]
        w = hidden
    layers.append(nn.Linear(w, d))
    return nn.Sequential(*layers)


class ScoreMLP(nn.Module):
    """eps_theta(x, t) = F([x / sqrt(alpha_t^2 v + sigma_t^2), features(lambda_t)]) (v: data variance)."""

    def __init__(self, d: int, sde, data_var: float, hidden: int = 128, depth: int = 3):
        super().__init__()
        self.d, self.sde, self.v = d, sde, float(data_var)
        self.F = feature_mlp(d, hidden, depth)

    def coeffs(self, t, like: torch.Tensor):
        t64 = torch.as_tensor(t, dtype=torch.float64).reshape(-1).cpu()
        a2 = torch.exp(2 * self.sde.log_alpha(t64))
        s2 = self.sde.sigma2(t64)
        c_in = 1 / torch.sqrt(a2 * self.v + s2)
        lam = self.sde.lambda_(t64)
        n = like.shape[0]
        out = []
        for v in (c_in, torch.sqrt(s2), lam):
            v = v.to(dtype=like.dtype, device=like.device)
            out.append((v.expand(n) if v.numel() == 1 else v)[:, None])
        return out

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        c_in, _, lam = self.coeffs(t, x)
        freqs = torch.exp(torch.arange(8, dtype=x.dtype, device=x.device) * math.log(2.0)) / 16
        feats = torch.cat([torch.sin(lam * freqs), torch.cos(lam * freqs)], 1)
        return self.F(torch.cat([c_in * x, feats], 1))


def _loss(net: ScoreMLP, objective: str, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor, g) -> torch.Tensor:
    if objective == "dsm":
        return ((net(x_t, t) - z) ** 2).sum(1).mean()
    _, sigma, _ = net.coeffs(t, x_t)
    x = x_t.detach().requires_grad_(True)
    eps = net(x, t)
    if objective == "ssm":
        v = torch.randn(x.shape, generator=g, dtype=x.dtype)
        (jv,) = torch.autograd.grad((eps * v).sum(), x, create_graph=True)
        div = (jv * v).sum(1)
    else:  # ism: exact trace of d eps / dx, one backward pass per dimension
        div = torch.zeros(x.shape[0], dtype=x.dtype)
        for i in range(x.shape[1]):
            (gi,) = torch.autograd.grad(eps[:, i].sum(), x, create_graph=True)
            div = div + gi[:, i]
    return (-sigma[:, 0] * div + 0.5 * (eps**2).sum(1)).mean()


def train_score(problem, sde, objective: str = "dsm", iters: int = 2000, batch: int = 256, lr: float = 2e-3,
                seed: int = 0, hidden: int = 128, t_min: float | None = None) -> ScoreMLP:
    """Train an MLP score on samples of ``problem`` (a GaussianMixture) with the given objective."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown score-matching objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
    if iters < 1 or batch < 2:
        raise ConfigError(f"need iters >= 1 and batch >= 2, got iters={iters}, batch={batch}")
    t_min = sde.t_end_default if t_min is None else float(t_min)
    _, cov = problem.moments()
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ScoreMLP(problem.d, sde, float(torch.diagonal(cov).mean()), hidden=hidden).double()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters)
    for _ in range(iters):
        x0 = problem.sample(batch, generator=g)
        t = t_min + (sde.T - t_min) * torch.rand(batch, generator=g, dtype=torch.float64)
        a = torch.exp(sde.log_alpha(t))[:, None]
        s = torch.sqrt(sde.sigma2(t))[:, None]
        z = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        loss = _loss(net, objective, a * x0 + s * z, t, z, g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        sched.step()
    net.objective = objective
    return net.eval()


def learned_model_functions(net: ScoreMLP) -> dict:
    """{"eps": ...} for :class:`sdebench.model.Model`."""
    def eps(x, t):
        with torch.no_grad():
            return net(x.to(torch.float64), t).to(x.dtype)

    return {"eps": eps}


@torch.no_grad()
def score_error(net: ScoreMLP, problem, sde, t, n: int = 4000, seed: int = 1) -> float:
    """sqrt(E_{p_t} |s_theta - s|^2 / E_{p_t} |s|^2) by Monte Carlo on n exact samples of p_t."""
    g = torch.Generator().manual_seed(seed)
    t64 = torch.tensor(float(t), dtype=torch.float64)
    x = problem.sample_t(n, t64, sde, generator=g)
    s = problem.score(x, t64, sde)
    sigma = float(sde.sigma(t64))
    s_hat = -net(x, t64) / sigma
    return float(((s_hat - s) ** 2).sum(1).mean().sqrt() / (s**2).sum(1).mean().sqrt())


def learned_table(problem, sde, objectives=OBJECTIVES, iters: int = 2000, solver: str = "heun", nfe: int = 100,
                  n: int = 2000, seed: int = 0, times=(0.01, 0.1, 0.5), log=print) -> list[dict]:
    """One row per objective (plus the exact score): score errors at ``times`` and the sampling error
    (sliced W2 against p_{t_end}, exact projections) of ``solver`` at ``nfe`` driven by the learned score."""
    bad = [o for o in objectives if o not in OBJECTIVES]
    if bad:
        raise ConfigError(f"unknown score-matching objective {bad[0]!r}; valid: {', '.join(OBJECTIVES)}")
    spec = get_solver(solver)
    t_end = sde.t_end_default
    grid = make_grid(sde, spec.steps_for_nfe(nfe), t_end, "logsnr")
    target = problem.marginal(t_end, sde)
    x_T = problem.sample_t(n, sde.T, sde, generator=torch.Generator().manual_seed(seed))
    null = sm.sliced_w2(problem.marginal(t_end, sde).sample(n, generator=torch.Generator().manual_seed(seed + 99)),
                        target, seed=seed)
    rows = []
    for obj in ("exact",) + tuple(objectives):
        t0 = time.perf_counter()
        if obj == "exact":
            fns = {k: v for k, v in problem.model_functions(sde).items() if k != "consistency"}
            errs = [0.0] * len(times)
        else:
            net = train_score(problem, sde, obj, iters=iters, seed=seed)
            fns, errs = learned_model_functions(net), [score_error(net, problem, sde, t) for t in times]
        train_s = time.perf_counter() - t0
        noise = NoiseSource(seed, n, (problem.d,))
        with torch.no_grad():
            x = spec.sample(Model(sde, **fns), x_T.clone(), grid, sde, noise, nfe=nfe)
        row = {"objective": obj, "train_s": round(train_s, 1)}
        row.update({f"rel_err_t{t:g}": e for t, e in zip(times, errs)})
        row.update({"solver": solver, "nfe": nfe, "sliced_w2": sm.sliced_w2(x, target, seed=seed),
                    "sliced_w2_null": null})
        rows.append(row)
        if log:
            log(row)
    return rows
