"""Guided sampling as :class:`~sdebench.model.Model` wrappers, independent of the solver, plus its ground truth.

Two guidance rules on a labelled mixture (:mod:`sdebench.problems.labelled`), target class c, scale w >= 0:

* classifier guidance (Dhariwal & Nichol 2021), written in the score:
      score_w(x, t) = grad log p_t(x) + w grad log p_t(c | x)
  w = 0 is unconditional sampling, w = 1 conditional sampling of p(x | c).
* classifier-free guidance (Ho & Salimans 2022), in the eps or x0 parametrization (recorded option):
      eps_w = (1 + w) eps(x, t | c) - w eps(x, t)        or     x0_w = (1 + w) x0(x, t | c) - w x0(x, t)
  w = 0 is conditional sampling of p(x | c).

With exact scores the two rules describe the same vector field up to a shift of the scale:
classifier guidance at scale w equals CFG at scale w - 1, because grad log p_t(c | x) =
grad log p_t(x | c) - grad log p_t(x). The eps and x0 forms of CFG are also the same field (the
conversion x0 = (x - sigma_t eps) / alpha_t is affine with weights (1 + w) - w = 1); they differ only
by rounding. Both identities are checked in tests/test_guidance.py.

NFE counting (column ``nfe_rule``): an unbatched CFG call evaluates the network twice (conditional
and unconditional) and costs 2; a batched CFG call stacks both into one forward pass of a doubled
batch and costs 1, as k-diffusion's CFG denoiser and DPM-Solver++'s NFE tables count it. Classifier
guidance costs 1 per call (the score network; the classifier gradient is not counted, as in
guided-diffusion). The requested NFE is always the counted budget (:func:`solver_calls`): unbatched
CFG at NFE 20 makes 10 model calls; a budget that is not a whole number of calls, or that the solver
cannot split into steps, is a one-line error. The row's ``nfe`` is what the counter measured (equal to
the budget for every fixed-grid solver); ``model_calls`` = nfe / cost.

Ground truth (the guided metrics of :mod:`sdebench.metrics.guided`):
(a) w = 0 CFG (w = 1 classifier) samples p(x | c) exactly in the limit: the sample metrics of the
    row are taken against the class-c sub-mixture;
(b) for every w, the pathwise error ``path_err`` of an ODE solver against a tight-tolerance dopri5
    solve of the guided probability-flow ODE from the same x_T (rtol = atol = 1e-10);
(c) for Gaussian conditional and unconditional laws the guided score is affine, so
    :func:`exact_guided_law` gives the solver's exact output law through
    :func:`sdebench.exact.output_gaussian` and :func:`guided_ode_law` the exact law of the guided ODE
    flow (moment ODEs at tolerance 1e-11);
(d) ``class_mass``: the fraction of samples the exact classifier p_{t_end}(c' | x) assigns to the
    target class, with its null on exact samples of p_{t_end}(x | c).
"""

from __future__ import annotations

import math

import torch

from .errors import ConfigError, NFEBudgetError
from .exact import output_gaussian
from .model import Model
from .problems.labelled import labelled
from .reference import reference_flow

__all__ = [
    "GUIDANCE_MODES",
    "CFG_PARAMS",
    "check_guidance",
    "guidance_cost",
    "solver_calls",
    "nfe_rule",
    "guided_functions",
    "guided_score_fn",
    "guided_model",
    "reference_ode",
    "guidance_columns",
    "class_mass_columns",
    "path_err_columns",
    "exact_guided_law",
    "guided_ode_law",
    "gaussian_score_fn",
]

GUIDANCE_MODES = ("none", "classifier", "cfg")
CFG_PARAMS = ("eps", "x0")
REF_TOL = 1e-10


def _scale(scale) -> float:
    if isinstance(scale, bool):
        raise ConfigError(f"guidance scale must be a number >= 0, got {scale!r}")
    try:
        w = float(scale)
    except (TypeError, ValueError):
        raise ConfigError(f"guidance scale must be a number >= 0, got {scale!r}") from None
    if not math.isfinite(w):
        raise ConfigError(f"guidance scale must be finite, got {scale!r}")
    if w < 0:
        raise ConfigError(f"guidance scale must be >= 0, got {scale!r}")
    return w


def check_guidance(problem, guidance: str = "none", scale=0.0, class_label=None, cfg_param: str = "eps"):
    """Validate a guidance request; return the labelled view (or None for 'none'). One-line ConfigErrors."""
    if guidance not in GUIDANCE_MODES:
        raise ConfigError(f"unknown guidance {guidance!r}; valid: {', '.join(GUIDANCE_MODES)}")
    if cfg_param not in CFG_PARAMS:
        raise ConfigError(f"unknown CFG parametrization {cfg_param!r}; valid: {', '.join(CFG_PARAMS)}")
    w = _scale(scale)
    if guidance == "none":
        if class_label is not None:
            raise ConfigError(f"class {class_label!r} given without guidance; use --guidance cfg or classifier")
        if w != 0.0:
            raise ConfigError(f"guidance scale {scale!r} given without guidance; use --guidance cfg or classifier")
        return None

    lab = labelled(problem)
    if class_label is None:
        raise ConfigError(
            f"guidance {guidance!r} needs a class label (--class); valid classes: "
            f"{', '.join(str(c) for c in lab.classes)}"
        )
    lab.check_class(class_label)
    return lab


def guidance_cost(guidance: str, batched: bool = False) -> int:
    """Network evaluations charged per model call."""
    return 2 if (guidance == "cfg" and not batched) else 1


def solver_calls(nfe: int, guidance: str = "none", batched: bool = False, final_denoise: bool = False) -> int:
    """Model calls a solver may make for a counted budget of ``nfe`` evaluations.

    ``nfe`` counts network evaluations: a call costs :func:`guidance_cost` of them (2 for unbatched CFG),
    and ``final_denoise`` keeps one call for the x0 prediction at t_end. NFEBudgetError (one line) if the
    budget is not a whole number of calls or leaves the solver none."""
    if isinstance(nfe, bool) or int(nfe) != nfe or nfe < 1:
        raise NFEBudgetError(f"NFE must be an integer >= 1, got {nfe}")
    nfe = int(nfe)
    cost = guidance_cost(guidance, batched)
    if nfe % cost:
        raise NFEBudgetError(f"NFE={nfe} is the counted budget, but unbatched {guidance} costs {cost} evaluations "
                             f"per model call: use a multiple of {cost} (or --cfg-batched)")
    calls = nfe // cost
    if final_denoise:
        calls -= 1
        if calls < 1:
            raise NFEBudgetError(f"NFE={nfe} leaves no model call for the solver once the final denoising call "
                                 f"(cost {cost}) is taken")
    return calls


def nfe_rule(guidance: str, batched: bool = False) -> str:
    if guidance == "cfg":
        return "cfg-batched: 1 per call (cond+uncond in one doubled batch)" if batched else \
            "cfg-unbatched: 2 per call (cond and uncond passes)"
    if guidance == "classifier":
        return "classifier: 1 per call (score net; classifier gradient not counted)"
    return "none: 1 per call"


def guided_functions(lab, sde, guidance: str, scale: float, c: int, cfg_param: str = "eps") -> dict:
    """Native (uncounted) callables {parametrization: fn(x, t)} of the guided model."""
    w = float(scale)
    if guidance == "cfg":
        sub = lab.class_mixture(c)
        full = lab.mixture
        if cfg_param == "eps":
            return {"eps": lambda x, t: (1 + w) * sub.eps(x, t, sde) - w * full.eps(x, t, sde)}
        return {"x0": lambda x, t: (1 + w) * sub.x0(x, t, sde) - w * full.x0(x, t, sde)}
    if guidance == "classifier":
        return {"score": lambda x, t: lab.unconditional_score(x, t, sde) + w * lab.classifier_grad(x, t, sde, c)}
    raise ConfigError(f"guidance {guidance!r} has no guided model; valid: classifier, cfg")


def guided_model(problem, sde, guidance: str, scale=0.0, class_label=None, cfg_param: str = "eps",
                 batched: bool = False) -> Model:
    """A counted :class:`Model` for the guided field (or the plain target for guidance 'none')."""
    lab = check_guidance(problem, guidance, scale, class_label, cfg_param)
    if lab is None:
        return Model(sde, **problem.model_functions(sde))
    fns = guided_functions(lab, sde, guidance, _scale(scale), int(class_label), cfg_param)
    return Model(sde, cost=guidance_cost(guidance, batched), **fns)


def guided_score_fn(problem, sde, guidance: str, scale, class_label, cfg_param: str = "eps"):
    """Uncounted guided score s_w(x, t) (for reference solves)."""
    model = guided_model(problem, sde, guidance, scale, class_label, cfg_param)
    return lambda x, t: model.score(x, t)


# ---- (b) pathwise reference ----------------------------------------------------------------------
def reference_ode(score_fn, sde, x_T: torch.Tensor, T: float, t_end: float, rtol: float = REF_TOL,
                  atol: float = REF_TOL) -> tuple[torch.Tensor, int]:
    """x(t_end) of dx/dt = f x - g^2/2 s(x, t) from x(T) = x_T by adaptive dopri5 (torchdiffeq), in
    float64 (:func:`sdebench.reference.reference_flow`); returns (x_end, evaluations)."""
    r = reference_flow(sde, x_T, t_end, score=score_fn, t_start=T, rtol=rtol, atol=atol)
    return r.x, r.nfe


_REF_CACHE: dict = {}


def _cached_reference(key, score_fn, sde, x_T, T, t_end):
    if key not in _REF_CACHE:
        if len(_REF_CACHE) >= 32:
            _REF_CACHE.pop(next(iter(_REF_CACHE)))
        _REF_CACHE[key] = reference_flow(sde, x_T, t_end, score=score_fn, t_start=T, rtol=REF_TOL,
                                         error_estimate=True)
    return _REF_CACHE[key]


def guidance_columns(cfg, nfe: int) -> dict:
    """Cost bookkeeping of a row: ``guidance_cost``, ``model_calls`` (= nfe / cost), ``nfe_rule``."""
    guidance = getattr(cfg, "guidance", "none")
    batched = bool(getattr(cfg, "cfg_batched", False))
    cost = guidance_cost(guidance, batched)
    return {"guidance_cost": cost, "model_calls": nfe // cost, "nfe_rule": nfe_rule(guidance, batched)}


def class_mass_columns(problem, sde, cfg, x_out: torch.Tensor, t_end: float) -> dict:
    """(d) ``class_mass``: the fraction of samples the exact classifier puts in the target class,
    ``class_masses`` per class, and ``class_mass_null`` on exact samples of p_{t_end}(x | c)."""
    lab = labelled(problem)
    c = int(cfg.class_label)
    x_out = x_out.to(torch.float64).cpu()
    row: dict = {}
    pred = lab.predict_class(x_out, t_end, sde)
    row["class_mass"] = float((pred == c).double().mean())
    row["class_masses"] = ",".join(f"{k}:{float((pred == k).double().mean()):.4f}" for k in lab.classes)
    g = torch.Generator().manual_seed((1_000_003 * (cfg.seed + 1) + 7919 * 3) % 2**64)
    null = lab.class_mixture(c).sample_t(x_out.shape[0], t_end, sde, generator=g)
    row["class_mass_null"] = float((lab.predict_class(null, t_end, sde) == c).double().mean())
    return row


def path_err_columns(problem, sde, cfg, x_T: torch.Tensor, x_out: torch.Tensor, t_end: float) -> dict:
    """(b) ``path_err`` (RMS of |x - x_ref|), ``path_err_med``, ``path_err_max`` and ``ref_nfe`` of a
    deterministic solver against the dopri5 solve of the guided probability-flow ODE from the same x_T
    (the plain probability-flow ODE for an unguided cell)."""
    guidance = getattr(cfg, "guidance", "none")
    c = None if getattr(cfg, "class_label", None) is None else int(cfg.class_label)
    x_out = x_out.to(torch.float64).cpu()
    row: dict = {}
    key = (cfg.problem, repr(sde), guidance, float(cfg.scale), c, cfg.seed, cfg.n_samples, cfg.init,
           float(t_end), cfg.dtype)
    score_fn = guided_score_fn(problem, sde, guidance, cfg.scale, c, "x0")
    r = _cached_reference(key, score_fn, sde, x_T.to(torch.float64).cpu(), sde.T, t_end)
    ref, check = r.x, r.x_check
    if getattr(cfg, "final_denoise", False):  # compare with the denoised reference D_w(x_ref, t_end)
        den = guided_model(problem, sde, guidance, cfg.scale, c, "x0").x0
        t_e = torch.tensor(float(t_end), dtype=torch.float64)
        ref, check = den(ref, t_e), den(check, t_e)
    err = (x_out - ref).norm(dim=1)
    row["path_err"] = float(torch.sqrt((err * err).mean()))
    row["path_err_med"] = float(err.median())
    row["path_err_max"] = float(err.max())
    row["ref_nfe"] = int(r.nfe)
    row["path_ref_rtol"] = r.rtol
    # RMS of |x_check - x_ref| (check: dopri5 at 10x the tolerance): a conservative estimate of the
    # reference's own error, in the unit of path_err
    row["path_ref_err"] = float((check - ref).norm(dim=1).pow(2).mean().sqrt())
    return row


# ---- (c) exact laws for Gaussian conditional / unconditional pairs ------------------------------------
def gaussian_score_fn(sde, mean: torch.Tensor, cov: torch.Tensor):
    """Score of N(alpha_t m, alpha_t^2 S + sigma_t^2 I) (the p_t of a Gaussian p_0), as fn(x, t)."""
    mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
    cov = torch.as_tensor(cov, dtype=torch.float64)
    eye = torch.eye(mean.numel(), dtype=torch.float64)

    def score(x, t):
        t64 = torch.as_tensor(t, dtype=torch.float64)
        a, s2 = float(sde.alpha(t64)), float(sde.sigma2(t64))
        C = a * a * cov + s2 * eye
        return -torch.linalg.solve(C, (x - a * mean).T.to(torch.float64)).T.to(x.dtype)

    return score


def _pair_score(sde, cond, uncond, w: float, guidance: str):
    sc, su = gaussian_score_fn(sde, *cond), gaussian_score_fn(sde, *uncond)
    wc = (1 + w) if guidance == "cfg" else w  # classifier: s_u + w (s_c - s_u)
    return lambda x, t: wc * sc(x, t) + (1 - wc) * su(x, t)


def exact_guided_law(spec, sde, grid, cond, uncond, scale: float, m_T, P_T, guidance: str = "cfg",
                     nfe=None, options=None):
    """Exact output law (mean, cov) of ``spec`` on the guided field built from a Gaussian conditional
    ``cond = (m_c, S_c)`` and a Gaussian unconditional ``uncond = (m_u, S_u)``, started from N(m_T, P_T).
    The guided score is affine, so :func:`sdebench.exact.output_gaussian` applies."""
    w = _scale(scale)
    score = _pair_score(sde, cond, uncond, w, guidance)
    return output_gaussian(spec, lambda: Model(sde, score=score), sde, grid, m_T, P_T, nfe=nfe, options=options)


def guided_ode_law(sde, cond, uncond, scale: float, m_T, P_T, t_end: float, guidance: str = "cfg",
                   tol: float = 1e-11):
    """Law N(m, P) at t_end of the exact guided probability-flow ODE started from N(m_T, P_T).

    With s_w(x, t) = -A(t) x + b(t) the flow is linear: dm/dt = M m - g^2/2 b, dP/dt = M P + P M^T,
    M = f I + g^2/2 A. Integrated from T to t_end by dopri5 at rtol = atol = ``tol``."""
    from torchdiffeq import odeint

    w = _scale(scale)
    score = _pair_score(sde, cond, uncond, w, guidance)
    m_T = torch.as_tensor(m_T, dtype=torch.float64).reshape(-1)
    P_T = torch.as_tensor(P_T, dtype=torch.float64)
    d = m_T.numel()
    eye = torch.eye(d, dtype=torch.float64)

    def rhs(t, y):
        m, P = y[:d], y[d:].reshape(d, d)
        b = score(torch.zeros(1, d, dtype=torch.float64), t)[0]
        A = b[None, :] - score(eye, t)  # row i = -(s(e_i) - s(0)) = (A e_i)^T, A symmetric
        f, g2 = float(sde.f(t)), float(sde.g2(t))
        M = f * eye + 0.5 * g2 * A
        dm = M @ m - 0.5 * g2 * b
        dP = M @ P + P @ M.T
        return torch.cat([dm, dP.reshape(-1)])

    y0 = torch.cat([m_T, P_T.reshape(-1)])
    lo, hi = float(t_end), float(sde.T)
    ts = torch.tensor([hi, lo], dtype=torch.float64)
    y = odeint(lambda t, y: rhs(t.clamp(lo, hi), y), y0, ts, rtol=tol, atol=tol, method="dopri5",
               options={"step_t": torch.tensor([lo], dtype=torch.float64)})[-1]
    P = y[d:].reshape(d, d)
    return y[:d], 0.5 * (P + P.T)
