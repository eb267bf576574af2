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
- ``sliced_w2``: sliced W2 in pixel space against the held-out split (64 fixed directions, exact 1-D
  W2 between empirical laws); ``sliced_w2_null`` (``_sd``) the same for 8 subsets of n training images.
- ``png``: a grid of the first 64 samples written to ``$SDEBENCH_GRID_DIR`` (default ``runs/grids/``);
  the row holds the path.

The classifier (3 conv layers, 64 pooled features, linear head) is trained by :func:`train_classifier`
and stored as safetensors + JSON with its held-out accuracy.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sdebench.errors import ConfigError
from sdebench.reference import reference_flow

__all__ = ["Classifier", "train_classifier", "load_classifier", "save_classifier", "frechet_distance",
           "sliced_w2_samples", "reference_solve", "cached_reference", "image_metrics", "IMAGE_METRICS",
           "CLASSIFIER_FORMAT"]

CLASSIFIER_FORMAT = "sdebench-classifier-1"
IMAGE_METRICS = ("fd", "sliced_w2", "path_err", "png")
# Reference of path_err: dopri5 at rtol = atol = REF_RTOL; its error estimate path_ref_err is the RMS per pixel
# of its difference to a check solve at REF_CHECK x the tolerance (sdebench/reference.py). The network runs
# in float32, yet tightening still pays: on digits (500 samples, seed 0) the rtol 1e-6 solve is 6e-5 RMS per
# pixel off the 1e-8 one, as large as the smallest path errors measured (unipc at NFE 200).
REF_RTOL = 1e-8
REF_CHECK = 10.0
LEGACY_REF_RTOL = 1e-6  # the tolerance of image rows written before rows recorded path_ref_rtol


class Classifier(nn.Module):
    def __init__(self, channels: int = 1, classes: int = 10, width: int = 16):
        super().__init__()
        self.config = {"channels": channels, "classes": classes, "width": width}
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * w, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_classifier(data, epochs: int = 30, batch: int = 64, lr: float = 2e-3, seed: int = 0) -> tuple:
    """Train on ``data.train`` (with small Gaussian pixel noise as augmentation); returns (model, accuracy
    on ``data.test``)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = Classifier(channels=data.shape[0], classes=int(data.train_labels.max()) + 1)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    n = len(data.train)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            x = data.train[idx] + 0.05 * torch.randn(data.train[idx].shape, generator=g)
            loss = nn.functional.cross_entropy(clf(x), data.train_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    clf.eval()
    with torch.no_grad():
        acc = float((clf(data.test).argmax(1) == data.test_labels).double().mean())
    return clf, acc


CLASSIFIER_LIMITS = {"channels": (1, 16), "classes": (2, 1000), "width": (1, 256)}


def save_classifier(stem, clf: Classifier, info: dict) -> None:
    """``<stem>.safetensors`` + ``<stem>.json`` (info, format, arch and the SHA-256 of the weight file's bytes)."""
    from safetensors.torch import save

    from sdebench.problems.train import WEIGHTS_HASH

    stem = Path(stem)
    blob = save({k: v.contiguous() for k, v in clf.state_dict().items()})
    Path(str(stem) + ".safetensors").write_bytes(blob)
    cfg = dict(info, format=CLASSIFIER_FORMAT, arch=clf.config)
    cfg[WEIGHTS_HASH] = hashlib.sha256(blob).hexdigest()
    Path(str(stem) + ".json").write_text(json.dumps(cfg, indent=1) + "\n")


def _classifier_arch_error(arch) -> str | None:
    if not isinstance(arch, dict) or set(arch) != set(CLASSIFIER_LIMITS):
        return f"'arch' must be a table of exactly {', '.join(CLASSIFIER_LIMITS)}, got {arch!r}"
    for k, (lo, hi) in CLASSIFIER_LIMITS.items():
        v = arch[k]
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            return f"arch.{k} must be an integer in [{lo}, {hi}], got {v!r}"
    return None


def load_classifier(path) -> Classifier:
    from sdebench.problems.train import WEIGHTS_HASH, _load_into, _read_safetensors, expected_hash

    path = Path(path)
    stem = str(path)[: -len(".safetensors")] if str(path).endswith(".safetensors") else str(path)
    jpath = Path(stem + ".json")
    try:
        cfg = json.loads(jpath.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read classifier config {str(jpath)!r}: {exc}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != CLASSIFIER_FORMAT:
        raise ConfigError(f"{str(jpath)!r} is not an {CLASSIFIER_FORMAT} file")
    bad = _classifier_arch_error(cfg.get("arch"))
    if bad:
        raise ConfigError(f"classifier config {str(jpath)!r}: {bad}")
    wpath = Path(stem + ".safetensors")
    if not wpath.is_file():
        raise ConfigError(f"checkpoint file {str(wpath)!r} does not exist")
    tensors = _read_safetensors(wpath, expected_hash(cfg, WEIGHTS_HASH, jpath, wpath), jpath)
    clf = Classifier(**cfg["arch"])
    _load_into(clf, tensors, wpath)
    clf.info = cfg
    return clf.eval()


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


# ---- reference ODE solve -------------------------------------------------------------------------
def reference_solve(eps_fn, sde, x_T: torch.Tensor, t_end: float, rtol: float = REF_RTOL,
                    t_start: float | None = None) -> tuple:
    """Probability-flow ODE from x_T at t_start (default sde.T) to t_end with dopri5 at rtol = atol
    (:func:`sdebench.reference.reference_flow`); returns (x, nfe)."""
    r = reference_flow(sde, x_T, float(t_end), eps=eps_fn, t_start=t_start, rtol=rtol)
    return r.x.to(x_T.dtype), r.nfe


def cached_reference(problem, sde, x: torch.Tensor, t_end: float, t_start: float | None = None,
                     estimate: bool = True):
    """The reference flow solve of ``problem``'s network from (x, t_start) (default sde.T) to t_end at
    rtol = atol = REF_RTOL (a :class:`sdebench.reference.ReferenceFlow`; with ``estimate`` also the check
    solve at REF_CHECK x the tolerance and its error estimate), cached per problem per process. Used by
    path_err and by the oracle consistency function (so the oracle IS the reference flow map)."""
    t0 = float(sde.T) if t_start is None else float(t_start)
    key = _key(x, repr(sde), float(t_end), t0, REF_RTOL, REF_CHECK)
    hit = problem._ref_cache.get(key)
    if hit is None or (estimate and hit.err is None):
        eps = problem.model_functions(sde)["eps"]
        problem._ref_cache[key] = reference_flow(sde, x.to(torch.float64), float(t_end), eps=eps, t_start=t0,
                                                 rtol=REF_RTOL, error_estimate=estimate, check_factor=REF_CHECK)
    return problem._ref_cache[key]


def _key(x: torch.Tensor, *extra) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(x.detach().cpu().double().numpy().tobytes())
    h.update(repr(extra).encode())
    return h.hexdigest()


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
    from .nulls import NULL_DRAWS
    from .nulls import null_columns as _null_columns

    key = (problem.name, len(problem.data.train), n, name, extra)
    if key not in _NULL_CACHE:
        _NULL_CACHE[key] = [fn(_train_subset(problem, n, j)) for j in range(NULL_DRAWS)]
    return _null_columns(name, _NULL_CACHE[key])


def image_metrics(problem, x0: torch.Tensor, x_T: torch.Tensor, sde, t_end: float, kind: str, cfg) -> dict:
    """The metrics of one image cell: those of IMAGE_METRICS named in cfg.metrics (all but png when the
    caller left the default list)."""
    from .registry import DEFAULT_METRICS

    wanted = [m for m in IMAGE_METRICS if m != "png"] if tuple(cfg.metrics) == tuple(DEFAULT_METRICS) else \
        [m for m in cfg.metrics if m in IMAGE_METRICS]
    x = x0.double().cpu()
    n = len(x)
    test = problem.data.test.reshape(len(problem.data.test), -1).double()
    row: dict = {}
    if "fd" in wanted:
        if problem.classifier is None:
            raise ConfigError(f"problem {problem.name!r} has no classifier for the fd metric")
        f_test = _features(problem, test)
        row["fd"] = frechet_distance(_features(problem, x), f_test)
        row.update(_image_null(problem, n, "fd", lambda y: frechet_distance(_features(problem, y), f_test)))
    if "sliced_w2" in wanted:
        row["sliced_w2"] = sliced_w2_samples(x, test, seed=cfg.seed)
        row.update(_image_null(problem, n, "sliced_w2", lambda y: sliced_w2_samples(y, test, seed=cfg.seed),
                               extra=cfg.seed))
    if "path_err" in wanted and kind == "ode":
        ref = cached_reference(problem, sde, x_T, float(t_end))
        row["path_err"] = float(((x - ref.x.cpu()) ** 2).mean().sqrt())
        row["path_ref_nfe"] = ref.nfe
        row["path_ref_rtol"] = ref.rtol
        row["path_ref_err"] = ref.err
    if "png" in wanted:
        from sdebench.problems.images import make_grid_png

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


def _image_only(ctx):
    return True if ctx.is_image else "needs an image problem"


def _register() -> None:
    from .registry import IMAGE, Metric, register_metric

    register_metric(Metric("fd", "image problems: Frechet distance in a small classifier's features vs the held-out "
                           "split", "Frechet distance (classifier features)", lambda ctx: image_metric(ctx, "fd"),
                           applies=_image_only, has_null=True, problems="image problems", stage=IMAGE,
                           default_when=lambda ctx: ctx.is_image))
    register_metric(Metric("png", "image problems: save a PNG grid of 64 samples under $SDEBENCH_GRID_DIR (default "
                           "runs/grids/)", "PNG grid", lambda ctx: image_metric(ctx, "png"), applies=_image_only,
                           exact=True, problems="image problems", stage=IMAGE))


_register()
