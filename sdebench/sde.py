"""Forward SDEs dX = f(t) X dt + g(t) dB with closed-form Gaussian transition kernels.

Convention (docs/theory.md#forward-sdes): data at t = 0, x_t | x_0 ~ N(alpha_t x_0, sigma_t^2 I), time
runs forward on [0, T]. Every quantity is computed from ``log_alpha`` and ``sigma2`` written with
expm1 / log1p / logaddexp so that it is accurate in float64 and float32 near t = 0 and for large T.

lambda_t = log alpha_t - log sigma_t is the half log signal-to-noise ratio used by DPM-Solver;
it decreases in t for every SDE here, and ``t_of_lambda`` inverts it (closed form where one
exists, safeguarded bisection otherwise).
"""

from __future__ import annotations

import math

import torch

from .errors import ConfigError

__all__ = ["ForwardSDE", "VP", "SubVP", "VE", "OU", "EDM", "CVP", "COU", "SDES", "get_sde"]


def _t(t, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(t, torch.Tensor):
        return t
    dtype = like.dtype if like is not None else torch.float64
    device = like.device if like is not None else None
    return torch.as_tensor(t, dtype=dtype, device=device)


class ForwardSDE:
    """Base class. Subclasses define ``log_alpha``, ``sigma2``, ``f``, ``g2``; the rest is derived."""

    name: str = "base"
    description: str = ""
    T: float = 1.0
    t_end_default: float = 1e-3

    def log_alpha(self, t):
        raise NotImplementedError

    def sigma2(self, t):
        raise NotImplementedError

    def f(self, t):
        """Drift coefficient: dX = f(t) X dt + g(t) dB."""
        raise NotImplementedError

    def g2(self, t):
        """Squared diffusion coefficient g(t)^2."""
        raise NotImplementedError

    # ---- derived quantities -------------------------------------------------------------
    def alpha(self, t):
        return torch.exp(self.log_alpha(_t(t)))

    def sigma(self, t):
        return torch.sqrt(self.sigma2(_t(t)))

    def log_sigma(self, t):
        return 0.5 * torch.log(self.sigma2(_t(t)))

    def lambda_(self, t):
        """Half log-SNR: lambda_t = log alpha_t - log sigma_t."""
        t = _t(t)
        return self.log_alpha(t) - self.log_sigma(t)

    def t_of_lambda(self, lam):
        """Inverse of ``lambda_``; generic monotone bisection in float64 (60 halvings)."""
        lam = _t(lam)
        lam64 = lam.to(torch.float64)
        lo = torch.full_like(lam64, 0.0)
        hi = torch.full_like(lam64, float(self.T))
        # lambda is decreasing; extend the bracket upwards if needed (e.g. lambda below lambda_T)
        for _ in range(200):
            need = self.lambda_(hi) > lam64
            if not bool(need.any()):
                break
            hi = torch.where(need, hi * 2, hi)
        tiny = torch.full_like(lam64, 1e-300)
        lo = torch.maximum(lo, tiny)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            go_right = self.lambda_(mid) > lam64
            lo = torch.where(go_right, mid, lo)
            hi = torch.where(go_right, hi, mid)
        return (0.5 * (lo + hi)).to(lam.dtype)

    def prior_std(self) -> float:
        """Standard deviation of the prior N(0, sigma_T^2 I): the law of x_T if x_0 were 0."""
        return float(self.sigma(torch.tensor(self.T, dtype=torch.float64)))

    def params(self) -> dict:
        return {}

    def __repr__(self) -> str:
        p = ", ".join(f"{k}={v}" for k, v in self.params().items())
        return f"{type(self).__name__}({p}, T={self.T})"


class _BetaLinear(ForwardSDE):
    """Shared linear-beta schedule: beta(t) = b0 + t (b1 - b0), B(t) = int_0^t beta."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0):
        if not (beta_min > 0 and beta_max >= beta_min):
            raise ConfigError(f"need 0 < beta_min <= beta_max, got beta_min={beta_min}, beta_max={beta_max}")
        self.beta_min, self.beta_max, self.T = float(beta_min), float(beta_max), float(T)

    def beta(self, t):
        t = _t(t)
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def B(self, t):
        t = _t(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def t_of_B(self, B):
        """Stable root of b0 t + (b1 - b0) t^2 / 2 = B."""
        d = self.beta_max - self.beta_min
        return 2 * B / (self.beta_min + torch.sqrt(self.beta_min**2 + 2 * d * B))

    def params(self):
        return {"beta_min": self.beta_min, "beta_max": self.beta_max}


class VP(_BetaLinear):
    name = "vp"
    description = "variance preserving, linear beta in [0.1, 20] (DDPM / score_sde VP)"

    def log_alpha(self, t):
        return -0.5 * self.B(t)

    def sigma2(self, t):
        return -torch.expm1(-self.B(t))

    def f(self, t):
        return -0.5 * self.beta(t)

    def g2(self, t):
        return self.beta(t)

    def lambda_(self, t):
        # lambda = -B/2 - 0.5 log(1 - e^-B) = -0.5 log(e^B - 1)
        return -0.5 * torch.log(torch.expm1(self.B(t)))

    def t_of_lambda(self, lam):
        lam = _t(lam)
        return self.t_of_B(torch.logaddexp(-2 * lam, torch.zeros_like(lam)))


class SubVP(_BetaLinear):
    name = "subvp"
    description = "sub-VP (Song et al. 2021): sigma_t^2 = (1 - e^-B)^2"

    def log_alpha(self, t):
        return -0.5 * self.B(t)

    def sigma2(self, t):
        return torch.expm1(-self.B(t)) ** 2

    def f(self, t):
        return -0.5 * self.beta(t)

    def g2(self, t):
        return self.beta(t) * (-torch.expm1(-2 * self.B(t)))

    def t_of_lambda(self, lam):
        # u = alpha = e^{-B/2} solves e^lam (1 - u^2) = u  =>  u = 2 e^lam / (1 + sqrt(1 + 4 e^{2 lam}))
        lam = _t(lam)
        log_u = math.log(2.0) + lam - torch.log1p(torch.sqrt(1 + 4 * torch.exp(2 * lam)))
        return self.t_of_B(-2 * log_u)


class CVP(_BetaLinear):
    name = "cvp"
    description = "contractive VP (Tang & Zhao): f = +beta/2, sigma_t^2 = e^B - 1; start from exact p_T"

    def log_alpha(self, t):
        return 0.5 * self.B(t)

    def sigma2(self, t):
        return torch.expm1(self.B(t))

    def f(self, t):
        return 0.5 * self.beta(t)

    def g2(self, t):
        return self.beta(t)

    def lambda_(self, t):
        return -0.5 * torch.log(-torch.expm1(-self.B(t)))

    def t_of_lambda(self, lam):
        lam = _t(lam)
        if bool((lam <= 0).any()):
            raise ConfigError("cVP has lambda_t > 0 for every t; cannot invert lambda <= 0")
        return self.t_of_B(-torch.log(-torch.expm1(-2 * lam)))


class VE(ForwardSDE):
    """sigma(t) = s_min (s_max/s_min)^t; convention sigma_t^2 = sigma(t)^2 - s_min^2, so p_0 is the data."""

    name = "ve"
    description = "variance exploding, sigma in [0.01, 50]; sigma_t^2 = sigma(t)^2 - sigma_min^2"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, T: float = 1.0):
        if not (0 < sigma_min < sigma_max):
            raise ConfigError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max, self.T = float(sigma_min), float(sigma_max), float(T)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def log_alpha(self, t):
        return torch.zeros_like(_t(t))

    def sigma2(self, t):
        t = _t(t)
        return self.sigma_min**2 * torch.expm1(2 * self._log_ratio * t)

    def f(self, t):
        return torch.zeros_like(_t(t))

    def g2(self, t):
        t = _t(t)
        return 2 * self._log_ratio * self.sigma_min**2 * torch.exp(2 * self._log_ratio * t)

    def t_of_lambda(self, lam):
        lam = _t(lam)
        return torch.logaddexp(-2 * lam - 2 * math.log(self.sigma_min), torch.zeros_like(lam)) / (
            2 * self._log_ratio
        )

    def params(self):
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


class OU(ForwardSDE):
    """Ornstein-Uhlenbeck dX = -theta X dt + s dB; stationary law N(0, s^2 / (2 theta))."""

    name = "ou"
    description = "Ornstein-Uhlenbeck, theta = 1, s = sqrt(2) (stationary N(0, I)), T = 5"

    def __init__(self, theta: float = 1.0, s: float = math.sqrt(2.0), T: float = 5.0):
        if not (theta > 0 and s > 0):
            raise ConfigError(f"need theta > 0 and s > 0, got theta={theta}, s={s}")
        self.theta, self.s, self.T = float(theta), float(s), float(T)
        self._c = 2 * self.theta / self.s**2  # alpha^2/sigma^2 = c / (e^{2 theta t} - 1)

    def log_alpha(self, t):
        return -self.theta * _t(t)

    def sigma2(self, t):
        return -torch.expm1(-2 * self.theta * _t(t)) / self._c

    def f(self, t):
        return torch.full_like(_t(t), -self.theta)

    def g2(self, t):
        return torch.full_like(_t(t), self.s**2)

    def lambda_(self, t):
        t = _t(t)
        return 0.5 * math.log(self._c) - 0.5 * torch.log(torch.expm1(2 * self.theta * t))

    def t_of_lambda(self, lam):
        lam = _t(lam)
        return torch.logaddexp(math.log(self._c) - 2 * lam, torch.zeros_like(lam)) / (2 * self.theta)

    def params(self):
        return {"theta": self.theta, "s": self.s}


class COU(OU):
    """Contractive OU dX = +theta X dt + s dB (the backward drift contracts)."""

    name = "cou"
    description = "contractive OU (Tang & Zhao): f = +theta, T = 1; start from exact p_T"

    def __init__(self, theta: float = 1.0, s: float = math.sqrt(2.0), T: float = 1.0):
        super().__init__(theta, s, T)

    def log_alpha(self, t):
        return self.theta * _t(t)

    def sigma2(self, t):
        return torch.expm1(2 * self.theta * _t(t)) / self._c

    def f(self, t):
        return torch.full_like(_t(t), self.theta)

    def lambda_(self, t):
        t = _t(t)
        return 0.5 * math.log(self._c) - 0.5 * torch.log(-torch.expm1(-2 * self.theta * t))

    def t_of_lambda(self, lam):
        lam = _t(lam)
        c = torch.exp(math.log(self._c) - 2 * lam)
        if bool((c >= 1).any()):
            raise ConfigError(f"cOU has lambda_t > {0.5 * math.log(self._c):.4g} for every t")
        return -torch.log1p(-c) / (2 * self.theta)


class EDM(ForwardSDE):
    """Karras et al. 2022: x_t = x_0 + t z, i.e. sigma_t = t, alpha_t = 1, g^2 = 2t."""

    name = "edm"
    description = "EDM / Karras: sigma_t = t, T = 80, t_end = 0.002"
    t_end_default = 0.002

    def __init__(self, T: float = 80.0):
        self.T = float(T)

    def log_alpha(self, t):
        return torch.zeros_like(_t(t))

    def sigma2(self, t):
        t = _t(t)
        return t * t

    def f(self, t):
        return torch.zeros_like(_t(t))

    def g2(self, t):
        return 2 * _t(t)

    def lambda_(self, t):
        return -torch.log(_t(t))

    def t_of_lambda(self, lam):
        return torch.exp(-_t(lam))


SDES: dict[str, type[ForwardSDE]] = {c.name: c for c in (VP, SubVP, VE, OU, EDM, CVP, COU)}


def get_sde(name: str, T: float | None = None, **params) -> ForwardSDE:
    """Build a forward SDE by name; ``T`` overrides its default horizon."""
    key = name.lower()
    if key not in SDES:
        raise ConfigError(f"unknown SDE {name!r}; valid: {', '.join(SDES)}")
    if T is not None:
        if not (math.isfinite(T) and T > 0):
            raise ConfigError(f"T must be a positive finite number, got {T}")
        params["T"] = T
    return SDES[key](**params)
