"""Cross-validation against independent implementations (torchsde, torchdiffeq, diffusers)."""

from __future__ import annotations

import pytest
import torch

from sdebench.errors import ConfigError
from sdebench.model import Model
from sdebench.noise import NoiseSource
from sdebench.problems import get_problem
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.solvers import get_solver


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run(name, problem="gmm1d", sde="vp", steps=20, schedule="uniform", n=64, seed=3, base_steps=None, **opts):
    prob, s = get_problem(problem), get_sde(sde)
    grid = make_grid(s, steps, s.t_end_default, schedule)
    base = make_grid(s, base_steps, s.t_end_default, schedule) if base_steps else None
    x = prob.sample_t(n, s.T, s, generator=torch.Generator().manual_seed(0))
    model = Model(s, **prob.model_functions(s))
    out = get_solver(name)(model, x, grid, s, NoiseSource(seed, n, (prob.d,), base_grid=base), **opts)
    return out, model.nfe


@pytest.mark.parametrize("sde", ["vp", "ve", "edm"])
def test_em_equals_torchsde_euler(sde):
    a, na = run("em", sde=sde, steps=25)
    b, nb = run("torchsde-euler", sde=sde, steps=25)
    assert na == nb == 25
    assert (a - b).abs().max() < 1e-10


def test_em_equals_torchsde_euler_on_shared_fine_path():
    """Common random numbers: both read the coarse increments as sums of a 60-step base path."""
    a, _ = run("em", steps=12, base_steps=60)
    b, _ = run("torchsde-euler", steps=12, base_steps=60)
    assert (a - b).abs().max() < 1e-10


def test_srk_equals_torchsde_srk():
    """torchsde's SRA1 (its own tableau and loop) fed the same dW and space-time integral."""
    a, na = run("srk", steps=16, base_steps=64)
    b, nb = run("torchsde-srk", steps=16, base_steps=64)
    assert na == nb == 32
    assert (a - b).abs().max() < 1e-10


def test_torchsde_milstein_reduces_to_em_for_additive_noise():
    a, _ = run("em", steps=10)
    b, _ = run("torchsde-milstein", steps=10)
    assert (a - b).abs().max() < 1e-10


def test_reversible_heun_nfe_and_finite():
    out, nfe = run("torchsde-reversible-heun", steps=10, problem="gauss1d", sde="ou")
    assert nfe == 11 and torch.isfinite(out).all()


def test_torchsde_needs_uniform_grid():
    with pytest.raises(ConfigError, match="uniform"):
        run("torchsde-euler", schedule="logsnr")


def test_rk4_and_dopri5_agree_with_exact_flow():
    """rk4 (fixed grid) and dopri5 (adaptive, NFE counted) converge to the same ODE solution."""
    ref, nfe_ref = run("dopri5", problem="gmm1d", rtol=1e-10, atol=1e-10)
    loose, nfe_loose = run("dopri5", problem="gmm1d", rtol=1e-4, atol=1e-4)
    assert nfe_ref > nfe_loose > 0
    x4, n4 = run("rk4", problem="gmm1d", steps=200, schedule="logsnr")
    assert n4 == 800
    assert (x4 - ref).abs().max() < 1e-6
    assert 1e-9 < (loose - ref).abs().max() < 1e-2


def test_dopri5_options_checked():
    with pytest.raises(ConfigError, match="rtol"):
        run("dopri5", rtol=-1.0)
