"""asv mirror of benchmarks/perf.py (``time_*``): the figures of its table as tracked wall times.

Same inputs as perf.py (gmm2d-ring8, VP, float64, CPU, one intra-op thread): the score floor and one
sample call per fixed-grid solver at batch 100,000 and NFE 12; the peers (torchsde, torchdiffeq,
diffusers loops) at equal NFE with the same analytic score; ``em`` against batch size and NFE; the
metric costs against n. The ratios, exponents and output differences are printed by perf.py itself.
"""

from __future__ import annotations

import torch

from . import common

BATCH = 100_000
NFE = 12
OVERHEAD_SOLVERS = ["em", "ei", "ddpm", "euler", "ddim", "heun", "dpm-solver-2", "dpm-solver-3", "dpm-solver++2m",
                    "srk", "rk4"]


def _inputs(n, t_start=None):
    from sdebench.problems import get_problem
    from sdebench.sde import get_sde

    torch.set_num_threads(1)
    sde = get_sde("vp")
    prob = get_problem("gmm2d-ring8")
    model, x = common.setup(prob, sde, n, t_start=t_start)
    return prob, sde, model, x


class ScoreFloor:
    processes = 1
    timeout = 120

    def setup(self):
        from sdebench.schedules import make_grid

        self.prob, self.sde, self.model, self.x = _inputs(BATCH)
        self.t = make_grid(self.sde, NFE, 1e-3)[NFE // 2]

    def time_score_gmm2d_ring8(self):
        self.model.score(self.x, self.t)


class SolverSample:
    params = (OVERHEAD_SOLVERS,)
    param_names = ["solver"]
    processes = 1
    timeout = 300

    def setup(self, solver):
        from sdebench.schedules import make_grid
        from sdebench.solvers import SOLVERS, get_solver

        get_solver("em")
        if solver not in SOLVERS:
            raise NotImplementedError(f"solver {solver} is not registered in this version")
        self.prob, self.sde, self.model, self.x = _inputs(BATCH)
        self.spec = get_solver(solver)
        self.nfe = common.solver_nfe(self.spec, NFE)
        self.grid = make_grid(self.sde, self.spec.steps_for_nfe(self.nfe), 1e-3)

    def time_sample_call(self, solver):
        common.sample_call(self.spec, self.model, self.x, self.grid, self.sde, 1, self.nfe)


class Peers:
    params = (["torchsde-euler", "torchsde-srk", "torchdiffeq-euler", "torchdiffeq-rk4", "diffusers-ddim",
               "diffusers-dpm-solver++2m"], [1_000, BATCH])
    param_names = ["peer", "batch"]
    processes = 1
    timeout = 300

    def setup(self, peer, batch):
        self.run = _peer_runner(peer, batch)

    def time_peer(self, peer, batch):
        self.run()


def _peer_runner(peer: str, n: int):
    """A zero-argument callable doing the peer library's sampling call (as timed in perf.py)."""
    if peer.startswith("diffusers-"):
        from sdebench.sde import get_sde

        name = peer.removeprefix("diffusers-")
        sched, grid, tcont = common.diffusers_setup(name, get_sde("vp"), NFE)
        prob, sde, model, x = _inputs(n, t_start=float(grid[0]))
        return lambda: common.diffusers_loop(sched, model, x, NFE, tcont)
    prob, sde, model, x = _inputs(n)
    if peer.startswith("torchsde-"):
        import torchsde

        method = peer.removeprefix("torchsde-")
        steps = NFE if method == "euler" else NFE // 2
        s_pts, dt = common.torchsde_times(sde.T, 1e-3, steps)
        ts = torch.tensor([0.0, s_pts[-1]], dtype=torch.float64)
        rsde = common.ReverseSDE(model, sde)
        levy = "space-time" if method == "srk" else "none"

        def run():
            bm = torchsde.BrownianInterval(0.0, s_pts[-1], size=tuple(x.shape), dtype=x.dtype, entropy=5,
                                           levy_area_approximation=levy)
            with torch.no_grad():
                return torchsde.sdeint(rsde, x, ts, bm=bm, method=method, dt=dt)[-1]

        return run
    if peer.startswith("torchdiffeq-"):
        from torchdiffeq import odeint

        from sdebench.schedules import make_grid

        method = peer.removeprefix("torchdiffeq-")
        grid = make_grid(sde, NFE // (4 if method == "rk4" else 1), 1e-3)

        def func(t, y):
            f, g2 = common.coeffs(sde, float(t))
            return f * y - 0.5 * g2 * model.score(y, torch.tensor(float(t), dtype=torch.float64))

        def run():
            with torch.no_grad():
                return odeint(func, x, grid, method=method)[-1]

        return run
    raise NotImplementedError(f"unknown peer {peer}")


class EmScaling:
    params = ([100, 1_000, 10_000, 100_000, 1_000_000],)
    param_names = ["batch"]
    processes = 1
    timeout = 300

    def setup(self, batch):
        from sdebench.schedules import make_grid
        from sdebench.solvers import get_solver

        self.prob, self.sde, self.model, self.x = _inputs(batch)
        self.spec = get_solver("em")
        self.grid = make_grid(self.sde, NFE, 1e-3)

    def time_em_batch(self, batch):
        common.sample_call(self.spec, self.model, self.x, self.grid, self.sde, 0, NFE)


class EmNFE:
    params = ([6, 12, 24, 48, 96],)
    param_names = ["nfe"]
    processes = 1
    timeout = 300

    def setup(self, nfe):
        from sdebench.schedules import make_grid
        from sdebench.solvers import get_solver

        self.prob, self.sde, self.model, self.x = _inputs(10_000)
        self.spec = get_solver("em")
        self.grid = make_grid(self.sde, nfe, 1e-3)

    def time_em_nfe(self, nfe):
        common.sample_call(self.spec, self.model, self.x, self.grid, self.sde, 0, nfe)


class MetricCost:
    params = (["emd_w2", "sliced_w2", "mmd"], [1_000, 2_000, 4_000])
    param_names = ["metric", "n"]
    processes = 1
    timeout = 300

    def setup(self, metric, n):
        from sdebench.problems import get_problem

        torch.set_num_threads(1)
        self.ring = get_problem("gmm2d-ring8")
        self.x = self.ring.sample(n, generator=torch.Generator().manual_seed(1))
        self.y = self.ring.sample(n, generator=torch.Generator().manual_seed(2))

    def time_metric(self, metric, n):
        from sdebench.metrics import samples, stochastic

        if metric == "emd_w2":
            samples.emd_w2(self.x, self.y)
        elif metric == "sliced_w2":
            samples.sliced_w2(self.x, self.ring)
        else:
            stochastic.mmd(self.x, self.ring)
