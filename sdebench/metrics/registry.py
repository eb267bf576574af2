"""The metric registry: one :class:`Metric` object per metric, read by the runner, the sweep, guided and image
cells, plots, reports and ``sdebench list metrics``.

A metric declares its name, a one-line description, its plot label, whether it is exact (no Monte Carlo
error) or estimated (and then which of ``<name>_se`` / ``<name>_null`` (+ ``_null_sd``) it writes), the
other columns it writes, ``applies(ctx)`` (True, or False / a reason string when the cell has nothing for
it: it is then skipped, as a metric that does not apply has always been), and ``compute(ctx) -> dict`` of
row columns. ``ctx`` is a :class:`MetricContext`: everything one cell knows after sampling.

Adding a metric is one definition::

    register_metric(Metric(name="mean_err", description="|mean(x) - mean(target)|", label="mean error",
                           exact=False, compute=lambda ctx: {"mean_err": ...}))

Each family module registers its own: :mod:`.gaussian` (exact law), :mod:`.samples`, :mod:`.density`,
:mod:`.stochastic`, :mod:`.images`, :mod:`.guided`. Several metrics that share one expensive computation
(the exact output law; the change-of-variables density) keep it in ``ctx.cache``.

The default list (:data:`DEFAULT_METRICS`) is the metrics declared ``default=True``, in registry order. A cell
that runs the default list also gets the metrics whose ``default_when(ctx)`` is true (image cells: fd and
path_err; guided cells: class_mass and path_err).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdebench.errors import ConfigError
from sdebench.plugins import load_metric_plugins

from .nulls import null_columns, null_draws

__all__ = ["Metric", "MetricContext", "METRICS", "DEFAULT_METRICS", "DESCRIPTIONS", "LABELS", "own_floor",
           "register_metric", "unregister_metric", "get_metric", "check_metrics", "labels", "default_metrics",
           "wanted_metrics", "compute_metrics", "SAMPLE", "EXACT", "ESTIMATE", "GUIDED", "IMAGE"]

# stages: the order in which a cell computes its metrics (within SAMPLE: the order asked for; else registry order)
SAMPLE, EXACT, ESTIMATE, GUIDED, IMAGE = 0, 1, 2, 3, 4


def _always(ctx) -> bool:
    return True


def _never(ctx) -> bool:
    return False


@dataclass(frozen=True)
class Metric:
    name: str
    description: str  # one line, shown by `sdebench list metrics`
    label: str  # axis / report label
    compute: Callable[[Any], dict]  # ctx -> row columns
    applies: Callable[[Any], Any] = _always  # ctx -> True, or False / a reason string (then skipped)
    exact: bool = False  # exact value (no Monte Carlo error) vs estimated
    has_se: bool = False  # writes <name>_se
    has_null: bool = False  # writes <name>_null (and <name>_null_sd where the null is a set of draws)
    columns: tuple = ()  # other columns it writes
    problems: str = "any"  # which problems it applies to, in words (listings)
    default: bool = False  # in DEFAULT_METRICS
    default_when: Callable[[Any], bool] = _never  # also run by a default-list cell where this holds
    stage: int = ESTIMATE
    no_grad: bool = True  # compute under torch.no_grad()
    # the value does not depend on the cell's seed (the exact law of w2_exact / kl_exact): a runner or sweep may
    # compute it once per cell and copy it to the other seeds; a callable decides per problem (problem -> bool)
    seed_independent: bool | Callable[[Any], bool] = False
    # the metric writes <name>_at_floor itself (a significance test of its own, e.g. weak_err_cv's simultaneous
    # test over its test functions) instead of the generic rule against <name>_null (sdebench.stats.at_floor)
    own_floor: bool = False

    def columns_written(self) -> tuple:
        out = [self.name] + ([f"{self.name}_se"] if self.has_se else [])
        out += [f"{self.name}_null"] if self.has_null else []  # (+ _null_sd where the null is a set of draws)
        return tuple(out) + tuple(self.columns)

    def kind(self) -> str:
        return "exact" if self.exact else "estimated" + ("".join(f", {s}" for s, h in (("_se", self.has_se),
                                                                                        ("_null", self.has_null)) if h))

    def check(self, ctx) -> bool | str:
        """True when the metric applies to the cell, else a reason (False when the rule gives none)."""
        ok = self.applies(ctx)
        return True if ok is True else (ok or False)


@dataclass
class MetricContext:
    """What a cell's metrics may read. ``problem``: the cell's problem; ``target``: the law the samples are
    judged against (p_{t_end} or p_0, of the class for guided cells); ``cond``: the law x_T was drawn from
    at T (the problem, or its class-c sub-mixture); ``solver``: the spec as run (with the final denoise when
    on); ``make_model``: a fresh counted model of the cell; ``nfe``: the solver's model-call budget;
    ``model_nfe``: what the sampling run's counter measured; ``cache``: computations shared by metrics;
    ``noise``: the cell's noise source."""

    cfg: Any
    problem: Any
    sde: Any
    spec: Any
    options: dict
    grid: Any
    t_end: float
    x_T: Any
    x0: Any
    target: Any = None
    cond: Any = None
    solver: Any = None
    make_model: Callable | None = None
    nfe: int | None = None
    model_nfe: int | None = None
    cache: dict = field(default_factory=dict)
    noise: Any = None  # the cell's NoiseSource after the sampling run (its Brownian path: weak_err_cv)

    @property
    def is_image(self) -> bool:
        return bool(getattr(self.problem, "is_image", False))

    @property
    def guided(self) -> bool:
        return getattr(self.cfg, "guidance", "none") != "none"

    @property
    def n(self) -> int:
        return int(self.x0.shape[0])

    @property
    def kind(self) -> str:
        return self.spec.kind_for(self.options)

    def shared(self, key: str, fn: Callable[[], Any]):
        """``fn()`` once per cell, for metrics that share one computation."""
        if key not in self.cache:
            self.cache[key] = fn()
        return self.cache[key]


METRICS: dict[str, Metric] = {}
DEFAULT_METRICS: tuple = ()
_BUILTIN: frozenset = frozenset()  # the metrics of the family modules, set once they are loaded


class _Descriptions(Mapping):
    """metric name -> one-line description, a live view of METRICS (``sdebench.run.METRICS``)."""

    def __getitem__(self, name: str) -> str:
        return METRICS[name].description

    def __iter__(self):
        return iter(METRICS)

    def __len__(self) -> int:
        return len(METRICS)

    def __repr__(self) -> str:
        return repr(dict(self))


class _Labels(_Descriptions):
    """metric name -> plot label, a live view of METRICS."""

    def __getitem__(self, name: str) -> str:
        return METRICS[name].label


DESCRIPTIONS: Mapping = _Descriptions()
LABELS: Mapping = _Labels()


def _refresh_default() -> None:
    global DEFAULT_METRICS
    DEFAULT_METRICS = tuple(m.name for m in METRICS.values() if m.default)


def register_metric(metric: Metric | None = None, /, **fields) -> Metric:
    """Register ``metric`` (or ``Metric(**fields)``) under its name; a name already taken is a ConfigError."""
    m = metric if metric is not None else Metric(**fields)
    if not isinstance(m, Metric):
        raise ConfigError(f"register_metric takes a Metric, got {type(m).__name__}")
    if not m.name or not m.description or not m.label:
        raise ConfigError(f"metric {m.name!r} needs a name, a description and a label")
    if m.name in METRICS and METRICS[m.name] is not m:
        raise ConfigError(f"metric {m.name!r} is already registered")
    if m.default and _BUILTIN:
        # the default list is part of the key of every cell that runs it: only the built-in metrics are in it
        raise ConfigError(f"metric {m.name!r}: default=True is for built-in metrics (the default list is part of "
                          f"cell keys); name it with --metrics or a sweep's metrics list instead")
    METRICS[m.name] = m
    _refresh_default()
    return m


def unregister_metric(name: str) -> None:
    """Remove a metric registered after the built-in ones (tests that register a throwaway one)."""
    if name in _BUILTIN:
        raise ConfigError(f"metric {name!r} is built in and cannot be removed")
    METRICS.pop(name, None)
    _refresh_default()


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(f"unknown metric {name!r}; valid: {', '.join(METRICS)}") from None


def own_floor(name: str) -> bool:
    """True where metric ``name`` writes its own ``<name>_at_floor`` (``Metric.own_floor``): analysis then reads
    that flag only, never the generic rule against ``<name>_null``."""
    m = METRICS.get(name)
    return bool(m is not None and m.own_floor)


def check_metrics(names) -> None:
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")


def labels() -> dict:
    """metric name -> plot label."""
    return {name: m.label for name, m in METRICS.items()}


def default_metrics() -> tuple:
    return tuple(m.name for m in METRICS.values() if m.default)


def wanted_metrics(ctx: MetricContext) -> list:
    """The metrics a cell computes, in order: those named in ``ctx.cfg.metrics`` (the default list adds the
    ``default_when`` ones) that apply to the cell; by stage, then (SAMPLE) the order asked for or registry
    order."""
    asked = tuple(ctx.cfg.metrics)
    if asked == default_metrics():
        names = [n for n, m in METRICS.items() if m.default or m.default_when(ctx)]
    else:
        names = list(dict.fromkeys(asked))
    order = {n: i for i, n in enumerate(METRICS)}
    ms = [METRICS[n] for n in names]
    ms = [m for m in ms if m.check(ctx) is True]
    return sorted(ms, key=lambda m: (m.stage, names.index(m.name) if m.stage == SAMPLE else order[m.name]))


def compute_metrics(ctx: MetricContext, stages=None) -> dict:
    """Row columns of every wanted metric of the cell (only those of ``stages`` when given), and each metric's
    wall time in ``time_<name>`` (seconds; a cached computation, e.g. a shared reference solve, counts in the
    cell that paid it)."""
    import torch

    row: dict = {}
    for m in wanted_metrics(ctx):
        if stages is not None and m.stage not in stages:
            continue
        t0 = time.perf_counter()
        if m.no_grad:
            with torch.no_grad():
                row.update(m.compute(ctx))
        else:
            row.update(m.compute(ctx))
        row[f"time_{m.name}"] = time.perf_counter() - t0
    return row


def family_modules() -> list:
    """The metric family modules of this package: every module beside the registry that defines
    ``_register()``, ordered by its module-level ``ORDER`` (then name): a new family is one file."""
    import importlib
    import pkgutil
    import sys

    found = []
    for info in pkgutil.iter_modules(sys.modules[__package__].__path__):
        if info.name in ("registry", "nulls") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        if callable(getattr(module, "_register", None)):
            found.append(module)
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def _load_families() -> None:
    # registry order (the order of `sdebench list`): each family's ORDER, exact law first, then samples,
    # density, stochastic, image, guided, resolve; the families import each other, so each registers its metrics
    # here, in this order, not on import
    global _BUILTIN
    for module in family_modules():
        module._register()
    _BUILTIN = frozenset(METRICS)
    _load_plugins()


def _plugin_metric(name: str, plugin, description: str) -> Metric:
    """A third-party sample metric (entry point in the group sdebench.metrics; contract in sdebench.plugins):
    ``plugin.compute(x, target, seed)`` on the samples, and on NULL_DRAWS exact target samples for its null."""

    def compute(ctx) -> dict:
        target, seed = ctx.target, ctx.cfg.seed
        row = {name: float(plugin.compute(ctx.x0, target, seed))}
        row.update(null_columns(name, null_draws(target, ctx.n, name, lambda y: float(plugin.compute(y, target, seed)),
                                                 extra=(seed,))))
        return row

    def applies(ctx):
        return True if not ctx.is_image else "plugin metrics judge the analytic (mixture) problems"

    return Metric(name, description, name, compute, applies=applies, has_null=True,
                  problems="analytic (plugin)", stage=SAMPLE)



def _load_plugins() -> None:
    found = dict(DESCRIPTIONS)  # load_metric_plugins refuses names taken here and adds the plugins' descriptions
    for name, plugin in load_metric_plugins(found).items():
        register_metric(_plugin_metric(name, plugin, found[name]))


_load_families()
