"""The three tuning methods, each on the same :class:`~sdebench.tune.objective.Objective` and the same budget
of objective evaluations (one evaluation = one cell, one seed).

- :func:`gradient`: Adam on the logits of log(objective), back to the best iterate with half the step size
  whenever a step makes it worse. Where the solver declares ``differentiable_grid`` and the objective is
  w2_exact / kl_exact on a Gaussian target or path_err of an ODE solver on an analytic mixture
  (:func:`~.autodiff.autograd_support`), the gradient is backpropagation through the solver's own code
  (:mod:`.autodiff`: one forward and one backward pass per tuning seed, counted as one evaluation), chained to
  the logits through the parametrization; otherwise the derivative in each interior lambda_i is a central
  difference of the objective computed by the solver's own code (2 (N - 1) evaluations per gradient). The
  output records which (``method_details["gradient"]``: "autograd" or "finite-difference"). The returned value
  is always the ``run_cell`` value of the returned grid.
- :func:`dp`: dynamic programming over a fine candidate grid (uniform in lambda, plus the initial grid's
  points) on the summed local error of one solver step from the reference flow's state at t_i to t_j
  against the reference state at t_j (the GITS / Optimal Stepsize Distillation family). Deterministic
  solvers only.
- :func:`policy_gradient`: a Gaussian policy over the logits, reward = -log(objective) on a minibatch (one
  tuning seed per iteration, shared by the population), REINFORCE with the population-mean baseline
  and antithetic pairs; needs only objective values, so it tunes stochastic samplers on sampled metrics
  and non-differentiable metrics (fd). With a :class:`StepOption` the action also holds one unconstrained
  value per step of a solver option (ddim ``eta``, edm-sde ``S_churn``), tuned jointly with the grid.

Every method returns the best grid it evaluated on the full tuning set, the initial grid included, so it
never returns a grid worse than its initialization on the tuning set.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from sdebench.errors import ConfigError
from sdebench.model import Model
from sdebench.reference import reference_flow

from .autodiff import AutogradObjective, autograd_support
from .grid import LambdaGrid
from .objective import GRADIENT_OBJECTIVES, Objective

__all__ = ["METHODS", "TuneResult", "StepOption", "gradient", "dp", "policy_gradient", "lambda_gradient",
           "logit_gradient"]

METHODS = ("gradient", "dp", "policy-gradient")


@dataclass
class TuneResult:
    grid: torch.Tensor
    value: float  # mean objective on the tuning seeds
    init_value: float
    evaluations: int  # objective evaluations (cells) spent
    wall_s: float
    returned: str  # "tuned" or "init" (the method found nothing better on the tuning set)
    history: list = field(default_factory=list)  # best tuning value after each iteration
    extra: dict = field(default_factory=dict)
    step: list | None = None  # the per-step values of a tuned solver option (StepOption), else None


class StepOption:
    """A solver option tuned per step, from unconstrained u (one per step) that keeps it in range:
    ``eta`` = sigmoid(u) in [0, 1]; ``S_churn`` = N (sqrt(2) - 1) sigmoid(u) in [0, N (sqrt(2) - 1)] (edm-sde
    caps gamma_i = S_churn_i / N at sqrt(2) - 1, so larger values act as the cap)."""

    BOUNDED = {"eta": lambda steps: 1.0, "S_churn": lambda steps: steps * (math.sqrt(2.0) - 1.0)}

    def __init__(self, name: str, steps: int):
        if name not in self.BOUNDED:
            raise ConfigError(f"no per-step parametrization for option {name!r}; valid: {', '.join(self.BOUNDED)}")
        self.name, self.steps, self.top = name, int(steps), float(self.BOUNDED[name](steps))

    def values(self, u: torch.Tensor) -> list:
        return [float(v) for v in self.top * torch.sigmoid(u.to(torch.float64))]

    def logits(self, value: float, clip: float = 0.1) -> torch.Tensor:
        """u whose values are ``value`` on every step (clipped to [clip, 1 - clip] of the range, so the policy
        can move both ways)."""
        p = min(max(float(value) / self.top, clip), 1.0 - clip)
        return torch.full((self.steps,), math.log(p / (1.0 - p)), dtype=torch.float64)


def _log(v: float) -> float:
    return math.log(v) if v > 0 else (-math.inf if v == 0 else math.inf)


def lambda_gradient(obj: Objective, param: LambdaGrid, lam: torch.Tensor, seeds, rel_h: float = 1e-3):
    """(f, d log f / d lambda_i) at the interior points, by central differences of log f through the solver's
    own code (f = mean objective over ``seeds``); h_i = rel_h times the smaller neighbouring gap."""
    f0 = obj.mean(param.grid_of_lambdas(lam), seeds)
    g = torch.zeros(len(lam) - 2, dtype=torch.float64)
    for i in range(1, len(lam) - 1):
        h = rel_h * float(min(lam[i] - lam[i - 1], lam[i + 1] - lam[i]))
        up, dn = lam.clone(), lam.clone()
        up[i] += h
        dn[i] -= h
        fu = obj.mean(param.grid_of_lambdas(up), seeds)
        fd = obj.mean(param.grid_of_lambdas(dn), seeds)
        g[i - 1] = (_log(fu) - _log(fd)) / (2 * h)
    return f0, g


def logit_gradient(obj: Objective, param: LambdaGrid, z: torch.Tensor, seeds, rel_h: float = 1e-3):
    """(f, d log f / dz): the lambda-gradient chained through the softmax parametrization by autograd."""
    zz = z.detach().clone().requires_grad_(True)
    lam = param.lambdas(zz)
    f0, g_lam = lambda_gradient(obj, param, lam.detach(), seeds, rel_h)
    if not math.isfinite(f0) or not bool(torch.isfinite(g_lam).all()):
        return f0, torch.full_like(z, math.nan)
    (gz,) = torch.autograd.grad(lam[1:-1], zz, grad_outputs=g_lam)
    return f0, gz.detach()


class _Adam:
    def __init__(self, x: torch.Tensor, lr: float, betas=(0.9, 0.999), eps=1e-8):
        self.x, self.lr, self.b1, self.b2, self.eps = x.clone(), lr, betas[0], betas[1], eps
        self.m, self.v, self.k = torch.zeros_like(x), torch.zeros_like(x), 0

    def step(self, g: torch.Tensor) -> torch.Tensor:  # descent on g
        self.k += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        mh, vh = self.m / (1 - self.b1 ** self.k), self.v / (1 - self.b2 ** self.k)
        self.x = self.x - self.lr * mh / (vh.sqrt() + self.eps)
        return self.x


GRADIENTS = ("auto", "autograd", "finite-difference")


def gradient(obj: Objective, param: LambdaGrid, z0: torch.Tensor, seeds, budget: int, lr: float = 0.05,
             how: str = "auto") -> TuneResult:
    """``how``: "auto" (autograd where :func:`~.autodiff.autograd_support` allows it, else central differences),
    "autograd" (refused where not supported) or "finite-difference"."""
    if obj.metric not in GRADIENT_OBJECTIVES:
        raise ConfigError(f"method gradient needs a smooth objective ({', '.join(GRADIENT_OBJECTIVES)}); "
                          f"{obj.metric!r} is not differentiable in the grid: use --method policy-gradient")
    if how not in GRADIENTS:
        raise ConfigError(f"unknown gradient {how!r}; valid: {', '.join(GRADIENTS)}")
    support = autograd_support(obj)
    if how == "autograd" and support is not True:
        raise ConfigError(f"no autograd gradient for this objective: {support}")
    auto = support is True and how != "finite-difference"
    t0 = time.perf_counter()
    start = obj.evals
    # autograd: one value-and-gradient pass per seed, plus the final run_cell value of the returned grid
    per_iter = len(seeds) if auto else (2 * (param.steps - 1) + 1) * len(seeds)
    final = len(seeds) if auto else 0
    if budget < per_iter + final:
        raise ConfigError(f"--budget {budget} is below one gradient step ({per_iter + final} evaluations for "
                          f"{param.steps} steps and {len(seeds)} tuning seed(s))")
    ag = AutogradObjective(obj) if auto else None
    adam = _Adam(z0, lr)
    z = z0.clone()
    init_value = best_value = math.inf
    best_z, best_g, history = z0.clone(), None, []
    while obj.evals - start + per_iter + final <= budget:
        value, g = ag.logit_gradient(param, z, seeds) if auto else logit_gradient(obj, param, z, seeds)
        if not history:
            init_value = value
        if value < best_value and bool(torch.isfinite(g).all()):
            best_value, best_z, best_g = value, z.clone(), g
        else:  # worse than the best iterate (or not finite): back to it with half the step size
            adam.lr *= 0.5
            adam.x, g = best_z.clone(), best_g
        history.append(best_value)
        if g is None:
            break
        z = adam.step(g)
    if auto:  # the value sdebench run prints for the returned grid (the autograd value agrees to rounding)
        best_value = obj.mean(param.grid(best_z), seeds)
    returned = "init" if best_value >= init_value else "tuned"
    extra = {"iterations": len(history), "lr": lr, "evaluations_per_iteration": per_iter,
             "gradient": "autograd" if auto else "finite-difference"}
    if not auto:
        extra["gradient_why"] = "asked for" if how == "finite-difference" else support
    return TuneResult(param.grid(best_z), best_value, init_value, obj.evals - start, time.perf_counter() - t0,
                      returned, history, extra)


def policy_gradient(obj: Objective, param: LambdaGrid, z0: torch.Tensor, seeds, budget: int, lr: float = 0.05,
                    sigma: float = 0.2, population: int = 8, seed: int = 0,
                    step: tuple[StepOption, torch.Tensor] | None = None, step_sigma: float = 1.0,
                    step_lr: float = 0.25) -> TuneResult:
    """REINFORCE on the logits z (and, with ``step`` = (StepOption, u0), on the per-step option's u too, with
    its own exploration ``step_sigma`` and Adam step ``step_lr``: u lives on a sigmoid's scale)."""
    t0 = time.perf_counter()
    start = obj.evals
    population = max(2, population - population % 2)
    final = 2 * len(seeds)  # the final check of the policy mean on the whole tuning set
    n_z = len(z0)
    a0 = z0.clone() if step is None else torch.cat([z0, step[1]])
    sig = torch.full_like(a0, sigma)
    lrs = torch.full_like(a0, lr)
    sig[n_z:], lrs[n_z:] = step_sigma, step_lr

    def split(a):  # action -> (grid, per-step values or None)
        return param.grid(a[:n_z]), (None if step is None else step[0].values(a[n_z:]))

    def mean(a):
        g, v = split(a)
        return obj.mean(g, seeds, step=v)

    if budget < len(seeds) + population + final:
        raise ConfigError(f"--budget {budget} is below one policy-gradient iteration "
                          f"({len(seeds) + population + final} evaluations)")
    init_value = mean(a0)
    gen = torch.Generator().manual_seed(seed)
    adam = _Adam(a0, lrs)
    mu = a0.clone()
    best_value, best_a, history, it = init_value, a0.clone(), [], 0
    cand_value, cand_a = math.inf, None  # the best sampled action on its minibatch
    while obj.evals - start + population + final <= budget:
        s = seeds[it % len(seeds)]  # the minibatch: one tuning seed, shared by the population
        half = torch.randn(population // 2, len(a0), generator=gen, dtype=torch.float64)
        eps = torch.cat([half, -half])  # antithetic pairs
        rewards = torch.empty(population, dtype=torch.float64)
        for k in range(population):
            g, v = split(mu + sig * eps[k])
            val = obj.value(g, s, step=v)
            rewards[k] = -_log(val)
            if len(seeds) == 1 and val < cand_value:
                cand_value, cand_a = val, (mu + sig * eps[k]).clone()
        finite = torch.isfinite(rewards)
        if int(finite.sum()) >= 2:
            r = torch.where(finite, rewards, rewards[finite].min())
            adv = (r - r.mean()) / (r.std() + 1e-12)  # baseline: the population mean
            adam.step(-(adv[:, None] * eps).mean(0) / sig)  # ascent on E[reward]
            mu = adam.x
        history.append(min(init_value, cand_value))
        it += 1
    finals = {"mean": mu}
    if cand_a is not None:
        finals["best_sample"] = cand_a
    for name, a in finals.items():
        if name == "best_sample" and len(seeds) == 1:
            v = cand_value  # already evaluated on the whole tuning set (one seed)
        else:
            v = mean(a)
        if v < best_value:
            best_value, best_a = v, a.clone()
    returned = "init" if best_value >= init_value else "tuned"
    grid, values = split(best_a)
    extra = {"iterations": it, "population": population, "sigma": sigma, "lr": lr,
             "reward": "-log(objective) on one tuning seed per iteration"}
    if step is not None:
        extra["step_option"] = {"name": step[0].name, "parametrization": f"{step[0].top:g} * sigmoid(u)",
                                "init": step[0].values(step[1]), "sigma": step_sigma, "lr": step_lr}
    return TuneResult(grid, best_value, init_value, obj.evals - start, time.perf_counter() - t0,
                      returned, history, extra, values)


def _reference_states(obj: Objective, times: torch.Tensor, seeds, rtol: float) -> list[torch.Tensor]:
    """States of the probability-flow ODE at ``times`` from x_T ~ p_T (the tuning seeds' generators), each
    segment by dopri5 at ``rtol`` from the previous state."""
    score_model = Model(obj.sde, **obj.problem.model_functions(obj.sde))
    score = lambda x, t: score_model.score(x, t)  # noqa: E731
    xs = []
    for s in seeds:
        gen = torch.Generator().manual_seed(int(s))
        xs.append(obj.problem.sample_t(obj.cfg.n_samples, obj.sde.T, obj.sde, generator=gen))
    x = torch.cat(xs)
    out = [x]
    for k in range(len(times) - 1):
        x = reference_flow(obj.sde, x, float(times[k + 1]), score=score, t_start=float(times[k]), rtol=rtol).x
        out.append(x)
    return out


def _candidates(param: LambdaGrid, z0: torch.Tensor, candidates: int) -> torch.Tensor:
    """Candidate lambdas, increasing: the initial grid's (exactly, so the DP can return it) and ``candidates`` + 1
    uniform ones, less those within 1e-8 of the range from an initial one (they would give equal times)."""
    init = param.lambdas(z0).detach()
    lam_c = torch.linspace(param.lam_T, param.lam_end, candidates + 1, dtype=torch.float64)
    tol = 1e-8 * abs(param.lam_end - param.lam_T)
    far = (lam_c[:, None] - init[None, :]).abs().min(1).values > tol
    return torch.sort(torch.cat([init, lam_c[far]])).values


def dp(obj: Objective, param: LambdaGrid, z0: torch.Tensor, seeds, candidates: int = 64,
       rtol: float = 1e-9) -> TuneResult:
    if not obj.deterministic:
        raise ConfigError(f"method dp needs a deterministic solver (its local error is measured against the "
                          f"probability-flow ODE); {obj.spec.name!r} is stochastic: use --method policy-gradient")
    t0 = time.perf_counter()
    start = obj.evals
    init_grid = param.grid(z0)
    init_value = obj.mean(init_grid, seeds)
    lam_all = _candidates(param, z0, candidates)
    times = param.grid_of_lambdas(lam_all)
    K = len(times) - 1
    refs = _reference_states(obj, times, seeds, rtol)
    model = Model(obj.sde, **obj.problem.model_functions(obj.sde))
    nfe1 = obj.spec.nfe_for_steps(1)
    cost = torch.full((K + 1, K + 1), math.inf, dtype=torch.float64)
    solves = 0
    with torch.no_grad():
        for i in range(K):
            for j in range(i + 1, K + 1):
                g = torch.stack([times[i], times[j]])
                try:
                    x = obj.spec.sample(model, refs[i].clone(), g, obj.sde, None, nfe=nfe1, **obj.options)
                except ConfigError:  # a step the solver refuses (two times equal in float64): not a candidate
                    continue
                solves += 1
                err = float((x - refs[j]).pow(2).sum(1).mean().sqrt())
                cost[i, j] = err if math.isfinite(err) else math.inf
    N = param.steps
    D = torch.full((N + 1, K + 1), math.inf, dtype=torch.float64)
    arg = torch.zeros((N + 1, K + 1), dtype=torch.long)
    D[0, 0] = 0.0
    for n in range(1, N + 1):
        tot = D[n - 1][:, None] + cost  # (i, j)
        D[n], arg[n] = tot.min(0)
    path = [K]
    for n in range(N, 0, -1):
        path.append(int(arg[n, path[-1]]))
    path = path[::-1]
    grid = times[path].clone()
    grid[0], grid[-1] = param.T, param.t_end
    value = obj.mean(grid, seeds)
    returned = "tuned" if value < init_value else "init"
    best = grid if returned == "tuned" else init_grid
    return TuneResult(best, min(value, init_value), init_value, obj.evals - start, time.perf_counter() - t0,
                      returned, [init_value, min(value, init_value)],
                      {"candidates": K + 1, "local_solves": solves, "local_error_sum": float(D[N, K]),
                       "dp_value": value, "reference_rtol": rtol,
                       "local_error": "RMS over x_T of |one solver step from the reference state at t_i to t_j - "
                                      "the reference state at t_j|"})
