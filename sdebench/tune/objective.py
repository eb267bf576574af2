"""The tuning objective: a registered metric of the cell ``sdebench run`` would run with a ``file:`` grid.

Every evaluation writes the candidate grid to a scratch JSON file and runs the cell through
:func:`sdebench.run.run_cell` with ``schedule = "file:<that file>"``, exactly as
``sdebench run --schedule file:grid.json --nfe N --seeds S --samples n --metrics M`` does (one NFE, so the
common-random-numbers base grid is the grid itself). A value reported by ``sdebench tune`` is therefore
the value ``sdebench run`` prints for the saved grid, to the last bit.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from sdebench.errors import ConfigError
from sdebench.metrics.registry import METRICS, MetricContext, get_metric
from sdebench.run import CellConfig, prepare, run_cell

__all__ = ["Objective", "GRADIENT_OBJECTIVES"]

# objectives the gradient method accepts: smooth, deterministic functions of the grid (the exact output law of
# an affine solver on a Gaussian target; the pathwise error of an ODE solver against the reference flow)
GRADIENT_OBJECTIVES = ("w2_exact", "kl_exact", "path_err")


class Objective:
    """``value(grid, seed)``: the metric of one cell on ``grid``; counts its evaluations."""

    def __init__(self, problem: str, sde: str, solver: str, nfe: int, metric: str, samples: int,
                 options: dict | None = None, t_end: float | None = None, T: float | None = None,
                 step_option: str | None = None):
        if metric not in METRICS:
            raise ConfigError(f"unknown objective {metric!r}; valid: any metric of `sdebench list metrics` "
                              f"({', '.join(METRICS)})")
        self.metric = metric
        self.cfg = CellConfig(problem=problem, sde=sde, solver=solver, nfe=int(nfe), seed=0, n_samples=int(samples),
                              schedule="uniform", t_end=t_end, T=T, solver_options=dict(options or {}),
                              metrics=(metric,))
        self.problem, self.sde, self.spec, self.steps, grid, self.options, self.t_end = prepare(self.cfg)
        self.cfg = replace(self.cfg, crn_steps=self.steps, t_end=self.t_end)
        # step_option: a per-step option tuned with the grid (written to the grid file as step_options); the
        # objective must apply with it set (0.5 on every step: the solver draws noise)
        self.step_option = step_option
        check_opts = self.options if step_option is None else \
            self.spec.check_options({**self.options, step_option: [0.5] * self.steps})
        ctx = MetricContext(cfg=self.cfg, problem=self.problem, sde=self.sde, spec=self.spec, options=check_opts,
                            grid=grid, t_end=self.t_end, x_T=None, x0=None)
        ok = get_metric(metric).check(ctx)
        if ok is not True:
            raise ConfigError(f"objective {metric!r} does not apply to problem {problem!r} with solver {solver!r}"
                              + (f": {ok}" if ok else ""))
        self.evals = 0
        self._dir = tempfile.TemporaryDirectory(prefix="sdebench-tune-")
        self._file = Path(self._dir.name) / "grid.json"

    @property
    def deterministic(self) -> bool:
        return self.step_option is None and self.spec.deterministic(self.options)

    def grid_record(self, grid: torch.Tensor, step: list | None = None) -> dict:
        """The fields a ``file:`` grid needs (the full tune output adds the rest); ``step``: the per-step values
        of ``step_option``, saved as ``step_options``."""
        rec = {"t": [float(v) for v in grid], "sde": self.sde.name, "solver": self.spec.name,
               "nfe": self.cfg.nfe, "steps": self.steps, "T": float(self.sde.T), "t_end": float(self.t_end)}
        if step is not None:
            rec["step_options"] = {self.step_option: [float(v) for v in step]}
        return rec

    def row(self, grid: torch.Tensor, seed: int, schedule: str | None = None, step: list | None = None) -> dict:
        """The ``sdebench run`` row of the cell on ``grid`` (or on the named ``schedule``) for ``seed``."""
        cfg = self.cfg
        if schedule is None:
            self._file.write_text(json.dumps(self.grid_record(grid, step)))
            schedule = f"file:{self._file}"
            if step is not None:  # the file's per-step values replace the cell's scalar option
                cfg = replace(cfg, solver_options={k: v for k, v in cfg.solver_options.items()
                                                   if k != self.step_option})
        return run_cell(replace(cfg, seed=int(seed), schedule=schedule))

    def value(self, grid: torch.Tensor, seed: int, count: bool = True, step: list | None = None) -> float:
        if not bool(torch.isfinite(grid).all() and (grid[1:] < grid[:-1]).all()):
            return math.inf
        row = self.row(grid, seed, step=step)
        if count:
            self.evals += 1
        v = row.get(self.metric, math.nan)
        return float(v) if row.get("status") == "ok" and v is not None and math.isfinite(v) else math.inf

    def mean(self, grid: torch.Tensor, seeds, count: bool = True, step: list | None = None) -> float:
        return sum(self.value(grid, s, count, step) for s in seeds) / len(seeds)

    def named(self, schedule: str, seeds) -> float:
        """Mean over ``seeds`` on a hand-crafted schedule, exactly as ``sdebench run --schedule NAME``."""
        vals = [float(self.row(None, s, schedule=schedule).get(self.metric, math.nan)) for s in seeds]
        return sum(vals) / len(vals)
