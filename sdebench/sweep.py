"""Declarative sweep files: a TOML grid expanded into cells, each with a key derived from its full config.

A sweep file (see ``sweeps/quick.toml``)::

    name = "quick"
    out = "runs/quick"                 # store folder, relative to the current directory (default runs/<name>)
    problems = ["gauss1d", "gmm1d"]    # preset names, target files, or "all" (every analytic preset)
    sdes = ["vp"]
    schedules = ["uniform"]
    nfe = [4, 8, 16, 32]
    seeds = [0, 1, 2]                  # or an integer n meaning 0..n-1
    samples = 1000
    metrics = ["w2_exact", "w2"]       # default: sdebench.run.DEFAULT_METRICS
    metrics_by_problem = { gmm2d-ring8 = ["sliced_w2"] }   # optional per-problem override
    solvers = ["em", "heun"]           # names, "all", or tables (below)
    # optional: t_end, T, init, dtype, device, reference, crn (default true), skip_incompatible,
    # final_denoise (default false: output D(x, t_end), the x0 prediction, as the budget's last model call)
    # guided sampling (labelled targets, see docs/guidance.md): guidance = "cfg" | "classifier",
    # scales = [0, 1, 3] (the guidance scales w, one cell each), class_label, cfg_param ("eps" | "x0"),
    # cfg_batched (default false), metrics_w0 ("default" or a list: the metrics of the w = 0 cells),
    # gaussian_analogue (default false: the report adds the exact Gaussian analogue table and figure)

    [[solvers]]                        # a solver with options; label names it in tables and plots
    name = "ddim"
    options = { eta = 0.5 }
    label = "ddim-eta0.5"
    # schedule = "file:grid.json"      # optional: this solver's own grid (a `sdebench tune` output) instead
                                       # of the file's schedules

Metrics by solver kind: ``metrics`` and each ``metrics_by_problem`` value may be a table
``{ ode = [...], sde = [...] }`` instead of a list (the kind is ``SolverSpec.kind_for(options)``; a kind
the table leaves out gets the top-level ``metrics``). ``exclude = ["name", ...]`` removes solvers (after
"all" is expanded).

Blocks: ``[[blocks]]`` tables, each a sub-sweep whose keys override the top-level ones (``name`` labels the
block; ``out`` and nested ``blocks`` are not allowed). The file's cells are the union of its blocks' cells
(a cell in two blocks runs once); without blocks the file is one block. ``sdebench sweep --dry-run``
prints each block's cell count and estimated cost (:mod:`sdebench.cost`).

Seeds: a cell whose every metric is seed-independent (:func:`seed_independent`: the exact-law metrics, whose
value is the same for every seed) runs for the first seed only.

Every (problem, sde, solver, schedule, nfe, scale, seed) combination is one cell. :func:`expand` is the one
function that turns a request (a :class:`Sweep`, parsed from a TOML file by :func:`parse_sweep` or built
from the ``sdebench run`` flags) into cells. Names are validated when
the file is expanded (one-line ConfigError naming the bad value). With ``skip_incompatible = true``
(used by the paper sweep, which names "all" solvers) a solver/SDE or solver/NFE pair the solver cannot
run is left out and counted instead of being an error.

The cell key is the first 20 hex digits of the SHA-256 of the canonical JSON of the full cell config
(every CellConfig field, metrics and the common-random-numbers base grid included), so a cell's key
changes exactly when something that changes its result changes. ``final_denoise`` enters the config
only when true, so cells written before it existed keep their keys.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import tomllib

from .errors import MAX_SEED, ConfigError, NFEBudgetError
from .guidance import _scale
from .metrics.registry import DEFAULT_METRICS, METRICS
from .perturb import check_score_error
from .problems import get_problem
from .problems.presets import PRESETS
from .run import CellConfig, cell_budget, cell_grid, crn_base_steps, prepare
from .schedules import get_schedule
from .sde import get_sde
from .solvers import SOLVERS, get_solver

__all__ = ["Sweep", "SolverEntry", "expand", "load_sweep", "parse_sweep", "cell_key", "config_to_dict",
           "config_from_dict", "KEY_LENGTH"]

KEY_LENGTH = 20
_TOP_KEYS = {"blocks", "exclude",
             "name", "out", "problems", "sdes", "schedules", "nfe", "seeds", "samples", "metrics", "solvers",
             "t_end", "T", "init", "dtype", "device", "reference", "crn", "skip_incompatible", "description",
             "metrics_by_problem", "final_denoise", "guidance", "scales", "class_label", "cfg_param",
             "cfg_batched", "metrics_w0", "score_error", "gaussian_analogue"}


@dataclass
class SolverEntry:
    name: str
    options: dict = field(default_factory=dict)
    label: str = ""
    schedule: str = ""  # this solver's own schedule (e.g. file:grid.json), replacing the sweep's schedules

    def display(self) -> str:
        if self.label:
            return self.label
        if not self.options:
            return self.name
        return self.name + "[" + ",".join(f"{k}={v}" for k, v in sorted(self.options.items())) + "]"


@dataclass
class Sweep:
    name: str
    out: str
    problems: list
    sdes: list
    schedules: list
    nfe: list
    seeds: list
    samples: int
    metrics: tuple
    solvers: list
    t_end: float | None = None
    T: float | None = None
    init: str = "exact"
    dtype: str = "float64"
    device: str = "cpu"
    reference: str = "t_end"
    crn: bool | str = True  # True: one base grid per solver; "shared": one per problem x SDE x schedule
    skip_incompatible: bool = False
    description: str = ""
    metrics_by_problem: dict = field(default_factory=dict)
    final_denoise: bool = False
    guidance: str = "none"
    scales: list = field(default_factory=lambda: [0.0])
    class_label: int | None = None
    cfg_param: str = "eps"
    cfg_batched: bool = False
    metrics_w0: tuple | None = None  # metrics of the w = 0 cells (None: the same as every other cell)
    score_error: float = 0.0
    gaussian_analogue: bool = False  # report: add the exact Gaussian analogue of a guided sweep
    wrap_errors: bool = True  # prefix expansion errors with the sweep and cell (False: `sdebench run`)
    skipped: list = field(default_factory=list)  # (problem, sde, solver, nfe, reason) left out by skip_incompatible
    blocks: list = field(default_factory=list)  # sub-sweeps ([[blocks]]); empty: this sweep is the one block
    seed_dedup: int = 0  # cells left out of the last expansion because their metrics are seed-independent
    dedup_seeds: bool = True  # run seed-independent cells for the first seed only (`sdebench run`: every seed asked)
    block_of: dict = field(default_factory=dict)  # cell key -> name of the first block that has it (last expansion)

    def cells(self) -> list[tuple[str, CellConfig, str]]:
        """Expand into ``(key, CellConfig, label)`` triples (see :func:`expand`)."""
        return expand(self)

    def metrics_for(self, problem: str, entry: SolverEntry) -> tuple:
        """The metrics of a (problem, solver) pair: ``metrics_by_problem`` or ``metrics``, by solver kind."""
        kind = get_solver(entry.name).kind_for(entry.options)
        ms = self.metrics_by_problem.get(problem, self.metrics)
        if isinstance(ms, dict):
            ms = ms.get(kind, self.metrics)
        if isinstance(ms, dict):
            ms = ms.get(kind, DEFAULT_METRICS)
        return tuple(ms)

    def _config(self, problem, sde, schedule, entry, nfe, seed, crn, scale=0.0) -> CellConfig:
        metrics = self.metrics_for(problem, entry)
        if self.metrics_w0 is not None and float(scale) == 0:
            metrics = self.metrics_w0
        return CellConfig(problem=problem, sde=sde, solver=entry.name, nfe=nfe, seed=seed, n_samples=self.samples,
                          schedule=schedule, t_end=self.t_end, T=self.T, init=self.init, dtype=self.dtype,
                          device=self.device, solver_options=dict(entry.options), metrics=tuple(metrics),
                          crn_steps=crn, reference=self.reference, score_error=self.score_error,
                          guidance=self.guidance, scale=float(scale), class_label=self.class_label,
                          cfg_param=self.cfg_param, cfg_batched=self.cfg_batched, final_denoise=self.final_denoise)

    def is_guided(self) -> bool:
        return self.guidance != "none"


def seed_independent(metric: str, problem: str) -> bool:
    """True when the metric's value on ``problem`` is the same for every seed: the registry's
    ``Metric.seed_independent``, a bool or a rule on the problem (w2_exact and kl_exact always; tv_exact
    in 1-D only, where it is exact: in d > 1 it is a Monte Carlo estimate seeded by the cell)."""
    flag = getattr(METRICS.get(metric), "seed_independent", None)
    if callable(flag):  # decided per problem (tv_exact: exact in 1-D only)
        return bool(flag(get_problem(problem)))
    return bool(flag)


def expand(request: Sweep) -> list[tuple[str, CellConfig, str]]:
    """The cells of a request (a sweep file's or ``sdebench run``'s) as ``(key, CellConfig, label)``
    triples, in the order problem, sde, schedule, solver, nfe, scale, seed; every combination is
    validated once (a one-line ConfigError names the bad value). A sweep with blocks gives the union of
    its blocks' cells, in block order, each cell once."""

    if request.blocks:
        out, seen = [], {}
        request.skipped, request.seed_dedup = [], 0
        for b in request.blocks:
            for cell in expand(b):
                if cell[0] not in seen:
                    seen[cell[0]] = b.description
                    out.append(cell)
            request.skipped.extend(b.skipped)
            request.seed_dedup += b.seed_dedup
        request.block_of = seen
        return out
    self = request
    for p in self.problems:
        get_problem(p)
    for s in self.sdes:
        get_sde(s, T=self.T)
    for s in self.schedules + [e.schedule for e in self.solvers if e.schedule]:
        if s != "native":  # a diffusers scheduler's own spacing (run.cell_grid)
            get_schedule(s)
    specs = {e.name: get_solver(e.name) for e in self.solvers}
    for e in self.solvers:
        specs[e.name].check_options(e.options)
    labels = [e.display() for e in self.solvers]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup and self.wrap_errors:
        raise ConfigError(f"sweep {self.name!r}: solver label {dup[0]!r} appears twice; give each entry a label")

    out: list[tuple[str, CellConfig, str]] = []
    self.skipped = []
    self.seed_dedup = 0
    for problem in self.problems:
        for sde in self.sdes:
            for schedule in self.schedules:
                for entry in self.solvers:
                    if entry.schedule and schedule != self.schedules[0]:
                        continue  # a solver with its own grid runs once, in the place of the first schedule
                    sched = entry.schedule or schedule
                    spec = specs[entry.name]
                    nfes = []
                    ctx = None  # (sde object, t_end) once one NFE passed the full validation
                    for nfe in self.nfe:
                        cfg = self._config(problem, sde, sched, entry, nfe, self.seeds[0], None, self.scales[0])
                        try:
                            if ctx is None:
                                for w in self.scales:  # the guidance checks (scale, class, metrics) per w
                                    _, sde_obj, _, _, _, _, t_end = prepare(
                                        self._config(problem, sde, sched, entry, nfe, self.seeds[0], None, w))
                                ctx = (sde_obj, t_end)
                            else:  # only the budget and the grid depend on the NFE
                                cell_grid(spec, ctx[0], spec.steps_for_nfe(cell_budget(cfg, spec)), ctx[1], sched,
                                          entry.options)
                        except ConfigError as exc:
                            incompatible = isinstance(exc, NFEBudgetError) or "applies only to" in str(exc)
                            if self.skip_incompatible and incompatible:
                                self.skipped.append((problem, sde, entry.display(), nfe, str(exc)))
                                continue
                            if not self.wrap_errors:
                                raise
                            raise ConfigError(f"sweep {self.name!r}: problem={problem} sde={sde} "
                                              f"solver={entry.display()} nfe={nfe}: {exc}") from None
                        nfes.append(nfe)
                    if not nfes:
                        continue
                    crn = None
                    if self.crn and not spec.adaptive and sched != "native":
                        crn = crn_base_steps([spec.steps_for_nfe(cell_budget(
                            self._config(problem, sde, sched, entry, n, self.seeds[0], None, self.scales[0]),
                            spec)) for n in nfes])
                    metrics = self.metrics_for(problem, entry)
                    seeds = self.seeds
                    if self.dedup_seeds and len(seeds) > 1 and self.metrics_w0 is None and all(
                            seed_independent(m, problem) for m in metrics):
                        seeds = seeds[:1]
                        self.seed_dedup += (len(self.seeds) - 1) * len(nfes) * len(self.scales)
                    for nfe in nfes:
                        for w in self.scales:
                            for seed in seeds:
                                cfg = self._config(problem, sde, sched, entry, nfe, seed, crn, w)
                                out.append((cell_key(cfg), cfg, entry.display()))
    if self.crn == "shared":
        out = _share_crn(out)
    return out


def _share_crn(cells: list) -> list:
    """``crn = "shared"``: every cell of one (problem, SDE, schedule, t_end, T) group gets the least common
    multiple of the group's base grids (when it is at most 4096 steps): every solver and NFE of the group
    then sees one Brownian path, so a reference solve on it (weak_err_cv) is shared by all of them."""
    groups: dict = {}
    for _, cfg, _ in cells:
        if cfg.crn_steps:
            groups.setdefault((cfg.problem, cfg.sde, cfg.schedule, cfg.t_end, cfg.T), []).append(cfg.crn_steps)
    base = {g: crn_base_steps(v) for g, v in groups.items()}
    out = []
    for key, cfg, label in cells:
        b = base.get((cfg.problem, cfg.sde, cfg.schedule, cfg.t_end, cfg.T)) if cfg.crn_steps else None
        if b and b != cfg.crn_steps:
            cfg = replace(cfg, crn_steps=b)
            key = cell_key(cfg)
        out.append((key, cfg, label))
    return out


def config_to_dict(cfg: CellConfig) -> dict:
    """The cell's full config as a dict (what its key hashes); ``final_denoise`` only when on."""
    d = asdict(cfg)
    d["metrics"] = list(d["metrics"])
    if not d.get("final_denoise"):
        d.pop("final_denoise", None)
    return d


def config_from_dict(d: dict) -> CellConfig:
    d = dict(d)
    d["metrics"] = tuple(d.get("metrics", DEFAULT_METRICS))
    return CellConfig(**d)


def cell_key(cfg: CellConfig) -> str:
    """SHA-256 of the canonical JSON of the full config, first KEY_LENGTH hex digits."""
    text = json.dumps(config_to_dict(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


# ---- parsing ------------------------------------------------------------------------------------------

def _where(source: str, key: str) -> str:
    return f"sweep file {source!r}: {key}"


def _str_list(data: dict, key: str, source: str, default=None) -> list[str]:
    v = data.get(key, default)
    if v is None:
        raise ConfigError(f"{_where(source, key)} is missing")
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise ConfigError(f"{_where(source, key)} must be a non-empty list of names, got {v!r}")
    return v


def _int_list(data: dict, key: str, source: str, lo: int, hi: int | None = None) -> list[int]:
    v = data.get(key)
    if v is None:
        raise ConfigError(f"{_where(source, key)} is missing")
    if isinstance(v, int) and not isinstance(v, bool) and key == "seeds":
        if v < 1 or v > 1_000_000:
            raise ConfigError(f"{_where(source, key)} must be a count in [1, 1000000] or a list, got {v!r}")
        return list(range(v))
    if not isinstance(v, list) or not v:
        raise ConfigError(f"{_where(source, key)} must be a non-empty list of integers, got {v!r}")
    for x in v:
        if isinstance(x, bool) or not isinstance(x, int) or x < lo or (hi is not None and x > hi):
            bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]" + (" (2^63 - 1)" if hi == MAX_SEED else "")
            raise ConfigError(f"{_where(source, key)} must hold integers {bounds}, got {x!r}")
    if len(set(v)) != len(v):
        raise ConfigError(f"{_where(source, key)} has duplicates: {v!r}")
    return list(v)


def _opt_float(data: dict, key: str, source: str) -> float | None:
    v = data.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{_where(source, key)} must be a positive number, got {v!r}")
    return float(v)


def _solvers(data: dict, source: str) -> list[SolverEntry]:

    v = data.get("solvers")
    if v is None:
        raise ConfigError(f"{_where(source, 'solvers')} is missing")
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v:
        raise ConfigError(f"{_where(source, 'solvers')} must be a non-empty list, got {v!r}")
    out: list[SolverEntry] = []
    for item in v:
        if item == "all":
            out.extend(SolverEntry(n) for n in sorted(SOLVERS) if not SOLVERS[n].adaptive)
            continue
        if isinstance(item, str):
            get_solver(item)
            out.append(SolverEntry(item))
        elif isinstance(item, dict):
            extra = set(item) - {"name", "options", "label", "schedule"}
            if "name" not in item or not isinstance(item["name"], str):
                raise ConfigError(f"{_where(source, 'solvers')} entry {item!r} needs a name")
            if extra:
                raise ConfigError(f"{_where(source, 'solvers')} entry {item['name']!r} has unknown key(s) "
                                  f"{sorted(extra)}; valid: name, options, label, schedule")
            opts = item.get("options", {})
            if not isinstance(opts, dict):
                raise ConfigError(f"{_where(source, 'solvers')} entry {item['name']!r}: options must be a table")
            get_solver(item["name"])
            sched = item.get("schedule", "")
            if not isinstance(sched, str):
                raise ConfigError(f"{_where(source, 'solvers')} entry {item['name']!r}: schedule must be a string")
            out.append(SolverEntry(item["name"], dict(opts), str(item.get("label", "")), sched))
        else:
            raise ConfigError(f"{_where(source, 'solvers')} entry {item!r} must be a name or a table")
    return out


_KINDS = ("ode", "sde")


def _metric_spec(data: dict, key: str, source: str, default=None, where: str | None = None):
    """A metric list, or a table {ode = [...], sde = [...]} of metric lists by solver kind."""
    label = key if where is None else f"{where}.{key}"
    v = data.get(key, default)
    if isinstance(v, dict):
        bad = sorted(set(v) - set(_KINDS))
        if bad or not v:
            raise ConfigError(f"{_where(source, label)}: a table of metrics by solver kind takes the keys "
                              f"{', '.join(_KINDS)}, got {sorted(v)!r}")
        return {k: _metric_spec(v, k, source, where=label) for k in v}
    ms = tuple(_str_list({key: v}, key, source) if v is not None else _str_list(data, key, source))
    bad = [m for m in ms if m not in METRICS]
    if bad:
        raise ConfigError(f"{_where(source, label)}: unknown metric {bad[0]!r}; valid: {', '.join(METRICS)}")
    return ms


def parse_sweep(data: dict, source: str = "<sweep>") -> Sweep:
    """Build a :class:`Sweep` from the parsed TOML table; every bad value is a one-line ConfigError."""

    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"sweep file {source!r}: unknown key(s) {unknown}; valid: {', '.join(sorted(_TOP_KEYS))}")
    if "blocks" in data:
        return _parse_blocks(data, source)
    name = data.get("name", Path(source).stem)
    out = data.get("out", f"runs/{name}")  # scratch outputs go under the git-ignored runs/
    if not isinstance(name, str) or not name or not isinstance(out, str) or not out:
        raise ConfigError(f"sweep file {source!r}: name and out must be non-empty strings")
    problems = _str_list(data, "problems", source)
    if "all" in problems:  # every analytic preset (not the image or labelled problems), plus any others named
        problems = list(dict.fromkeys(list(PRESETS) + [p for p in problems if p != "all"]))
    metrics = _metric_spec(data, "metrics", source, default=list(DEFAULT_METRICS))
    mbp = data.get("metrics_by_problem", {})
    if not isinstance(mbp, dict):
        raise ConfigError(f"{_where(source, 'metrics_by_problem')} must be a table problem = [metrics]")
    for p in mbp:
        if p not in problems:
            raise ConfigError(f"{_where(source, 'metrics_by_problem')}: problem {p!r} is not in problems")
    mbp = {p: _metric_spec(mbp, p, source, where="metrics_by_problem") for p in mbp}
    samples = data.get("samples", 2000)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ConfigError(f"{_where(source, 'samples')} must be an integer >= 2, got {samples!r}")
    for key in ("init", "dtype", "device", "reference"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{_where(source, key)} must be a string, got {data[key]!r}")
    if "crn" in data and data["crn"] not in (True, False, "shared"):
        raise ConfigError(f"{_where(source, 'crn')} must be true, false or \"shared\", got {data['crn']!r}")
    for key in ("skip_incompatible", "final_denoise", "cfg_batched", "gaussian_analogue"):
        if key in data and not isinstance(data[key], bool):
            raise ConfigError(f"{_where(source, key)} must be true or false, got {data[key]!r}")
    guided = _guided(data, source)
    return Sweep(
        name=name, out=out, problems=problems,
        sdes=_str_list(data, "sdes", source, default=["vp"]),
        schedules=_str_list(data, "schedules", source, default=["uniform"]),
        nfe=_int_list(data, "nfe", source, lo=1), seeds=_int_list(data, "seeds", source, lo=0, hi=MAX_SEED),
        samples=samples, metrics=metrics, solvers=_exclude(_solvers(data, source), data, source),
        t_end=_opt_float(data, "t_end", source), T=_opt_float(data, "T", source),
        init=data.get("init", "exact"), dtype=data.get("dtype", "float64"), device=data.get("device", "cpu"),
        reference=data.get("reference", "t_end"), crn=data.get("crn", True),
        skip_incompatible=data.get("skip_incompatible", False), description=str(data.get("description", "")),
        metrics_by_problem=mbp, final_denoise=data.get("final_denoise", False), **guided,
    )


def _exclude(entries: list, data: dict, source: str) -> list:
    ex = data.get("exclude")
    if ex is None:
        return entries
    names = _str_list(data, "exclude", source)
    for n in names:
        get_solver(n)
    out = [e for e in entries if e.name not in names]
    if not out:
        raise ConfigError(f"{_where(source, 'exclude')} leaves no solver")
    return out


def _parse_blocks(data: dict, source: str) -> Sweep:
    """A sweep file with ``[[blocks]]``: each block is the top-level table with the block's keys on top."""
    blocks = data["blocks"]
    if not isinstance(blocks, list) or not blocks or not all(isinstance(b, dict) for b in blocks):
        raise ConfigError(f"{_where(source, 'blocks')} must be a non-empty array of tables ([[blocks]])")
    base = {k: v for k, v in data.items() if k != "blocks"}
    name = base.get("name", Path(source).stem)
    out = base.get("out", f"runs/{name}")
    subs, names = [], set()
    for i, b in enumerate(blocks):
        bad = sorted({"blocks", "out"} & set(b))
        if bad:
            raise ConfigError(f"{_where(source, 'blocks')}[{i}]: key {bad[0]!r} is not allowed in a block")
        label = str(b.get("name", f"block{i + 1}"))
        if label in names:
            raise ConfigError(f"{_where(source, 'blocks')}: block name {label!r} appears twice")
        names.add(label)
        merged = {**base, **{k: v for k, v in b.items() if k != "name"}, "name": name, "out": out}
        if "metrics_by_problem" in merged:  # drop entries for problems this block does not run
            probs = merged.get("problems", [])
            probs = list(PRESETS) if probs == "all" or "all" in probs else probs
            merged["metrics_by_problem"] = {p: v for p, v in merged["metrics_by_problem"].items() if p in probs}
        try:
            sub = parse_sweep(merged, source)
        except ConfigError as exc:
            raise ConfigError(f"block {label!r}: {exc}") from None
        sub.description = label
        subs.append(sub)
    first = subs[0]
    top = Sweep(name=name, out=out, problems=list(dict.fromkeys(p for s in subs for p in s.problems)),
                sdes=list(dict.fromkeys(x for s in subs for x in s.sdes)),
                schedules=list(dict.fromkeys(x for s in subs for x in s.schedules)),
                nfe=sorted({x for s in subs for x in s.nfe}), seeds=sorted({x for s in subs for x in s.seeds}),
                samples=first.samples, metrics=first.metrics,
                solvers=list({e.display(): e for s in subs for e in s.solvers}.values()),
                skip_incompatible=first.skip_incompatible, description=str(data.get("description", "")),
                blocks=subs)
    top.gaussian_analogue = any(s.gaussian_analogue for s in subs)
    return top


def _guided(data: dict, source: str) -> dict:
    """The guided-sampling keys of a sweep file (guidance, scales, class_label, cfg_param, cfg_batched,
    metrics_w0, score_error, gaussian_analogue) as Sweep fields; absent keys keep the unguided defaults."""

    out: dict = {}
    for key in ("guidance", "cfg_param"):
        if key in data:
            if not isinstance(data[key], str) or not data[key]:
                raise ConfigError(f"{_where(source, key)} must be a string, got {data[key]!r}")
            out[key] = data[key]
    if "scales" in data:
        v = data["scales"]
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{_where(source, 'scales')} must be a non-empty list of numbers >= 0, got {v!r}")
        try:
            out["scales"] = [_scale(w) for w in v]
        except ConfigError as exc:
            raise ConfigError(f"{_where(source, 'scales')}: {exc}") from None
        if len(set(out["scales"])) != len(v):
            raise ConfigError(f"{_where(source, 'scales')} has duplicates: {v!r}")
    if "class_label" in data:
        v = data["class_label"]
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{_where(source, 'class_label')} must be an integer class label, got {v!r}")
        out["class_label"] = v
    for key in ("cfg_batched", "gaussian_analogue"):
        if key in data:
            out[key] = data[key]
    if "metrics_w0" in data:
        v = data["metrics_w0"]
        ms = DEFAULT_METRICS if v == "default" else _str_list(data, "metrics_w0", source)
        bad = [m for m in ms if m not in METRICS]
        if bad:
            raise ConfigError(f"{_where(source, 'metrics_w0')}: unknown metric {bad[0]!r}; valid: "
                              f"\"default\" or {', '.join(METRICS)}")
        out["metrics_w0"] = tuple(ms)
    if "score_error" in data:
        try:
            out["score_error"] = check_score_error(data["score_error"])
        except ConfigError as exc:
            raise ConfigError(f"{_where(source, 'score_error')}: {exc}") from None
    if out.get("guidance", "none") == "none" and (len(out.get("scales", [0.0])) > 1 or "class_label" in out):
        raise ConfigError(f"{_where(source, 'guidance')}: scales and class_label need guidance = \"cfg\" or "
                          "\"classifier\"")
    return out


def load_sweep(path: str | Path) -> Sweep:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep file {str(p)!r} does not exist")
    if p.suffix.lower() != ".toml":
        raise ConfigError(f"sweep file {str(p)!r} must be a .toml file")
    try:
        data = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"sweep file {str(p)!r} is not valid TOML: {exc}") from None
    return parse_sweep(data, str(p))
