"""UniPC (Zhao et al. 2023): unified predictor (UniP) and corrector (UniC), multistep, data prediction,
B(h) = expm1(-h) ("bh2" in the authors' and diffusers' notation).

Variables as in DPM-Solver++: lambda = log(alpha/sigma), x0 = D(x, t), step s -> t with
h = lambda_t - lambda_s. With previous nodes lambda_{s_k} (k = 1..p-1), r_k = (lambda_{s_k} - lambda_s)/h,
D_k = (x0_k - x0_s)/r_k, the base update is x~ = (sigma_t/sigma_s) x - alpha_t expm1(-h) x0_s and

    UniP-p:  x_t = x~ - alpha_t B(h) sum_k a_k D_k            (a = 1/2 for p = 2, else R_{p-1} a = b_{p-1})
    UniC-p:  x_t^c = x~ - alpha_t B(h) [sum_k c_k D_k + c_p (x0(x_t, t) - x0_s)]   (R_p c = b_p)

where R_p has rows (r_1, ..., r_{p-1}, 1)^(j-1), j = 1..p, and b_j = phi_{j+1}(-h) j! / B(h) with
phi_1 = expm1(-h), phi_{j+1} = phi_j / (-h) - 1/j!... (the h-phi recursion of the paper). The corrector
reuses the evaluation x0(x_t, t) that the next predictor needs, so it costs no NFE; the model output
kept in the history is the one at the uncorrected point. No corrector after the last step.

On a grid ending at t = 0 (sigma = 0, h = +inf, every r_k = 0 and R_p singular) the last predictor step
is first order, its limit x_t = alpha_0 x0_s (diffusers' UniPCMultistepScheduler with
``final_sigmas_type="zero"`` gets this only through ``lower_order_final``; without it its last step is inf).
"""

from __future__ import annotations

import torch

from sdebench.errors import ConfigError

from ._common import coefficients_at, expm1, requires_grad
from .base import register


def _rhos(h: float, rks: list[float], full: bool) -> list[float]:
    """Coefficients of UniP (``full=False``: uses the p-1 previous nodes) or UniC (``full=True``)."""
    hh = -h
    h_phi_1 = expm1(hh)
    B_h = expm1(hh)
    h_phi_k = h_phi_1 / hh - 1.0
    fact = 1
    R, b = [], []
    for i in range(1, len(rks) + 1):
        R.append([r ** (i - 1) for r in rks])
        b.append(h_phi_k * fact / B_h)
        fact *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / fact
    p = len(rks)
    if requires_grad(h):  # a differentiable grid: the same solves on tensors (R and b carry the gradient)
        R = torch.stack([torch.stack([torch.as_tensor(r, dtype=torch.float64) for r in row]) for row in R])
        b = torch.stack(b)
        if not full:
            return [] if p == 1 else [0.5] if p == 2 else list(torch.linalg.solve(R[:-1, :-1], b[:-1]))
        return [0.5] if p == 1 else list(torch.linalg.solve(R, b))
    if not full:
        if p == 1:
            return []
        if p == 2:
            return [0.5]
        Rm = torch.tensor(R, dtype=torch.float64)[:-1, :-1]
        return torch.linalg.solve(Rm, torch.tensor(b[:-1], dtype=torch.float64)).tolist()
    if p == 1:
        return [0.5]
    return torch.linalg.solve(torch.tensor(R, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)).tolist()


def _update(x, s, t, ms, lams, order, m_t=None):
    """UniP (m_t None) or UniC update from s to t of the given order; ms[-1] / lams[-1] belong to s."""
    h = t["lam"] - s["lam"]
    m0 = ms[-1]
    rks, D1s = [], []
    for k in range(1, order):
        rk = (lams[-1 - k] - lams[-1]) / h
        rks.append(rk)
        D1s.append((ms[-1 - k] - m0) / rk)
    rks.append(1.0)
    B_h = expm1(-h)
    x_t = (t["sigma"] / s["sigma"]) * x - t["alpha"] * expm1(-h) * m0
    if m_t is None:
        rhos = _rhos(h, rks, full=False)
        for r, d in zip(rhos, D1s):
            x_t = x_t - t["alpha"] * B_h * r * d
        return x_t
    rhos = _rhos(h, rks, full=True)
    corr = rhos[-1] * (m_t - m0)
    for r, d in zip(rhos[:-1], D1s):
        corr = corr + r * d
    return x_t - t["alpha"] * B_h * corr


# order p + 1 = 4 (default p = 3 with the UniC corrector); on a uniform-logSNR grid the Gaussian case is
# still pre-asymptotic at 160 steps (-3.5), the Karras grid shows 4
@register("unipc", kind="ode", order=4, nfe_per_step=1, family="UniPC",
          paper="Zhao et al. 2023 (UniPC)", order_grid="edm", order_nfe=(40, 80, 160), differentiable_grid=True)
def unipc(model, x, grid, sde, noise, order: int = 3, lower_order_final: bool = False):
    """UniPC-bh2 multistep predictor-corrector, order 3 predictor (p + 1 = 4 with UniC). 1 NFE per step.

    UniP-p predictor + UniC-p corrector; default p = 3; warm-up orders 1, 2, ...; no corrector on the
    last step.

    Predictor:  x_t = (sigma_t/sigma_s) x_s - alpha_t expm1(-h) x0_s - alpha_t B(h) sum_k a_k D_k,
    corrector: the same with coefficients c solving R_p c = b_p and x0(x_t, t) - x0_s as last difference
    (see the module docstring). lower_order_final caps the order of the final steps by the steps left.
    On a grid ending at t = 0 (sigma = 0) the last step is first order: x_next = alpha_0 x0(x_s, s).
    """
    if order not in (1, 2, 3, 4):
        raise ConfigError(f"unipc order must be 1, 2, 3 or 4, got {order}")
    steps = len(grid) - 1
    ms, lams = [], []
    prev = None  # (x_s, s, t, order) of the previous predictor step, to be corrected
    for i in range(steps):
        s, t = coefficients_at(sde, grid[i]), coefficients_at(sde, grid[i + 1])
        m = model.x0(x, grid[i])
        if prev is not None:
            x_prev, s_prev, t_prev, p_prev = prev
            x = _update(x_prev, s_prev, t_prev, ms, lams, p_prev, m_t=m)
        ms.append(m)
        lams.append(s["lam"])
        ms, lams = ms[-order:], lams[-order:]
        p = min(order, i + 1)
        if lower_order_final:
            p = min(p, steps - i)
        if t["sigma"] == 0.0:  # step to sigma = 0: first order, x_t = alpha_0 x0_s
            p = 1
        prev = (x, s, t, p)
        x = _update(x, s, t, ms, lams, p)
    return x
