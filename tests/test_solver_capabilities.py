"""Every registered solver's declared capabilities, checked against what it does (one parametrized test
over the registry, for its default options and one-option variations of them).

- ``deterministic(options)`` iff two runs from the same x_T with different noise seeds give bit-identical
  output (and then it also runs without a NoiseSource, with the same output);
- ``batch_coupled`` iff changing one row of x_T changes another row's output;
- ``affine(options)`` iff, on a Gaussian target (affine score), the output of a real batch is reproduced by
  the affine map x_out = A x_T + b + G xi that the probes of :mod:`sdebench.exact` recover (xi = the
  standard normals the solver drew); for those, :func:`sdebench.exact.output_gaussian` is that map's law.

Then every scattered "is this cell deterministic / exact" decision reads these: the tests at the end
failed with the rules they replace (images' path_err for ``ddim`` with eta > 0, guidance's lowercase
``s_churn``, the ``kind`` column of a row).
"""

from __future__ import annotations

import pytest
import torch

from sdebench.errors import ConfigError
from sdebench.exact import output_gaussian
from sdebench.noise import CountingNoise, NoiseSource, ProbeNoise
from sdebench.run import CellConfig, _model, prepare, run_cell
from sdebench.solvers import SOLVERS, register
from sdebench.solvers.base import Rule

PROBLEM = "gauss1d"  # affine score; its consistency function is the exact affine map
N = 6  # batch rows


def _sde_for(spec) -> str:
    return "vp" if spec.sdes is None or "vp" in spec.sdes else spec.sdes[0]


def _budget(spec) -> int:
    """A small budget the solver accepts (8 steps where it can)."""
    for cand in [8 * spec.nfe_per_step, *range(8 * spec.nfe_per_step - 1, 0, -1)]:
        try:
            spec.steps_for_nfe(cand)
            return cand
        except ConfigError:
            continue
    raise AssertionError(f"{spec.name}: no budget accepted")


def _variants(spec) -> list[dict]:
    """The default options, then each float option set to 0.0 and to 0.5, each bool option flipped."""
    out = [{}]
    for k, v in spec.options.items():
        if isinstance(v, bool):
            out.append({k: not v})
        elif isinstance(v, float):
            out += [{k: x} for x in (0.0, 0.5) if x != v]
    return out


CASES = [pytest.param(name, opts, id=f"{name}-" + (",".join(f"{k}={v}" for k, v in opts.items()) or "default"))
         for name in sorted(SOLVERS) for opts in _variants(SOLVERS[name])]


class _Case:
    def __init__(self, name, options):
        self.spec = spec = SOLVERS[name]
        self.cfg = CellConfig(problem=PROBLEM, sde=_sde_for(spec), solver=name, nfe=_budget(spec),
                              solver_options=options)
        self.problem, self.sde, _, _, self.grid, self.options, _ = prepare(self.cfg)
        g = torch.Generator().manual_seed(7)
        self.x_T = 0.2 + torch.randn((N, self.problem.d), generator=g, dtype=torch.float64)

    def run(self, x, noise):
        model = _model(self.problem, self.sde, self.cfg)
        with torch.no_grad():
            return self.spec.sample(model, x.clone(), self.grid, self.sde, noise, nfe=self.cfg.nfe, **self.options)

    def noise(self, seed, n=N):
        return NoiseSource(seed, n, (self.problem.d,))

    def affine_map(self):
        """A, b and G (one column per scalar draw, in the order of ``keys``) from the exact.py probes."""
        d = self.problem.d
        x = torch.zeros(d + 1, d, dtype=torch.float64)
        x[1:] += torch.eye(d, dtype=torch.float64)
        counting = CountingNoise(0, d + 1, (d,))
        out = self.run(x, counting)
        b, A = out[0], (out[1:] - out[0]).T
        G = torch.zeros(d, 0, dtype=torch.float64)
        if counting.keys:
            G = (self.run(torch.zeros(len(counting.keys) * d, d, dtype=torch.float64),
                          ProbeNoise(counting.keys, (d,))) - b).T
        return A, b, G, counting.keys


def _case(name, options) -> _Case:
    try:
        case = _Case(name, options)
        case.run(case.x_T, case.noise(1))
    except ConfigError as exc:  # e.g. pc snr = 0, ald eps = 0: the solver refuses the value itself
        pytest.skip(f"{name} rejects {options}: {exc}")
    return case


@pytest.mark.parametrize("name,options", CASES)
def test_declared_capabilities(name, options):
    case = _case(name, options)
    spec, opts = case.spec, case.options
    assert spec.kind_for(opts) == ("ode" if spec.deterministic(opts) else "sde")

    # deterministic: different noise seeds, the same bits
    y1, y2 = case.run(case.x_T, case.noise(1)), case.run(case.x_T, case.noise(2))
    assert bool(torch.isfinite(y1).all()), name
    assert torch.equal(y1, y2) == spec.deterministic(opts), (name, opts, (y1 - y2).abs().max())
    if spec.deterministic(opts):
        assert torch.equal(case.run(case.x_T, None), y1), name
    else:
        with pytest.raises(ValueError, match="needs a NoiseSource"):
            case.run(case.x_T, None)

    # batch-coupled: move row 0, watch rows 1..N-1 (same noise)
    x = case.x_T.clone()
    x[0] += 0.5
    y3 = case.run(x, case.noise(1))
    assert (not torch.equal(y3[1:], y1[1:])) == spec.batch_coupled, (name, opts)

    # affine: the probes' map reproduces the real batch (noise draws of the real source)
    A, b, G, keys = case.affine_map()
    d = case.problem.d
    xi = case.noise(1)
    xi.for_grid(case.grid)
    draws = torch.cat([xi.standard_normal(k).reshape(N, d) for k in keys], dim=1) if keys else torch.zeros(N, 0)
    pred = case.x_T @ A.T + b + draws.to(torch.float64) @ G.T
    reproduced = torch.allclose(pred, y1, rtol=1e-9, atol=1e-9)
    assert reproduced == spec.affine(opts), (name, opts, (pred - y1).abs().max())
    if spec.affine(opts):  # then sdebench.exact's law is this map's law
        m_T, P_T = torch.tensor([0.3] * d, dtype=torch.float64), 0.7 * torch.eye(d, dtype=torch.float64)
        mean, cov = output_gaussian(spec, lambda: _model(case.problem, case.sde, case.cfg), case.sde, case.grid,
                                    m_T, P_T, nfe=case.cfg.nfe, options=opts)
        assert torch.allclose(mean, A @ m_T + b, rtol=1e-9, atol=1e-12)
        assert torch.allclose(cov, A @ P_T @ A.T + G @ G.T, rtol=1e-9, atol=1e-12)


def test_exact_law_refuses_a_solver_that_is_not_affine():
    """output_gaussian of pc ran its probes (zero noise, so no corrector step) and returned a wrong law."""
    case = _Case("pc", {})
    with pytest.raises(ConfigError, match="'pc' .* is not affine"):
        output_gaussian(case.spec, lambda: _model(case.problem, case.sde, case.cfg), case.sde, case.grid,
                        torch.zeros(1, dtype=torch.float64), torch.eye(1, dtype=torch.float64), nfe=case.cfg.nfe)


def test_kind_is_the_default_options_kind_and_rules_are_shown():
    for name, spec in SOLVERS.items():
        assert spec.kind == spec.kind_for(), name
    ddim, edm = SOLVERS["ddim"], SOLVERS["edm-sde"]
    assert ddim.deterministic() and not ddim.deterministic({"eta": 0.5}) and ddim.kind_for({"eta": 1.0}) == "sde"
    assert not edm.deterministic() and edm.deterministic({"S_churn": 0.0}) and edm.kind_for({"S_churn": 0}) == "ode"
    assert "iff eta = 0" in ddim.capabilities() and "batch-coupled" in SOLVERS["pc"].capabilities()
    assert SOLVERS["pc"].order_check == "nonaffine" and not SOLVERS["pc"].affine()
    with pytest.raises(ConfigError, match="no option"):
        ddim.deterministic({"s_churn": 1.0})


def test_register_checks_capability_declarations():
    def f(model, x, grid, sde, noise, eta: float = 0.0):
        return x

    with pytest.raises(ValueError, match="kind='sde' but with its default options it is 'ode'"):
        register("_c1", kind="sde", order=1, nfe_per_step=1,
                 deterministic=Rule("iff eta = 0", lambda o: o["eta"] == 0))(f)
    with pytest.raises(ValueError, match="follows from affine=False or batch_coupled=True"):
        register("_c2", kind="sde", order=1, nfe_per_step=1, order_check="nonaffine", order_note="x")(f)
    with pytest.raises(ValueError, match="needs an order_note"):
        register("_c3", kind="sde", order=1, nfe_per_step=1, batch_coupled=True)(f)
    with pytest.raises(ValueError, match="cannot be affine"):
        register("_c4", kind="sde", order=1, nfe_per_step=1, batch_coupled=True, affine=True, order_note="x")(f)
    with pytest.raises(ValueError, match="bool or a Rule"):
        register("_c5", kind="ode", order=1, nfe_per_step=1, deterministic="yes")(f)
    assert not {"_c1", "_c2", "_c3", "_c4", "_c5"} & set(SOLVERS)


# ---- the decisions that used to be made from option names ------------------------------------------------
def test_row_kind_follows_the_options():
    """The ``kind`` column was the solver's default kind: 'ode' for ddim with eta = 1 (ancestral sampling)."""
    row = run_cell(CellConfig(problem="gauss1d", solver="ddim", nfe=4, n_samples=8, metrics=("w2",),
                              solver_options={"eta": 1.0}))
    assert row["status"] == "ok" and row["kind"] == "sde"
    row = run_cell(CellConfig(problem="gauss1d", solver="edm-sde", nfe=8, n_samples=8, metrics=("w2",),
                              solver_options={"S_churn": 0.0}))
    assert row["status"] == "ok" and row["kind"] == "ode"


def test_density_metrics_follow_the_capability():
    """kl/tv by change of variables for edm-sde without churn (deterministic), KDE for it with churn."""
    from sdebench.metrics.density import check_deterministic

    check_deterministic(SOLVERS["edm-sde"], {"S_churn": 0.0}, 1)
    with pytest.raises(ConfigError, match="draws noise"):
        check_deterministic(SOLVERS["ddim"], {"eta": 0.5}, 1)


def test_image_path_err_skips_stochastic_ddim():
    """images' path_err is for deterministic solvers; it tested kind == 'ode', true for ddim with eta > 0."""
    stoch = run_cell(CellConfig(problem="digits", solver="ddim", nfe=2, n_samples=8, metrics=("path_err",),
                                solver_options={"eta": 0.5}))
    assert stoch["status"] == "ok" and "path_err" not in stoch
    det = run_cell(CellConfig(problem="digits", solver="ddim", nfe=2, n_samples=8, metrics=("path_err",)))
    assert det["status"] == "ok" and det["path_err"] > 0


def test_guidance_path_err_for_deterministic_edm():
    """guidance tested a lowercase ``s_churn`` (no solver has it) after ``kind == 'ode'``: edm-sde with
    S_churn = 0 (deterministic EDM Heun) got no pathwise error; with churn it still gets none."""
    kw = dict(problem="gmm2d-ring8-labelled", solver="edm-sde", n_samples=16, guidance="cfg", scale=2.0,
              class_label=1, cfg_batched=True, metrics=("path_err",))
    det = [run_cell(CellConfig(**kw, nfe=nfe, solver_options={"S_churn": 0.0})) for nfe in (16, 64)]
    assert all(r["status"] == "ok" for r in det), [r.get("error") for r in det]
    assert 0 < det[1]["path_err"] < det[0]["path_err"] / 8  # second order (EDM Heun): 4x the steps, ~1/16
    stoch = run_cell(CellConfig(**kw, nfe=16))
    assert stoch["status"] == "ok" and "path_err" not in stoch
