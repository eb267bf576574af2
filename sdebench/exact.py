"""Exact output law of a solver on a Gaussian target, by running the solver's own code.

For a Gaussian target the score is affine, so every fixed-grid solver maps (x_T, xi) affinely:
x_out = A x_T + b + G xi, where xi stacks every standard-normal scalar the solver drew. Two batched
runs recover A, b and G without re-deriving any solver:

1. rows x_T = m_T and m_T + e_i (i = 1..d), with a noise source that returns zeros and records the
   keys drawn: row 0 gives b' = A m_T + b (the output mean), rows 1..d minus row 0 give A;
2. rows x_T = m_T with one-hot noise (one row per scalar draw): each row minus b' is a column of G.

Step 2 (the one-hot probe) runs one row per scalar draw, NFE x d rows through NFE steps: O(NFE^2 d^2)
work, 4-5 s per cell at NFE 1000 on gauss-aniso16. :func:`output_gaussian` computes G G^T instead by
reverse-mode differentiation (:func:`noise_cov_grad`): d rows x_T = m_T, each drawing its own noise as
leaf tensors that require grad, one backward pass of sum_i out[i, i]; row i of each leaf's gradient is
row i of G restricted to that draw (rows are independent), so G G^T = sum over draws of grad grad^T,
O(NFE d^2) work; for a stochastic solver the mean and A come from the same pass (2d + 1 rows, one forward and
one backward pass in all). A solver whose code breaks the autograd graph falls back to the probe
(``method="probe"`` forces it; tests check the two agree to rounding for every affine solver).

Output law: N(A m_T + b, A P_T A^T + G G^T) for x_T ~ N(m_T, P_T). Exact up to rounding, in any
dimension, for every solver that declares itself affine (``SolverSpec.affine(options)``: rows independent,
output affine in (x_T, noise)); a solver that is not (``pc``, ``dopri5``: batch-coupled) is refused, since
the probe batches would not reproduce what it does on a real batch.
"""

from __future__ import annotations

import torch

from .errors import ConfigError
from .model import Model
from .noise import CountingNoise, GradNoise, ProbeNoise

__all__ = ["output_gaussian", "noise_cov_grad", "noise_cov_probe"]


def noise_cov_probe(spec, make_model, sde, grid, m_T, mean, keys, nfe=None, options=None, base_grid=None):
    """G G^T from one-hot probes: one row per scalar draw (O(NFE^2 d^2))."""
    d = m_T.numel()
    probe = ProbeNoise(keys, (d,), base_grid=base_grid)
    xp = m_T.expand(probe.n, d).clone()
    outp = spec.sample(make_model(), xp, grid, sde, probe, nfe=nfe, **(options or {}))
    G = (outp - mean).T  # (d, n_noise)
    return G @ G.T


def noise_cov_grad(spec, make_model, sde, grid, m_T, nfe=None, options=None, base_grid=None):
    """G G^T by one backward pass over d independent rows (O(NFE d^2)); None where the solver's code
    does not carry gradients to its noise draws (then use :func:`noise_cov_probe`)."""
    d = m_T.numel()
    noise = GradNoise(d, (d,), base_grid=base_grid)
    x = m_T.expand(d, d).clone()
    try:
        with torch.enable_grad():
            out = spec.sample(make_model(), x, grid, sde, noise, nfe=nfe, **(options or {}))
            leaves = list(noise.leaves.values())
            if not leaves:
                return torch.zeros(d, d, dtype=torch.float64)
            if not out.requires_grad:
                return None
            grads = torch.autograd.grad(out.reshape(d, d).diagonal().sum(), leaves, allow_unused=True)
    except RuntimeError:  # an in-place or non-differentiable step inside the solver
        return None
    cov = torch.zeros(d, d, dtype=torch.float64)
    for g in grads:
        if g is not None:
            g = g.reshape(d, -1).to(torch.float64)
            cov += g @ g.T
    return cov


def _law_one_pass(spec, make_model, sde, grid, m_T, P_T, nfe, options, base_grid):
    """Mean, A and G G^T from a single forward pass of 2d + 1 rows (m_T, m_T + e_i, then d rows m_T for the
    backward pass) and one backward pass; None where the graph does not reach the noise."""
    d = m_T.numel()
    x = m_T.expand(2 * d + 1, d).clone()
    x[1:d + 1] += torch.eye(d, dtype=torch.float64)
    noise = GradNoise(2 * d + 1, (d,), base_grid=base_grid)
    graph = grid.requires_grad  # a differentiable grid: the law keeps the gradient in the grid (double backward)
    try:
        with torch.enable_grad():
            out = spec.sample(make_model(), x, grid, sde, noise, nfe=nfe, **options)
            leaves = list(noise.leaves.values())
            if leaves and not out.requires_grad:
                return None
            grads = torch.autograd.grad(out[d + 1:].diagonal().sum(), leaves, allow_unused=True,
                                        create_graph=graph) if leaves else []
    except RuntimeError:
        return None
    out = out if graph else out.detach()
    mean = out[0]
    A = (out[1:d + 1] - mean).T
    cov = A @ P_T @ A.T
    for g in grads:
        if g is not None:
            g = g[d + 1:].reshape(d, -1).to(torch.float64)
            cov = cov + g @ g.T
    return mean, 0.5 * (cov + cov.T)


def output_gaussian(spec, make_model, sde, grid, m_T, P_T, nfe=None, options=None, base_grid=None,
                    method: str = "grad"):
    """Mean and covariance (float64) of ``spec``'s output started from N(m_T, P_T) on ``grid``.

    ``make_model()`` returns a fresh :class:`Model` (float64). ``base_grid`` is the noise base grid
    (common random numbers); it does not change the law, only which draws are summed. ``method``:
    "grad" (reverse mode, falling back to the probe) or "probe" (one-hot probes only).

    A ``grid`` that requires grad (a solver declared ``differentiable_grid``) gives a mean and covariance that
    carry its gradient (:mod:`sdebench.tune.autodiff`); call it with grad mode enabled.
    """
    if method not in ("grad", "probe"):
        raise ValueError(f"method must be 'grad' or 'probe', got {method!r}")
    options = options or {}
    if not spec.affine(options):
        raise ConfigError(f"solver {spec.name!r} with options {options} is not affine (batch-coupled or "
                          "adaptive): it has no exact output law")
    m_T = torch.as_tensor(m_T, dtype=torch.float64).reshape(-1)
    P_T = torch.as_tensor(P_T, dtype=torch.float64)
    d = m_T.numel()
    if method == "grad" and not spec.deterministic(options):
        law = _law_one_pass(spec, make_model, sde, grid, m_T, P_T, nfe, options, base_grid)
        if law is not None:
            return law
    x = m_T.expand(d + 1, d).clone()
    x[1:] += torch.eye(d, dtype=torch.float64)
    counting = CountingNoise(0, d + 1, (d,), base_grid=base_grid)
    model: Model = make_model()
    out = spec.sample(model, x, grid, sde, counting, nfe=nfe, **options)
    mean = out[0]
    A = (out[1:] - mean).T  # column i = A e_i
    cov = A @ P_T @ A.T
    if counting.keys:
        GG = None
        if method == "grad":
            GG = noise_cov_grad(spec, make_model, sde, grid, m_T, nfe=nfe, options=options, base_grid=base_grid)
        if GG is None:
            GG = noise_cov_probe(spec, make_model, sde, grid, m_T, mean, counting.keys, nfe=nfe, options=options,
                                 base_grid=base_grid)
        cov = cov + GG
    return mean, 0.5 * (cov + cov.T)
