"""Inference-path optimization: a time grid tuned against a registered metric (``sdebench tune``).

:func:`tune` builds the :class:`~.objective.Objective` (the cell ``sdebench run`` would run), evaluates every
hand-crafted grid on the tuning and the held-out seeds, starts from one of them (by default the best on the
tuning seeds), runs one method (:mod:`.methods`) within a budget of objective evaluations, and returns the
record ``sdebench tune --out`` saves: the grid in t and lambda, the values on the tuning and the held-out
seeds beside every hand-crafted grid, the seeds, the evaluation count, the wall time. On a Gaussian target
it adds the AYS proxy check (:mod:`.proxy`): the KLUB of every grid beside its exact KL.

``tune_option`` (``sdebench tune --tune eta``; policy-gradient only) tunes, with the grid, one value per step of
a solver option that accepts it (``SolverSpec.per_step``: ddim ``eta``, edm-sde ``S_churn``), starting from the
scalar option (given or default) on every step; the record and the saved file carry them as ``step_options``,
which ``sdebench run --schedule file:GRID.json`` applies.
"""

from __future__ import annotations

import math
import time

import torch

from sdebench.errors import ConfigError
from sdebench.schedules import FILE_PREFIX, SCHEDULES, check_grid_solver, make_grid
from sdebench.solvers import SOLVERS, get_solver

from .grid import LambdaGrid
from .methods import METHODS, StepOption, dp, gradient, policy_gradient
from .objective import Objective
from .proxy import ays_grid, klub

__all__ = ["tune", "check_tune_option", "METHODS", "Objective", "LambdaGrid", "FORMAT"]

FORMAT = "sdebench-grid/1"
HANDCRAFTED = tuple(SCHEDULES)  # uniform, logsnr, edm, quadratic


def _spearman(a, b) -> float:
    ra = torch.as_tensor(a, dtype=torch.float64).argsort().argsort().double()
    rb = torch.as_tensor(b, dtype=torch.float64).argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den > 0 else math.nan


def per_step_options() -> str:
    """'solver: option, ...' for every registered solver with a per-step option."""
    return "; ".join(f"{n}: {', '.join(sp.per_step)}" for n, sp in sorted(SOLVERS.items()) if sp.per_step)


def check_tune_option(solver: str, method: str, tune_option: str | None) -> None:
    """One-line ConfigError for ``--tune OPTION`` with a method other than policy-gradient, or on a solver
    that does not accept OPTION per step."""
    if tune_option is None:
        return
    if method != "policy-gradient":
        raise ConfigError(f"--tune {tune_option} needs --method policy-gradient (method {method!r} tunes the "
                          "grid only)")
    spec = get_solver(solver)
    if tune_option not in spec.per_step:
        raise ConfigError(f"solver {spec.name!r} has no per-step option {tune_option!r}; per-step options: "
                          f"{per_step_options()}")
    StepOption(tune_option, 1)  # a per-step option without a parametrization is a ConfigError


def tune(problem: str, sde: str, solver: str, nfe: int, objective: str, method: str, *, samples: int = 512,
         tune_seeds=(0,), heldout_seeds=(1, 2), budget: int = 300, init: str = "best", options: dict | None = None,
         t_end: float | None = None, candidates: int = 64, seed: int = 0, proxy: bool = True,
         tune_option: str | None = None, handcrafted: dict | None = None) -> dict:
    """``handcrafted``: the ``handcrafted`` field of an earlier record for the same cell, objective and seeds
    (reused instead of re-evaluating the four grids; benchmarks/tune_results.py runs several methods per cell)."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    check_tune_option(solver, method, tune_option)
    tune_seeds, heldout_seeds = list(tune_seeds), list(heldout_seeds)
    if set(tune_seeds) & set(heldout_seeds):
        raise ConfigError(f"held-out seeds {sorted(set(tune_seeds) & set(heldout_seeds))} are also tuning seeds")
    if budget < 1:
        raise ConfigError(f"--budget must be >= 1, got {budget}")
    obj = Objective(problem, sde, solver, nfe, objective, samples, options=options, t_end=t_end,
                    step_option=tune_option)
    if obj.steps < 2:
        raise ConfigError(f"--nfe {nfe} gives {obj.steps} step for solver {solver!r}: a 1-step grid has nothing "
                          "to tune (need >= 2 steps)")
    param = LambdaGrid(obj.sde, obj.steps, obj.t_end)
    t0 = time.perf_counter()
    hand = {}
    for name in HANDCRAFTED:
        if handcrafted is not None:
            hand[name] = dict(handcrafted[name])
            continue
        hand[name] = {"tune": obj.named(name, tune_seeds), "heldout": obj.named(name, heldout_seeds),
                      "t": [float(v) for v in make_grid(obj.sde, obj.steps, obj.t_end, name)]}
    best_hand = min(hand, key=lambda k: (hand[k]["tune"], k))
    if init == "best":
        init_name, init_grid = best_hand, torch.tensor(hand[best_hand]["t"], dtype=torch.float64)
    elif init in HANDCRAFTED:
        init_name, init_grid = init, torch.tensor(hand[init]["t"], dtype=torch.float64)
    elif init.startswith(FILE_PREFIX):
        check_grid_solver(init, obj.spec.name, nfe)
        init_name, init_grid = init, make_grid(obj.sde, obj.steps, obj.t_end, init)
    else:
        raise ConfigError(f"unknown initial schedule {init!r}; valid: best, {', '.join(HANDCRAFTED)}, file:GRID.json")
    z0 = param.logits(init_grid)
    setup_s = time.perf_counter() - t0
    if method == "gradient":
        res = gradient(obj, param, z0, tune_seeds, budget)
    elif method == "policy-gradient":
        step = None
        if tune_option is not None:
            sp = StepOption(tune_option, obj.steps)
            step = (sp, sp.logits(obj.options[tune_option]))
        res = policy_gradient(obj, param, z0, tune_seeds, budget, seed=seed, step=step)
    else:
        res = dp(obj, param, z0, tune_seeds, candidates=candidates)
    # the method started from the logits of the initial grid (equal to it up to rounding): the initial grid
    # itself, exactly, is what it must beat on the tuning seeds
    init_value = hand[init_name]["tune"] if init_name in hand else obj.mean(init_grid, tune_seeds, count=False)
    if not res.value < init_value:
        res.grid, res.value, res.returned = init_grid, init_value, "init"
        if tune_option is not None:  # the initial scalar on every step: the very same float, the same cell
            res.step = [float(obj.options[tune_option])] * obj.steps
    grid = res.grid
    heldout = obj.mean(grid, heldout_seeds, count=False, step=res.step)
    out = {
        "format": FORMAT,
        "t": [float(v) for v in grid],
        "lambda": [float(v) for v in param.lambdas_of_grid(grid)],
        "problem": problem, "sde": obj.sde.name, "solver": obj.spec.name,
        "solver_options": {k: v for k, v in (options or {}).items() if k != tune_option},
        "nfe": int(nfe), "steps": obj.steps, "T": float(obj.sde.T), "t_end": float(obj.t_end),
        "objective": objective, "method": method, "samples": int(samples),
        "seeds": {"tune": tune_seeds, "heldout": heldout_seeds},
        "value": {"tune": res.value, "heldout": heldout},
        "init": {"schedule": init_name, "tune": init_value,
                 "heldout": hand[init_name]["heldout"] if init_name in hand else obj.mean(init_grid, heldout_seeds,
                                                                                        count=False)},
        "returned": res.returned,
        "handcrafted": hand, "best_handcrafted": best_hand,
        "evaluations": res.evaluations, "budget": int(budget),
        "wall_s": res.wall_s, "setup_s": setup_s,
        "history": res.history, "method_details": res.extra,
    }
    if tune_option is not None:
        out["step_options"] = {tune_option: [float(v) for v in res.step]}
        out["step_init"] = {tune_option: float(obj.options[tune_option])}
    if not obj.deterministic:
        out["note"] = "stochastic solver: each seed draws its own x_T and noise"
    if objective in ("w2_exact", "kl_exact"):
        out["note"] = "exact objective: the value does not depend on the seed (held-out = tuning)"
    if proxy and tune_option is None and getattr(obj.problem, "is_gaussian", False) and obj.spec.affine(obj.options):
        out["proxy"] = proxy_check(obj, param, z0, {**{k: v["t"] for k, v in hand.items()}, "tuned": out["t"]})
    return out


def proxy_check(obj: Objective, param: LambdaGrid, z0: torch.Tensor, grids: dict) -> dict:
    """The AYS proxy (KLUB) of every grid beside the exact KL of the solver's output law on it; the grid that
    minimizes the KLUB (``ays``) is added; Spearman's rank correlation of the two columns."""
    grids = dict(grids)
    grids["ays"] = [float(v) for v in ays_grid(obj.problem, param, z0)]
    kl = obj if obj.metric == "kl_exact" else Objective(obj.cfg.problem, obj.cfg.sde, obj.cfg.solver, obj.cfg.nfe,
                                                        "kl_exact", 16, options=obj.cfg.solver_options,
                                                        t_end=obj.t_end)
    rows = {}
    for name, t in grids.items():
        g = torch.tensor(t, dtype=torch.float64)
        rows[name] = {"klub": klub(obj.problem, param, g), "kl_exact": kl.value(g, 0, count=False)}
    names = list(rows)
    return {"grids": rows, "spearman": _spearman([rows[n]["klub"] for n in names],
                                                 [rows[n]["kl_exact"] for n in names]),
            "ays_t": grids["ays"]}
