"""Shared pieces of ``benchmarks/perf.py``: sizes, the one table (rows, formatting), the clock, and the
sample/score timing helpers every section uses (``benchmarks/common.py`` re-exports those asv needs)."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sdebench.errors import ConfigError
from sdebench.model import Model
from sdebench.noise import NoiseSource
from sdebench.solvers import SOLVERS, get_solver

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Sizes:
    batch: int = 100_000
    nfe: int = 12  # divisible by 1, 2, 3, 4: every fixed-grid solver can use it
    unet_batch: int = 256
    unet_nfe: int = 12
    peer_batches: tuple = (1_000, 100_000)
    scale_batch: tuple = (100, 1_000, 10_000, 100_000, 1_000_000)
    scale_dim: tuple = (2, 8, 32, 128, 512, 1024)
    scale_K: tuple = (1, 2, 4, 8, 16, 32, 64)
    scale_nfe: tuple = (6, 12, 24, 48, 96)
    scale_n: int = 10_000
    scale_dim_n: int = 1_000  # batch of the dimension series (d = 1024 at 1e4 rows is 1e7 normals a step)
    emd_n: tuple = (500, 1000, 2000, 4000)
    sliced_n: tuple = (1_000, 3_000, 10_000)
    mmd_n: tuple = (1_000, 2_000, 4_000, 8_000)
    cov_n: tuple = (500, 2_000, 8_000)
    cov_d: tuple = (2, 8, 32)
    cov_d_n: int = 500
    gpu_batch: int = 1_000_000
    graph_batches: tuple = (256, 4096)
    repeat: int = 5
    solvers: tuple | None = None  # overhead rows for these solvers only (None: every fixed-grid solver)
    unet: bool = True
    sweep_seeds: int | None = 1
    sweep_nfe: int | None = 3
    extra: dict = field(default_factory=dict)


QUICK = Sizes(batch=2_000, nfe=12, unet_batch=16, unet_nfe=4, peer_batches=(500,), scale_batch=(100, 1_000, 4_000),
              scale_dim=(2, 8, 32), scale_K=(1, 4, 16), scale_nfe=(6, 12, 24), scale_n=1_000, scale_dim_n=500,
              emd_n=(200, 400), sliced_n=(1_000, 4_000), mmd_n=(500, 1_000), cov_n=(200, 400), cov_d=(2, 4),
              cov_d_n=200, gpu_batch=100_000, graph_batches=(256,), repeat=1, sweep_seeds=1, sweep_nfe=1)


ROWS: list[dict] = []


NOTES: list[str] = []


COLUMNS = ("section", "case", "size", "sdebench", "reference", "ratio / exponent", "target", "met", "note")


def row(section, case, size="", ours="", ref="", ratio="", target="", met="", note="", **values):
    """One table row; ``values`` are the raw numbers behind it (kept in ROWS, not printed)."""
    ROWS.append(dict(zip(COLUMNS, (section, case, size, ours, ref, ratio, target, met, note)), **values))


def fmt_s(t: float | None) -> str:
    if t is None or not math.isfinite(t):
        return "-"
    if t >= 1:
        return f"{t:.3g} s"
    if t >= 1e-3:
        return f"{t * 1e3:.3g} ms"
    return f"{t * 1e6:.3g} us"


def fmt_n(n) -> str:
    n = int(n)
    if n >= 1000 and n % 1000 == 0:
        e = int(math.log10(n))
        if n == 10**e:
            return f"1e{e}"
    return str(n)


def render() -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in ROWS:
        lines.append("| " + " | ".join(str(r[c]).replace("|", "/") for c in COLUMNS) + " |")
    return "\n".join(lines)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


CLOCK = {"fn": time.perf_counter, "name": "wall"}


def timeit(fn, repeat: int, device="cpu", warmup: int = 1):
    """Median time of ``fn()`` over ``repeat`` runs after ``warmup`` untimed runs; returns (t, last).

    The clock is wall time (``time.perf_counter``) unless ``--clock cpu`` chose this process's CPU time
    (``time.process_time``), which is what to use on a machine shared with other jobs."""
    clock = CLOCK["fn"]
    out = None
    for _ in range(warmup):
        out = fn()
    _sync(device)
    times = []
    for _ in range(max(1, repeat)):
        t0 = clock()
        out = fn()
        _sync(device)
        times.append(clock() - t0)
    return statistics.median(times), out


def fit_exponent(sizes, times) -> float:
    x, y = np.log(np.asarray(sizes, float)), np.log(np.asarray(times, float))
    if len(x) < 2:
        return math.nan
    return float(np.polyfit(x, y, 1)[0])


def coeffs(sde, t: float):
    tt = torch.tensor(float(t), dtype=torch.float64)
    return float(sde.f(tt)), float(sde.g2(tt))


def setup(problem, sde, n, dtype=torch.float64, device="cpu", seed=0, t_start=None):
    """(model, x_T): a counted Model and n exact samples of p_{t_start} (default T)."""
    model = Model(sde, **problem.model_functions(sde))
    t_start = sde.T if t_start is None else t_start
    x = problem.sample_t(n, t_start, sde, generator=torch.Generator().manual_seed(seed), dtype=dtype, device=device)
    return model, x


def score_time(model, x, grid, repeat, device):
    """Mean time of one ``model.score`` call on x over the grid's times (one timed run = a pass over the grid)."""
    times = grid[:-1]

    def one_pass():
        with torch.no_grad():  # as inside sample_call: no autograd graph for a network's parameters
            for t in times:
                model.score(x, t)

    t, _ = timeit(one_pass, repeat, device)
    return t / len(times)


class _Recorder(Model):
    """A Model that also keeps a copy of every (x, t) it is evaluated at."""

    def __init__(self, model: Model):
        super().__init__(model.sde, cost=model.cost, **model.native)
        self.calls: list = []

    def _eval(self, kind, x, t):
        self.calls.append((x.detach().clone(), t))
        return super()._eval(kind, x, t)


def trajectory_floor(spec, model, x, grid, sde, seed, nfe, repeat, device):
    """Time of the score evaluations alone, on exactly the (x, t) the solver visits: run the solver once
    recording its model inputs, then time ``model.score`` on each recorded input (sum over the run)."""
    rec = _Recorder(model)
    sample_call(spec, rec, x, grid, sde, seed, nfe)
    calls = rec.calls

    def replay():
        with torch.no_grad():
            for xi, ti in calls:
                model.score(xi, ti)

    t, _ = timeit(replay, repeat, device)
    return t, len(calls)


def fixed_grid_solvers() -> list[str]:
    get_solver("em")  # loads every solver module
    return sorted(n for n, s in SOLVERS.items() if not s.adaptive)


def solver_nfe(spec, nfe: int) -> int | None:
    """The budget nearest to ``nfe`` that ``spec`` accepts (None if none within 4x)."""
    for cand in sorted(range(1, 4 * nfe + 1), key=lambda c: (abs(c - nfe), c)):
        try:
            spec.steps_for_nfe(cand)
            return cand
        except ConfigError:
            continue
    return None


def sample_call(spec, model, x, grid, sde, seed, nfe):
    """One full sample call as the harness makes it: a fresh NoiseSource (SDE solvers), then spec.sample."""
    noise = NoiseSource(seed, x.shape[0], tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    with torch.no_grad():
        return spec.sample(model, x, grid, sde, None if spec.deterministic() else noise, nfe=nfe)


def timed_sample(spec, model, x, grid, sde, seed, nfe, rep, device="cpu"):
    return timeit(lambda: sample_call(spec, model, x, grid, sde, seed, nfe), rep, device)
