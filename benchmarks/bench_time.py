"""Wall time and peak memory (asv ``time_*`` / ``peakmem_*``): one sample call per solver at fixed NFE and
batch size, one score evaluation per problem, one metric computation per metric."""

from __future__ import annotations

import torch

from . import common


class Sample:
    params = (common.TIME_SOLVERS,)
    param_names = ["solver"]
    processes = 1
    timeout = 300

    def setup(self, solver):
        if solver not in common.available([solver]):
            raise NotImplementedError(f"solver {solver} is not registered in this version")
        self.spec, self.model, self.x, self.grid, self.sde, self.noise = common.sampling_inputs(solver=solver)

    def time_sample(self, solver):
        with torch.no_grad():
            self.spec.sample(self.model, self.x, self.grid, self.sde, self.noise, nfe=common.TIME_NFE)

    def peakmem_sample(self, solver):
        with torch.no_grad():
            self.spec.sample(self.model, self.x, self.grid, self.sde, self.noise, nfe=common.TIME_NFE)


class Score:
    params = (["gauss1d", "gauss-aniso16", "gmm2d-ring8", "gmm-d32"],)
    param_names = ["problem"]
    processes = 1
    timeout = 120

    def setup(self, problem):
        from sdebench.problems import get_problem
        from sdebench.sde import get_sde

        torch.set_num_threads(1)
        self.problem = get_problem(problem)
        self.sde = get_sde("vp")
        self.x = common.target_samples(problem)
        self.t = torch.tensor(0.3, dtype=torch.float64)

    def time_score(self, problem):
        self.problem.score(self.x, self.t, self.sde)

    def peakmem_score(self, problem):
        self.problem.score(self.x, self.t, self.sde)


class Metrics:
    params = (["w2_exact", "kl_exact", "w2", "sliced_w2", "emd_w2"],)
    param_names = ["metric"]
    processes = 1
    timeout = 300

    def setup(self, metric):
        from sdebench.problems import get_problem

        torch.set_num_threads(1)
        name = "gmm1d" if metric == "w2" else ("gmm2d-ring8" if metric in ("sliced_w2", "emd_w2") else "gauss-aniso16")
        self.problem = get_problem(name)
        self.x = common.target_samples(name, stream=1)
        self.y = common.target_samples(name, stream=2)
        mu, S = self.problem.means[0], self.problem.covs[0]
        self.gauss = (mu + 0.01, S * 1.02, mu, S)

    def time_metric(self, metric):
        from sdebench.metrics import gaussian as gx
        from sdebench.metrics import samples as sm

        if metric == "w2_exact":
            gx.w2(*self.gauss)
        elif metric == "kl_exact":
            gx.kl(*self.gauss)
        elif metric == "w2":
            p = self.problem
            # named w2_exact_1d before 2026-12-05 (asv benchmarks older commits with this file)
            w2 = getattr(sm, "w2_samples_1d", None) or sm.w2_exact_1d
            w2(self.x[:, 0], p.weights, p.means[:, 0], torch.sqrt(p.covs[:, 0, 0]))
        elif metric == "sliced_w2":
            sm.sliced_w2(self.x, self.problem, seed=common.SEED)
        else:
            sm.emd_w2(self.x, self.y)
