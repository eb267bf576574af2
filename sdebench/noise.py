"""Injectable, reproducible noise: Gaussian draws keyed by (seed, stream, index), Brownian paths shared
across step counts.

Batch-size independence: draws are generated in fixed blocks of ``BLOCK`` rows, each block from its
own generator seeded by a hash of (seed, key, block number). Row i of a draw is therefore the same
whether the batch has 10 or 10^6 rows.

Common random numbers: a :class:`NoiseSource` carries a *base grid* (the finest grid of a
convergence study). A solver running on a grid that is every k-th point of the base grid receives,
for step i, the Brownian increment summed over base cells ki .. ki + k - 1, so every step count sees
the same Brownian path. Brownian motion runs in reverse time s = T - t (s increases while sampling);
an increment over a step of length h has variance h.

Noise a solver needs beyond the Brownian path (Langevin corrector, EDM churn, ...) comes from
``normal(stream, *index)``: also keyed, also batch independent.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict

import torch

from .errors import ConfigError

__all__ = ["NoiseSource", "RefinedNoise", "ProbeNoise", "CountingNoise", "GradNoise", "BLOCK", "GENERATORS",
           "counter_normal"]

BLOCK = 256


def _key_seed(seed: int, key: tuple) -> int:
    h = hashlib.blake2b(repr((int(seed),) + tuple(key)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def _block_seeds(seed: int, key: tuple, blocks: int) -> list[int]:
    """``[_key_seed(seed, key + (b,)) for b in range(blocks)]``, hashing the common prefix once.

    repr((seed, *key, b)) is the prefix repr((seed, *key, 0))[:-2] followed by f"{b})", so the
    blake2b state after the prefix is copied per block instead of re-hashing the whole string.
    """
    full = repr((int(seed),) + tuple(key) + (0,))
    assert full.endswith("0)")
    head = hashlib.blake2b(full[:-2].encode(), digest_size=8)
    mask = (1 << 63) - 1
    out = []
    for b in range(blocks):
        h = head.copy()
        h.update(f"{b})".encode())
        out.append(int.from_bytes(h.digest(), "little") & mask)
    return out


def _signed(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >> 63 else v


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)
_COUNTER_CHUNK = 1 << 22  # elements hashed at a time (bounds the int64 temporaries)


def _lsr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finalizer on int64 tensors (wrapping multiplication)."""
    z = (z ^ _lsr(z, 30)) * _MIX1
    z = (z ^ _lsr(z, 27)) * _MIX2
    return z ^ _lsr(z, 31)


def counter_normal(seed: int, key: tuple, n: int, event_shape, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Keyed N(0, I) of shape (n, *event_shape) from a counter-based hash, vectorized over the whole draw.

    Element e = row * D + column gets u_j = U(mix64(mix64(key_seed + (2e + j) * golden))), j = 0, 1 (53-bit
    uniforms) and z = sqrt(-2 log(1 - u_0)) cos(2 pi u_1) (Box-Muller). A value depends only on
    (seed, key, row, column): batch-size independent by construction, with no per-block generator
    seeding, so a draw is a few dozen elementwise kernels whatever n is (the GPU path of NoiseSource)."""
    device = torch.device(device)
    D = math.prod(event_shape)
    total = n * D
    base = _key_seed(seed, key)
    out = torch.empty(total, dtype=torch.float64, device=device)
    two_pi = 2.0 * math.pi
    for start in range(0, total, _COUNTER_CHUNK):
        e = torch.arange(start, min(total, start + _COUNTER_CHUNK), dtype=torch.int64, device=device)
        u = []
        for j in (0, 1):
            z = _mix64(_mix64((2 * e + j) * _GOLDEN + base))
            u.append(_lsr(z, 11).to(torch.float64) * (2.0**-53))
        out[start : start + e.numel()] = torch.sqrt(-2.0 * torch.log1p(-u[0])) * torch.cos(two_pi * u[1])
    return out.reshape((n, *event_shape)).to(dtype)


GENERATORS = ("auto", "blocks", "counter")


PATH_CACHE_BYTES = 512 * 2**20  # per process; least recently used draws beyond it are dropped
_PATH_CACHE: OrderedDict = OrderedDict()
_PATH_CACHE_SIZE = [0]


def _cache_put(key, t: torch.Tensor) -> None:
    nbytes = t.numel() * t.element_size()
    if nbytes > PATH_CACHE_BYTES:
        return
    _PATH_CACHE[key] = t
    _PATH_CACHE_SIZE[0] += nbytes
    while _PATH_CACHE_SIZE[0] > PATH_CACHE_BYTES:
        _, old = _PATH_CACHE.popitem(last=False)
        _PATH_CACHE_SIZE[0] -= old.numel() * old.element_size()


class NoiseSource:
    """Standard normal draws of shape ``(n, *event_shape)`` keyed by a tuple, plus Brownian increments.

    Parameters
    ----------
    seed : int
    n, event_shape : batch rows and per-sample shape of every draw
    base_grid : float64 tensor (T -> t_end) on which the Brownian path is sampled; ``None`` means
        "whatever grid the solver uses" (set by the harness with :meth:`for_grid`).
    generator : "blocks" (a torch generator seeded per (seed, key, 256-row block): the CPU default,
        whose values every committed CPU result was drawn with), "counter" (:func:`counter_normal`,
        vectorized over the whole batch: the CUDA default, where per-block seeding would cost one
        generator seed and kernel launch per 256 rows), or "auto" (blocks on the CPU, counter elsewhere).
        Both are keyed and batch-size independent; they give different values.
    """

    def __init__(self, seed: int, n: int, event_shape, dtype=torch.float64, device="cpu", base_grid=None,
                 generator: str = "auto"):
        self.seed = int(seed)
        self.n = int(n)
        self.event_shape = tuple(event_shape)
        self.dtype = dtype
        self.device = torch.device(device)
        self.base_grid = None if base_grid is None else base_grid.to(torch.float64).cpu()
        self._stride = 1
        self._cache: dict = {}
        if generator not in GENERATORS:
            raise ConfigError(f"unknown noise generator {generator!r}; valid: {', '.join(GENERATORS)}")
        self.generator = ("blocks" if self.device.type == "cpu" else "counter") if generator == "auto" else generator

    # ---- raw keyed draws ----------------------------------------------------------------------
    def standard_normal(self, key: tuple) -> torch.Tensor:
        """N(0, I) of shape (n, *event_shape); the same key always gives the same values.

        Returns a fresh tensor on every call (``dW_I`` scales it in place); subclasses must too.
        The Brownian draws (keys ``("bm-w", j)``, ``("bm-h", j)``) are kept in a per-process cache
        (:data:`PATH_CACHE_BYTES`): every cell with the same seed and batch shape draws the same path, so a sweep
        worker generates it once instead of once per cell (the draws are the same values either way)."""
        if len(key) == 2 and key[0] in ("bm-w", "bm-h"):
            ckey = (self.seed, self.n, self.event_shape, self.dtype, str(self.device), self.generator, key)
            hit = _PATH_CACHE.get(ckey)
            if hit is None:
                hit = self._draw(key)
                _cache_put(ckey, hit)
            else:
                _PATH_CACHE.move_to_end(ckey)
            return hit.clone()
        return self._draw(key)

    def _draw(self, key: tuple) -> torch.Tensor:
        if getattr(self, "generator", "blocks") == "counter":
            return counter_normal(self.seed, key, self.n, self.event_shape, self.dtype, self.device)
        # Each block's generator is seeded exactly as before and fills a contiguous row slice in place
        # (the same numbers as a fresh (BLOCK, ...) tensor). Measured in benchmarks/perf.py.
        # The buffer is padded to whole blocks, so every block (the last one too) is drawn in place
        # and the first n rows are returned.
        nb = -(-self.n // BLOCK)
        out = torch.empty((nb * BLOCK, *self.event_shape), dtype=self.dtype, device=self.device)
        gen = self._generator()
        views = out.split(BLOCK) if nb > 1 else (out,)
        for view, s in zip(views, _block_seeds(self.seed, key, nb)):
            gen.manual_seed(s)
            view.normal_(generator=gen)
        return out[: self.n]

    def _generator(self) -> torch.Generator:
        gen = getattr(self, "_gen", None)
        if gen is None:
            gen = self._gen = torch.Generator(device=self.device)
        return gen

    def normal(self, stream: str, *index) -> torch.Tensor:
        """Extra standard-normal noise for a solver (e.g. ``normal('langevin', step, j)``)."""
        return self.standard_normal((stream,) + tuple(int(i) for i in index))

    # ---- Brownian path ------------------------------------------------------------------------
    def for_grid(self, grid: torch.Tensor) -> NoiseSource:
        """Bind the solver's grid: check it is a sub-grid of the base grid and set the stride."""
        grid = grid.to(torch.float64).cpu()
        if self.base_grid is None:
            self.base_grid = grid
        base_steps = len(self.base_grid) - 1
        steps = len(grid) - 1
        if base_steps % steps:
            raise ValueError(f"grid with {steps} steps is not a sub-grid of the {base_steps}-step base grid")
        stride = base_steps // steps
        if not torch.allclose(self.base_grid[::stride], grid, rtol=1e-12, atol=1e-15):
            raise ValueError("solver grid is not a sub-grid of the noise source's base grid")
        self._stride = stride
        return self

    def _cell_h(self, j: int) -> float:
        # all cell widths at once (the same float64 subtractions), recomputed if base_grid is replaced
        memo = self.__dict__.get("_h_memo")
        if memo is None or memo[0] is not self.base_grid:
            bg = self.base_grid
            memo = self._h_memo = (bg, (bg[:-1] - bg[1:]).tolist())
        return memo[1][j]

    def dW(self, i: int) -> torch.Tensor:
        """Brownian increment over step i (grid[i] -> grid[i+1]), variance grid[i] - grid[i+1]."""
        return self.dW_I(i, with_integral=False)[0]

    def dW_I(self, i: int, with_integral: bool = True):
        """(dW, I) over step i, with I = int_{s_a}^{s_b} (s - s_a) dW_s in reverse time s.

        Per base cell of length h: dW = sqrt(h) xi_1 and the cell's own integral
        J = h/2 dW + sqrt(h^3/12) xi_2 (jointly Gaussian, Cov(J, dW) = h^2/2, Var J = h^3/3).
        Over a union of cells: I = sum_j [J_j + (s_j - s_a) dW_j].
        """
        if self.base_grid is None:
            raise ValueError("NoiseSource has no grid: call for_grid(grid) first")
        k = self._stride
        dW = None
        I = None
        offset = 0.0
        # in-place forms of the same floating-point operations (fresh draws are owned here)
        for j in range(i * k, (i + 1) * k):
            h = self._cell_h(j)
            w = self.standard_normal(("bm-w", j)).mul_(math.sqrt(h))
            if with_integral:
                J = (0.5 * h * w).add_(self.standard_normal(("bm-h", j)).mul_(math.sqrt(h**3 / 12.0)))
                if offset != 0.0:
                    J.add_(offset * w)
                I = J if I is None else I.add_(J)
                offset += h
            dW = w if dW is None else dW.add_(w)
        return dW, I


class CountingNoise(NoiseSource):
    """Returns zeros and records every distinct key requested, in order (first pass of a probe)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.keys: list[tuple] = []
        self._seen: set = set()

    def standard_normal(self, key: tuple) -> torch.Tensor:
        if key not in self._seen:
            self._seen.add(key)
            self.keys.append(key)
        return torch.zeros((self.n, *self.event_shape), dtype=self.dtype, device=self.device)


class ProbeNoise(NoiseSource):
    """One-hot noise: the draw for the k-th key puts a unit at row ``k*D + j``, element j (D = event size).

    Driving a solver that is affine in its noise with this source makes output row ``k*D + j`` minus
    the noiseless output equal to the column of the noise-to-output map for scalar input (k, j).
    """

    def __init__(self, keys: list[tuple], event_shape, dtype=torch.float64, device="cpu", base_grid=None):
        D = int(math.prod(event_shape))
        super().__init__(0, len(keys) * D, event_shape, dtype, device, base_grid)
        self.index = {k: i for i, k in enumerate(keys)}
        self.D = D

    def standard_normal(self, key: tuple) -> torch.Tensor:
        out = torch.zeros((self.n, self.D), dtype=self.dtype, device=self.device)
        k = self.index.get(key)
        if k is None:
            raise RuntimeError(f"probe saw a noise key the counting pass did not: {key}")
        rows = torch.arange(k * self.D, (k + 1) * self.D, device=self.device)
        out[rows, torch.arange(self.D, device=self.device)] = 1.0
        return out.reshape((self.n, *self.event_shape))


class GradNoise(NoiseSource):
    """Zero draws that are leaf tensors requiring grad, one per key (the same key returns a fresh copy of
    the same leaf): d(output)/d(leaf) is the noise-to-output map (:func:`sdebench.exact.noise_cov_grad`)."""

    def __init__(self, n: int, event_shape, dtype=torch.float64, device="cpu", base_grid=None):
        super().__init__(0, n, event_shape, dtype, device, base_grid)
        self.leaves: dict = {}

    def standard_normal(self, key: tuple) -> torch.Tensor:
        leaf = self.leaves.get(key)
        if leaf is None:
            leaf = self.leaves[key] = torch.zeros((self.n, *self.event_shape), dtype=self.dtype,
                                                  device=self.device, requires_grad=True)
        return leaf.clone()  # callers scale draws in place


class RefinedNoise(NoiseSource):
    """The Brownian path of ``coarse`` (a :class:`NoiseSource` whose base grid is set) on a grid that splits
    each of its base cells into ``refine`` equal sub-cells, by conditional (bridge) sampling.

    Per base cell [s_a, s_a + h] of the coarse path, (dW, J) with J = int (s - s_a) dW_s are the coarse
    source's own draws (the values every solver on the coarse grids sees). The sub-cells' pairs
    (w_r, J_r), r = 0..R-1, are drawn from their law conditional on those two sums: an unconditional draw v'
    (keys ``("bm-fine-w", b, r)``, ``("bm-fine-h", b, r)``) corrected by Matheron's rule
    v = v' + C A^T (A C A^T)^(-1) (c - A v'), with C the sub-cells' covariance (per cell width u:
    Var w = u, Cov(w, J) = u^2/2, Var J = u^3/3), A the map to the coarse pair (dW = sum w_r,
    J = sum J_r + o_r w_r, o_r the sub-cell's offset from s_a) and c the coarse pair; all in units of the
    base cell (times / h), where the 2 x 2 system is well conditioned. The result is a Brownian path on the
    fine grid whose sums over the coarse cells are the coarse path, to rounding: a solver on the fine grid
    (or on any grid every k-th point of it) and a solver on the coarse grid are driven by one path.

    Only the Brownian keys are refined; other streams (``normal(...)``) are the coarse source's own draws.
    """

    def __init__(self, coarse: NoiseSource, refine: int):
        if coarse.base_grid is None:
            raise ValueError("RefinedNoise needs a coarse source with its base grid set")
        if int(refine) < 1:
            raise ValueError(f"refine must be >= 1, got {refine}")
        R = int(refine)
        base = coarse.base_grid
        frac = torch.arange(R, dtype=torch.float64) / R
        h = base[:-1] - base[1:]
        fine = torch.cat([(base[:-1, None] - frac[None, :] * h[:, None]).reshape(-1), base[-1:]])
        super().__init__(coarse.seed, coarse.n, coarse.event_shape, dtype=torch.float64, device="cpu",
                         base_grid=fine, generator=coarse.generator)
        self.coarse, self.refine = coarse, R
        self._memo = (None, None)
        u = torch.full((R,), 1.0 / R, dtype=torch.float64)  # sub-cell widths / h
        o = frac  # offsets / h
        cov_v = torch.zeros(2 * R, 2 * R, dtype=torch.float64)
        idx = torch.arange(R)
        cov_v[idx, idx] = u
        cov_v[idx, R + idx] = cov_v[R + idx, idx] = u**2 / 2
        cov_v[R + idx, R + idx] = u**3 / 3
        A = torch.zeros(2, 2 * R, dtype=torch.float64)
        A[0, :R] = 1.0
        A[1, :R] = o
        A[1, R:] = 1.0
        self._A = A
        self._gain = cov_v @ A.T @ torch.linalg.inv(A @ cov_v @ A.T)  # (2R, 2)
        self._u = u

    def _cell_pairs(self, b: int):
        """(w, J) of the R sub-cells of base cell b, each (R, n, *event) in units of the base cell."""
        if self._memo[0] == b:
            return self._memo[1]
        c = self.coarse
        xi_w = c.standard_normal(("bm-w", b)).to(torch.float64).cpu()
        xi_h = c.standard_normal(("bm-h", b)).to(torch.float64).cpu()
        # the coarse pair in units of h: dW / sqrt(h) = xi_w, J / h^1.5 = xi_w / 2 + xi_h / sqrt(12)
        cW, cJ = xi_w, 0.5 * xi_w + xi_h / math.sqrt(12.0)
        R, u = self.refine, self._u
        a = torch.stack([super(RefinedNoise, self).standard_normal(("bm-fine-w", b, r)) for r in range(R)])
        e = torch.stack([super(RefinedNoise, self).standard_normal(("bm-fine-h", b, r)) for r in range(R)])
        shape = (R,) + (1,) * (a.dim() - 1)
        w = a * u.sqrt().reshape(shape)
        J = 0.5 * u.reshape(shape) * w + (u**3 / 12).sqrt().reshape(shape) * e
        v = torch.cat([w, J])  # (2R, n, ...)
        res = torch.stack([cW, cJ]) - torch.einsum("kr,r...->k...", self._A, v)
        v = v + torch.einsum("rk,k...->r...", self._gain, res)
        self._memo = (b, (v[:R], v[R:]))
        return self._memo[1]

    def standard_normal(self, key: tuple) -> torch.Tensor:
        if len(key) == 2 and key[0] in ("bm-w", "bm-h"):
            b, r = divmod(int(key[1]), self.refine)
            w, J = self._cell_pairs(b)
            u = float(self._u[r])
            if key[0] == "bm-w":
                return w[r] / math.sqrt(u)
            return (J[r] - 0.5 * u * w[r]) / math.sqrt(u**3 / 12.0)
        return self.coarse.standard_normal(key).to(torch.float64).cpu()
