"""Learned scores: the three score-matching objectives agree up to constants; training reduces the error."""

from __future__ import annotations

import pytest
import torch

from sdebench.errors import ConfigError
from sdebench.problems import get_problem
from sdebench.sde import get_sde
from sdebench.training.learned import ScoreMLP, _loss, score_error, train_score

torch.set_num_threads(1)


def _batch(prob, sde, n, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = prob.sample(n, generator=g)
    t = 0.05 + 0.9 * torch.rand(n, generator=g, dtype=torch.float64)
    z = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    a, s = torch.exp(sde.log_alpha(t))[:, None], torch.sqrt(sde.sigma2(t))[:, None]
    return a * x0 + s * z, t, z, g


@pytest.mark.parametrize("pname", ["gauss1d", "gmm2d-ring8"])
def test_objectives_differ_by_a_constant(pname):
    """Hyvarinen: ISM(s) = E sigma^2 |s - s*|^2 / 2 + C and DSM(s) = E |sigma s + z|^2 = 2 (that) + C', so
    ISM(s1) - ISM(s2) = (DSM(s1) - DSM(s2)) / 2, and SSM matches ISM in expectation; checked by Monte Carlo
    on two random networks."""
    prob, sde = get_problem(pname), get_sde("vp")
    nets = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        nets.append(ScoreMLP(prob.d, sde, 1.0, hidden=16).double())
    x, t, z, g = _batch(prob, sde, 40_000, 0)
    d = {obj: [float(_loss(net, obj, x, t, z, torch.Generator().manual_seed(5)).detach()) for net in nets]
         for obj in ("dsm", "ssm", "ism")}
    diff = {k: v[0] - v[1] for k, v in d.items()}
    scale = abs(diff["dsm"])
    assert scale > 1e-2
    assert abs(diff["ism"] - diff["dsm"] / 2) < 0.05 * scale + 5e-3
    assert abs(diff["ssm"] - diff["dsm"] / 2) < 0.1 * scale + 1e-2


def test_training_reduces_score_error():
    prob, sde = get_problem("gauss1d"), get_sde("vp")
    torch.manual_seed(0)
    untrained = ScoreMLP(1, sde, 0.25).double()
    net = train_score(prob, sde, "ism", iters=150, batch=128, seed=0)
    for t in (0.1, 0.5):
        assert score_error(net, prob, sde, t, n=2000) < 0.5 * score_error(untrained, prob, sde, t, n=2000)


def test_bad_objective():
    with pytest.raises(ConfigError, match="unknown score-matching objective 'nce'"):
        train_score(get_problem("gauss1d"), get_sde("vp"), "nce")


def test_distillation_table_teacher_orders():
    """The ideal distillation target's one-step error (teacher's N-step solve vs the oracle) falls like
    N^-p: ratio ~2 per doubling for euler (p = 1), ~4 for heun (p = 2)."""
    from sdebench.training.consistency import distillation_table

    rows = distillation_table(get_problem("gauss1d"), get_sde("vp"), ["euler", "heun"], [16, 32], iters=2, n=256)
    r = {(row["teacher"], row["N"]): row["teacher_err"] for row in rows}
    assert 1.6 < r[("euler", 16)] / r[("euler", 32)] < 2.5
    assert 3.0 < r[("heun", 16)] / r[("heun", 32)] < 5.0


def test_cli_experiment_errors(capsys):
    from sdebench.cli import main

    cases = [
        (["train", "--score-matching", "dsm,nce", "--problem", "gmm1d"], "unknown score-matching objective 'nce'"),
        (["train", "--score-matching", "dsm"], "need --problem"),
        (["train", "--consistency", "--problem", "gmm1d", "--teacher", "em"], "must be an ODE solver"),
        (["train", "--consistency", "--problem", "gmm1d", "--N", "4,x"], "--N must be comma-separated"),
        (["train", "--consistency", "--problem", "nope"], "unknown problem 'nope'"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, (argv, err)
