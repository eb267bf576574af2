"""sdebench.reference.reference_flow, the one reference solve of the probability-flow ODE, against the
exact flow of a Gaussian target (closed form, problems/consistency.py gaussian_consistency)."""

import pytest
import torch

from sdebench.problems import get_problem
from sdebench.problems.consistency import gaussian_consistency
from sdebench.reference import reference_flow
from sdebench.sde import get_sde


def _case(sde_name="vp", n=64, seed=0):
    prob, sde = get_problem("gauss-aniso16"), get_sde(sde_name)
    x_T = prob.sample_t(n, sde.T, sde, generator=torch.Generator().manual_seed(seed))
    t_end = sde.t_end_default
    exact = gaussian_consistency(prob, sde, x_T, sde.T, t_end)
    return prob, sde, x_T, t_end, exact


def _rms(a, b):
    return float((a - b).pow(2).mean().sqrt())


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_tight_solve_reproduces_the_exact_gaussian_flow(sde_name):
    prob, sde, x_T, t_end, exact = _case(sde_name)
    r = reference_flow(sde, x_T, t_end, score=lambda x, t: prob.score(x, t, sde), rtol=1e-10)
    assert r.x.dtype == torch.float64 and r.rtol == 1e-10 and r.atol == 1e-10
    assert r.err is None and r.x_check is None and r.check_nfe == 0
    assert float((r.x - exact).abs().max()) < 1e-7
    assert r.nfe > 50  # every velocity evaluation is counted


@pytest.mark.parametrize("rtol", [1e-4, 1e-6, 1e-8])
def test_error_estimate_bounds_the_true_error(rtol):
    """The returned x is the tighter solve (at rtol); err is its RMS distance to the check solve at 10 rtol,
    which bounds the true RMS error of x against the closed form, and is not wildly pessimistic."""
    prob, sde, x_T, t_end, exact = _case()
    r = reference_flow(sde, x_T, t_end, score=lambda x, t: prob.score(x, t, sde), rtol=rtol,
                       error_estimate=True)
    plain = reference_flow(sde, x_T, t_end, score=lambda x, t: prob.score(x, t, sde), rtol=rtol)
    assert torch.equal(r.x, plain.x) and r.nfe == plain.nfe  # the reference is the solve at rtol
    loose = reference_flow(sde, x_T, t_end, score=lambda x, t: prob.score(x, t, sde), rtol=10 * rtol)
    assert torch.equal(r.x_check, loose.x) and r.check_nfe == loose.nfe < r.nfe
    true = _rms(r.x, exact)
    assert r.err == pytest.approx(_rms(r.x_check, r.x), rel=1e-12)
    assert true <= r.err <= 1e3 * max(true, 1e-13)
    d = x_T.shape[1]  # err_norm: RMS over samples of the per-sample norm = sqrt(d) x RMS per entry
    assert r.err_norm == pytest.approx(d**0.5 * r.err, rel=1e-9)


def test_eps_form_equals_score_form_and_probes_are_clamped():
    prob, sde, x_T, t_end, exact = _case(n=16)
    seen = []

    def score(x, t):
        seen.append(float(t))
        return prob.score(x, t, sde)

    a = reference_flow(sde, x_T, t_end, score=score, rtol=1e-9)
    eps = prob.model_functions(sde)["eps"]
    b = reference_flow(sde, x_T, t_end, eps=eps, rtol=1e-9)
    assert _rms(a.x, b.x) < 1e-9 and _rms(a.x, exact) < 1e-7
    assert min(seen) >= t_end and max(seen) <= sde.T  # the first-step probe never leaves [t_end, T]
    assert len(seen) == a.nfe


def test_partial_interval_and_degenerate_calls():
    prob, sde, x_T, t_end, _ = _case(n=8)
    score = lambda x, t: prob.score(x, t, sde)  # noqa: E731
    mid = reference_flow(sde, x_T, 0.4, score=score, rtol=1e-10).x
    assert float((mid - gaussian_consistency(prob, sde, x_T, sde.T, 0.4)).abs().max()) < 1e-8
    end = reference_flow(sde, mid, t_end, score=score, t_start=0.4, rtol=1e-10).x
    assert float((end - gaussian_consistency(prob, sde, mid, 0.4, t_end)).abs().max()) < 1e-8
    same = reference_flow(sde, x_T, sde.T, score=score, rtol=1e-6, error_estimate=True)
    assert torch.equal(same.x, x_T.double()) and same.nfe == 0 and same.err == 0.0
    with pytest.raises(ValueError, match="rtol"):
        reference_flow(sde, x_T, t_end, score=score, rtol=0.0)
    with pytest.raises(ValueError, match="exactly one"):
        reference_flow(sde, x_T, t_end, rtol=1e-6)
