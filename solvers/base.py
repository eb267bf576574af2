"""Solver API: one signature for every sampler, metadata declared once, NFE counted by the base class.

A solver is a plain function

    def my_solver(model, x, grid, sde, noise, **options) -> x_end

where ``model`` is a :class:`sdebench.model.Model` (the only way to reach the target), ``x`` the batch
at ``grid[0] = T``, ``grid`` the explicit float64 time tensor T -> t_end, ``sde`` the forward SDE and
``noise`` a :class:`sdebench.noise.NoiseSource` bound to the grid (``noise.dW(i)``, ``noise.dW_I(i)``,
``noise.normal(stream, i, ...)``). Registering it with :func:`register` declares its name, kind
(ODE or SDE), order(s) and NFE per step; :meth:`SolverSpec.sample` wraps every call, compares the
evaluations the model counted with the declared cost and raises if they differ.

Capabilities (declared in ``register`` where they differ from the default, read everywhere through the
spec, never re-derived from option names): :meth:`SolverSpec.deterministic` (no noise is drawn: the
output is a function of x_T alone; ``ddim`` with ``eta > 0`` is not), :meth:`SolverSpec.affine` (for an
affine score the output is an affine map of (x_T, noise) with independent rows, so
:mod:`sdebench.exact` gives its output law), :attr:`SolverSpec.batch_coupled` (a row's output depends on
the other rows: batch-averaged step sizes, a shared adaptive step) and :meth:`SolverSpec.kind_for` ("ode"
iff deterministic). tests/test_solver_capabilities.py checks every registered solver's declarations
against its behaviour.

Solvers whose grid is not simply ``nfe / nfe_per_step`` steps (DPM-Solver's singlestep budget split,
Heun's Euler last step to t = 0, ...) pass ``steps_for_nfe`` and ``nfe_for_steps``; a solver that
needs the budget itself declares an ``nfe`` keyword argument and receives it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from sdebench.errors import ConfigError, NFEBudgetError

__all__ = ["SolverSpec", "Rule", "register", "SOLVERS", "get_solver", "check_grid", "ORDER_CHECKS", "FACTORIES"]

SOLVERS: dict[str, SolverSpec] = {}
# solver families named "<prefix>:<name>" and built on demand (not listed in SOLVERS): prefix -> factory(name)
# returning a SolverSpec, e.g. "diffusers" -> solvers/diffusers_peer.py
FACTORIES: dict[str, Callable[[str], SolverSpec]] = {}

# How a solver's declared ``order`` is verified (tests/test_registry_orders.py reads this per solver)
ORDER_CHECKS = {
    "exact": "slope of the exact W2 of its Gaussian output law on gauss1d (VP, float64, x_T ~ exact p_T) "
             "over the NFE budgets order_nfe on the schedule order_grid",
    "none": "no convergence order in NFE (order 0: consistency samplers, error set by the consistency function)",
    "adaptive": "the method chooses its own steps (NFE counted, not requested): no NFE slope",
    "nonaffine": "not affine under its default options (SolverSpec.affine: e.g. batch-coupled), so no exact "
                 "Gaussian law; set by register from affine / batch_coupled, never declared",
}


class Rule:
    """A capability that depends on the options: ``Rule("iff eta = 0", lambda o: o["eta"] == 0)``.
    ``fn`` receives the merged (checked) options; ``text`` is shown by ``sdebench list solvers``."""

    def __init__(self, text: str, fn: Callable[[dict], bool]):
        self.text, self.fn = text, fn

    def __call__(self, options: dict) -> bool:
        return bool(self.fn(options))

    def __repr__(self) -> str:
        return f"Rule({self.text!r})"
DEFAULT_ORDER_STEPS = (20, 40, 80)


@dataclass
class SolverSpec:
    name: str
    fn: Callable
    kind: str  # "ode" or "sde"
    order: float  # ODE order / weak order of an SDE method
    nfe_per_step: int
    family: str = ""
    paper: str = ""
    strong_order: float | None = None
    adaptive: bool = False  # NFE chosen by the method (counted, not requested)
    # the output carries the gradient of a grid tensor that requires grad (its scalar coefficients through
    # solvers/_common.py's tensor path): ``sdebench tune --method gradient`` backpropagates through it
    differentiable_grid: bool = False
    sdes: tuple[str, ...] | None = None  # SDEs it applies to; None = every SDE
    schedules: tuple[str, ...] | None = None  # schedules (time grids) it applies to; None = every schedule
    steps_for_nfe_fn: Callable[[int], int] | None = None
    nfe_for_steps_fn: Callable[[int, torch.Tensor], int] | None = None
    budget_text: str | None = None
    options: dict = field(default_factory=dict)
    # verification of ``order`` (see ORDER_CHECKS); the measured slope must be order_gaussian or order
    order_check: str = "exact"
    order_grid: str = "logsnr"  # schedule on which the declared order is verified
    order_nfe: tuple[int, ...] | None = None  # NFE budgets of the asymptotic window; None: 20, 40, 80 steps
    order_gaussian: float | None = None  # order on the Gaussian check where above ``order`` (linear drift)
    order_note: str = ""  # why order_check is not "exact", and where the order is checked instead
    # capabilities (see the module docstring); None = the default rule
    deterministic_rule: bool | Rule | None = None  # default: kind == "ode"
    affine_rule: bool | Rule | None = None  # default: not (adaptive or batch_coupled)
    batch_coupled: bool = False  # a row's output depends on the other rows of the batch
    per_step: tuple[str, ...] = ()  # float options that also accept one value per step (a sequence)

    # ---- capabilities -------------------------------------------------------------------------
    def _capability(self, rule, options: dict | None, default: bool) -> bool:
        if rule is None:
            return default
        if callable(rule):
            return bool(rule(self.check_options(dict(options or {}))))
        return bool(rule)

    def deterministic(self, options: dict | None = None) -> bool:
        """True iff with these options the solver draws no noise: the output is a function of x_T alone
        (two noise seeds give bit-identical output; it runs without a NoiseSource)."""
        return self._capability(self.deterministic_rule, options, self.kind == "ode")

    def affine(self, options: dict | None = None) -> bool:
        """True iff, for an affine score, the output is an affine map of (x_T, noise) with independent
        rows: its output law is computable exactly (:func:`sdebench.exact.output_gaussian`)."""
        return self._capability(self.affine_rule, options, not (self.adaptive or self.batch_coupled))

    def kind_for(self, options: dict | None = None) -> str:
        """'ode' for a deterministic map x_T -> x_out under these options, else 'sde' (``kind`` is the
        kind under the default options, shown in listings)."""
        return "ode" if self.deterministic(options) else "sde"

    def capabilities(self, options: dict | None = None) -> str:
        """Short text for listings: deterministic or stochastic, affine or not, batch-coupled; without
        ``options``, a capability that depends on them is shown with its rule."""
        det, aff = self.deterministic_rule, self.affine_rule
        parts = [f"deterministic {det.text}" if isinstance(det, Rule) and options is None
                 else "deterministic" if self.deterministic(options) else "stochastic",
                 f"affine {aff.text}" if isinstance(aff, Rule) and options is None
                 else "affine" if self.affine(options) else "non-affine"]
        if self.batch_coupled:
            parts.append("batch-coupled")
        return ", ".join(parts)

    def verification_nfes(self) -> tuple[int, ...]:
        """NFE budgets on which the declared order is verified (order_check == "exact")."""
        if self.order_nfe is not None:
            return tuple(self.order_nfe)
        return tuple(self.nfe_for_steps(k) for k in DEFAULT_ORDER_STEPS)

    @property
    def verified_order(self) -> float | None:
        """The declared (weak) order where the registry test verifies it as an NFE slope, else None."""
        return self.order if self.order_check == "exact" else None

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.fn) or ""
        return doc.splitlines()[0] if doc else ""

    # ---- NFE budget <-> grid ------------------------------------------------------------------
    def accepted_budgets(self) -> str:
        if self.budget_text:
            return self.budget_text
        if self.nfe_per_step == 1:
            return "any NFE >= 1"
        return f"multiples of {self.nfe_per_step}"

    def steps_for_nfe(self, nfe: int) -> int:
        if isinstance(nfe, bool) or int(nfe) != nfe or nfe < 1:
            raise NFEBudgetError(f"NFE must be an integer >= 1, got {nfe}")
        nfe = int(nfe)
        if self.adaptive:
            return 1  # one interval T -> t_end; the method picks its own steps and its NFE is counted
        if self.steps_for_nfe_fn is not None:
            return self.steps_for_nfe_fn(nfe)
        if nfe % self.nfe_per_step:
            raise NFEBudgetError(
                f"{self.name} costs {self.nfe_per_step} NFE per step and cannot use NFE={nfe}; "
                f"it accepts {self.accepted_budgets()}"
            )
        return nfe // self.nfe_per_step

    def nfe_for_steps(self, steps: int, grid: torch.Tensor | None = None) -> int:
        if self.nfe_for_steps_fn is not None:
            return self.nfe_for_steps_fn(steps, grid)
        return steps * self.nfe_per_step

    # ---- options ------------------------------------------------------------------------------
    def check_options(self, options: dict) -> dict:
        unknown = set(options) - set(self.options)
        if unknown:
            valid = ", ".join(f"{k}={v!r}" for k, v in self.options.items()) or "none"
            raise ConfigError(f"solver {self.name!r} has no option(s) {sorted(unknown)}; valid: {valid}")
        merged = dict(self.options)
        for k, v in options.items():
            default = self.options[k]
            if k in self.per_step and isinstance(v, (list, tuple)):  # one value per step
                try:
                    v = tuple(float(e) for e in v)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"solver {self.name!r} option {k}={v!r} is not a list of numbers") from exc
                if not v or not all(math.isfinite(e) for e in v):
                    raise ConfigError(f"solver {self.name!r} option {k}={v!r} must be a non-empty list of finite "
                                      "numbers")
                merged[k] = v
                continue
            if isinstance(default, bool):
                v = v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
            elif isinstance(default, (int, float)) and not isinstance(v, (int, float)):
                try:
                    v = type(default)(v)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"solver {self.name!r} option {k}={v!r} is not a number") from exc
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"solver {self.name!r} option {k}={v!r} must be finite")
            merged[k] = v
        return merged

    def check_sde(self, sde) -> None:
        if self.sdes is not None and sde.name not in self.sdes:
            raise ConfigError(f"solver {self.name!r} applies only to SDEs {list(self.sdes)}, not {sde.name!r}")

    def check_schedule(self, schedule: str) -> None:
        """One-line ConfigError for a schedule the solver cannot run on (checked when a cell is prepared,
        so a sweep with ``skip_incompatible`` leaves the pair out at expansion)."""
        if self.schedules is not None and schedule not in self.schedules:
            raise ConfigError(f"solver {self.name!r} applies only to schedules {list(self.schedules)}, "
                              f"not {schedule!r}")

    # ---- the call -----------------------------------------------------------------------------
    def sample(self, model, x, grid, sde, noise=None, nfe: int | None = None, **options) -> torch.Tensor:
        """Run the solver on ``grid`` and check the counted NFE against the declared cost."""
        self.check_sde(sde)
        opts = self.check_options(options)
        check_grid(grid, self.name)
        steps = len(grid) - 1
        if noise is not None:
            noise.for_grid(grid)
        elif not self.deterministic(opts):
            raise ValueError(f"solver {self.name!r} needs a NoiseSource")
        if "nfe" in self._fn_params:
            opts["nfe"] = nfe if nfe is not None else self.nfe_for_steps(steps, grid)
        start = model.nfe
        out = self.fn(model, x, grid, sde, noise, **opts)
        counted = model.nfe - start
        if not self.adaptive:
            expected = nfe if nfe is not None else self.nfe_for_steps(steps, grid)
            expected *= model.cost
            if counted != expected:
                raise NFEBudgetError(
                    f"{self.name}: counted {counted} model evaluations but the budget is {expected}"
                )
        return out

    __call__ = sample

    @property
    def _fn_params(self):
        return inspect.signature(self.fn).parameters



def check_grid(grid, name: str = "") -> None:
    """A solver grid is a 1-D tensor of at least two times, strictly decreasing, ending at t >= 0; t = 0
    (sigma = 0) is allowed and every solver either takes that last step safely or refuses it."""
    who = f"solver {name!r}: " if name else ""
    if not isinstance(grid, torch.Tensor) or grid.dim() != 1 or len(grid) < 2:
        raise ConfigError(f"{who}the grid must be a 1-D tensor of at least 2 times, got {grid!r}")
    g = grid.detach().to(torch.float64).cpu()
    if not bool(torch.isfinite(g).all()) or not bool((g[1:] < g[:-1]).all()):
        raise ConfigError(f"{who}the grid must be finite and strictly decreasing (T -> t_end), got {g.tolist()}")
    if float(g[-1]) < 0:
        raise ConfigError(f"{who}the grid must end at t >= 0, got t_end = {float(g[-1]):g}")


def register(
    name: str,
    *,
    kind: str,
    order: float,
    nfe_per_step: int,
    family: str = "",
    paper: str = "",
    strong_order: float | None = None,
    adaptive: bool = False,
    differentiable_grid: bool = False,
    sdes: tuple[str, ...] | None = None,
    schedules: tuple[str, ...] | None = None,
    steps_for_nfe: Callable[[int], int] | None = None,
    nfe_for_steps: Callable[[int, torch.Tensor], int] | None = None,
    budget_text: str | None = None,
    order_check: str = "exact",
    order_grid: str = "logsnr",
    order_nfe: tuple[int, ...] | None = None,
    order_gaussian: float | None = None,
    order_note: str = "",
    deterministic: bool | Rule | None = None,
    affine: bool | Rule | None = None,
    batch_coupled: bool = False,
    per_step: tuple[str, ...] = (),
):
    """Decorator: register ``fn`` as solver ``name``. Keyword arguments of ``fn`` after ``noise``
    (other than ``nfe``) become its options, with their defaults. ``differentiable_grid``: the solver's output
    carries the gradient of a grid that requires grad (solvers/_common.py).

    ``order`` is verified by tests/test_registry_orders.py as declared by ``order_check`` (one of
    :data:`ORDER_CHECKS`; default "exact": exact-W2 slope on gauss1d over the budgets ``order_nfe`` on the
    schedule ``order_grid``, expected ``order_gaussian`` if given, else ``order``). Any other check
    needs ``order_note`` saying why and where the order is checked instead. A solver that is not affine
    under its default options gets order_check "nonaffine" from that declaration (never declared directly).

    Capabilities (tests/test_solver_capabilities.py checks them against the solver's behaviour):
    ``deterministic`` (default: ``kind == "ode"``), ``affine`` (default: neither adaptive nor
    batch-coupled), each a bool or a :class:`Rule` on the options; ``batch_coupled`` (default False).
    ``per_step``: float options that also accept a sequence of one value per step (``sdebench tune --tune``).
    ``kind`` must be the kind under the default options (``SolverSpec.kind_for``)."""
    if order_check == "nonaffine":
        raise ValueError(f"solver {name!r}: order_check='nonaffine' follows from affine=False or "
                         "batch_coupled=True; declare those instead")
    for cap, value in (("deterministic", deterministic), ("affine", affine)):
        if not (value is None or isinstance(value, (bool, Rule))):
            raise ValueError(f"solver {name!r}: {cap} must be a bool or a Rule, got {value!r}")
    if kind not in ("ode", "sde"):
        raise ValueError(f"kind must be 'ode' or 'sde', got {kind!r}")
    if order_check not in ORDER_CHECKS:
        raise ValueError(f"order_check must be one of {sorted(ORDER_CHECKS)}, got {order_check!r}")
    if order_check != "exact" and not order_note:
        raise ValueError(f"solver {name!r}: order_check={order_check!r} needs an order_note (why, and where "
                         "the order is checked instead)")
    if (order_check == "none") != (order == 0):
        raise ValueError(f"solver {name!r}: order 0 goes with order_check='none' and only with it")
    if order_gaussian is not None and order_gaussian < order:
        raise ValueError(f"solver {name!r}: order_gaussian={order_gaussian} is below order={order}")

    def wrap(fn: Callable) -> Callable:
        params = list(inspect.signature(fn).parameters.values())
        opts = {p.name: p.default for p in params[5:] if p.name != "nfe"}
        if name in SOLVERS:
            old = SOLVERS[name].fn
            raise ValueError(f"solver {name!r} registered twice: by {old.__module__}.{old.__qualname__} and by "
                             f"{fn.__module__}.{fn.__qualname__}")
        spec = SolverSpec(
            name=name,
            fn=fn,
            kind=kind,
            order=order,
            nfe_per_step=nfe_per_step,
            family=family,
            paper=paper,
            strong_order=strong_order,
            adaptive=adaptive,
            differentiable_grid=bool(differentiable_grid),
            sdes=sdes,
            schedules=None if schedules is None else tuple(schedules),
            steps_for_nfe_fn=steps_for_nfe,
            nfe_for_steps_fn=nfe_for_steps,
            budget_text=budget_text,
            options=opts,
            order_check=order_check,
            order_grid=order_grid,
            order_nfe=None if order_nfe is None else tuple(order_nfe),
            order_gaussian=order_gaussian,
            order_note=order_note,
            deterministic_rule=deterministic,
            affine_rule=affine,
            batch_coupled=bool(batch_coupled),
            per_step=tuple(per_step),
        )
        if spec.kind_for(opts) != kind:
            raise ValueError(f"solver {name!r}: kind={kind!r} but with its default options it is "
                             f"{spec.kind_for(opts)!r} (deterministic={spec.deterministic(opts)})")
        if spec.affine(opts) and batch_coupled:
            raise ValueError(f"solver {name!r}: a batch-coupled solver cannot be affine (its rows interact)")
        if not spec.affine(opts) and order_check == "exact":
            if not order_note:
                raise ValueError(f"solver {name!r}: not affine, so no exact-W2 order check; it needs an "
                                 "order_note (why, and where the order is checked instead)")
            spec.order_check = "nonaffine"
        SOLVERS[name] = spec
        return fn

    return wrap


def get_solver(name: str) -> SolverSpec:
    # the built-in modules and plugins are registered by sdebench/solvers/__init__.py (its _load_all), which
    # always runs before this module can be reached
    prefix, sep, rest = str(name).partition(":")
    if name not in SOLVERS and sep and prefix in FACTORIES:
        return FACTORIES[prefix](rest)
    if name not in SOLVERS:
        more = "".join(f", {p}:<name>" for p in sorted(FACTORIES))
        raise ConfigError(f"unknown solver {name!r}; valid: {', '.join(sorted(SOLVERS))}{more}")
    return SOLVERS[name]
