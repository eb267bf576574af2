"""Your own network as a problem: :func:`from_network` wraps any torch module with its parametrization and noise
schedule; :func:`load_factory` resolves ``--problem pkg.module:factory``; :func:`diffusers_unet` builds a diffusers
``UNet2DModel`` problem (random initialization or a local ``from_pretrained`` folder, nothing downloaded).

The network and its frame
-------------------------
The module was trained on its OWN noise schedule (``sde=``): x_u = A_u x_0 + S_u eps at its time u. It is called
as ``module(x_in, tau)`` with ``x_in`` the state reshaped to ``(n, *shape)`` and ``tau`` a tensor of shape (n,)
holding ``time_input(u)`` ("t": u itself, "lambda": log(A_u / S_u), "sigma": S_u / A_u, "index": diffusers'
timestep index N u - 1 of a discrete schedule, or a callable of the float64 tensor u). An output with a
``.sample`` attribute (diffusers) or a tuple is unwrapped to its first tensor.

A cell may integrate on any forward SDE (``--sde``, alpha_t, sigma_t): the network is evaluated at the time u of
equal half log-SNR, lambda_net(u) = lambda_t, on the rescaled state x_n = (A_u / alpha_t) x, which has exactly the
law A_u x_0 + S_u eps. So eps and x0 are the same in both frames and score_t(x) = (A_u / alpha_t) score_net(x_n, u).
When the cell's SDE is the network's own (same class and parameters), u = t and x_n = x with no arithmetic. An SDE
that reaches a lower log-SNR at its T than the network's schedule at its own T is a one-line ConfigError.

Parametrizations (what the module outputs at (x_n, u), converted with A = A_u, S = S_u):

    eps:    eps = out                                      x0 = (x_n - S eps) / A
    x0:     x0 = out                                       eps = (x_n - A x0) / S
    v:      v = A eps - S x0 (Salimans & Ho; any A, S):    eps = (A v + S x_n) / (A^2 + S^2),
                                                           x0 = (A x_n - S v) / (A^2 + S^2)
    score:  score_net = out                                eps = -S score_net,  score_t = (A / alpha_t) score_net

The solvers' :class:`sdebench.model.Model` gets ``eps`` and the module's own kind (``x0`` for v) natively and
converts further with the cell SDE's alpha_t, sigma_t (sdebench/model.py).

Metrics: ``path_err`` always (deterministic solvers; the reference is the dopri5 solve of the same network's
probability-flow ODE from the same x_T, :func:`sdebench.problems.images.cached_reference`); ``sliced_w2`` only
with ``data``; ``fd`` only with ``data`` and a feature classifier (the committed digits classifier for
``data="digits"``); the exact metrics never (the law the network defines is unknown). Without data, the
``exact`` init draws x_T from N(0, sigma_T^2 I), the SDE's prior: the exact p_T of a network is not known; the
path error is unaffected (its reference starts from the same x_T).

Discrete schedules (diffusers)
------------------------------
:class:`DiscreteVP` is the VP SDE of a discrete ``alphas_cumprod`` (N entries) in continuous time on (0, 1]: grid
point n (timestep index n = 0..N-1) sits at t_n = (n + 1) / N, log alpha is piecewise linear in t through
(0, 0) and (t_n, log(alphas_cumprod[n]) / 2) (DPM-Solver's ``NoiseScheduleVP('discrete')``; the added point
(0, 0) makes alpha_0 = 1, sigma_0 = 0), sigma_t^2 = 1 - alpha_t^2, so beta(t) = -2 d log alpha / dt is piecewise
constant. Between grid points the network gets the fractional timestep index tau = N t - 1 (diffusers' sinusoidal
timestep embedding takes real values); T = 1 is index N - 1 and the default t_end = 1 / N is index 0.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import math
import re

import torch

from sdebench.errors import ConfigError
from sdebench.sde import ForwardSDE, get_sde

from .classifier import load_classifier
from .images import DATA_DIR, ImageData, _split, cached_reference, load_data

__all__ = ["from_network", "NetworkProblem", "DiscreteVP", "load_factory", "is_factory_spec", "diffusers_unet",
           "NETWORK_PARAMETRIZATIONS", "TIME_INPUTS", "METRICS_NOTE"]

NETWORK_PARAMETRIZATIONS = ("eps", "x0", "v", "score")
TIME_INPUTS = ("t", "lambda", "sigma", "index")
METRICS_NOTE = "metrics: path_err; sliced_w2 with data; fd with data and a classifier; no exact metrics"


# ---- a discrete (diffusers) schedule in continuous time ------------------------------------------------------
class DiscreteVP(ForwardSDE):
    """The VP SDE of a discrete ``alphas_cumprod`` (see the module docstring for the time mapping)."""

    name = "discrete-vp"
    description = "VP SDE of a discrete alphas_cumprod: log alpha piecewise linear in t, index n at t = (n+1)/N"
    T = 1.0

    def __init__(self, alphas_cumprod):
        try:
            ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64).detach().cpu()
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(f"alphas_cumprod must be a 1-D sequence of numbers, got {alphas_cumprod!r}") from None
        if ac.dim() != 1 or len(ac) < 2:
            raise ConfigError(f"alphas_cumprod must be 1-D with at least 2 entries, got shape {tuple(ac.shape)}")
        if not bool(((ac > 0) & (ac < 1)).all()) or not bool((ac[1:] < ac[:-1]).all()):
            raise ConfigError("alphas_cumprod must lie in (0, 1) and decrease strictly")
        self.N = len(ac)
        self.alphas_cumprod = ac
        self.T = 1.0
        self.t_end_default = 1.0 / self.N
        self._t = torch.cat([torch.zeros(1, dtype=torch.float64), torch.arange(1, self.N + 1, dtype=torch.float64)
                             / self.N])
        self._la = torch.cat([torch.zeros(1, dtype=torch.float64), 0.5 * torch.log(ac)])
        self._slope = (self._la[1:] - self._la[:-1]) / (self._t[1:] - self._t[:-1])

    def _segment(self, t: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.searchsorted(self._t, t.reshape(-1), right=True) - 1, 0, self.N - 1).reshape(t.shape)

    def log_alpha(self, t):
        t = torch.as_tensor(t, dtype=torch.float64)
        k = self._segment(t.cpu())
        return (self._la[k] + self._slope[k] * (t.cpu() - self._t[k])).to(t.device)

    def sigma2(self, t):
        return -torch.expm1(2 * self.log_alpha(t))

    def f(self, t):
        t = torch.as_tensor(t, dtype=torch.float64)
        return self._slope[self._segment(t.cpu())].to(t.device)

    def g2(self, t):  # sigma^2 = 1 - alpha^2  =>  g^2 = d sigma^2/dt - 2 f sigma^2 = -2 f
        return -2 * self.f(t)

    def t_of_lambda(self, lam):
        lam = torch.as_tensor(lam, dtype=torch.float64)
        target = -0.5 * torch.nn.functional.softplus(-2 * lam.cpu())  # log alpha of a VP state at lambda
        neg = -self._la  # increasing in t
        k = torch.clamp(torch.searchsorted(neg, -target.reshape(-1), right=True) - 1, 0, self.N - 1).reshape(lam.shape)
        return (self._t[k] + (target - self._la[k]) / self._slope[k]).to(lam.device)

    def index(self, t):
        """diffusers' (fractional) timestep index of time t: N t - 1."""
        return self.N * torch.as_tensor(t, dtype=torch.float64) - 1

    def params(self) -> dict:
        import hashlib

        digest = hashlib.blake2b(self.alphas_cumprod.numpy().tobytes(), digest_size=6).hexdigest()
        return {"N": self.N, "alphas_cumprod": digest}


def _schedule(sde) -> ForwardSDE:
    """The network's own schedule: an SDE name, a ForwardSDE, alphas_cumprod, or a diffusers scheduler config."""
    if isinstance(sde, ForwardSDE):
        return sde
    if isinstance(sde, str):
        return get_sde(sde)
    if isinstance(sde, dict):
        return DiscreteVP(_alphas_cumprod(sde))
    if hasattr(sde, "alphas_cumprod"):  # a diffusers scheduler object
        return DiscreteVP(sde.alphas_cumprod)
    if isinstance(sde, (torch.Tensor, list, tuple)) or type(sde).__name__ == "ndarray":
        return DiscreteVP(sde)
    raise ConfigError(f"sde must be an SDE name, a ForwardSDE, alphas_cumprod or a scheduler config, got {sde!r}")


def _alphas_cumprod(config: dict) -> torch.Tensor:
    """alphas_cumprod of a diffusers scheduler config (its DDPMScheduler computes it: every beta_schedule)."""
    try:
        from diffusers import DDPMScheduler
    except ImportError:
        raise ConfigError("a diffusers scheduler config needs diffusers: pip install 'sdebench[peers]'") from None
    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
            "rescale_betas_zero_snr")
    try:
        sched = DDPMScheduler(**{k: config[k] for k in keys if k in config})
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise ConfigError(f"scheduler config {config!r} is not usable: {str(exc).splitlines()[0]}") from None
    return sched.alphas_cumprod.to(torch.float64)


# ---- the problem ---------------------------------------------------------------------------------------------
def _unwrap(out):
    if hasattr(out, "sample") and isinstance(out.sample, torch.Tensor):
        return out.sample
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return out


def _module_dtype(module) -> torch.dtype | None:
    for p in list(module.parameters()) + list(module.buffers()):
        if p.is_floating_point():
            return p.dtype
    return None


class NetworkProblem:
    """A user network with its schedule (built by :func:`from_network`; see the module docstring)."""

    is_gaussian = False
    is_image = True  # judged like the image problems: path_err, and data-based metrics when data are given
    is_network = True

    def __init__(self, module, parametrization: str, sde: ForwardSDE, shape: tuple, data: ImageData | None,
                 classifier, time_input, name: str, description: str, dtype):
        self.net = module
        self.parametrization = parametrization
        self.sde = sde
        self.shape = tuple(shape)
        self.d = int(math.prod(self.shape))
        self.data = data
        self.classifier = classifier
        self.time_input = time_input
        self.name = name
        self.description = description
        self.dtype = dtype
        self._copies: dict = {}
        self._ref_cache: dict = {}

    # the network on a device, in its dtype (a copy per device other than its own)
    def _module(self, device):
        key = str(device)
        if key not in self._copies:
            own = next(iter(list(self.net.parameters()) + list(self.net.buffers())), None)
            if own is None or own.device == torch.device(device):
                self._copies[key] = self.net
            else:
                self._copies[key] = copy.deepcopy(self.net).to(device)
        return self._copies[key]

    def _tau(self, u: torch.Tensor) -> torch.Tensor:
        ti = self.time_input
        if callable(ti):
            return torch.as_tensor(ti(u))
        if ti == "t":
            return u
        if ti == "lambda":
            return self.sde.lambda_(u)
        if ti == "sigma":
            return torch.exp(-self.sde.lambda_(u))
        return self.sde.index(u)  # "index" (checked by from_network)

    def evaluate(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The raw module output at (x (n, d) in the network's frame, u (n,) float64): (n, d) in x's dtype."""
        n = x.shape[0]
        dt = self.dtype or x.dtype
        xi = x.reshape(n, *self.shape).to(dt)
        tau = self._tau(u).to(device=x.device, dtype=dt)
        out = _unwrap(self._module(x.device)(xi, tau))
        if not isinstance(out, torch.Tensor):
            raise ConfigError(f"network of problem {self.name!r} returned {type(out).__name__}, not a tensor")
        if tuple(out.shape) != tuple(xi.shape):
            raise ConfigError(f"network of problem {self.name!r}: output shape {tuple(out.shape)} differs from its "
                              f"input shape {tuple(xi.shape)}")
        return out.reshape(n, -1).to(x.dtype)

    def check_sde(self, sde: ForwardSDE) -> None:
        """A cell SDE whose log-SNR at its T lies below the network's at its own T is a ConfigError."""
        if self._same(sde):
            return
        T = torch.tensor(float(sde.T), dtype=torch.float64)
        lam, lo = float(sde.lambda_(T)), float(self.sde.lambda_(torch.tensor(float(self.sde.T), dtype=torch.float64)))
        if lam < lo - 1e-9:
            raise ConfigError(f"problem {self.name!r}: SDE {sde.name} reaches log-SNR lambda = {lam:.4g} at T = "
                              f"{float(sde.T):g}, below the network's range (lambda >= {lo:.4g} on its own "
                              f"schedule); choose another --sde or a smaller --T")

    def _same(self, sde: ForwardSDE) -> bool:
        return sde is self.sde or (type(sde) is type(self.sde) and repr(sde) == repr(self.sde))

    def _frame(self, sde, x: torch.Tensor, t):
        """(x_n, u, A_u, S_u, scale = A_u / alpha_t) of the network's frame for the cell state (x, t)."""
        n = x.shape[0]
        t64 = torch.as_tensor(t, dtype=torch.float64).reshape(-1).cpu()
        t64 = t64.expand(n) if t64.numel() == 1 else t64
        if self._same(sde):
            u, scale = t64, None
        else:
            u = self.sde.t_of_lambda(sde.lambda_(t64))
            scale = torch.exp(self.sde.log_alpha(u) - sde.log_alpha(t64))
        A, S = self.sde.alpha(u), self.sde.sigma(u)

        def col(v):
            return None if v is None else v.to(device=x.device, dtype=x.dtype)[:, None]

        xn = x if scale is None else x * col(scale)
        return xn, u, col(A), col(S), col(scale)

    def model_functions(self, sde) -> dict:
        """eps (always), the module's own kind (x0 for v) and the oracle consistency function, on ``sde``."""
        self.check_sde(sde)
        p = self.parametrization

        def native(x, t):
            xn, u, A, S, scale = self._frame(sde, x, t)
            return xn, self.evaluate(xn, u), A, S, scale

        def eps(x, t):
            xn, out, A, S, _ = native(x, t)
            if p == "eps":
                return out
            if p == "x0":
                return (xn - A * out) / S
            if p == "v":
                return (A * out + S * xn) / (A * A + S * S)
            return -S * out  # score

        fns = {"eps": eps}
        if p == "x0":
            fns["x0"] = lambda x, t: native(x, t)[1]
        elif p == "v":
            def x0(x, t):
                xn, out, A, S, _ = native(x, t)
                return (A * xn - S * out) / (A * A + S * S)

            fns["x0"] = x0
        elif p == "score":
            def score(x, t):
                _, out, _, _, scale = native(x, t)
                return out if scale is None else scale * out

            fns["score"] = score

        def consistency(x, t, t_end):
            """Oracle consistency function: the path_err reference flow from (x, t) to t_end (cached)."""
            if float(t) <= float(t_end):
                return x
            r = cached_reference(self, sde, x, float(t_end), t_start=float(t), estimate=float(t) >= float(sde.T))
            return r.x.to(dtype=x.dtype, device=x.device)

        fns["consistency"] = consistency
        return fns

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float64, device="cpu"):
        """n held-out data points drawn with replacement, flattened (needs data)."""
        if self.data is None:
            raise ConfigError(f"problem {self.name!r} has no data (pass data= to from_network)")
        idx = torch.randint(len(self.data.test), (n,), generator=generator)
        return self.data.test[idx].reshape(n, -1).to(dtype=dtype, device=device)

    def sample_t(self, n: int, t, sde, generator=None, dtype=torch.float64, device="cpu", z0=None, u=None, z=None):
        """x_t = alpha_t x_0 + sigma_t z, x_0 the training point floor(u N) of the data; without data x_0 = 0
        (x_t ~ N(0, sigma_t^2 I): the exact p_t of a network is unknown)."""
        if z is None:
            z = torch.randn(n, self.d, generator=generator, dtype=torch.float64)
        t64 = torch.as_tensor(t, dtype=torch.float64)
        a, s = float(sde.alpha(t64)), float(sde.sigma(t64))
        if self.data is None:
            return (s * z.double().cpu()).to(dtype=dtype, device=device)
        if u is None:
            u = torch.rand(n, generator=generator, dtype=torch.float64)
        N = len(self.data.train)
        idx = torch.clamp((u.double().cpu() * N).long(), 0, N - 1)
        x0 = self.data.train[idx].reshape(n, -1).double()
        return (a * x0 + s * z.double().cpu()).to(dtype=dtype, device=device)


def _data(data, shape, name) -> ImageData | None:
    if data is None or isinstance(data, ImageData):
        out = data
    elif isinstance(data, str):
        out = load_data(data)
    else:
        try:
            x = torch.as_tensor(data, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(f"data must be None, a data set name or a tensor (N, *shape), got {data!r}") from None
        if x.dim() < 1 or len(x) < 10:
            raise ConfigError(f"data must hold at least 10 points, got shape {tuple(x.shape)}")
        x = x.reshape(len(x), *shape) if x[0].numel() == math.prod(shape) else x
        out = _split(name, x.numpy(), torch.zeros(len(x), dtype=torch.long).numpy())
    if out is not None and tuple(out.shape) != tuple(shape):
        raise ConfigError(f"data of shape {tuple(out.shape)} do not fit the network's shape {tuple(shape)}")
    return out


def _classifier(classifier, data):
    if classifier is None:
        if isinstance(data, str) and data == "digits" and (DATA_DIR / "digits_classifier.safetensors").is_file():
            return load_classifier(DATA_DIR / "digits_classifier.safetensors")
        return None
    if isinstance(classifier, torch.nn.Module):
        if not callable(getattr(classifier, "features", None)):
            raise ConfigError("classifier must have a features(x) method (sdebench.problems.classifier.Classifier)")
        return classifier
    return load_classifier(classifier)


def from_network(module, parametrization: str = "eps", sde="vp", shape=None, data=None, *, time_input="t",
                 name: str = "network", classifier=None, dtype=None, description: str | None = None,
                 check: bool = True) -> NetworkProblem:
    """A problem built from a torch module (see the module docstring for the frame, the conversions and the metrics).

    module:          called as ``module(x (n, *shape), tau (n,))``; its output has x's shape (or ``.sample`` has).
    parametrization: what it predicts: ``eps``, ``x0``, ``v`` (v = A_u eps - S_u x0) or ``score``.
    sde:             its own noise schedule: an SDE name (``vp``, ...), a :class:`ForwardSDE`, a 1-D
                     ``alphas_cumprod`` or a diffusers scheduler config dict / scheduler (-> :class:`DiscreteVP`).
    shape:           the shape of one sample, e.g. (1, 8, 8) or (2,).
    data:            None, a data set name (``digits``, ``mnist5k``, ``folder:<path>``) or a tensor (N, *shape)
                     (split 80/20 into train / held out); enables sliced_w2 and, with a classifier, fd.
    time_input:      what the module's second argument is: ``t`` (default), ``lambda``, ``sigma``, ``index``
                     (discrete schedules; the diffusers convention) or a callable of the float64 time u (n,).
    classifier:      feature classifier for fd (a Classifier or a checkpoint path; data="digits" uses the
                     committed one).
    dtype:           the dtype the module runs in (default: its parameters' dtype, else the state's).
    check:           probe the module once (batch of 2 at t = T): a module that raises or whose output shape
                     differs from its input is a one-line ConfigError here, not in the middle of a run.
    """
    if not isinstance(module, torch.nn.Module) and not callable(module):
        raise ConfigError(f"module must be a torch.nn.Module or a callable, got {type(module).__name__}")
    if parametrization not in NETWORK_PARAMETRIZATIONS:
        raise ConfigError(f"unknown parametrization {parametrization!r}; valid: {', '.join(NETWORK_PARAMETRIZATIONS)}")
    own = _schedule(sde)
    if not callable(time_input) and time_input not in TIME_INPUTS:
        raise ConfigError(f"unknown time_input {time_input!r}; valid: {', '.join(TIME_INPUTS)} or a callable")
    if time_input == "index" and not isinstance(own, DiscreteVP):
        raise ConfigError("time_input='index' needs a discrete schedule (alphas_cumprod or a scheduler config)")
    if shape is None:
        raise ConfigError("shape is required: the shape of one sample, e.g. (1, 8, 8) or (2,)")
    try:
        shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list, torch.Size)) else (shape,)))
    except (TypeError, ValueError):
        raise ConfigError(f"shape must be a tuple of positive integers, got {shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(f"shape must be a tuple of positive integers, got {shape!r}")
    if not isinstance(module, torch.nn.Module):
        fn = module
        module = _Callable(fn)
    if dtype is None:
        dtype = _module_dtype(module)
    module.eval()
    ds = _data(data, shape, name)
    clf = _classifier(classifier, data) if ds is not None else None
    if description is None:
        kind = type(module.fn).__name__ if isinstance(module, _Callable) else type(module).__name__
        n_par = sum(p.numel() for p in module.parameters())
        description = (f"your network: {kind} ({n_par} params), {parametrization}-prediction on {own.name} "
                       f"{own!r}, shape {'x'.join(map(str, shape))}" + (f", data {ds.name}" if ds else ", no data")
                       + f"; {METRICS_NOTE}")
    prob = NetworkProblem(module, parametrization, own, shape, ds, clf, time_input, name, description, dtype)
    if check:
        T = torch.full((2,), float(own.T), dtype=torch.float64)
        try:
            with torch.no_grad():
                prob.evaluate(torch.zeros(2, prob.d, dtype=dtype or torch.float64), T)
        except ConfigError:
            raise
        except Exception as exc:  # the user's module failed on a probe batch
            msg = str(exc).splitlines()[0] if str(exc) else ""
            raise ConfigError(f"network of problem {name!r} fails on a probe batch of shape (2, "
                              f"{', '.join(map(str, shape))}): {type(exc).__name__}: {msg}") from None
    return prob


class _Callable(torch.nn.Module):
    """A plain function (x, tau) -> output, as a module."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, tau):
        return self.fn(x, tau)


# ---- pkg.module:factory ----------------------------------------------------------------------------------------
_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_FACTORY_CACHE: dict = {}


def is_factory_spec(name: str) -> bool:
    """``pkg.module:factory`` (a dotted module path, a colon, an attribute name)."""
    return isinstance(name, str) and bool(_SPEC.match(name))


def _is_problem(obj) -> bool:
    return callable(getattr(obj, "model_functions", None)) and callable(getattr(obj, "sample_t", None)) \
        and isinstance(getattr(obj, "d", None), int)


def load_factory(spec: str):
    """The problem returned by the zero-argument callable ``factory`` of module ``pkg.module`` (``spec`` is
    ``pkg.module:factory``), built once per process. Its name becomes ``spec``, so a row's ``problem`` column
    rebuilds it. Every failure is a one-line ConfigError naming ``spec``."""
    if spec in _FACTORY_CACHE:
        return _FACTORY_CACHE[spec]
    mod_name, attr = spec.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except Exception as exc:  # ImportError, or the module itself raising on import
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(f"problem {spec!r}: cannot import module {mod_name!r} ({type(exc).__name__}: {msg})") \
            from None
    if not hasattr(mod, attr):
        raise ConfigError(f"problem {spec!r}: module {mod_name!r} has no attribute {attr!r}")
    factory = getattr(mod, attr)
    if not callable(factory):
        raise ConfigError(f"problem {spec!r}: {attr!r} is a {type(factory).__name__}, not a zero-argument callable")
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise ConfigError(f"problem {spec!r}: {attr}{inspect.signature(factory)} must be callable with no "
                          "arguments") from None
    except ValueError:  # no inspectable signature (a builtin): let the call decide
        pass
    try:
        prob = factory()
    except ConfigError as exc:
        raise ConfigError(f"problem {spec!r}: {exc}") from None
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(f"problem {spec!r}: the factory raised {type(exc).__name__}: {msg}") from None
    if not _is_problem(prob):
        raise ConfigError(f"problem {spec!r}: the factory returned {type(prob).__name__}, not a problem (return "
                          "sdebench.problems.from_network(...))")
    prob.name = spec
    _FACTORY_CACHE[spec] = prob
    return prob


# ---- diffusers UNet2DModel -------------------------------------------------------------------------------------
def diffusers_unet(unet=None, scheduler=None, *, folder=None, config: dict | None = None, seed: int = 0,
                   parametrization: str | None = None, data=None, name: str = "diffusers-unet", **kwargs):
    """A problem from a diffusers ``UNet2DModel`` and its scheduler config; nothing is downloaded.

    Give either ``unet`` (a UNet2DModel), ``folder`` (a local ``save_pretrained`` folder, loaded with
    ``local_files_only=True``; a ``scheduler/`` subfolder or ``scheduler_config.json`` in it supplies the
    schedule when ``scheduler`` is not given), or ``config`` (a UNet2DModel config dict: random initialization
    under ``torch.manual_seed(seed)``). ``scheduler``: a diffusers scheduler or its config dict (default: the
    DDPM linear schedule, beta 1e-4..0.02, 1000 steps). The schedule becomes a :class:`DiscreteVP`; the
    network gets the fractional timestep index (``time_input='index'``). ``parametrization`` defaults to the
    scheduler config's ``prediction_type`` (epsilon -> eps, sample -> x0, v_prediction -> v)."""
    try:
        import diffusers
    except ImportError:
        raise ConfigError("diffusers_unet needs diffusers: pip install 'sdebench[peers]'") from None
    if sum(v is not None for v in (unet, folder, config)) != 1:
        raise ConfigError("diffusers_unet takes exactly one of unet=, folder= and config=")
    if folder is not None:
        from pathlib import Path

        root = Path(folder).expanduser()
        if not (root / "config.json").is_file():
            raise ConfigError(f"diffusers folder {str(folder)!r} does not exist or holds no config.json "
                              "(nothing is downloaded: give a local save_pretrained folder)")
        try:
            unet = diffusers.UNet2DModel.from_pretrained(str(root), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load a UNet2DModel from {str(folder)!r}: {str(exc).splitlines()[0]}") from None
        if scheduler is None:
            for sub in (root / "scheduler" / "scheduler_config.json", root / "scheduler_config.json"):
                if sub.is_file():
                    import json

                    scheduler = json.loads(sub.read_text())
                    break
    elif config is not None:
        torch.manual_seed(seed)
        try:
            unet = diffusers.UNet2DModel(**config)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad UNet2DModel config: {str(exc).splitlines()[0]}") from None
    if not isinstance(unet, diffusers.UNet2DModel):
        raise ConfigError(f"unet must be a diffusers UNet2DModel, got {type(unet).__name__}")
    if scheduler is None:
        scheduler = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}
    sched_cfg = dict(scheduler) if isinstance(scheduler, dict) else dict(getattr(scheduler, "config", {}))
    if parametrization is None:
        pred = sched_cfg.get("prediction_type", "epsilon")
        table = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
        if pred not in table:
            raise ConfigError(f"scheduler prediction_type {pred!r} is not one of {', '.join(table)}")
        parametrization = table[pred]
    c = unet.config
    shape = (int(c.in_channels), int(c.sample_size), int(c.sample_size))
    return from_network(unet, parametrization, scheduler if not isinstance(scheduler, dict) else sched_cfg,
                        shape, data=data, time_input="index", name=name, **kwargs)

