"""diffusers schedulers as sdebench solvers: ``--solver diffusers:<SchedulerClass> -o key=value ...``.

Any diffusers scheduler class with ``set_timesteps`` and ``step`` runs on the VP SDE through the shared
solver signature; its configuration keywords are the solver's options (``-o algorithm_type=dpmsolver++``),
plus ``eta`` where its ``step`` takes one (DDIM). The model call goes through sdebench's counted
:class:`~sdebench.model.Model`, so the NFE is counted by the harness and checked against the budget.

**The VP SDE as diffusers' discrete schedule.** sdebench's VP SDE (linear beta in [0.1, 20], T = 1) has
alpha_bar(t) = alpha_t^2 = exp(-(0.1 t + 9.95 t^2)). A scheduler is built from a table of N alpha_bar values
at increasing times tt[0] < ... < tt[N-1]: ``trained_betas`` beta_j = 1 - alpha_bar(tt[j]) / alpha_bar(tt[j-1])
(alpha_bar(tt[-1]) = 1), and the tables diffusers derives from them in float32 (``betas``, ``alphas``,
``alphas_cumprod``, ``alpha_t``, ``sigma_t``, ``lambda_t``, ``sigmas``) are replaced by their float64 values,
so the table is exact at every node. Timestep tau (an index into the table, fractional for the schedulers
that interpolate) is the continuous time t(tau) = tt[tau], linearly interpolated between nodes. The
model is asked about x at t(tau), in the parametrization of ``prediction_type`` (epsilon, sample or
v_prediction: one evaluation in each case). diffusers' sigma is sigma_t / alpha_t; a scheduler whose
sample lives in sigma space (Euler, Heun, LMS, ...: ``scale_model_input`` divides by sqrt(sigma^2 + 1))
starts from x_T * sqrt(sigma_0^2 + 1) and its output is divided by sqrt(sigma_last^2 + 1).

* ``--schedule native``: the scheduler's own spacing on the training table tt[i] = (i + 1) / N,
  N = ``num_train_timesteps`` (default 1000): timestep 999 is t = 1 = T and timestep 0 is t = 1e-3, the VP
  default t_end. The scheduler then ends where it ends: at sigma = 0 (t = 0, the data p_0) with
  ``final_sigmas_type="zero"`` or DDIM's ``set_alpha_to_one``, at t = 1e-3 with "sigma_min"; the row's
  t_end is that time and the output is judged against p_{t_end}. x_T is drawn from p_T at T = 1 and handed
  to the scheduler at its first timestep, as a diffusers pipeline does (``leading`` spacing starts below
  T: timestep 900 at 10 steps, t = 0.901; that mismatch is part of what the row measures). The harness
  grid is T followed by the scheduler's later levels (the times of its sigmas, or of its timesteps where it
  has no sigmas) and its final time; the model is asked at t(timestep), which differs from the level where
  the scheduler rounds its timesteps (use_karras_sigmas, use_lu_lambdas).
* any sdebench schedule (uniform, logsnr, edm, quadratic): the grid T = g_S > ... > g_0 = t_end itself
  becomes the training table (N = S + 1, tt[j] = g_j) and the scheduler is asked for the timesteps
  S, S - 1, ..., 1 (``set_timesteps(timesteps=...)`` where the class takes custom timesteps; otherwise the
  ``timestep_spacing`` / ``steps_offset`` that produces exactly them, e.g. DDIM's "leading" with offset 1),
  ending at table entry 0 = t_end (``final_sigmas_type="sigma_min"`` is set where the class has it). Each
  model call is then at a grid node. A class that cannot be driven on the grid (no custom timesteps, no
  spacing that gives them, or an end other than t_end) is a one-line ConfigError naming it; options that
  set the scheduler's own spacing (``use_karras_sigmas``, ``timestep_spacing``, ...) need ``--schedule
  native``.

**Noise.** The module-level ``randn_tensor`` of the scheduler's module is replaced during the solve by
sdebench's keyed noise (``noise.normal("diffusers", k)`` for the k-th draw), so stochastic schedulers
(DDPM, EulerAncestral, sde-dpmsolver++, DDIM with eta > 0) are seeded by the cell seed and affine in
the injected noise (:mod:`sdebench.exact` applies).

**Capabilities.** Deterministic iff a probe run draws no noise; affine iff neither ``clip_sample`` nor
``thresholding`` (both clamp the x0 prediction: DDIM's and DDPM's defaults clip to [-1, 1]). Rows are
independent (no batch coupling).

**dtype.** The sample is float64 where the scheduler keeps it; :meth:`DiffusersSpec.row_columns` reports
``solver_dtype``: "float64", "float32" (the scheduler casts the sample to float32 inside ``step``, as
DPM-Solver and UniPC do) or "float32-coefficients" (float64 sample, but the step coefficients are read
from float32 tables the class rebuilds in ``set_timesteps``).

diffusers is imported on first use of a ``diffusers:`` solver, never when the registry loads.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import sys
import warnings

import torch

from sdebench.errors import ConfigError, NFEBudgetError
from sdebench.model import convert
from sdebench.schedules import make_grid
from sdebench.sde import get_sde

from .base import FACTORIES, Rule, SolverSpec

__all__ = ["DiffusersSpec", "diffusers_solver", "PREFIX", "ADAPTER_OWNED", "SPACING_OPTIONS"]

PREFIX = "diffusers"
# configuration keys the adapter sets from the SDE (not options)
ADAPTER_OWNED = ("beta_start", "beta_end", "beta_schedule", "trained_betas")
# keys that choose the scheduler's own time spacing: only with --schedule native
SPACING_OPTIONS = ("timestep_spacing", "steps_offset", "use_karras_sigmas", "use_lu_lambdas",
                   "use_exponential_sigmas", "use_beta_sigmas", "use_flow_sigmas", "interpolation_type",
                   "timestep_type", "rescale_betas_zero_snr", "flow_shift", "use_dynamic_shifting")
_PREDICTIONS = ("epsilon", "sample", "v_prediction")
_SPECS: dict[str, DiffusersSpec] = {}
_NATIVE = "native"


def _diffusers():
    try:
        import diffusers
    except ImportError:
        raise ConfigError("diffusers: solvers need the diffusers package: pip install 'sdebench[peers]'") from None
    diffusers.utils.logging.set_verbosity_error()  # its config-change notices would repeat at every build
    return diffusers


def _scheduler_class(clsname: str):
    diffusers = _diffusers()
    cls = None
    if clsname and clsname.isidentifier():
        try:
            cls = getattr(diffusers, clsname, None)
        except Exception:
            cls = None
    if not isinstance(cls, type):
        names = sorted(n for n in dir(diffusers) if n.endswith("Scheduler") and not n.startswith("Flax"))
        raise ConfigError(f"unknown diffusers scheduler class {clsname!r}; valid: {', '.join(names)}")
    if not (callable(getattr(cls, "set_timesteps", None)) and callable(getattr(cls, "step", None))):
        raise ConfigError(f"diffusers class {clsname!r} has no set_timesteps/step: it is not a scheduler")
    return cls


def _vp_alpha_bar(sde, t: torch.Tensor) -> torch.Tensor:
    return torch.exp(2 * sde.log_alpha(t.to(torch.float64)))


class _Table:
    """The discrete training table: times tt (increasing, float64) and alpha_bar(tt)."""

    def __init__(self, sde, tt: torch.Tensor):
        self.tt = tt.to(torch.float64)
        self.ab = _vp_alpha_bar(sde, self.tt)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), self.ab[:-1]])
        self.betas = 1 - self.ab / prev
        self.sigmas = torch.sqrt((1 - self.ab) / self.ab)  # diffusers' sigma = sigma_t / alpha_t

    def t_of(self, tau: float) -> float:
        n = len(self.tt)
        if not (-1e-6 <= tau <= n - 1 + 1e-6):
            raise ConfigError(f"the scheduler asked for timestep {tau:g}, outside its table [0, {n - 1}]")
        tau = min(max(tau, 0.0), n - 1.0)
        lo = int(math.floor(tau))
        hi = min(lo + 1, n - 1)
        w = tau - lo
        return float(self.tt[lo] * (1 - w) + self.tt[hi] * w)


def _sigma_to_t(sde, sigma: float) -> float:
    """Continuous VP time of diffusers' sigma = sigma_t / alpha_t (0 for sigma = 0)."""
    if sigma <= 0:
        return 0.0
    return float(sde.t_of_lambda(torch.tensor(-math.log(sigma), dtype=torch.float64)))


def _ab_to_t(sde, ab: float) -> float:
    if ab >= 1:
        return 0.0
    return _sigma_to_t(sde, math.sqrt((1 - ab) / ab))


class _NoisePatch:
    """Replace ``randn_tensor`` in the scheduler's module by sdebench's keyed noise (or count the draws)."""

    def __init__(self, cls, noise=None):
        self.module = sys.modules[cls.__module__]
        self.noise, self.draws = noise, 0

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None, **kw):
        k, self.draws = self.draws, self.draws + 1
        if self.noise is None:
            return torch.zeros(shape, dtype=dtype or torch.float32, device=device)
        z = self.noise.normal(PREFIX, k)
        if tuple(z.shape) != tuple(shape):
            raise RuntimeError(f"scheduler asked for noise of shape {tuple(shape)}, the batch is {tuple(z.shape)}")
        return z.to(dtype=dtype or z.dtype, device=device or z.device)

    @contextlib.contextmanager
    def active(self):
        had = hasattr(self.module, "randn_tensor")
        old = getattr(self.module, "randn_tensor", None)
        self.module.randn_tensor = self
        try:
            yield self
        finally:
            if had:
                self.module.randn_tensor = old
            else:
                del self.module.randn_tensor


class DiffusersSpec(SolverSpec):
    """A diffusers scheduler class as a solver spec (built by :func:`diffusers_solver`, never registered
    in SOLVERS, so registry-wide tests and listings see only sdebench's own solvers)."""

    cls: type = None
    step_kwargs: tuple = ()
    _probe_cache: dict

    # ---- options ------------------------------------------------------------------------------
    def check_options(self, options: dict) -> dict:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ConfigError(f"solver {self.name!r} has no option(s) {unknown}; valid: {', '.join(self.options)}")
        merged = dict(self.options)
        for k, v in options.items():
            merged[k] = self._coerce(k, v, self.options[k])
        pred = merged.get("prediction_type", "epsilon")
        if pred not in _PREDICTIONS:
            raise ConfigError(f"solver {self.name!r} option prediction_type={pred!r}: valid {', '.join(_PREDICTIONS)}")
        key = self._key(merged)
        if key not in self._probe_cache:
            try:
                self._build(merged, _Table(_VP, torch.arange(1, 1001, dtype=torch.float64) / 1000))
            except Exception as exc:
                raise ConfigError(f"solver {self.name!r} rejects options {self._shown(options)}: "
                                  f"{' '.join(str(exc).split())}") from None
            self._probe_cache[key] = True
        return merged

    def _coerce(self, k, v, default):
        bad = ConfigError(f"solver {self.name!r} option {k}={v!r} must be {type(default).__name__} "
                          f"(default {default!r})")
        if isinstance(default, bool):
            if isinstance(v, bool):
                return v
            if str(v).lower() in ("true", "1", "yes"):
                return True
            if str(v).lower() in ("false", "0", "no"):
                return False
            raise bad
        if isinstance(default, int) and not isinstance(default, bool):
            if isinstance(v, bool):
                raise bad
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if isinstance(v, int):
                return v
            try:
                return int(str(v))
            except ValueError:
                raise bad from None
        if isinstance(default, float):
            if isinstance(v, bool):
                raise bad
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise bad from None
            if not math.isfinite(v) and math.isfinite(default):
                raise ConfigError(f"solver {self.name!r} option {k}={v!r} must be finite")
            return v
        if isinstance(default, str):
            if not isinstance(v, str):
                raise bad
            return v
        if isinstance(default, (list, tuple)):
            if isinstance(v, str):
                v = [p.strip() for p in v.split(",") if p.strip()]
                v = [int(p) if p.lstrip("-").isdigit() else p for p in v]
            if not isinstance(v, (list, tuple)):
                raise bad
            return list(v)
        if default is None and isinstance(v, str) and v.lower() == "none":
            return None
        return v  # default None: diffusers validates it when the scheduler is built

    @staticmethod
    def _shown(options: dict) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(options.items())) or "(defaults)"

    @staticmethod
    def _key(opts: dict):
        return tuple(sorted((k, repr(v)) for k, v in opts.items()))

    # ---- building the scheduler ---------------------------------------------------------------
    def _config(self, opts: dict) -> dict:
        return {k: v for k, v in opts.items() if k not in self.step_kwargs}

    def _build(self, opts: dict, table: _Table, **overrides):
        config = self._config(opts)
        config.update(overrides)
        config["num_train_timesteps"] = len(table.tt)
        config["trained_betas"] = table.betas.tolist()
        with warnings.catch_warnings():  # deprecation notices (algorithm_type="dpmsolver") at every build
            warnings.simplefilter("ignore", FutureWarning)
            sched = self.cls(**config)
        # float64 tables (diffusers builds them in float32 from trained_betas)
        sched.betas = table.betas.clone()
        sched.alphas = 1.0 - table.betas
        sched.alphas_cumprod = table.ab.clone()
        for name, value in (("alpha_t", torch.sqrt(table.ab)), ("sigma_t", torch.sqrt(1 - table.ab))):
            if isinstance(getattr(sched, name, None), torch.Tensor):
                setattr(sched, name, value)
        if isinstance(getattr(sched, "lambda_t", None), torch.Tensor):
            sched.lambda_t = 0.5 * (torch.log(table.ab) - torch.log1p(-table.ab))
        if hasattr(sched, "final_alpha_cumprod") and isinstance(sched.final_alpha_cumprod, torch.Tensor):
            if not getattr(sched.config, "set_alpha_to_one", True):
                sched.final_alpha_cumprod = table.ab[0].clone()
        return sched

    def _set_params(self):
        return inspect.signature(self.cls.set_timesteps).parameters

    def _calls(self, sched) -> list[float]:
        return [float(t) for t in sched.timesteps]

    def _is_sigma_space(self, sched) -> bool:
        t0 = sched.timesteps[0]
        one = torch.ones(1, dtype=torch.float64)
        probe = sched.scale_model_input(one, t0)
        sched._step_index = None  # scale_model_input may have started the step counter
        if hasattr(sched, "is_scale_input_called"):
            sched.is_scale_input_called = False
        return abs(float(probe[0]) - 1.0) > 1e-12

    def _final_t(self, sde, sched, table: _Table, sigma_space: bool) -> float:
        """Continuous time of the scheduler's output: its last sigma, or the alpha_bar of its last step's
        target timestep (alpha_bar = 1, t = 0, past the table's start for DDPM; final_alpha_cumprod for DDIM)."""
        sig = getattr(sched, "sigmas", None)
        if isinstance(sig, torch.Tensor) and sig.numel() == len(sched.timesteps) + 1:
            return _sigma_to_t(sde, float(sig[-1]))
        last = sched.timesteps[-1]
        if callable(getattr(sched, "previous_timestep", None)):
            prev = float(sched.previous_timestep(last))
        else:
            prev = float(last) - sched.config.num_train_timesteps // sched.num_inference_steps
        if prev >= 0:
            return table.t_of(prev)
        fac = getattr(sched, "final_alpha_cumprod", None)
        return _ab_to_t(sde, float(fac)) if fac is not None else 0.0

    def _setup(self, sde, steps: int, opts: dict, schedule: str, t_end: float | None = None, grid=None):
        """(scheduler, table, sigma_space, model-call times, final time) for ``steps`` scheduler steps."""
        if schedule == _NATIVE:
            n_train = int(opts.get("num_train_timesteps", 1000))
            table = _Table(sde, torch.arange(1, n_train + 1, dtype=torch.float64) / n_train)
            sched = self._build(opts, table)
            sched.set_timesteps(steps)
            return self._finish(sde, sched, table)
        set_here = [k for k in SPACING_OPTIONS if k in opts and k in self._user_set(opts)]
        if set_here:
            raise ConfigError(f"solver {self.name!r} option {set_here[0]}={opts[set_here[0]]!r} sets the scheduler's "
                              f"own spacing: it applies only to --schedule native (schedule {schedule!r} is "
                              "sdebench's grid)")
        if opts.get("final_sigmas_type") == "zero" and "final_sigmas_type" in self._user_set(opts):
            raise ConfigError(f"solver {self.name!r} option final_sigmas_type='zero' ends at sigma = 0, not at the "
                              "grid's t_end: it applies only to --schedule native")
        if grid is None:
            raise ValueError("grid mode needs the grid")
        g = grid.to(torch.float64).flip(0)  # t_end = g_0 < ... < g_S = T
        table = _Table(sde, g)
        want = [float(j) for j in range(steps, 0, -1)]
        over = {"final_sigmas_type": "sigma_min"} if "final_sigmas_type" in self.options else {}
        params = self._set_params()
        tried = []
        if "timesteps" in params:
            try:
                sched = self._build(opts, table, **over)
                sched.set_timesteps(timesteps=[int(w) for w in want])
                tried.append(("timesteps=", sched))
            except Exception as exc:
                tried.append((f"timesteps= ({' '.join(str(exc).split())})", None))
        if "timestep_spacing" in self.options:
            for spacing in ("leading", "trailing", "linspace"):
                for offset in (0, 1):
                    extra = dict(over, timestep_spacing=spacing)
                    if "steps_offset" in self.options:
                        extra["steps_offset"] = offset
                    elif offset:
                        continue
                    try:
                        sched = self._build(opts, table, **extra)
                        sched.set_timesteps(steps)
                        tried.append((f"timestep_spacing={spacing!r}, steps_offset={offset}", sched))
                    except Exception:
                        continue
        for _how, sched in tried:
            if sched is None:
                continue
            s, table_, sigma_space, calls, t_fin = self._finish(sde, sched, table)
            taus = self._calls(s)
            distinct = [c for i, c in enumerate(taus) if i == 0 or c != taus[i - 1]]
            if len(distinct) == len(want) and all(abs(a - b) < 1e-3 for a, b in zip(distinct, want)) \
                    and abs(t_fin - float(g[0])) <= 1e-6 * max(1.0, float(g[0])):
                return s, table_, sigma_space, calls, t_fin
        raise ConfigError(f"solver {self.name!r} cannot run on sdebench's {schedule!r} grid (its set_timesteps takes "
                          "no timesteps= and no timestep spacing gives a model call at every grid node, ending at "
                          "t_end): it applies only to --schedule native")

    def _user_set(self, opts: dict) -> set:
        return {k for k, v in opts.items() if k in self.options and repr(v) != repr(self.options[k])}

    def _finish(self, sde, sched, table: _Table):
        sigma_space = self._is_sigma_space(sched)
        calls = [table.t_of(tau) for tau in self._calls(sched)]
        t_fin = self._final_t(sde, sched, table, sigma_space)
        near = float(table.tt[(table.tt - t_fin).abs().argmin()])
        if abs(t_fin - near) <= 1e-6 * near:
            t_fin = near  # a table node, recovered from float32 sigma: snap to the exact time
        # float64 sigmas where they are the table's values rounded to float32
        sig = getattr(sched, "sigmas", None)
        if isinstance(sig, torch.Tensor) and sig.dtype == torch.float32 and sig.dim() == 1:
            exact = torch.cat([table.sigmas, torch.zeros(1, dtype=torch.float64)])
            s64 = sig.to(torch.float64)
            idx = (s64[:, None] - exact[None, :]).abs().argmin(dim=1)
            near = exact[idx]
            if bool(((s64 - near).abs() <= 1e-6 * near.clamp(min=1e-30) + 1e-30).all()):
                sched.sigmas = near.clone()
        return sched, table, sigma_space, [float(c) for c in calls], t_fin

    # ---- budget and grids ---------------------------------------------------------------------
    def _calls_for_steps(self, steps: int) -> int:
        memo = self._probe_cache.setdefault("calls", {})
        if steps not in memo:
            table = _Table(_VP, torch.arange(1, 1001, dtype=torch.float64) / 1000)
            try:
                sched = self._build(self.options, table)
                sched.set_timesteps(steps)
            except Exception as exc:
                raise ConfigError(f"solver {self.name!r} fails to set {steps} steps: "
                                  f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None
            memo[steps] = len(sched.timesteps)
        return memo[steps]

    def steps_for_nfe(self, nfe: int) -> int:
        if isinstance(nfe, bool) or int(nfe) != nfe or nfe < 1:
            raise NFEBudgetError(f"NFE must be an integer >= 1, got {nfe}")
        nfe = int(nfe)
        for steps in sorted({nfe, (nfe + 1) // 2, max(nfe // 2, 1), max(nfe // 3, 1)}, reverse=True):
            if steps >= 1 and self._calls_for_steps(steps) == nfe:
                return steps
        raise NFEBudgetError(f"{self.name}: no number of steps gives NFE={nfe} (it makes "
                             f"{self._calls_for_steps(1)}, {self._calls_for_steps(2)}, {self._calls_for_steps(3)}, ... "
                             "model calls for 1, 2, 3, ... steps)")

    def nfe_for_steps(self, steps: int, grid=None) -> int:
        return self._calls_for_steps(steps)

    def accepted_budgets(self) -> str:
        return "the model calls of set_timesteps(steps): " + ", ".join(
            str(self._calls_for_steps(s)) for s in (1, 2, 3)) + ", ..."

    def grid_for(self, sde, steps: int, t_end: float, schedule: str, options: dict) -> torch.Tensor:
        """The harness grid: sdebench's schedule (validated against the class), or the native one."""
        self.check_sde(sde)
        opts = self.check_options(options)
        if schedule != _NATIVE:
            grid = make_grid(sde, steps, t_end, schedule)
            self._setup(sde, steps, opts, schedule, grid=grid)
            return grid
        sched, table, sigma_space, calls, t_fin = self._setup(sde, steps, opts, _NATIVE)
        sig = getattr(sched, "sigmas", None)
        if isinstance(sig, torch.Tensor) and sig.numel() == len(sched.timesteps) + 1:
            # the levels the scheduler integrates between (its sigmas); the model may be asked at other
            # times (use_lu_lambdas / use_karras_sigmas round the timesteps: several steps can share one)
            levels = []
            for v in sig[:-1].tolist():
                t = _sigma_to_t(sde, float(v))
                near = float(table.tt[(table.tt - t).abs().argmin()])
                levels.append(near if abs(t - near) <= 1e-6 * near else t)
        else:
            levels = calls
        distinct = [c for i, c in enumerate(levels) if i == 0 or c != levels[i - 1]]
        times = [float(sde.T)] + distinct[1:] + [t_fin]
        grid = torch.tensor(times, dtype=torch.float64)
        if not bool((grid[1:] < grid[:-1]).all()):
            raise ConfigError(f"solver {self.name!r} at {steps} steps: its model-call times {distinct} and final "
                              f"time {t_fin:g} are not strictly decreasing")
        return grid

    # ---- capabilities -------------------------------------------------------------------------
    def draws_noise(self, options: dict) -> bool:
        opts = self.check_options(dict(options or {}))
        key = ("noise",) + self._key(opts)
        if key not in self._probe_cache:
            patch = _NoisePatch(self.cls)
            outs = []
            for seed in (0, 1):  # noise drawn around randn_tensor (torch's global generator, torchsde) shows here
                sched = self._setup(_VP, 3, opts, _NATIVE)[0]
                x = torch.full((2, 1), 0.5, dtype=torch.float64)
                with patch.active(), warnings.catch_warnings(), torch.random.fork_rng():
                    warnings.simplefilter("ignore")
                    torch.manual_seed(seed)
                    for tau in sched.timesteps:
                        inp = sched.scale_model_input(x, tau)
                        x = sched.step(torch.zeros_like(inp), tau, x, **self._step_opts(opts)).prev_sample
                outs.append(x)
            if patch.draws == 0 and not torch.equal(outs[0], outs[1]):
                raise ConfigError(f"solver {self.name!r} draws noise outside diffusers' randn_tensor (e.g. a torchsde "
                                  "Brownian tree), which sdebench cannot seed: not supported")
            self._probe_cache[key] = patch.draws > 0
        return self._probe_cache[key]

    def _step_opts(self, opts: dict) -> dict:
        return {k: opts[k] for k in self.step_kwargs}

    def row_columns(self) -> dict:
        return {"solver_dtype": self.last_dtype} if getattr(self, "last_dtype", None) else {}

    def _sample_dtype(self, sched_factory, opts) -> str:
        """float64 / float32 / float32-coefficients. With a zero model output one step is linear in the
        sample, prev(s) = c s: a float64 path gives prev(1 + d) = (1 + d) prev(1) to rounding (1e-16); a
        float32 cast of the sample anywhere in the step loses d = 2^-30 (an error of order 1e-9)."""
        outs = []
        d = 2.0**-30
        for x in (1e-4, 1e-4 * (1.0 + d)):  # small: clip_sample / thresholding leave it alone
            sched = sched_factory()
            tau = sched.timesteps[0]
            s = torch.full((1, 1), x, dtype=torch.float64)
            with _NoisePatch(self.cls).active():
                inp = sched.scale_model_input(s, tau)
                outs.append(sched.step(torch.zeros_like(inp), tau, s, **self._step_opts(opts)).prev_sample)
        c = float(outs[0].reshape(-1)[0])
        err = abs(float(outs[1].reshape(-1)[0]) - (1 + d) * c)
        if outs[0].dtype != torch.float64 or err > 1e-6 * d * max(abs(c), 1e-300) + 1e-300 and err > 1e-14 * abs(c):
            return "float32"
        sched = sched_factory()
        for name in ("sigmas", "alphas_cumprod"):
            v = getattr(sched, name, None)
            if isinstance(v, torch.Tensor) and v.dtype == torch.float32:
                return "float32-coefficients"
        return "float64"


_VP = None  # the VP SDE used by option probes (set on first use; sdebench.sde is core)


def _adapter(spec: DiffusersSpec):
    def solve(model, x, grid, sde, noise, **opts):
        steps = len(grid) - 1
        native = False
        try:
            native_grid = spec.grid_for(sde, steps, float(grid[-1]), _NATIVE, opts)
            native = native_grid.shape == grid.shape and bool(torch.equal(native_grid, grid.to(torch.float64)))
        except ConfigError:
            native = False
        mode = _NATIVE if native else "grid"

        def factory():
            return spec._setup(sde, steps, opts, mode, grid=grid)[0]

        try:
            sched, table, sigma_space, calls, t_fin = spec._setup(sde, steps, opts, mode, grid=grid)
        except ConfigError as exc:  # prepare validated the grid: a refusal here is an inconsistency, not bad input
            raise RuntimeError(f"{spec.name}: the grid passed by the harness is neither native nor runnable: {exc}") \
                from None
        spec.last_dtype = spec._sample_dtype(factory, opts)
        pred = opts.get("prediction_type", "epsilon")
        sample = x
        if sigma_space:  # x_ve = x_vp / alpha = x_vp * sqrt(sigma_0^2 + 1)
            sample = x / sched.scale_model_input(torch.ones(1, dtype=torch.float64), sched.timesteps[0])[0].item()
            sched._step_index = None
            if hasattr(sched, "is_scale_input_called"):
                sched.is_scale_input_called = False
        patch = _NoisePatch(spec.cls, noise)
        with patch.active():
            for tau in sched.timesteps:
                t = table.t_of(float(tau))
                inp = sched.scale_model_input(sample, tau).to(x.dtype)
                tt = torch.tensor(t, dtype=torch.float64)
                if pred == "epsilon":
                    out = model.eps(inp, tt)
                elif pred == "sample":
                    out = model.x0(inp, tt)
                else:  # v = alpha_t eps - sigma_t x0, from one x0 evaluation
                    x0 = model.x0(inp, tt)
                    eps = convert(sde, inp, tt, x0, "x0", "eps")
                    a, s = float(sde.alpha(tt)), float(sde.sigma(tt))
                    out = a * eps - s * x0
                sample = sched.step(out, tau, sample, **spec._step_opts(opts)).prev_sample
        if sigma_space:
            sig_last = float(sched.sigmas[-1])
            sample = sample / math.sqrt(sig_last**2 + 1)
        return sample.to(x.dtype)

    solve.__doc__ = f"diffusers {spec.cls.__name__} driven through sdebench's counted model (diffusers_peer.py)."
    return solve


def diffusers_solver(clsname: str) -> DiffusersSpec:
    """The solver spec of ``diffusers:<clsname>`` (cached); one-line ConfigError for an unknown class."""
    global _VP
    if clsname in _SPECS:
        return _SPECS[clsname]
    cls = _scheduler_class(clsname)
    if _VP is None:
        _VP = get_sde("vp")
    params = inspect.signature(cls.__init__).parameters
    options = {k: p.default for k, p in params.items()
               if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and k not in ADAPTER_OWNED
               and p.default is not inspect.Parameter.empty}
    step_params = inspect.signature(cls.step).parameters
    step_kwargs = tuple(k for k in ("eta",) if k in step_params)
    for k in step_kwargs:
        options[k] = float(step_params[k].default) if step_params[k].default is not inspect.Parameter.empty else 0.0
    order = options.get("solver_order", 2 if "Heun" in clsname or "KDPM2" in clsname else 1)
    name = f"{PREFIX}:{clsname}"
    spec = DiffusersSpec(
        name=name, fn=None, kind="ode", order=float(order if isinstance(order, int) else 1), nfe_per_step=1,
        family=f"diffusers {clsname}", paper=f"diffusers {getattr(_diffusers(), '__version__', '?')}",
        sdes=("vp",), options=options, order_check="exact",
        order_note="a diffusers scheduler: not in the registry, no order verification",
    )
    spec.cls, spec.step_kwargs, spec._probe_cache = cls, step_kwargs, {}
    spec.fn = _adapter(spec)
    spec.deterministic_rule = Rule("iff the scheduler draws no noise (probe run)",
                                   lambda o: not spec.draws_noise(o))
    spec.affine_rule = Rule("iff clip_sample and thresholding are off",
                            lambda o: not (o.get("clip_sample") or o.get("thresholding")))
    spec.kind = spec.kind_for(options)
    _SPECS[clsname] = spec
    return spec


FACTORIES[PREFIX] = diffusers_solver
