"""Named analytic targets (docs/theory.md#gaussian-mixture-targets).

Each preset is a deterministic function of its name."""

from __future__ import annotations

import math

import torch

from .gmm import GaussianMixture

# one-line descriptions, readable without building a preset (`sdebench list problems`)
DESCRIPTIONS = {
    "gauss1d": "N(1.5, 0.5^2)",
    "gauss-aniso16": "16-d Gaussian, eigenvalues 1e-2..10 (cond 1e3), random rotation (seed 1234)",
    "gmm1d": "bimodal 1-D: 0.3 N(-2, 0.5^2) + 0.7 N(2, 0.5^2)",
    "gmm2d-ring8": "8 equal modes on a circle of radius 4, std 0.3",
    "gmm2d-imbalanced": "weights 0.95/0.05, modes (-2.5,-2.5) and (2.5,2.5), std 0.5",
    "gmm-d32": "5 modes in 32-d, random means (seed 32), diagonal stds in [0.5, 1]",
    "gmm2d-close": "3 overlapping 2-D modes (about 2 component stds apart), correlated covariances: score "
                   "curvature matters",
    "gmm-d32-close": "4 overlapping modes in 32-d (1.6-1.8 component stds apart, seed 3232), diagonal stds in "
                     "[0.8, 1.2]",
}


def _rotation(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]


def gauss1d() -> GaussianMixture:
    return GaussianMixture([1.0], [[1.5]], [[[0.25]]], name="gauss1d", description=DESCRIPTIONS["gauss1d"])


def gauss_aniso16() -> GaussianMixture:
    d = 16
    Q = _rotation(d, seed=1234)
    lam = torch.logspace(-2, 1, d, dtype=torch.float64)  # condition number 1e3
    S = Q @ torch.diag(lam) @ Q.T
    S = 0.5 * (S + S.T)
    g = torch.Generator().manual_seed(4321)
    mu = 0.5 * torch.randn(1, d, generator=g, dtype=torch.float64)
    return GaussianMixture([1.0], mu, S[None], name="gauss-aniso16",
                           description=DESCRIPTIONS["gauss-aniso16"])


def gmm1d() -> GaussianMixture:
    return GaussianMixture([0.3, 0.7], [[-2.0], [2.0]], [[[0.25]], [[0.25]]], name="gmm1d",
                           description=DESCRIPTIONS["gmm1d"])


def gmm2d_ring8(labels: int | None = None) -> GaussianMixture:
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    mu = 4.0 * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    covs = 0.09 * torch.eye(2, dtype=torch.float64).expand(8, 2, 2)
    lab = None if labels is None else [k % labels for k in range(8)]
    return GaussianMixture(torch.full((8,), 1 / 8), mu, covs, name="gmm2d-ring8", labels=lab,
                           description=DESCRIPTIONS["gmm2d-ring8"])


def gmm2d_imbalanced() -> GaussianMixture:
    mu = [[-2.5, -2.5], [2.5, 2.5]]
    covs = 0.25 * torch.eye(2, dtype=torch.float64).expand(2, 2, 2)
    return GaussianMixture([0.95, 0.05], mu, covs, name="gmm2d-imbalanced",
                           description=DESCRIPTIONS["gmm2d-imbalanced"])


def gmm_d32() -> GaussianMixture:
    d, K = 32, 5
    g = torch.Generator().manual_seed(32)
    mu = 3.0 * torch.randn(K, d, generator=g, dtype=torch.float64) / math.sqrt(2.0)
    std = 0.5 + 0.5 * torch.rand(K, d, generator=g, dtype=torch.float64)
    w = torch.tensor([0.3, 0.25, 0.2, 0.15, 0.1], dtype=torch.float64)
    return GaussianMixture(w, mu, torch.diag_embed(std**2), name="gmm-d32",
                           description=DESCRIPTIONS["gmm-d32"])


def gmm2d_close() -> GaussianMixture:
    """Three modes 1.85 to 2.2 component stds apart (Mahalanobis, pairwise mean covariance): no low-density gap
    between them, so the score bends (its Jacobian changes sign pattern) inside the bulk of the data instead of in
    empty space."""
    mu = [[-0.8, 0.0], [0.8, 0.0], [0.0, 1.2]]
    covs = [[[0.6, 0.2], [0.2, 0.5]], [[0.5, -0.2], [-0.2, 0.6]], [[0.7, 0.0], [0.0, 0.4]]]
    return GaussianMixture([0.45, 0.35, 0.2], mu, covs, name="gmm2d-close", description=DESCRIPTIONS["gmm2d-close"])


def gmm_d32_close() -> GaussianMixture:
    """Four modes in 32-d whose means are 1.6 to 1.8 component stds apart (seed 3232)."""
    d, K = 32, 4
    g = torch.Generator().manual_seed(3232)
    mu = 1.5 * torch.randn(K, d, generator=g, dtype=torch.float64) / math.sqrt(2.0 * d)
    std = 0.8 + 0.4 * torch.rand(K, d, generator=g, dtype=torch.float64)
    w = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    return GaussianMixture(w, mu, torch.diag_embed(std**2), name="gmm-d32-close",
                           description=DESCRIPTIONS["gmm-d32-close"])


PRESETS = {
    "gauss1d": gauss1d,
    "gauss-aniso16": gauss_aniso16,
    "gmm1d": gmm1d,
    "gmm2d-ring8": gmm2d_ring8,
    "gmm2d-imbalanced": gmm2d_imbalanced,
    "gmm-d32": gmm_d32,
    "gmm2d-close": gmm2d_close,
    "gmm-d32-close": gmm_d32_close,
}

# discovered by sdebench.problems: name -> (builder, description); ORDER places this module in listings
ORDER = 10
ENTRIES = {name: (build, DESCRIPTIONS[name]) for name, build in PRESETS.items()}
