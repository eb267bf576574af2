"""Exact output law of a solver on a Gaussian target, by running the solver's own code.

For a Gaussian target the score is affine, so every fixed-grid solver maps (x_T, xi) affinely:
x_out = A x_T + b + G xi, where xi stacks every standard-normal scalar the solver drew. Two batched
runs recover A, b and G without re-deriving any solver:

1. rows x_T = m_T and m_T + e_i (i = 1..d), with a noise source that returns zeros and records the
   keys drawn: row 0 gives b' = A m_T + b (the output mean), rows 1..d minus row 0 give A;
2. rows x_T = m_T with one-hot noise (one row per scalar draw): each row minus b' is a column of G.

Output law: N(A m_T + b, A P_T A^T + G G^T) for x_T ~ N(m_T, P_T). Exact up to rounding, in any
dimension, for every solver that declares itself affine (``SolverSpec.affine(options)``: rows independent,
output affine in (x_T, noise)); a solver that is not (``pc``, ``dopri5``: batch-coupled) is refused, since
the probe batches would not reproduce what it does on a real batch.
"""

from __future__ import annotations

import torch

from .errors import ConfigError
from .model import Model
from .noise import CountingNoise, ProbeNoise

__all__ = ["output_gaussian"]


def output_gaussian(spec, make_model, sde, grid, m_T, P_T, nfe=None, options=None, base_grid=None):
    """Mean and covariance (float64) of ``spec``'s output started from N(m_T, P_T) on ``grid``.

    ``make_model()`` returns a fresh :class:`Model` (float64). ``base_grid`` is the noise base grid
    (common random numbers); it does not change the law, only which draws are summed.
    """
    options = options or {}
    if not spec.affine(options):
        raise ConfigError(f"solver {spec.name!r} with options {options} is not affine (batch-coupled or "
                          "adaptive): it has no exact output law")
    m_T = torch.as_tensor(m_T, dtype=torch.float64).reshape(-1)
    P_T = torch.as_tensor(P_T, dtype=torch.float64)
    d = m_T.numel()
    x = m_T.expand(d + 1, d).clone()
    x[1:] += torch.eye(d, dtype=torch.float64)
    counting = CountingNoise(0, d + 1, (d,), base_grid=base_grid)
    model: Model = make_model()
    out = spec.sample(model, x, grid, sde, counting, nfe=nfe, **options)
    mean = out[0]
    A = (out[1:] - mean).T  # column i = A e_i
    cov = A @ P_T @ A.T
    if counting.keys:
        probe = ProbeNoise(counting.keys, (d,), base_grid=base_grid)
        xp = m_T.expand(probe.n, d).clone()
        outp = spec.sample(make_model(), xp, grid, sde, probe, nfe=nfe, **options)
        G = (outp - mean).T  # (d, n_noise)
        cov = cov + G @ G.T
    return mean, 0.5 * (cov + cov.T)
