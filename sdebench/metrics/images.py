"""Image metrics: pathwise error against a reference ODE solve, Fréchet distance in a small classifier's
feature space, sliced W2 in pixel space, PNG sample grids.

- ``path_err``: RMS per pixel of x_solver - x_ref, where x_ref is the probability-flow ODE solved by
  torchdiffeq's dopri5 (rtol = atol = ``REF_RTOL`` = 1e-8, float64 state, float32 network;
  :func:`sdebench.reference.reference_flow`) from the same x_T to the same t_end with the same network:
  the pure discretization error of a deterministic solver (Lu et al. 2022, Thm 3.2). ``path_ref_nfe`` is
  the reference's cost, ``path_ref_rtol`` its tolerance, ``path_ref_err`` the RMS per pixel of its
  difference to a check solve at 10x the tolerance (a conservative estimate of the reference's own
  error). Computed for deterministic (``ode``) solvers only.
- ``fd``: Fréchet distance between Gaussians fitted to the classifier features of the samples and of
  the held-out split; ``fd_null`` / ``fd_null_sd`` are the mean and sd of the same statistic for 8
  subsets of n training images (the floor: no sampler can beat real data at the same n).
- ``sliced_w2_data``: sliced W2 in pixel space against the held-out split (64 fixed directions, exact 1-D
  W2 between empirical laws); ``sliced_w2_data_null`` (``_sd``) the same for 8 subsets of n training images.
  (``sliced_w2`` is the analytic targets' estimator, against the target's exact projections.)
- ``png``: a grid of the first 64 samples written to ``$SDEBENCH_GRID_DIR`` (default ``runs/grids/``);
  the row holds the path.

The classifier (3 conv layers, 64 pooled features, linear head) is trained by
:func:`sdebench.training.classifier.train_classifier`
and stored as safetensors + JSON with its held-out accuracy.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from sdebench.errors import ConfigError
from sdebench.problems.classifier import CLASSIFIER_FORMAT, Classifier, load_classifier, save_classifier
from sdebench.problems.images import cached_reference, make_grid_png, reference_solve

from .nulls import NULL_DRAWS
from .nulls import null_columns as _null_columns
from .registry import DEFAULT_METRICS, IMAGE, Metric, register_metric

__all__ = ["Classifier", "load_classifier", "save_classifier", "frechet_distance",
           "sliced_w2_samples", "reference_solve", "cached_reference", "image_metrics", "IMAGE_METRICS",
           "CLASSIFIER_FORMAT"]

IMAGE_METRICS = ("fd", "sliced_w2_data", "path_err", "png")
LEGACY_REF_RTOL = 1e-6  # the tolerance of image rows written before rows recorded path_ref_rtol


# ---- statistics ----------------------------------------------------------------------------------
def _psd_sqrt(S: torch.Tensor) -> torch.Tensor:
    lam, U = torch.linalg.eigh(S)
    return (U * lam.clamp(min=0).sqrt()) @ U.T


def frechet_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """|m1 - m2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2) of Gaussians fitted to two feature sets."""
    f1, f2 = f1.double(), f2.double()
    m1, m2 = f1.mean(0), f2.mean(0)
    S1, S2 = torch.cov(f1.T), torch.cov(f2.T)
    r1 = _psd_sqrt(S1)
    cross = torch.linalg.eigvalsh(r1 @ S2 @ r1).clamp(min=0).sqrt().sum()
    return float(((m1 - m2) ** 2).sum() + torch.trace(S1) + torch.trace(S2) - 2 * cross)


def _directions(d: int, k: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    th = torch.randn(k, d, generator=g, dtype=torch.float64)
    return th / th.norm(dim=1, keepdim=True)


def sliced_w2_samples(x: torch.Tensor, y: torch.Tensor, k: int = 64, seed: int = 0) -> float:
    """sqrt(mean_theta W2^2(theta^T x, theta^T y)), exact 1-D W2 between empirical laws of any sizes."""
    import ot

    th = _directions(x.shape[1], k, seed)
    px = (x.double() @ th.T).numpy()
    py = (y.double() @ th.T).numpy()
    w = [ot.wasserstein_1d(px[:, j], py[:, j], p=2) for j in range(k)]
    return float(math.sqrt(max(float(np.mean(w)), 0.0)))


def _features(problem, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return problem.classifier.features(x.float().reshape(len(x), *problem.shape)).double()


def _train_subset(problem, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed((10_007 * (seed + 1)) % 2**64)
    N = len(problem.data.train)
    idx = torch.randperm(N, generator=g)[:n] if n <= N else torch.randint(N, (n,), generator=g)
    return problem.data.train[idx].reshape(len(idx), -1).double()


_NULL_CACHE: dict = {}


def _image_null(problem, n: int, name: str, fn, extra=None) -> dict:
    """``<name>_null`` / ``<name>_null_sd``: mean and sd of ``fn`` on ``NULL_DRAWS`` training subsets of size n
    (subset j uses the generator of seed j), cached per (problem, n, statistic, extra) for the process."""
    key = (problem.name, id(problem.data.train), len(problem.data.train), n, name, extra)  # a network may reuse a name
    if key not in _NULL_CACHE:
        _NULL_CACHE[key] = [fn(_train_subset(problem, n, j)) for j in range(NULL_DRAWS)]
    return _null_columns(name, _NULL_CACHE[key])


def image_metrics(problem, x0: torch.Tensor, x_T: torch.Tensor, sde, t_end: float, kind: str, cfg) -> dict:
    """The metrics of one image cell: those of IMAGE_METRICS named in cfg.metrics (all but png when the
    caller left the default list)."""
    wanted = [m for m in IMAGE_METRICS if m != "png"] if tuple(cfg.metrics) == tuple(DEFAULT_METRICS) else \
        [m for m in cfg.metrics if m in IMAGE_METRICS]
    x = x0.double().cpu()
    n = len(x)
    data = getattr(problem, "data", None)  # a network problem may have none (only path_err and png apply)
    test = None if data is None else data.test.reshape(len(data.test), -1).double()
    row: dict = {}
    if "fd" in wanted:
        if problem.classifier is None:
            raise ConfigError(f"problem {problem.name!r} has no classifier for the fd metric")
        f_test = _features(problem, test)
        row["fd"] = frechet_distance(_features(problem, x), f_test)
        row.update(_image_null(problem, n, "fd", lambda y: frechet_distance(_features(problem, y), f_test)))
    if "sliced_w2_data" in wanted:
        row["sliced_w2_data"] = sliced_w2_samples(x, test, seed=cfg.seed)
        row.update(_image_null(problem, n, "sliced_w2_data", lambda y: sliced_w2_samples(y, test, seed=cfg.seed),
                               extra=cfg.seed))
    if "path_err" in wanted and kind == "ode":
        ref = cached_reference(problem, sde, x_T, float(t_end))
        row["path_err"] = float(((x - ref.x.cpu()) ** 2).mean().sqrt())
        row["path_ref_nfe"] = ref.nfe
        row["path_ref_rtol"] = ref.rtol
        row["path_ref_err"] = ref.err
    if "png" in wanted:
        out_dir = Path(os.environ.get("SDEBENCH_GRID_DIR", os.path.join("runs", "grids")))
        opts = "".join(f"_{k}{v}" for k, v in sorted(cfg.solver_options.items()))
        name = f"{problem.name}_{sde.name}_{cfg.solver}{opts}_nfe{cfg.nfe}_seed{cfg.seed}.png"
        row["png"] = make_grid_png(x[:64], problem.shape, out_dir / name)
    return row


# ---- registry: each image metric is one block of image_metrics, run under no_grad ---------------------------
def image_metric(ctx, name: str) -> dict:
    """The columns of image metric ``name`` for the cell of ``ctx`` (its block of :func:`image_metrics`)."""
    from dataclasses import replace

    with torch.no_grad():
        return image_metrics(ctx.problem, ctx.x0, ctx.x_T, ctx.sde, ctx.t_end, ctx.kind,
                             replace(ctx.cfg, metrics=(name,)))


def image_data_applies(ctx):
    """Rule of the metrics judged against an image problem's data (sliced_w2 on images, fd): a network problem
    built without data (sdebench.problems.from_network) has none."""
    if not ctx.is_image:
        return "needs an image problem"
    return True if getattr(ctx.problem, "data", None) is not None else "needs data (from_network(..., data=...))"


def _fd_applies(ctx):
    ok = image_data_applies(ctx)
    if ok is not True:
        return ok
    return True if getattr(ctx.problem, "classifier", None) is not None else "needs a feature classifier"


def _png_applies(ctx):
    if not ctx.is_image:
        return "needs an image problem"
    return True if len(getattr(ctx.problem, "shape", ())) == 3 else "needs samples of shape (C, H, W)"


ORDER = 50  # position of this family in the registry (sdebench list)


def _register() -> None:
    register_metric(Metric("fd", "image problems: Frechet distance in a small classifier's features vs the held-out "
                           "split", "Frechet distance (classifier features)", lambda ctx: image_metric(ctx, "fd"),
                           applies=_fd_applies, has_null=True, problems="image problems", stage=IMAGE,
                           default_when=lambda ctx: ctx.is_image))
    register_metric(Metric("sliced_w2_data", "image problems: sliced W2 in pixel space vs the held-out split (64 "
                           "fixed directions, empirical 1-D laws)", "sliced W2 vs held-out data",
                           lambda ctx: image_metric(ctx, "sliced_w2_data"), applies=image_data_applies,
                           has_null=True, problems="image problems (networks: with data)", stage=IMAGE,
                           default_when=lambda ctx: ctx.is_image))
    register_metric(Metric("png", "image problems: save a PNG grid of 64 samples under $SDEBENCH_GRID_DIR (default "
                           "runs/grids/)", "PNG grid", lambda ctx: image_metric(ctx, "png"), applies=_png_applies,
                           exact=True, problems="image problems", stage=IMAGE))
