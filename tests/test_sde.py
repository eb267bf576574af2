"""Forward SDEs: closed forms against a numerical integration of the mean / variance ODEs."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from sdebench.errors import ConfigError
from sdebench.sde import SDES, get_sde

ALL = list(SDES)


def _times(sde):
    return np.linspace(0.02 * sde.T, sde.T, 7)


@pytest.mark.parametrize("name", ALL)
def test_closed_forms_match_mean_variance_odes(name):
    """d alpha/dt = f alpha and d sigma^2/dt = 2 f sigma^2 + g^2, integrated from alpha_0 = 1, sigma_0^2 = 0."""
    sde = get_sde(name)

    def rhs(t, y):
        tt = torch.tensor(t, dtype=torch.float64)
        f, g2 = float(sde.f(tt)), float(sde.g2(tt))
        return [f * y[0], 2 * f * y[1] + g2]

    ts = _times(sde)
    sol = solve_ivp(rhs, (0.0, sde.T), [1.0, 0.0], t_eval=ts, rtol=1e-11, atol=1e-13, method="DOP853")
    t = torch.tensor(ts, dtype=torch.float64)
    np.testing.assert_allclose(sde.alpha(t).numpy(), sol.y[0], rtol=1e-7)
    np.testing.assert_allclose(sde.sigma2(t).numpy(), sol.y[1], rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_lambda_inverse_roundtrip(name):
    sde = get_sde(name)
    t = torch.tensor(np.geomspace(1e-4 * sde.T, sde.T, 25), dtype=torch.float64)
    lam = sde.lambda_(t)
    assert bool((lam[1:] < lam[:-1]).all()), "lambda must decrease in t"
    np.testing.assert_allclose(sde.t_of_lambda(lam).numpy(), t.numpy(), rtol=1e-9)
    # lambda matches its definition log alpha - log sigma
    np.testing.assert_allclose(lam.numpy(), (torch.log(sde.alpha(t)) - torch.log(sde.sigma(t))).numpy(), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_generic_bisection_inverse_agrees_with_closed_form(name):
    from sdebench.sde import ForwardSDE

    sde = get_sde(name)
    t = torch.tensor([1e-3 * sde.T, 0.1 * sde.T, 0.5 * sde.T, 0.9 * sde.T], dtype=torch.float64)
    lam = sde.lambda_(t)
    np.testing.assert_allclose(ForwardSDE.t_of_lambda(sde, lam).numpy(), t.numpy(), rtol=1e-10)


@pytest.mark.parametrize("name", ALL)
def test_float32_is_accurate_near_zero(name):
    sde = get_sde(name)
    t64 = torch.tensor([1e-5, 1e-3, 0.3], dtype=torch.float64) * sde.T
    t32 = t64.float()
    for fn in ("alpha", "sigma", "lambda_"):
        v64 = getattr(sde, fn)(t32.double())
        v32 = getattr(sde, fn)(t32)
        assert v32.dtype == torch.float32
        np.testing.assert_allclose(v32.double().numpy(), v64.numpy(), rtol=2e-5, atol=1e-6)


def test_vp_closed_form_values():
    sde = get_sde("vp")
    B1 = 0.1 + 0.5 * 19.9
    assert math.isclose(float(sde.alpha(1.0)), math.exp(-B1 / 2), rel_tol=1e-14)
    assert math.isclose(float(sde.sigma2(1.0)), 1 - math.exp(-B1), rel_tol=1e-14)
    # the DPM-Solver code's closed-form t(lambda) (docs/theory.md#half-log-snr-and-its-inverse)
    lam = torch.tensor(0.7, dtype=torch.float64)
    tmp = 2 * 19.9 * float(torch.logaddexp(-2 * lam, torch.tensor(0.0, dtype=torch.float64)))
    t_theory = tmp / ((math.sqrt(0.1**2 + tmp) + 0.1) * 19.9)
    assert math.isclose(float(sde.t_of_lambda(lam)), t_theory, rel_tol=1e-12)


def test_contractive_snr_does_not_vanish():
    for name in ("cvp", "cou"):
        sde = get_sde(name, T=20.0)
        lam_inf = float(sde.lambda_(torch.tensor(20.0, dtype=torch.float64)))
        assert math.isfinite(lam_inf) and lam_inf > -1.0


def test_bad_sde_inputs():
    with pytest.raises(ConfigError, match="unknown SDE 'vpp'"):
        get_sde("vpp")
    with pytest.raises(ConfigError, match="T must be"):
        get_sde("vp", T=-1.0)
