"""Bring your own solver: benchmark a plain function and check its convergence order, without registering it.

::

    import sdebench
    from sdebench.solvers.ode import heun            # or any fn(model, x, grid, sde, noise, **options)
    df = sdebench.benchmark(heun, order=2, nfe_per_step=2)

:func:`benchmark` runs the function on every (problem, NFE, seed) cell through :func:`sdebench.run.run_cell`,
exactly as ``sdebench run`` does (same columns, same common random numbers across the NFE budgets, the
harness's NFE count), and returns the rows as a tidy :class:`pandas.DataFrame`. With a declared ``order``
it also measures the order with :func:`check_order` (the registry's order test: exact-W2 slope on
``gauss1d``, :mod:`sdebench.verify`) and attaches the result as ``df.attrs["order_check"]``.

Registration is temporary: inside a call the function is registered as ``user:<fn.__name__>`` (or
``name``), and removed again when the call returns or raises, so the global registry (``sdebench list``,
the registry-wide tests) is unchanged afterwards. To keep a solver, decorate it with
:func:`sdebench.solvers.register` instead.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .errors import MAX_SEED, ConfigError, check_int
from .problems import problem_name
from .run import DEFAULT_METRICS, CellConfig, cell_budget, crn_base_steps, prepare, run_cell
from .schedules import SCHEDULES
from .sde import get_sde
from .solvers import SOLVERS, register
from .verify import ORDER_TOL, OrderCheck, OrderMismatch, measure_order

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["benchmark", "check_order", "temporary_solver", "OrderCheck", "OrderMismatch"]

_ARGS = ("model", "x", "grid", "sde", "noise")
SIGNATURE = "fn(model, x, grid, sde, noise, **options)"


def _check_fn(fn) -> str:
    """The default name of a user solver; a one-line ConfigError if ``fn`` does not have the shared signature."""
    if not callable(fn):
        raise ConfigError(f"the solver must be a function {SIGNATURE}, got {fn!r} (not callable)")
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        raise ConfigError(f"the solver {fn!r} has no inspectable signature; it must be {SIGNATURE}") from None
    head, rest = params[:5], params[5:]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    bad = (len(head) < 5 or any(p.kind not in positional for p in head)
           or any(p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD) for p in rest)
           or any(p.default is inspect.Parameter.empty and p.name != "nfe" for p in rest))
    if bad:
        name = getattr(fn, "__name__", repr(fn))
        raise ConfigError(f"solver {name}{inspect.signature(fn)} does not have the signature {SIGNATURE}: five "
                          "positional arguments, then options with defaults (no *args / **kwargs)")
    return f"user:{getattr(fn, '__name__', type(fn).__name__)}"


def _check_order_value(order, what: str = "order") -> float:
    if isinstance(order, bool) or not isinstance(order, (int, float)) or not math.isfinite(order) or order <= 0:
        raise ConfigError(f"{what} must be a positive number, got {order!r}")
    return float(order)


class _NoNoise:
    """What an ODE-declared user solver gets as ``noise``: drawing from it is a one-line ConfigError (the
    harness treats ODE output as a function of x_T alone: change-of-variables densities, path errors)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise ConfigError(f"solver {self._name!r} is declared kind='ode' but uses noise.{attr}; declare "
                          "kind='sde' for a solver that draws noise")


def _guarded(fn: Callable, name: str) -> Callable:
    """``fn`` with ``noise`` replaced by :class:`_NoNoise` (for kind 'ode'); same signature."""

    @functools.wraps(fn)
    def ode_solver(model, x, grid, sde, noise, **options):
        return fn(model, x, grid, sde, _NoNoise(name), **options)

    return ode_solver


@contextmanager
def temporary_solver(fn: Callable, *, kind: str = "ode", order: float | None = None, nfe_per_step: int = 1,
                     name: str | None = None, **register_kwargs):
    """Register ``fn`` as solver ``name`` (default ``user:<fn.__name__>``) for the duration of a ``with``
    block and yield its :class:`~sdebench.solvers.SolverSpec`; the registry is restored on exit.
    ``register_kwargs`` go to :func:`sdebench.solvers.register` (``order_gaussian``, ``nfe_for_steps``,
    ``sdes``, ``deterministic``, ...). Without an ``order`` the solver is registered with order 0
    (no order check). A kind 'ode' function gets a ``noise`` it cannot draw from (a one-line ConfigError if
    it tries: the harness treats its output as a function of x_T alone)."""
    default = _check_fn(fn)
    name = default if name is None else str(name)
    if kind not in ("ode", "sde"):
        raise ConfigError(f"kind must be 'ode' or 'sde', got {kind!r}")
    nfe_per_step = check_int(nfe_per_step, "nfe_per_step", lo=1)
    if name in SOLVERS:
        raise ConfigError(f"solver name {name!r} is already registered; pass name='...' to choose another")
    if order is None:
        register_kwargs.setdefault("order_check", "none")
        register_kwargs.setdefault("order_note", "user solver benchmarked without a declared order")
        order = 0
    else:
        order = _check_order_value(order)
    try:
        solver = _guarded(fn, name) if kind == "ode" and "deterministic" not in register_kwargs else fn
        register(name, kind=kind, order=order, nfe_per_step=nfe_per_step, family="user", **register_kwargs)(solver)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot register {name!r}: {exc}") from None
    try:
        yield SOLVERS[name]
    finally:
        SOLVERS.pop(name, None)


def _as_list(value, what: str) -> list:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value]
    if isinstance(value, Iterable):
        out = list(value)
        if out:
            return out
    raise ConfigError(f"{what} must be a non-empty list, got {value!r}")


def check_order(fn: Callable, order: float, *, kind: str = "ode", nfe_per_step: int = 1, nfe=None,
                sde: str = "vp", schedule: str = "logsnr", tol: float = ORDER_TOL, strict: bool = True,
                name: str | None = None, order_gaussian: float | None = None, **options) -> OrderCheck:
    """Measure the convergence order of ``fn`` exactly as tests/test_registry_orders.py does for every
    registered solver, and compare it with ``order``.

    The exact W2 of the solver's Gaussian output law on ``gauss1d`` (float64, x_T ~ exact p_T, judged
    against p_{t_end}) over the budgets ``nfe`` (default: 20, 40 and 80 steps, times ``nfe_per_step``) on
    ``schedule``; the order is minus the least-squares slope of log W2 on log steps. Returns an
    :class:`~sdebench.verify.OrderCheck` (``measured``, ``ci95``, ``local``, ``passed``, printable); with
    ``strict`` (default) a disagreement beyond ``tol`` raises :class:`~sdebench.verify.OrderMismatch`.
    ``order_gaussian``: the order expected on this linear-drift check when it exceeds ``order`` (weak-order-1
    SDE schemes that reach 2 on a Gaussian target). Needs a solver that is affine for an affine score
    (rows independent, output affine in (x_T, noise)): every fixed-step method is."""
    order = _check_order_value(order)
    if order_gaussian is not None:
        order_gaussian = _check_order_value(order_gaussian, "order_gaussian")
    tol = _check_order_value(tol, "tol")
    nfes = None if nfe is None else [check_int(n, "nfe", lo=1) for n in _as_list(nfe, "nfe")]
    if nfes is not None and len(nfes) < 2:
        raise ConfigError(f"an order check needs at least two NFE budgets, got {nfes}")

    get_sde(sde)
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    extra = {} if order_gaussian is None else {"order_gaussian": order_gaussian}
    with temporary_solver(fn, kind=kind, order=order, nfe_per_step=nfe_per_step, name=name,
                          order_grid=schedule, **extra) as spec:
        spec.check_options(options)
        expected = order if order_gaussian is None else order_gaussian
        result = measure_order(spec, expected, nfes=nfes, schedule=schedule, sde=sde, tol=tol, **options)
    if strict and not result.passed:
        raise OrderMismatch(str(result))
    return result


DEFAULT_STEPS = (5, 10, 20, 40)


def benchmark(fn: Callable, problems=("gauss1d", "gmm1d"), nfe=None, seeds=(0,),
              order: float | None = None, *, kind: str = "ode", nfe_per_step: int = 1, sde: str = "vp",
              schedule: str = "logsnr", samples: int = 2000, metrics=None, crn: bool = True,
              name: str | None = None, order_nfe=None, order_gaussian: float | None = None,
              **options) -> pd.DataFrame:
    """Benchmark a solver function ``fn(model, x, grid, sde, noise, **options)`` and return a tidy DataFrame.

    One row per (problem, NFE, seed) cell (``nfe`` default: 5, 10, 20 and 40 steps, i.e. those times
    ``nfe_per_step``), with the columns of ``sdebench run`` rows (the key columns,
    ``status``, each metric with its ``<metric>_null`` floor, ``nfe`` as counted by the model, provenance).
    Every cell goes through :func:`sdebench.run.run_cell` with the config ``sdebench run`` would build:
    ``CellConfig(problem, sde, solver=name, nfe, seed, n_samples=samples, schedule, metrics,
    solver_options=options, crn_steps=...)`` (common random numbers across the NFE budgets unless
    ``crn=False``), so a registered solver with the same code gives the same numbers to the last digit.

    ``kind`` ("ode" deterministic / "sde" draws noise) and ``nfe_per_step`` (model calls per step) are
    declarations the harness holds the function to: a function that calls the model more or less than
    ``nfe_per_step`` times per step raises the harness's one-line NFEBudgetError. ``options`` are the
    function's keyword options. With ``order``, the order is also measured (:func:`check_order`, budgets
    ``order_nfe``) and the :class:`~sdebench.verify.OrderCheck` is ``df.attrs["order_check"]``; a
    disagreement warns (the rows are kept) instead of raising. The function is registered as
    ``user:<fn.__name__>`` (or ``name``) only during the call.

    Bad input (a non-callable, a wrong signature, an unknown problem / SDE / schedule / metric / option, an
    NFE below 1 or one the declared cost cannot meet, a bad seed) raises one ConfigError line before any
    cell runs."""
    _check_fn(fn)
    problems = [problems] if callable(getattr(problems, "model_functions", None)) else problems
    problems = [problem_name(p) for p in _as_list(problems, "problems")]  # a problem object: registered by name
    nfe_per_step = check_int(nfe_per_step, "nfe_per_step", lo=1)
    if nfe is None:
        nfe = [k * nfe_per_step for k in DEFAULT_STEPS]
    nfes = [check_int(n, "nfe", lo=1) for n in _as_list(nfe, "nfe")]
    seeds = [check_int(s, "seed", lo=0, hi=MAX_SEED) for s in _as_list(seeds, "seeds")]
    samples = check_int(samples, "samples", lo=2)
    metrics = DEFAULT_METRICS if metrics is None else tuple(_as_list(metrics, "metrics"))
    if order is not None:
        order = _check_order_value(order)
    extra = {} if order_gaussian is None else {"order_gaussian": _check_order_value(order_gaussian,
                                                                                    "order_gaussian")}
    with temporary_solver(fn, kind=kind, order=order, nfe_per_step=nfe_per_step, name=name, **extra) as spec:

        def cell(problem, n, seed, crn_steps):
            return CellConfig(problem=problem, sde=sde, solver=spec.name, nfe=n, seed=seed, n_samples=samples,
                              schedule=schedule, metrics=metrics, solver_options=dict(options), crn_steps=crn_steps)

        cells = []
        for problem in problems:
            for n in nfes:
                prepare(cell(problem, n, seeds[0], None))  # every bad input is reported before any work
            steps = [spec.steps_for_nfe(cell_budget(cell(problem, n, seeds[0], None), spec)) for n in nfes]
            crn_steps = crn_base_steps(steps) if crn and not spec.adaptive else None
            cells += [cell(problem, n, seed, crn_steps) for n in nfes for seed in seeds]
        rows = [run_cell(c) for c in cells]
    import pandas as pd  # optional heavy dependency: loaded only when a benchmark returns its table

    df = pd.DataFrame(rows)
    bad = df[df["status"] != "ok"]
    if len(bad):
        r = bad.iloc[0]
        warnings.warn(f"{len(bad)} of {len(df)} cells did not finish ok; first: {r['problem']} nfe={r['nfe']} "
                      f"seed={r['seed']}: {r['status']}: {r['error']}", stacklevel=2)
    if order is not None:
        result = check_order(fn, order, kind=kind, nfe_per_step=nfe_per_step, nfe=order_nfe, sde=sde,
                             schedule=schedule, strict=False, name=name, order_gaussian=order_gaussian, **options)
        df.attrs["order_check"] = result
        if not result.passed:
            warnings.warn(f"order check failed: {result}", stacklevel=2)
    return df
