"""One cell = one (problem, sde, solver, schedule, nfe, seed) run producing one tidy results row.

Data flow: problem + sde -> grid (schedule, NFE budget) -> counted Model -> x_T (exact p_T or prior)
-> solver(model, x_T, grid, sde, noise) -> metrics with their Monte Carlo nulls -> row dict.
A sampler that produces non-finite values gives a row with status ``diverged``; a failure inside a
cell gives status ``error`` with the message. Neither raises.

NFE: ``nfe`` is always the counted budget (network evaluations). The solver gets
:func:`sdebench.guidance.solver_calls` model calls of it: ``nfe / cost`` (cost 2 for unbatched CFG), less
one with ``final_denoise``, which outputs the model's x0 prediction D(x, t_end) at the end of the solve
(the diffusers / k-diffusion convention of a last jump to sigma = 0, made explicit). The field is left out
of the cell key and the row when off, so cells without it keep their keys.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch

from .errors import ConfigError, NFEBudgetError
from .guidance import check_guidance, guidance_columns, guidance_cost, guided_model, solver_calls
from .metrics.nulls import NULL_DRAWS, null_draws
from .metrics.nulls import null_columns as _null_columns  # noqa: F401  (re-exported)
from .metrics.nulls import target_sample as _target_sample  # noqa: F401  (re-exported)
from .metrics.registry import DEFAULT_METRICS, GUIDED, IMAGE, MetricContext, check_metrics, compute_metrics, own_floor
from .metrics.registry import DESCRIPTIONS as METRICS
from .model import Model
from .noise import NoiseSource
from .perturb import check_score_error, perturb_model
from .problems import get_problem, problem_name
from .problems.labelled import labelled
from .provenance import __version__, git_commit
from .schedules import FILE_PREFIX, check_grid_solver, load_grid_file, make_grid
from .sde import get_sde
from .solvers import get_solver
from .stats import at_floor

__all__ = ["CellConfig", "run_cell", "prepare", "cell_grid", "DEFAULT_METRICS", "METRICS", "crn_base_steps",
           "cell_budget", "FinalDenoise", "NULL_DRAWS", "null_draws"]

# METRICS (metric name -> one-line description) is a live read-only view of the registry
# (sdebench.metrics.registry), which also defines DEFAULT_METRICS (the metrics declared default, in registry order)
KEY_COLUMNS = ("problem", "sde", "solver", "schedule", "nfe", "steps", "seed", "n_samples", "t_end", "init",
               "dtype", "device")


@dataclass
class CellConfig:
    problem: str
    sde: str = "vp"
    solver: str = "em"
    nfe: int = 10
    seed: int = 0
    n_samples: int = 2000
    schedule: str = "uniform"
    t_end: float | None = None
    T: float | None = None
    init: str = "exact"
    dtype: str = "float64"
    device: str = "cpu"
    solver_options: dict = field(default_factory=dict)
    metrics: tuple = DEFAULT_METRICS
    crn_steps: int | None = None  # steps of the common-random-numbers base grid (None: own grid)
    reference: str = "t_end"  # judge against p_{t_end} (discretization error) or "data" (p_0)
    score_error: float = 0.0  # relative L2 size of the injected score error (sdebench.perturb)
    guidance: str = "none"  # 'none' | 'classifier' | 'cfg' (sdebench.guidance)
    scale: float = 0.0  # guidance scale w >= 0
    class_label: int | None = None  # target class of guided sampling
    cfg_param: str = "eps"  # CFG combination in 'eps' or 'x0'
    cfg_batched: bool = False  # CFG cond+uncond in one batched call (cost 1) or two calls (cost 2)
    final_denoise: bool = False  # output D(x, t_end), the x0 prediction, as one more model call of the budget

    def __post_init__(self):
        # a problem object (sdebench.problems.from_network) is registered under its name for this process
        self.problem = problem_name(self.problem)

    def key(self) -> dict:
        """The row's key columns; ``final_denoise`` only when on (cells without it keep their keys)."""
        return {k: v for k, v in asdict(self).items()
                if k != "metrics" and not (k == "final_denoise" and not v)}


class FinalDenoise:
    """A solver spec followed by the model's x0 prediction at the grid's end: one more model call.

    x_out = D(x_N, t_N) = E[x_0 | x_{t_N} = x_N]. For a Gaussian target D is affine, so the exact output
    law (sdebench.exact) and the change-of-variables density (its Jacobian included) still apply."""

    def __init__(self, spec):
        self.spec = spec

    def __getattr__(self, name):
        return getattr(self.spec, name)

    def sample(self, model, x, grid, sde, noise=None, nfe=None, **options):
        out = self.spec.sample(model, x, grid, sde, noise, nfe=nfe, **options)
        return model.x0(out, grid[-1])

    __call__ = sample


def cell_budget(cfg: CellConfig, spec=None) -> int:
    """Model calls the cell's solver may make: the counted budget ``cfg.nfe`` over the evaluations per
    call, less the final denoising call. A budget the solver cannot meet is a one-line NFEBudgetError."""
    calls = solver_calls(cfg.nfe, cfg.guidance, cfg.cfg_batched, cfg.final_denoise)
    if spec is not None and calls != cfg.nfe:
        try:
            spec.steps_for_nfe(calls)
        except NFEBudgetError as exc:
            cost = guidance_cost(cfg.guidance, cfg.cfg_batched)
            how = [f"{cost} evaluations per model call"] if cost > 1 else []
            how += ["1 call for the final denoise"] if cfg.final_denoise else []
            raise NFEBudgetError(f"NFE={cfg.nfe} is the counted budget; with {' and '.join(how)} the solver gets "
                                 f"{calls} model calls, and {exc}") from None
    return calls


def crn_base_steps(steps_list, cap: int = 4096) -> int | None:
    """Least common multiple of the step counts (their grids are all sub-grids of its grid), or None
    when it exceeds ``cap`` steps (then each step count gets its own independent noise)."""
    lcm = 1
    for s in steps_list:
        lcm = lcm * s // math.gcd(lcm, s)
        if lcm > cap:
            return None
    return lcm


def _dtype(name: str):
    table = {"float64": torch.float64, "float32": torch.float32}
    if name not in table:
        raise ConfigError(f"unknown dtype {name!r}; valid: {', '.join(table)}")
    return table[name]


def prepare(cfg: CellConfig):
    """Validate a config and build (problem, sde, spec, steps, grid, options); raises ConfigError."""
    problem = get_problem(cfg.problem)
    sde = get_sde(cfg.sde, T=cfg.T)
    spec = get_solver(cfg.solver)
    spec.check_sde(sde)
    if callable(getattr(problem, "check_sde", None)):  # a network problem: the SDE's log-SNR range must fit
        problem.check_sde(sde)
    spec.check_schedule(cfg.schedule)
    options = spec.check_options(cfg.solver_options)
    if cfg.n_samples < 2:
        raise ConfigError(f"samples must be >= 2, got {cfg.n_samples}")
    if cfg.reference not in ("t_end", "data"):
        raise ConfigError(f"reference must be 't_end' or 'data', got {cfg.reference!r}")
    if cfg.init not in ("exact", "prior"):
        raise ConfigError(f"init must be 'exact' or 'prior', got {cfg.init!r}")
    _dtype(cfg.dtype)
    check_score_error(cfg.score_error)
    check_guidance(problem, cfg.guidance, cfg.scale, cfg.class_label, cfg.cfg_param)
    if not (cfg.device == "cpu" or cfg.device.startswith("cuda")):
        raise ConfigError(f"unknown device {cfg.device!r}; valid: cpu, cuda, cuda:N")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {cfg.device!r} requested but CUDA is not available")
    t_end = sde.t_end_default if cfg.t_end is None else cfg.t_end
    if not isinstance(cfg.final_denoise, bool):
        raise ConfigError(f"final_denoise must be true or false, got {cfg.final_denoise!r}")
    steps = spec.steps_for_nfe(cell_budget(cfg, spec))
    check_grid_solver(cfg.schedule, spec.name, cfg.nfe)  # a file: grid tuned for another solver or NFE
    options = step_options(cfg, spec, options, steps)
    grid = cell_grid(spec, sde, steps, t_end, cfg.schedule, options)
    t_end = float(grid[-1])  # where the solve ends (a diffusers scheduler's own schedule may end at t = 0)
    check_metrics(cfg.metrics)
    return problem, sde, spec, steps, grid, options, t_end


def step_options(cfg: CellConfig, spec, options: dict, steps: int) -> dict:
    """A ``file:`` grid's ``step_options`` (per-step solver options tuned with it, ``sdebench tune --tune``)
    merged into the cell's options; an option also set on the cell is a ConfigError."""
    if not str(cfg.schedule).startswith(FILE_PREFIX):
        return options
    per = load_grid_file(cfg.schedule).get("step_options") or {}
    if not per:
        return options
    path = cfg.schedule[len(FILE_PREFIX):]
    if not isinstance(per, dict):
        raise ConfigError(f"grid file {path!r}: 'step_options' must be a mapping option -> per-step values")
    for k, v in per.items():
        if k not in spec.per_step:
            raise ConfigError(f"grid file {path!r} sets {k!r} per step, which solver {spec.name!r} does not accept "
                              f"per step (per-step options: {', '.join(spec.per_step) or 'none'})")
        if k in cfg.solver_options:
            raise ConfigError(f"grid file {path!r} sets {k!r} per step; do not also pass it as a solver option")
        if not isinstance(v, list) or len(v) != steps:
            raise ConfigError(f"grid file {path!r}: step_options {k!r} needs a list of {steps} values (one per step)")
    return spec.check_options({**cfg.solver_options, **per})


def cell_grid(spec, sde, steps: int, t_end: float, schedule: str, options: dict):
    """The solver's grid: ``make_grid``, or the spec's own ``grid_for`` (diffusers schedulers: sdebench's
    schedule checked against the class, or ``native``, the scheduler's own spacing)."""
    grid_for = getattr(spec, "grid_for", None)
    if grid_for is not None:
        return grid_for(sde, steps, t_end, schedule, options)
    if schedule == "native":
        raise ConfigError(f"schedule 'native' (a diffusers scheduler's own spacing) applies only to "
                          f"diffusers:<Class> solvers, not {spec.name!r}")
    return make_grid(sde, steps, t_end, schedule)


def _model(problem, sde, cfg: CellConfig) -> Model:
    """The counted model of a cell: the target's closed forms, guided if asked, perturbed if asked."""
    base = guided_model(problem, sde, cfg.guidance, cfg.scale, cfg.class_label, cfg.cfg_param, cfg.cfg_batched)
    return perturb_model(base, problem, sde, cfg.score_error)


def _cond(problem, cfg: CellConfig):
    """Law a cell starts from (at T) and is judged against: p(x | c) for guided cells, else the target."""
    return problem if cfg.guidance == "none" else labelled(problem).class_mixture(cfg.class_label)


def _initial(problem, sde, cfg: CellConfig, noise: NoiseSource, dtype, device):
    n = cfg.n_samples
    if cfg.init == "prior":
        return (sde.prior_std() * noise.standard_normal(("init-prior",))).to(dtype)
    u = 0.5 * torch.special.erfc(-noise.standard_normal(("init-u",))[:, 0].double().cpu() / math.sqrt(2))
    return problem.sample_t(n, sde.T, sde, z0=noise.standard_normal(("init-z0",)), u=u,
                            z=noise.standard_normal(("init-z",)), dtype=dtype, device=device)


def is_timing(column: str) -> bool:
    """True for a row's timing columns (``wall_s``, ``metrics_s``, ``time_<metric>``): they differ between runs
    of the same cell; every other column of a row is reproducible."""
    return column in ("wall_s", "metrics_s") or column.startswith("time_")


def floor_flags(row: dict) -> dict:
    """<metric>_at_floor: the value is not significantly above its null distribution (below the mean of the
    null draws + 2 standard deviations; metrics whose null is a standard error: below 3 of them); see
    sdebench.stats.at_floor."""
    return {f"{m}_at_floor": bool(at_floor(row[m], row[f"{m}_null"], null_sd=row.get(f"{m}_null_sd")))
            for m in METRICS if m in row and f"{m}_null" in row and not own_floor(m)}


def _versions(device: str) -> dict:
    return {"sdebench_version": __version__, "torch_version": torch.__version__, "git_commit": git_commit(),
            "device_name": _device_name(device)}


def _device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return platform.processor() or platform.machine()


def run_cell(cfg: CellConfig, raise_config_errors: bool = True) -> dict:
    """Run one cell and return its row. ConfigErrors raise (bad input) unless told otherwise; every
    other failure becomes a row with status 'error'; non-finite output gives status 'diverged'."""
    row = cfg.key()
    row.pop("solver_options")
    row["solver_options"] = ",".join(f"{k}={v}" for k, v in sorted(cfg.solver_options.items()))
    row.pop("T")
    try:
        problem, sde, spec, steps, grid, options, t_end = prepare(cfg)
    except ConfigError as exc:
        if raise_config_errors:
            raise
        row.update(status="error", error=str(exc))
        return row
    row.update(T=sde.T, t_end=t_end, steps=steps, kind=spec.kind_for(options))
    dtype, device = _dtype(cfg.dtype), torch.device(cfg.device)
    try:
        model = _model(problem, sde, cfg)
        noise = NoiseSource(cfg.seed, cfg.n_samples, (problem.d,), dtype=dtype, device=device)
        if cfg.crn_steps:
            noise.base_grid = make_grid(sde, cfg.crn_steps, t_end, cfg.schedule)
        x_T = _initial(_cond(problem, cfg), sde, cfg, noise, dtype, device)
        calls = cell_budget(cfg)
        run = FinalDenoise(spec) if cfg.final_denoise else spec
        t0 = time.perf_counter()
        with torch.no_grad():
            x0 = run.sample(model, x_T, grid, sde, noise, nfe=calls, **options)
        if x0.is_cuda:
            torch.cuda.synchronize()
        row["wall_s"] = time.perf_counter() - t0
        row["nfe"] = model.nfe
        row.update(getattr(spec, "row_columns", dict)())  # e.g. solver_dtype of a diffusers scheduler
        if not bool(torch.isfinite(x0).all()):
            row.update(status="diverged", error="sampler produced non-finite values")
            return row
        x0 = x0.to(torch.float64).cpu()
        ctx = MetricContext(cfg=cfg, problem=problem, sde=sde, spec=spec, options=options, grid=grid, t_end=t_end,
                            x_T=x_T, x0=x0, solver=run, make_model=lambda: _model(problem, sde, cfg), nfe=calls,
                            model_nfe=model.nfe, noise=noise)
        if ctx.is_image:  # image problems: their own metrics (metrics/images.py), no floor flags
            t1 = time.perf_counter()
            row.update(compute_metrics(ctx))
            row["metrics_s"] = time.perf_counter() - t1
            row.update(status="ok", error="")
            return row
        t1 = time.perf_counter()
        ctx.cond = _cond(problem, cfg)
        ctx.target = ctx.cond.marginal(t_end, sde) if cfg.reference == "t_end" else ctx.cond
        row.update(compute_metrics(ctx, stages=range(GUIDED)))
        if ctx.guided:
            row.update(guidance_columns(cfg, model.nfe))
        row.update(compute_metrics(ctx, stages=range(GUIDED, IMAGE + 1)))
        row.update(floor_flags(row))
        row["metrics_s"] = time.perf_counter() - t1  # wall time of the metrics (cached parts included when paid)
        row.update(status="ok", error="")
    except ConfigError:
        raise
    except Exception as exc:  # a failed cell is a row, not a crash
        row.update(status="error", error=f"{type(exc).__name__}: {exc}")
    finally:
        row.update(_versions(cfg.device))
    return row
