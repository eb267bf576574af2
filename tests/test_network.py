"""Your own network (sdebench.problems.from_network, --problem pkg.module:factory, diffusers UNet2DModel).

(a) A module that is the exact analytic eps of a Gaussian mixture, written here independently of
    problems/gmm.py and given as eps, x0, v or score: every solver on from_network(...) equals the same solver
    on the built-in analytic problem (two independent implementations of the same model).
(b) The pkg.module:factory path end to end (a factory module in tmp_path on PYTHONPATH): run and sweep rows.
(c) A randomly initialized tiny diffusers UNet2DModel runs through run_cell with a finite path_err; saved with
    save_pretrained and loaded back from the folder it gives identical outputs.
(d) Bad inputs: one line, exit 2.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch

from sdebench.cli import main
from sdebench.errors import ConfigError
from sdebench.model import Model
from sdebench.noise import NoiseSource
from sdebench.problems import DiscreteVP, from_network, get_problem
from sdebench.run import CellConfig, run_cell
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.solvers import SOLVERS

RING = [(4 * math.cos(2 * math.pi * k / 8), 4 * math.sin(2 * math.pi * k / 8)) for k in range(8)]


def vp_coeffs(t):
    """VP with beta in [0.1, 20] in closed form (independent of sdebench.sde)."""
    B = 0.1 * t + 0.5 * (20.0 - 0.1) * t * t
    return torch.exp(-0.5 * B), torch.sqrt(-torch.expm1(-B))


class RingEps(torch.nn.Module):
    """Exact eps of gmm2d-ring8 (8 equal modes, radius 4, std 0.3) under VP, output in ``kind``:
    p_t = sum_k N(a mu_k, (a^2 s^2 + sig^2) I), score = sum_k w_k(x) (a mu_k - x) / v_t, eps = -sig score."""

    def __init__(self, kind="eps"):
        super().__init__()
        self.kind = kind
        self.register_buffer("mu", torch.tensor(RING, dtype=torch.float64))

    def forward(self, x, t):
        a, sig = vp_coeffs(t.double())
        a, sig = a[:, None], sig[:, None]
        var = a * a * 0.09 + sig * sig
        diff = (a[:, None] * self.mu[None] - x[:, None, :])  # (n, K, d)
        logw = torch.log_softmax(-(diff ** 2).sum(-1) / (2 * var), dim=1)
        score = (logw.exp()[..., None] * diff).sum(1) / var
        eps = -sig * score
        x0 = (x - sig * eps) / a
        return {"eps": eps, "score": score, "x0": x0, "v": a * eps - sig * x0}[self.kind]


def _solver_cases():
    out = []
    for name, spec in sorted(SOLVERS.items()):
        if name.startswith("user:") or spec.family == "consistency":
            continue  # the consistency solvers use each problem's own oracle flow map, not the model
        out.append(name)
    return out


def _run(spec, model, x, grid, sde, n, seed=0):
    noise = NoiseSource(seed, n, (x.shape[1],))
    return spec.sample(model, x.clone(), grid, sde, noise, nfe=None)


@pytest.mark.parametrize("kind", ["eps", "x0", "v", "score"])
def test_every_solver_matches_the_analytic_problem(kind):
    sde = get_sde("vp")
    ring = get_problem("gmm2d-ring8")
    net = from_network(RingEps(kind), parametrization=kind, sde="vp", shape=(2,))
    n = 16
    x = ring.sample_t(n, sde.T, sde, generator=torch.Generator().manual_seed(1))
    checked = 0
    for name in _solver_cases():
        spec = SOLVERS[name]
        try:
            steps = spec.steps_for_nfe(12 * spec.nfe_per_step if not spec.adaptive else 40)
            spec.check_sde(sde)
        except ConfigError:
            continue
        grid = make_grid(sde, steps, sde.t_end_default, "logsnr")
        m_ref, m_net = Model(sde, **ring.model_functions(sde)), Model(sde, **net.model_functions(sde))
        try:
            a = _run(spec, m_ref, x, grid, sde, n)
        except ConfigError:
            continue  # a solver that needs something this cell has not (e.g. a consistency network)
        b = _run(spec, m_net, x, grid, sde, n)
        assert m_ref.nfe == m_net.nfe, name
        err = float((a - b).abs().max())
        # fixed-step solvers: round-off only; an adaptive solver's step control also feeds the round-off of the
        # conversion back into its step sizes (dopri5 with x0: 2e-11)
        tol = 1e-9 if spec.adaptive else 1e-12
        assert err <= tol * (1 + float(a.abs().max())), (name, kind, err)
        checked += 1
    assert checked >= 15, checked


@pytest.mark.parametrize("cell_sde", ["edm", "ve", "subvp"])
def test_network_serves_another_sde_by_log_snr(cell_sde):
    """A VP-trained network integrated on another SDE (evaluated at equal log-SNR, state rescaled) gives the
    analytic problem's model on that SDE."""
    sde = get_sde(cell_sde)
    ring = get_problem("gmm2d-ring8")
    for kind in ("eps", "score", "v"):
        net = from_network(RingEps(kind), parametrization=kind, sde="vp", shape=(2,))
        x = ring.sample_t(32, 0.3 * sde.T, sde, generator=torch.Generator().manual_seed(2))
        t = torch.tensor(0.3 * sde.T, dtype=torch.float64)
        f_ref, f_net = ring.model_functions(sde), net.model_functions(sde)
        for what in ("eps", "x0", "score"):
            m_ref, m_net = Model(sde, **{k: v for k, v in f_ref.items() if k != "consistency"}), Model(sde, **f_net)
            a, b = getattr(m_ref, what)(x, t), getattr(m_net, what)(x, t)
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), (cell_sde, kind, what, float((a - b).abs().max()))


def test_discrete_vp_mapping():
    """t_n = (n + 1) / N is timestep index n; log alpha is linear in t between grid points; t_of_lambda inverts."""
    ac = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    s = DiscreteVP(ac)
    n = torch.tensor([0, 10, 500, 999])
    t = (n + 1).double() / 1000
    assert torch.allclose(s.alpha(t) ** 2, ac[n], rtol=1e-14)
    assert torch.equal(s.index(t), n.double())
    mid = (t[1] + 0.5 / 1000).reshape(1)
    assert torch.allclose(s.log_alpha(mid), 0.5 * (s.log_alpha(t[1:2]) + s.log_alpha(t[1:2] + 1e-3)), rtol=1e-13)
    tt = torch.tensor([1e-3, 0.0123, 0.5, 0.999, 1.0], dtype=torch.float64)
    assert torch.allclose(s.t_of_lambda(s.lambda_(tt)), tt, rtol=1e-10)
    with pytest.raises(ConfigError, match="decrease strictly"):
        DiscreteVP(torch.tensor([0.5, 0.7]))


def test_benchmark_and_cells_take_the_problem_object():
    """run_cell, CellConfig and sdebench.benchmark accept the problem object (registered under its name); path_err
    always, sliced_w2_data only with data, fd never without a classifier, exact metrics never."""
    import sdebench
    from sdebench.problems import PROBLEMS, register_network
    from sdebench.solvers.ode import heun

    net = from_network(RingEps(), sde="vp", shape=(2,), name="ring-net")
    df = sdebench.benchmark(heun, problems=net, nfe=[4, 8], nfe_per_step=2, samples=16, metrics=["path_err"])
    assert list(df["problem"]) == ["ring-net"] * 2 and (df["status"] == "ok").all()
    assert df["path_err"].notna().all() and df["path_err"].iloc[1] < df["path_err"].iloc[0]
    assert "ring-net" in PROBLEMS and "path_err" in PROBLEMS["ring-net"].describe()
    ring = get_problem("gmm2d-ring8")
    with_data = from_network(RingEps(), sde="vp", shape=(2,), name="ring-net-data",
                             data=ring.sample(400, generator=torch.Generator().manual_seed(0)))
    row = run_cell(CellConfig(problem=with_data, solver="heun", nfe=8, n_samples=64))
    assert row["status"] == "ok" and math.isfinite(row["path_err"]) and math.isfinite(row["sliced_w2_data"])
    assert "sliced_w2_data_null" in row and "fd" not in row and "w2_exact" not in row and "kl_exact" not in row
    with pytest.raises(ConfigError, match="taken by a built-in problem"):
        register_network(net, "gauss1d")


# ---- (b) pkg.module:factory -----------------------------------------------------------------------------------
FACTORY = '''
import torch
from sdebench.problems import from_network


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))

    def forward(self, x, t):  # the exact eps of N(0, I) data under VP (sigma_t x) plus a small smooth MLP
        sigma = torch.sqrt(-torch.expm1(-(0.1 * t + 9.95 * t * t)))[:, None]
        return sigma * x + 0.05 * self.net(torch.cat([x, t[:, None]], 1))


def make():
    return from_network(MLP().double(), parametrization="eps", sde="vp", shape=(2,))


def wrong_shape():
    return from_network(lambda x, t: x[:, :1], parametrization="eps", sde="vp", shape=(2,))


def boom():
    raise RuntimeError("no weights here")


def not_a_problem():
    return 3


def needs_args(path):
    return None


VALUE = 5
'''


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    name = f"mynet_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_factory_cli_end_to_end(tmp_path, factory_module):
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    out = tmp_path / "rows.csv"
    spec = f"{factory_module}:make"
    r = subprocess.run([sys.executable, "-m", "sdebench.cli", "run", "--problem", spec, "--solver", "heun,ddim",
                        "--nfe", "4,8", "--samples", "20", "--schedule", "logsnr", "--out", str(out)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out)
    assert set(df["problem"]) == {spec} and (df["status"] == "ok").all()
    assert df["path_err"].notna().all() and (df["path_err"] > 0).all() and df["path_ref_err"].notna().all()
    assert "w2_exact" not in df.columns or df["w2_exact"].isna().all()  # no exact metric for a network
    assert "sliced_w2_data" not in df.columns or df["sliced_w2_data"].isna().all()  # no data given
    # the error falls with the budget (heun is second order on this smooth network)
    h = df[df["solver"] == "heun"].set_index("nfe")["path_err"]
    assert h[8] < h[4]
    toml = tmp_path / "net.toml"
    toml.write_text(textwrap.dedent(f'''
        name = "net"
        out = "{tmp_path / 'store'}"
        problems = ["{spec}"]
        sdes = ["vp"]
        schedules = ["logsnr"]
        nfe = [4]
        seeds = 1
        samples = 20
        metrics = ["path_err"]
        solvers = ["heun"]
    '''))
    r = subprocess.run([sys.executable, "-m", "sdebench.cli", "sweep", str(toml), "--serial", "--no-report",
                        "--progress", "quiet"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    rows = pd.read_parquet(tmp_path / "store" / "results.parquet")
    assert list(rows["problem"]) == [spec] and rows["path_err"].notna().all() and (rows["status"] == "ok").all()
    assert "path error" in r.stdout  # the summary reports path_err when no sample metric applies


@pytest.mark.parametrize("attr,match", [
    (None, "cannot import module 'nosuch_module_zz'"),
    ("missing", "has no attribute 'missing'"),
    ("VALUE", "is a int, not a zero-argument callable"),
    ("needs_args", "must be callable with no arguments"),
    ("boom", "the factory raised RuntimeError: no weights here"),
    ("not_a_problem", "the factory returned int, not a problem"),
    ("wrong_shape", "output shape (2, 1) differs from its input shape (2, 2)"),
])
def test_bad_factory_is_one_line_exit_2(capsys, factory_module, attr, match):
    spec = "nosuch_module_zz:make" if attr is None else f"{factory_module}:{attr}"
    code = main(["run", "--problem", spec, "--solver", "heun", "--nfe", "4", "--samples", "10"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert spec in lines[0] and match in lines[0], lines[0]


def test_bad_from_network_inputs():
    m = RingEps()
    with pytest.raises(ConfigError, match="unknown parametrization 'noise'"):
        from_network(m, parametrization="noise", shape=(2,))
    with pytest.raises(ConfigError, match="shape is required"):
        from_network(m)
    with pytest.raises(ConfigError, match="unknown SDE 'vpp'"):
        from_network(m, sde="vpp", shape=(2,))
    with pytest.raises(ConfigError, match="time_input='index' needs a discrete schedule"):
        from_network(m, sde="vp", shape=(2,), time_input="index")
    with pytest.raises(ConfigError, match="fails on a probe batch"):
        from_network(m, shape=(3,))
    # a cell SDE whose log-SNR at T lies below the network's range
    net = from_network(m, sde=get_sde("ve", sigma_max=5.0), shape=(2,), name="ve-net")
    with pytest.raises(ConfigError, match="below the network's range"):
        run_cell(CellConfig(problem=net, sde="vp", solver="heun", nfe=4, n_samples=4, metrics=("path_err",)))


# ---- (c) diffusers UNet2DModel ---------------------------------------------------------------------------------
TINY = {"sample_size": 8, "in_channels": 1, "out_channels": 1, "layers_per_block": 1,
        "block_out_channels": (8, 16), "down_block_types": ("DownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "UpBlock2D"), "norm_num_groups": 4}


def test_diffusers_unet_random_and_from_folder(tmp_path):
    """A random tiny UNet2DModel through run_cell: finite path_err. Its output layer is scaled by 0.1 and the cell
    runs on [0.05, 0.25] so that the dopri5 reference of a random (rough in t) network stays at a few hundred
    evaluations. Saved with save_pretrained and loaded back through the folder: identical outputs."""
    diffusers = pytest.importorskip("diffusers", reason="diffusers not installed (the peers extra)")
    from sdebench.problems import diffusers_unet

    prob = diffusers_unet(config=TINY, seed=0, name="tiny-unet")
    with torch.no_grad():
        prob.net.conv_out.weight.mul_(0.1)
        prob.net.conv_out.bias.mul_(0.1)
    assert isinstance(prob.sde, DiscreteVP) and prob.sde.N == 1000 and prob.shape == (1, 8, 8)
    assert prob.parametrization == "eps" and prob.time_input == "index"
    cfg = CellConfig(problem=prob, sde="vp", solver="dpm-solver++2m", nfe=6, n_samples=4, schedule="logsnr",
                     t_end=0.05, T=0.25)
    row = run_cell(cfg)
    assert row["status"] == "ok", row.get("error")
    assert math.isfinite(row["path_err"]) and row["path_err"] > 0 and row["path_ref_err"] < row["path_err"]
    assert "fd" not in row and "sliced_w2_data" not in row  # no data
    # save and load back through the folder: identical outputs
    folder = tmp_path / "unet"
    prob.net.save_pretrained(str(folder))
    diffusers.DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02).save_pretrained(
        str(folder / "scheduler"))
    back = diffusers_unet(folder=folder, name="tiny-unet-back")
    assert torch.equal(back.sde.alphas_cumprod, prob.sde.alphas_cumprod)
    sde = get_sde("vp", T=0.25)
    x = torch.randn(4, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for t in (0.25, 0.1, 0.01):
        tt = torch.tensor(t, dtype=torch.float64)
        assert torch.equal(prob.model_functions(sde)["eps"](x, tt), back.model_functions(sde)["eps"](x, tt))
    grid = make_grid(sde, 3, 0.05, "logsnr")
    outs = [SOLVERS["dpm-solver++2m"].sample(Model(sde, **p.model_functions(sde)), x, grid, sde, None)
            for p in (prob, back)]
    assert torch.equal(outs[0], outs[1])
    with pytest.raises(ConfigError, match="does not exist or holds no config.json"):
        diffusers_unet(folder=tmp_path / "nope")
