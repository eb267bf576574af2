"""Gaussian-mixture targets: p_0 = sum_k w_k N(mu_k, S_k), and every marginal p_t in closed form.

p_t = sum_k w_k N(alpha_t mu_k, C_k), C_k = alpha_t^2 S_k + sigma_t^2 I (docs/theory.md#gaussian-mixture-targets).
Each S_k is eigendecomposed once, S_k = U_k diag(l_k) U_k^T, so C_k = U_k diag(alpha^2 l_k + sigma^2) U_k^T
and every quantity below is a few batched matrix products plus a logsumexp over components:

    r_k(x)    = softmax_k(log w_k + log N(x; alpha mu_k, C_k))
    score     = -sum_k r_k C_k^{-1} (x - alpha mu_k)
    E[x0|x_t] = sum_k r_k [mu_k + alpha S_k C_k^{-1} (x - alpha mu_k)]       (bounded as t -> 0)
    eps       = -sigma score = sigma sum_k r_k C_k^{-1} (x - alpha mu_k)

When every S_k is diagonal the rotations are skipped (U_k = I).
"""

from __future__ import annotations

import math

import torch

from sdebench.errors import ConfigError
from sdebench.sde import ForwardSDE

from .consistency import oracle_consistency

__all__ = ["GaussianMixture"]


def _grad(t) -> bool:
    return isinstance(t, torch.Tensor) and t.requires_grad


class GaussianMixture:
    """A Gaussian mixture in R^d with full covariances."""

    def __init__(self, weights, means, covs, name: str = "custom", labels=None, description: str = ""):
        w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        mu = torch.as_tensor(means, dtype=torch.float64)
        S = torch.as_tensor(covs, dtype=torch.float64)
        K = w.numel()
        if mu.ndim == 1:
            mu = mu.reshape(K, -1)
        if mu.ndim != 2 or mu.shape[0] != K:
            raise ConfigError(f"means must have shape (K, d) with K = {K} weights, got {tuple(mu.shape)}")
        d = mu.shape[1]
        if S.ndim == 0 or (S.ndim == 1 and S.numel() == K and d == 1):
            S = S.reshape(K, 1, 1) if S.ndim == 1 else S.reshape(1, 1, 1).expand(K, 1, 1)
        if S.ndim == 2 and S.shape == (d, d):
            S = S.expand(K, d, d)
        if S.ndim != 3 or S.shape != (K, d, d):
            raise ConfigError(f"covariances must have shape (K, d, d) = ({K}, {d}, {d}), got {tuple(S.shape)}")
        if not (torch.isfinite(w).all() and torch.isfinite(mu).all() and torch.isfinite(S).all()):
            raise ConfigError("weights, means and covariances must all be finite")
        if (w <= 0).any():
            raise ConfigError(f"weights must be positive, got {w.tolist()}")
        if abs(float(w.sum()) - 1.0) > 1e-6:
            raise ConfigError(f"weights must sum to 1, got sum {float(w.sum()):.8g}")
        if not torch.allclose(S, S.transpose(1, 2), rtol=1e-9, atol=1e-12):
            raise ConfigError("covariances must be symmetric")
        S = 0.5 * (S + S.transpose(1, 2))
        lam, U = torch.linalg.eigh(S)
        if (lam <= 0).any():
            k = int((lam <= 0).any(dim=1).nonzero()[0])
            raise ConfigError(
                f"covariance {k} is not positive definite (smallest eigenvalue {float(lam[k].min()):.3g})"
            )
        self.name = name
        self.description = description
        self.weights = w / w.sum()
        self.means = mu
        self.covs = S
        self.K, self.d = K, d
        self.diagonal = bool(torch.all(S == torch.diag_embed(torch.diagonal(S, dim1=1, dim2=2))))
        if self.diagonal:
            self.eigvals = torch.diagonal(S, dim1=1, dim2=2).clone()
            self.U = torch.eye(d, dtype=torch.float64).expand(K, d, d).clone()
        else:
            self.eigvals, self.U = lam, U
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        self._cache: dict = {}

    # ---- bookkeeping -------------------------------------------------------------------------
    @property
    def is_gaussian(self) -> bool:
        return self.K == 1

    def _params(self, dtype, device):
        key = (dtype, str(device))
        if key not in self._cache:
            cast = {"dtype": dtype, "device": device}
            U = self.U.to(**cast)
            mu = self.means.to(**cast)
            self._cache[key] = {
                "logw": torch.log(self.weights).to(**cast),
                "mu": mu,
                "lam": self.eigvals.to(**cast),
                "U": U,
                "muU": mu if self.diagonal else torch.einsum("kd,kde->ke", mu, U),
            }
        return self._cache[key]

    def _rot(self, x, P):
        """Coordinates of x in each component's eigenbasis: (n, K, d)."""
        if self.diagonal:
            return x[:, None, :].expand(-1, self.K, -1)
        return torch.einsum("nd,kde->nke", x, P["U"])

    def _unrot(self, v, P):
        """Back from eigen-coordinates, summed over components: (n, K, d) -> (n, d)."""
        if self.diagonal:
            return v.sum(1)
        return torch.einsum("nke,kde->nd", v, P["U"])

    @staticmethod
    def _coeffs(sde: ForwardSDE, t):
        """(alpha_t, sigma_t^2) as floats, memoized per SDE instance and time (same values as unmemoized); a time
        that requires grad (a differentiable-grid solve) gives 0-d tensors carrying its gradient, not memoized."""
        if _grad(t):
            return sde.alpha(t.to(torch.float64)), sde.sigma2(t.to(torch.float64))
        key = float(t)
        memo = sde.__dict__.setdefault("_sdebench_gmm", {}) if hasattr(sde, "__dict__") else None
        if memo is not None and key in memo:
            return memo[key]
        t64 = torch.tensor(key, dtype=torch.float64)
        out = float(sde.alpha(t64)), float(sde.sigma2(t64))
        if memo is not None:
            if len(memo) > 65_536:
                memo.clear()
            memo[key] = out
        return out

    def _core(self, x, t, sde):
        """Shared pieces at (x, t): responsibilities r (n, K), whitened residual y/c (n, K, d), etc."""
        P = self._params(x.dtype, x.device)
        a, s2 = self._coeffs(sde, t)
        c = a * a * P["lam"] + s2  # (K, d) eigenvalues of C_k
        y = self._rot(x, P) - a * P["muU"][None]  # (n, K, d)
        logN = -0.5 * (y * y / c).sum(-1) - 0.5 * torch.log(c).sum(-1) - 0.5 * self.d * math.log(2 * math.pi)
        logits = P["logw"] + logN
        return P, a, s2, c, y, logits

    # ---- closed forms --------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, t=0.0, sde: ForwardSDE | None = None) -> torch.Tensor:
        """log p_t(x); t = 0 (or sde = None) gives log p_0."""
        if sde is None:
            t, sde = 0.0, _Identity()
        return torch.logsumexp(self._core(x, t, sde)[-1], dim=-1)

    def _diag(self, x, t, sde):
        """Diagonal covariances without any (n, K, d) tensor: the responsibilities from two (n, d) x (d, K)
        products, sum_e (x_e - a mu_ke)^2 / c_ke = x^2 . (1/c_k) - 2 x . (a mu_k / c_k) + |a mu_k|^2_{1/c_k}.
        (The expansion costs ~1e-13 relative in the logits near t = 0, against ~1e-16 for the residual
        form; it is used for score and x0 only, never for log_prob.) Returns (P, a, s2, 1/c, a mu/c, r)."""
        P = self._params(x.dtype, x.device)
        a, s2, ic, amu_ic, const = self._diag_terms(P, sde, t, x.dtype, x.device)
        # softmax over K written out: torch.softmax over a short last dimension is ~2x slower on CPU
        if torch.is_grad_enabled() and (x.requires_grad or _grad(t)):
            logits = torch.addmm(torch.addmm(const, x * x, ic.T, alpha=-0.5), x, amu_ic.T)
            e = torch.exp(logits - logits.detach().amax(-1, keepdim=True))
            return P, a, s2, ic, amu_ic, e / e.sum(-1, keepdim=True)
        # the same operations in place: one (n, K) buffer instead of five (at n = 1e6 each is 64 MB of
        # freshly mapped, page-faulted memory)
        e = torch.addmm(const, x * x, ic.T, alpha=-0.5).addmm_(x, amu_ic.T)
        e = e.sub_(e.amax(-1, keepdim=True)).exp_()
        return P, a, s2, ic, amu_ic, e.div_(e.sum(-1, keepdim=True))

    def _diag_terms(self, P, sde, t, dtype, device):
        """(a, s^2, 1/c, a mu/c, const) at time t: the small (K, d) tensors of _diag. Memoized per
        (SDE class and parameters, t, dtype, device), so a repeated grid computes them once."""
        key = None
        params = getattr(sde, "params", None)
        if callable(params) and not _grad(t):
            key = (type(sde), tuple(sorted(params().items())), float(getattr(sde, "T", 0.0)), float(t), dtype,
                   str(device))
            memo = self._cache.setdefault("diag_terms", {})
            if key in memo:
                return memo[key]
        a, s2 = self._coeffs(sde, t)
        c = a * a * P["lam"] + s2  # (K, d)
        ic = 1.0 / c
        amu = a * P["mu"]
        amu_ic = amu * ic
        const = P["logw"] - 0.5 * torch.log(c).sum(-1) - 0.5 * (amu * amu_ic).sum(-1)  # (K,)
        out = (a, s2, ic, amu_ic, const)
        if key is not None:
            if len(memo) > 512:
                memo.clear()
            memo[key] = out
        return out

    def score(self, x, t, sde) -> torch.Tensor:
        if self.diagonal and x.ndim == 2:
            # score = -sum_k r_k (x - a mu_k) / c_k = r @ (a mu / c) - x * (r @ (1 / c))
            P, a, s2, ic, amu_ic, r = self._diag(x, t, sde)
            if torch.is_grad_enabled() and (x.requires_grad or _grad(t)):
                return r @ amu_ic - x * (r @ ic)
            return (r @ amu_ic).sub_((r @ ic).mul_(x))
        P, a, s2, c, y, logits = self._core(x, t, sde)
        r = torch.softmax(logits, dim=-1)
        return -self._unrot(r[..., None] * y / c, P)

    def eps(self, x, t, sde) -> torch.Tensor:
        return -math.sqrt(self._coeffs(sde, t)[1]) * self.score(x, t, sde)

    def x0(self, x, t, sde) -> torch.Tensor:
        """Posterior mean E[x_0 | x_t = x] (Tweedie), computed in its bounded form."""
        if self.diagonal and x.ndim == 2:
            # sum_k r_k [mu_k + (a l_k / c_k)(x - a mu_k)] = x * (r @ (a l / c)) + r @ (mu s^2 / c): no cancellation
            P, a, s2, ic, amu_ic, r = self._diag(x, t, sde)
            if torch.is_grad_enabled() and (x.requires_grad or _grad(t)):
                return x * (r @ (a * P["lam"] * ic)) + r @ (P["mu"] * (s2 * ic))
            return (r @ (a * P["lam"] * ic)).mul_(x).add_(r @ (P["mu"] * (s2 * ic)))
        P, a, s2, c, y, logits = self._core(x, t, sde)
        r = torch.softmax(logits, dim=-1)
        shrink = self._unrot(r[..., None] * (a * P["lam"] / c) * y, P)
        return r @ P["mu"] + shrink

    def hessian(self, x, t, sde) -> torch.Tensor:
        """Hessian of log p_t at x, shape (n, d, d)."""
        P, a, s2, c, y, logits = self._core(x, t, sde)
        r = torch.softmax(logits, dim=-1)
        U = P["U"]
        s_k = -torch.einsum("nke,kde->nkd", y / c, U)  # per-component scores (n, K, d)
        Cinv = torch.einsum("kde,ke,kfe->kdf", U, 1 / c, U)  # (K, d, d)
        mean_s = (r[..., None] * s_k).sum(1)
        H = -torch.einsum("nk,kdf->ndf", r, Cinv) + torch.einsum("nk,nkd,nkf->ndf", r, s_k, s_k)
        return H - mean_s[:, :, None] * mean_s[:, None, :]

    def model_functions(self, sde: ForwardSDE) -> dict:
        """Native x0 / eps / score callables for :class:`sdebench.model.Model`."""
        return {
            "x0": lambda x, t: self.x0(x, t, sde),
            "eps": lambda x, t: self.eps(x, t, sde),
            "score": lambda x, t: self.score(x, t, sde),
            "consistency": _oracle_consistency(self, sde),
        }

    # ---- marginals -----------------------------------------------------------------------------
    def marginal(self, t, sde: ForwardSDE) -> GaussianMixture:
        """p_t as a GaussianMixture."""
        a, s2 = self._coeffs(sde, t)
        covs = a * a * self.covs + s2 * torch.eye(self.d, dtype=torch.float64)
        return GaussianMixture(self.weights, a * self.means, covs, name=f"{self.name}@t", labels=self.labels)

    def moments(self, t=0.0, sde: ForwardSDE | None = None):
        """Mean and covariance of p_t."""
        a, s2 = (1.0, 0.0) if sde is None else self._coeffs(sde, t)
        w = self.weights
        m = a * (w @ self.means)
        dm = a * self.means - m
        cov = (w[:, None, None] * (a * a * self.covs + dm[:, :, None] * dm[:, None, :])).sum(0)
        return m, cov + s2 * torch.eye(self.d, dtype=torch.float64)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float64, device="cpu",
               z: torch.Tensor | None = None, u: torch.Tensor | None = None, return_labels: bool = False):
        """Exact samples of p_0. Pass ``z`` (n, d) standard normals and ``u`` (n,) uniforms to drive it
        with injected randomness; otherwise they are drawn from ``generator``."""
        if u is None:
            u = torch.rand(n, generator=generator, dtype=torch.float64)
        if z is None:
            z = torch.randn(n, self.d, generator=generator, dtype=torch.float64)
        u = u.to(torch.float64).cpu()
        z = z.to(torch.float64).cpu()
        comp = torch.searchsorted(torch.cumsum(self.weights, 0)[:-1].contiguous(), u.contiguous(), right=True)
        if self.diagonal:
            # U = I: the product below reduces to sqrt(l) * z exactly, without an (n, d, d) gather
            x = self.means[comp] + torch.sqrt(self.eigvals)[comp] * z
        else:
            L = self.U * torch.sqrt(self.eigvals)[:, None, :]  # S_k^{1/2} factor U diag(sqrt l)
            rows = max(1, (1 << 25) // (self.d * self.d))  # bound the (rows, d, d) gather to 256 MiB
            x = torch.cat([self.means[comp[i:i + rows]] + torch.einsum("nde,ne->nd", L[comp[i:i + rows]],
                                                                         z[i:i + rows]) for i in range(0, n, rows)])
        x = x.to(dtype=dtype, device=device)
        return (x, comp) if return_labels else x

    def sample_t(self, n: int, t, sde: ForwardSDE, generator=None, dtype=torch.float64, device="cpu",
                 z0=None, u=None, z=None):
        """Exact samples of p_t: x_t = alpha_t x_0 + sigma_t z."""
        x0 = self.sample(n, generator, z=z0, u=u)
        if z is None:
            z = torch.randn(n, self.d, generator=generator, dtype=torch.float64)
        a, s2 = self._coeffs(sde, t)
        return (a * x0 + math.sqrt(s2) * z.to(torch.float64).cpu()).to(dtype=dtype, device=device)

    # ---- 1-D projections (sliced metrics) ----------------------------------------------------
    def project(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Law of theta^T X for a unit vector theta: weights, means (K,), stds (K,)."""
        theta = theta.to(torch.float64)
        m = self.means @ theta
        v = torch.einsum("d,kde,e->k", theta, self.covs, theta)
        return self.weights, m, torch.sqrt(v)


class _Identity(ForwardSDE):
    """alpha = 1, sigma = 0: evaluating p_t at t = 0."""

    def log_alpha(self, t):
        return torch.zeros_like(torch.as_tensor(t, dtype=torch.float64))

    def sigma2(self, t):
        return torch.zeros_like(torch.as_tensor(t, dtype=torch.float64))


def _oracle_consistency(problem, sde):
    """Exact (K = 1) or dopri5 (mixtures) consistency function, built on first call (problems/consistency.py)."""
    def f(x, t, t_end):
        return oracle_consistency(problem, sde)(x, t, t_end)

    return f
