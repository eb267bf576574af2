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
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import torch

from . import __version__
from .errors import ConfigError, NFEBudgetError
from .exact import output_gaussian
from .guidance import check_guidance, guidance_cost, guided_metrics, guided_model, solver_calls
from .metrics import gaussian as gx
from .metrics import samples as sm
from .model import Model
from .noise import NoiseSource
from .perturb import check_score_error, perturb_model
from .plugins import load_metric_plugins
from .problems.labelled import labelled
from .schedules import make_grid
from .sde import get_sde

__all__ = ["CellConfig", "run_cell", "prepare", "DEFAULT_METRICS", "METRICS", "crn_base_steps", "cell_budget",
           "FinalDenoise", "NULL_DRAWS", "null_draws"]

# metric name -> one-line description (shown by `sdebench list`)
METRICS = {
    "w2_exact": "exact W2 of the solver's Gaussian output law vs the target (Gaussian targets only)",
    "kl_exact": "exact KL(output || target), stable for tiny errors (Gaussian targets only)",
    "tv_exact": "TV of the output law: exact in 1-D, Monte Carlo with std. error in d-D (Gaussian targets)",
    "w1": "exact W1 between the 1-D samples and the target (quantile function)",
    "w2": "exact W2 between the 1-D samples and the target (quantile function)",
    "sliced_w2": "sliced W2, exact 1-D projections of the target, 32 fixed directions",
    "emd_w2": "W2 between the samples and an independent target sample (POT, n <= 10,000)",
    "kl": "KL(q || p): exact change-of-variables density for ODE solvers (d <= 64), binned KDE for SDE (d <= 2)",
    "tv": "TV(q, p): exact change-of-variables density for ODE solvers (d <= 64), binned KDE for SDE (d <= 2)",
    "mmd": "MMD, Gaussian kernel, closed-form kernel mean against the mixture (unbiased, any d)",
    "sinkhorn": "debiased Sinkhorn divergence vs an independent target sample (POT, n <= 10,000)",
    "mode_mass": "max over modes of |sampled mass - weight| (responsibilities; mixtures with K >= 2)",
    "fd": "image problems: Frechet distance in a small classifier's features vs the held-out split",
    "path_err": "ODE solvers: RMS vs a dopri5 solve from the same x_T (images: per pixel, rtol 1e-8; "
                "guided cells: RMS of |x - x_ref|, rtol = atol = 1e-10); rows carry path_ref_rtol and "
                "path_ref_err, the reference's distance to a 10x looser check solve (a conservative estimate "
                "of its own error)",
    "class_mass": "guided cells: fraction of samples the exact classifier puts in the target class (+ null)",
    "png": "image problems: save a PNG grid of 64 samples under $SDEBENCH_GRID_DIR (default runs/grids/)",
}
DEFAULT_METRICS = ("w2_exact", "kl_exact", "tv_exact", "w1", "w2", "sliced_w2", "emd_w2", "kl", "tv", "mmd",
                   "mode_mass")
# third-party sample metrics (entry points in the group sdebench.metrics, contract in sdebench.plugins)
METRIC_PLUGINS = load_metric_plugins(METRICS)
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
    from .problems import get_problem
    from .solvers import get_solver

    problem = get_problem(cfg.problem)
    sde = get_sde(cfg.sde, T=cfg.T)
    spec = get_solver(cfg.solver)
    spec.check_sde(sde)
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
    grid = make_grid(sde, steps, t_end, cfg.schedule)
    unknown = [m for m in cfg.metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
    return problem, sde, spec, steps, grid, options, t_end


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


def _init_law(problem, sde, init: str):
    """Mean and covariance of x_T (Gaussian targets)."""
    if init == "prior":
        return torch.zeros(problem.d, dtype=torch.float64), sde.prior_std() ** 2 * torch.eye(problem.d,
                                                                                          dtype=torch.float64)
    m, S = problem.moments(sde.T, sde)
    return m, S


def _target_sample(problem, n: int, seed: int, stream: int) -> torch.Tensor:
    # mod 2^64, which manual_seed accepts: any seed up to 2^63 - 1 (the value is unchanged for seeds < 2^44)
    g = torch.Generator().manual_seed((1_000_003 * (seed + 1) + 7919 * stream) % 2**64)
    return problem.sample(n, generator=g)


# ---- Monte Carlo floors ---------------------------------------------------------------------------
NULL_DRAWS = 8  # independent exact-target draws behind every <metric>_null
_NULL_CACHE: OrderedDict = OrderedDict()
_NULL_CACHE_SIZE = 512


def _law_key(law) -> tuple:
    return tuple(hash(t.detach().to(torch.float64).cpu().numpy().tobytes()) for t in (law.weights, law.means, law.covs))


def null_draws(target, n: int, name: str, fn, paired: bool = False, extra=()) -> list:
    """``fn`` on ``NULL_DRAWS`` independent exact samples of ``target`` of size n (``fn(y, ref)`` with a second,
    independent sample when ``paired``): the null distribution of a statistic. Draw j uses the generator
    seeds of seed j (streams 1 and 2), so the draws do not depend on the cell; cached per (target, n,
    statistic, extra) for the process, since they do not depend on the solver either."""
    key = (name, _law_key(target), n, extra)
    vals = _NULL_CACHE.get(key)
    if vals is None:
        vals = []
        for j in range(NULL_DRAWS):
            y = _target_sample(target, n, j, stream=1)
            vals.append(fn(y, _target_sample(target, n, j, stream=2)) if paired else fn(y))
        _NULL_CACHE[key] = vals
        if len(_NULL_CACHE) > _NULL_CACHE_SIZE:
            _NULL_CACHE.popitem(last=False)
    else:
        _NULL_CACHE.move_to_end(key)
    return vals


def _null_columns(name: str, vals) -> dict:
    """``<name>_null`` (mean of the draws) and ``<name>_null_sd`` (their standard deviation)."""
    v = torch.tensor([float(a) for a in vals], dtype=torch.float64)
    return {f"{name}_null": float(v.mean()), f"{name}_null_sd": float(v.std()) if len(v) > 1 else math.nan}


def sample_metrics(problem, x: torch.Tensor, metrics, seed: int) -> dict:
    """Sample metrics of ``x`` against ``problem`` and, for each, its null distribution at the same n."""
    row: dict = {}
    n = x.shape[0]
    for name in metrics:
        if name in ("w1", "w2"):
            if problem.d != 1:
                continue
            fn = sm.w1_exact if name == "w1" else sm.w2_exact_1d
            w, m, s = problem.weights, problem.means[:, 0], torch.sqrt(problem.covs[:, 0, 0])
            row[name] = fn(x[:, 0], w, m, s)
            row.update(_null_columns(name, null_draws(problem, n, name,
                                                      lambda y, f=fn, a=(w, m, s): f(y[:, 0], *a))))
        elif name == "sliced_w2":
            row[name] = sm.sliced_w2(x, problem, seed=seed)
            # the directions depend on the seed (1-D: a single direction, the same for every seed)
            key = (seed if problem.d > 1 else 0,)
            row.update(_null_columns(name, null_draws(problem, n, name, lambda y: sm.sliced_w2(y, problem, seed=seed),
                                                      extra=key)))
        elif name == "emd_w2":
            if n > 10_000:
                continue
            row[name] = sm.emd_w2(x, _target_sample(problem, n, seed, stream=2))
            row.update(_null_columns(name, null_draws(problem, n, name, sm.emd_w2, paired=True)))
        elif name in METRIC_PLUGINS:  # entry-point metrics (sdebench.plugins): compute(x, target, seed)
            plugin = METRIC_PLUGINS[name]
            row[name] = plugin.compute(x, problem, seed)
            row.update(_null_columns(name, null_draws(problem, n, name, lambda y, p=plugin: p.compute(y, problem, seed),
                                                      extra=(seed,))))
    return row


def honest_metrics(problem, target, sde, spec, grid, cfg: CellConfig, options, x_T, x0) -> dict:
    """kl, tv (density or KDE), mmd, sinkhorn, mode_mass: each with its null (sdebench.metrics.*)."""
    from .metrics import density as dn
    from .metrics import stochastic as st

    out: dict = {}
    wanted = set(cfg.metrics)
    n = x0.shape[0]
    if wanted & {"kl", "tv"}:
        if spec.deterministic(options) and problem.d <= dn.MAX_DIM:
            model = _model(problem, sde, cfg)
            logp0 = dn.init_log_prob(_cond(problem, cfg), sde, cfg.init, x_T)
            run = FinalDenoise(spec) if cfg.final_denoise else spec
            out.update(dn.density_metrics(run, model, x_T.to(torch.float64).cpu(), grid, sde, logp0, target,
                                          nfe=cell_budget(cfg), options=options,
                                          init_moments=dn.init_moments(_cond(problem, cfg), sde, cfg.init)))
        elif problem.d <= 2:
            a = st.kde_tv_kl(x0, target)
            nulls = null_draws(target, n, "kde", lambda y: st.kde_tv_kl(y, target))
            out.update(kl=a["kde_kl"], tv=a["kde_tv"])
            out.update(_null_columns("kl", [b["kde_kl"] for b in nulls]))
            out.update(_null_columns("tv", [b["kde_tv"] for b in nulls]))
        out = {k: v for k, v in out.items() if k.split("_")[0] in wanted}
    if "mmd" in wanted:
        a = st.mmd(x0, target)
        out.update(mmd=a["mmd"], mmd_se=a["mmd_se"])
        out.update(_null_columns("mmd", null_draws(target, n, "mmd",
                                                   lambda y: math.sqrt(abs(st.mmd(y, target)["mmd2"])))))
    if "mode_mass" in wanted and target.K >= 2:
        a = st.mode_mass_error(x0, target)
        out.update(mode_mass=a["mode_mass"], mode_mass_se=a["mode_mass_se"])
        out.update(_null_columns("mode_mass", null_draws(target, n, "mode_mass",
                                                         lambda y: st.mode_mass_error(y, target)["mode_mass"])))
    if "sinkhorn" in wanted and n <= 10_000:
        reg = st.sinkhorn_reg(target)
        out.update(sinkhorn=st.sinkhorn(x0, _target_sample(target, n, cfg.seed, stream=2), reg))
        out.update(_null_columns("sinkhorn", null_draws(target, n, "sinkhorn", lambda y, r: st.sinkhorn(y, r, reg),
                                                        paired=True)))
    return out


def floor_flags(row: dict) -> dict:
    """<metric>_at_floor: the value is not significantly above its null distribution (below the mean of the
    null draws + 2 standard deviations; metrics whose null is a standard error: below 3 of them); see
    sdebench.stats.at_floor."""
    from .stats import at_floor

    return {f"{m}_at_floor": bool(at_floor(row[m], row[f"{m}_null"], null_sd=row.get(f"{m}_null_sd")))
            for m in METRICS if m in row and f"{m}_null" in row}


def exact_metrics(problem, target, sde, spec, grid, cfg: CellConfig, options, nfe) -> dict:
    """w2/kl/tv of the solver's exact output law against ``target`` (Gaussian targets, fixed-grid solvers)."""
    if not problem.is_gaussian or not spec.affine(options) or cfg.guidance != "none":
        return {}
    wanted = [m for m in ("w2_exact", "kl_exact", "tv_exact") if m in cfg.metrics]
    if not wanted:
        return {}
    m_T, P_T = _init_law(problem, sde, cfg.init)
    base = make_grid(sde, cfg.crn_steps, grid[-1].item(), cfg.schedule) if cfg.crn_steps else None

    def make_model():
        return _model(problem, sde, cfg)

    run = FinalDenoise(spec) if cfg.final_denoise else spec
    mean, cov = output_gaussian(run, make_model, sde, grid, m_T, P_T, nfe=nfe, options=options, base_grid=base)
    mu, S = target.means[0], target.covs[0]
    out: dict = {}
    if not (torch.isfinite(mean).all() and torch.isfinite(cov).all()):
        return {m: math.nan for m in wanted}
    if "w2_exact" in wanted:
        out["w2_exact"] = gx.w2(mean, cov, mu, S)
    if "kl_exact" in wanted:
        try:
            out["kl_exact"] = gx.kl(mean, cov, mu, S)
        except torch.linalg.LinAlgError:
            out["kl_exact"] = math.nan
    if "tv_exact" in wanted:
        try:
            out["tv_exact"], out["tv_exact_se"] = gx.tv(mean, cov, mu, S, seed=cfg.seed)
        except (torch.linalg.LinAlgError, ValueError):
            out["tv_exact"], out["tv_exact_se"] = math.nan, math.nan
    return out


def _image_cfg(cfg: CellConfig) -> CellConfig:
    """With final_denoise, image cells skip path_err (it compares with the ODE solution at t_end, not with
    its denoised value)."""
    if not cfg.final_denoise:
        return cfg
    from dataclasses import replace

    from .metrics.images import IMAGE_METRICS

    names = [m for m in IMAGE_METRICS if m != "png"] if tuple(cfg.metrics) == tuple(DEFAULT_METRICS) else \
        list(cfg.metrics)
    return replace(cfg, metrics=tuple(m for m in names if m != "path_err"))


def _versions(device: str) -> dict:
    from .provenance import git_commit

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
        if not bool(torch.isfinite(x0).all()):
            row.update(status="diverged", error="sampler produced non-finite values")
            return row
        x0 = x0.to(torch.float64).cpu()
        if getattr(problem, "is_image", False):  # image problems judge themselves (metrics/images.py)
            with torch.no_grad():
                row.update(problem.metrics(x0, x_T, sde, t_end, spec.kind_for(options), _image_cfg(cfg)))
            row.update(status="ok", error="")
            return row
        cond = _cond(problem, cfg)
        target = cond.marginal(t_end, sde) if cfg.reference == "t_end" else cond
        row.update(sample_metrics(target, x0, cfg.metrics, cfg.seed))
        with torch.no_grad():
            row.update(exact_metrics(problem, target, sde, spec, grid, cfg, options, calls))
        row.update(honest_metrics(problem, target, sde, spec, grid, cfg, options, x_T, x0))
        if cfg.guidance != "none":
            row.update(guided_metrics(problem, sde, cfg, spec, options, x_T, x0, t_end, model.nfe))
        row.update(floor_flags(row))
        row.update(status="ok", error="")
    except ConfigError:
        raise
    except Exception as exc:  # a failed cell is a row, not a crash
        row.update(status="error", error=f"{type(exc).__name__}: {exc}")
    finally:
        row.update(_versions(cfg.device))
    return row
